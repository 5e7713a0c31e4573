// The audit MAC key on a real SoftHSM2 token: generated inside the token with attributes that
// keep its value in (checked through a raw PKCS#11 session), found again rather than duplicated,
// HMAC-SHA256 as node:crypto computes it (checked with a key of known value created by hand),
// and a key with that label whose value could leave the token is refused.
import { createHmac, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_AUDIT_KEY_LABEL, Keystore, KeystoreError } from '../../src/keystore/index.js';
import { findObjects, rawPkcs11, rawSession, setUpToken } from './helpers.js';
import type { TestToken } from './helpers.js';

let token: TestToken;
let p: pkcs11js.PKCS11;
let session: Buffer;
const opened: Keystore[] = [];

beforeAll(async () => {
  token = await setUpToken('audit-key');
  p = rawPkcs11(token.modulePath);
  session = rawSession(p, token.label);
});
afterAll(async () => {
  for (const ks of opened) await ks.close();
  rmSync(token.dir, { recursive: true, force: true });
});

async function open(): Promise<Keystore> {
  const ks = await Keystore.open(token.options);
  opened.push(ks);
  return ks;
}
const auditKeys = () =>
  findObjects(p, session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_LABEL, value: DEFAULT_AUDIT_KEY_LABEL },
  ]);
const destroyAll = () => {
  for (const h of auditKeys()) p.C_DestroyObject(session, h);
};

describe('the audit MAC key', () => {
  it('is made when the token is provisioned', () => {
    expect(auditKeys()).toHaveLength(1);
  });

  it('is missing until asked for, then generated once, sensitive and not extractable', async () => {
    destroyAll();
    const ks = await open();
    expect(await ks.ensureAuditKey(false)).toBe('missing');
    await expect(ks.withAuditMac((mac) => mac(Buffer.from('x')))).rejects.toMatchObject({ code: 'AUDIT_KEY_MISSING' });
    expect(await ks.ensureAuditKey(true)).toBe('created');
    expect(await ks.ensureAuditKey(true)).toBe('found');
    expect(await (await open()).ensureAuditKey(true)).toBe('found');
    const [key, ...more] = auditKeys();
    expect(more).toHaveLength(0);
    const attrs = p.C_GetAttributeValue(session, key!, [
      { type: pkcs11js.CKA_SENSITIVE },
      { type: pkcs11js.CKA_EXTRACTABLE },
      { type: pkcs11js.CKA_ENCRYPT },
      { type: pkcs11js.CKA_SIGN },
    ]);
    expect(attrs.map((a) => a.value![0])).toEqual([1, 0, 0, 1]);
    // The value itself cannot be read out.
    expect(() => p.C_GetAttributeValue(session, key!, [{ type: pkcs11js.CKA_VALUE }])).toThrow(/SENSITIVE/);
    const one = await ks.withAuditMac((mac) => mac(Buffer.from('record')));
    expect(one).toHaveLength(32);
    expect(await ks.withAuditMac((mac) => mac(Buffer.from('record')))).toEqual(one);
    expect(await ks.withAuditMac((mac) => mac(Buffer.from('recorD')))).not.toEqual(one);
  });

  it('computes HMAC-SHA256 as node:crypto does, for a key of known value', async () => {
    destroyAll();
    const value = randomBytes(32);
    p.C_CreateObject(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
      { type: pkcs11js.CKA_LABEL, value: DEFAULT_AUDIT_KEY_LABEL },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_VALUE, value },
    ]);
    const ks = await open();
    const data = randomBytes(400);
    expect(await ks.withAuditMac((mac) => mac(data))).toEqual(createHmac('sha256', value).update(data).digest());
  });

  it('refuses a key with that label whose value could leave the token', async () => {
    destroyAll();
    p.C_CreateObject(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
      { type: pkcs11js.CKA_LABEL, value: DEFAULT_AUDIT_KEY_LABEL },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: false },
      { type: pkcs11js.CKA_EXTRACTABLE, value: true },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_VALUE, value: randomBytes(32) },
    ]);
    const ks = await open();
    const err = await ks.ensureAuditKey(true).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeystoreError);
    expect((err as KeystoreError).code).toBe('AUDIT_KEY_POLICY');
    expect(String(err)).toMatch(/not sensitive, extractable/);
  });
});
