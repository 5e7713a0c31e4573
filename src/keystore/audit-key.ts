// The audit MAC key: one HMAC-SHA256 secret on the token that links the audit log's records
// (src/audit/record.ts). Like the KEK it is generated inside the token and never leaves it:
// sensitive, not extractable, allowed to sign and verify (CKM_SHA256_HMAC) and nothing else.
// Whoever can edit the log but cannot use the token cannot recompute a link.
import { KeystoreError } from './errors.js';
import { attrBool, attrUlong, pkcs11js } from './pkcs11.js';
import type { Handle, PKCS11, Template } from './pkcs11.js';

export const DEFAULT_AUDIT_KEY_LABEL = 'musig2-signer-audit-mac';

/** 256 bits: the HMAC-SHA256 block size allows up to 512, the output is 256. */
const AUDIT_KEY_BYTES = 32;

export function auditKeyTemplate(label: string): Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
    { type: pkcs11js.CKA_VALUE_LEN, value: AUDIT_KEY_BYTES },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_MODIFIABLE, value: false },
    { type: pkcs11js.CKA_SIGN, value: true },
    { type: pkcs11js.CKA_VERIFY, value: true },
    { type: pkcs11js.CKA_ENCRYPT, value: false },
    { type: pkcs11js.CKA_DECRYPT, value: false },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
  ];
}

export function findAuditKeys(api: PKCS11, session: Handle, label: string): Handle[] {
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

export function createAuditKey(api: PKCS11, session: Handle, label: string): Handle {
  return api.C_GenerateKey(session, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, auditKeyTemplate(label));
}

/** Refuses a key whose value could leave the token, or that is not an HMAC key of 256 bits. */
export function checkAuditKeyPolicy(api: PKCS11, session: Handle, key: Handle, label: string): void {
  const attrs = api.C_GetAttributeValue(session, key, [
    { type: pkcs11js.CKA_KEY_TYPE },
    { type: pkcs11js.CKA_VALUE_LEN },
    { type: pkcs11js.CKA_TOKEN },
    { type: pkcs11js.CKA_SENSITIVE },
    { type: pkcs11js.CKA_EXTRACTABLE },
    { type: pkcs11js.CKA_SIGN },
    { type: pkcs11js.CKA_WRAP },
  ]);
  const get = (type: number) => attrs.find((a) => a.type === type)?.value;
  const problems: string[] = [];
  const type = attrUlong(get(pkcs11js.CKA_KEY_TYPE));
  if (type !== pkcs11js.CKK_GENERIC_SECRET && type !== pkcs11js.CKK_SHA256_HMAC) problems.push('not a generic secret or HMAC-SHA256 key');
  if ((attrUlong(get(pkcs11js.CKA_VALUE_LEN)) ?? 0) < AUDIT_KEY_BYTES) problems.push('shorter than 256 bits');
  if (attrBool(get(pkcs11js.CKA_TOKEN)) !== true) problems.push('not a token object');
  if (attrBool(get(pkcs11js.CKA_SENSITIVE)) !== true) problems.push('not sensitive');
  if (attrBool(get(pkcs11js.CKA_EXTRACTABLE)) !== false) problems.push('extractable');
  if (attrBool(get(pkcs11js.CKA_SIGN)) !== true) problems.push('not allowed to sign');
  if (attrBool(get(pkcs11js.CKA_WRAP)) === true) problems.push('allowed to wrap');
  if (problems.length > 0) {
    throw new KeystoreError('AUDIT_KEY_POLICY', `audit MAC key "${label}" is unsafe: ${problems.join(', ')}`);
  }
}

/** HMAC-SHA256 of `data` under `key`, in the token. */
export function hmacSha256(api: PKCS11, session: Handle, key: Handle, data: Uint8Array): Buffer {
  api.C_SignInit(session, { mechanism: pkcs11js.CKM_SHA256_HMAC }, key);
  return Buffer.from(api.C_Sign(session, Buffer.from(data.buffer, data.byteOffset, data.byteLength), Buffer.alloc(32)));
}
