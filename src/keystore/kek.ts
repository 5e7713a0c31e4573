// The key-encryption key: one AES-256 secret key on the token that seals every signing key.
// It is created inside the token and can never leave it: sensitive, not extractable, usable
// to encrypt and decrypt but not to wrap, unwrap, sign or derive.
import { KeystoreError } from './errors.js';
import { attrBool, attrUlong, pkcs11js } from './pkcs11.js';
import type { Handle, PKCS11, Template } from './pkcs11.js';

export const DEFAULT_KEK_LABEL = 'musig2-signer-kek';

export function kekTemplate(label: string): Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_MODIFIABLE, value: false },
    { type: pkcs11js.CKA_ENCRYPT, value: true },
    { type: pkcs11js.CKA_DECRYPT, value: true },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_SIGN, value: false },
    { type: pkcs11js.CKA_VERIFY, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
  ];
}

/** Every KEK on the token with this label (normally zero or one). */
export function findKeks(api: PKCS11, session: Handle, label: string): Handle[] {
  api.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_LABEL, value: label },
  ]);
  try {
    return api.C_FindObjects(session, 16);
  } finally {
    api.C_FindObjectsFinal(session);
  }
}

/** Generates the KEK inside the token. */
export function createKek(api: PKCS11, session: Handle, label: string): Handle {
  return api.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, kekTemplate(label));
}

/**
 * Refuses a KEK whose attributes would let its value out or let it wrap other keys: a token
 * provisioned by hand, or by another tool, must not quietly weaken the envelope.
 */
export function checkKekPolicy(api: PKCS11, session: Handle, kek: Handle, label: string): void {
  const attrs = api.C_GetAttributeValue(session, kek, [
    { type: pkcs11js.CKA_KEY_TYPE },
    { type: pkcs11js.CKA_VALUE_LEN },
    { type: pkcs11js.CKA_TOKEN },
    { type: pkcs11js.CKA_SENSITIVE },
    { type: pkcs11js.CKA_EXTRACTABLE },
    { type: pkcs11js.CKA_ENCRYPT },
    { type: pkcs11js.CKA_DECRYPT },
    { type: pkcs11js.CKA_WRAP },
  ]);
  const get = (type: number) => attrs.find((a) => a.type === type)?.value;
  const problems: string[] = [];
  if (attrUlong(get(pkcs11js.CKA_KEY_TYPE)) !== pkcs11js.CKK_AES) problems.push('not an AES key');
  if (attrUlong(get(pkcs11js.CKA_VALUE_LEN)) !== 32) problems.push('not 256 bits');
  if (attrBool(get(pkcs11js.CKA_TOKEN)) !== true) problems.push('not a token object');
  if (attrBool(get(pkcs11js.CKA_SENSITIVE)) !== true) problems.push('not sensitive');
  if (attrBool(get(pkcs11js.CKA_EXTRACTABLE)) !== false) problems.push('extractable');
  if (attrBool(get(pkcs11js.CKA_ENCRYPT)) !== true || attrBool(get(pkcs11js.CKA_DECRYPT)) !== true) {
    problems.push('not allowed to encrypt and decrypt');
  }
  if (attrBool(get(pkcs11js.CKA_WRAP)) !== false) problems.push('allowed to wrap');
  if (problems.length > 0) {
    throw new KeystoreError('KEK_POLICY', `key-encryption key "${label}" is unsafe: ${problems.join(', ')}`);
  }
}
