// Shared set-up for the keystore tests: a fresh SoftHSM2 token in a temporary folder of the
// test file's own (each vitest file runs in its own process, so SOFTHSM2_CONF is per file).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pkcs11js from 'pkcs11js';
import { initSoftHsmToken } from '../../src/keystore/index.js';
import type { KeystoreOptions } from '../../src/keystore/index.js';
import { readVectorJson } from '../vectors/load.js';

export const USER_PIN = 'user-pin-1234';
export const SO_PIN = 'so-pin-5678';

export interface TestToken {
  dir: string;
  label: string;
  conf: string;
  modulePath: string;
  options: KeystoreOptions;
}

/** Creates the token and points this process at it; call before the module is first loaded. */
export async function setUpToken(label = 'test-token', prefix = 'keystore-'): Promise<TestToken> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const t = await initSoftHsmToken({ dir, label, soPin: SO_PIN, userPin: USER_PIN });
  process.env.SOFTHSM2_CONF = t.conf;
  return { dir, label, conf: t.conf, modulePath: t.modulePath, options: { modulePath: t.modulePath, tokenLabel: label, pin: USER_PIN } };
}

/**
 * A raw pkcs11js view of the same library, for tests that inspect or disturb the token behind
 * the keystore's back. It shares the process-wide Cryptoki state with the keystore.
 */
export function rawPkcs11(modulePath: string): pkcs11js.PKCS11 {
  const p = new pkcs11js.PKCS11();
  p.load(modulePath);
  try {
    p.C_Initialize();
  } catch (err) {
    if (!(err instanceof pkcs11js.Pkcs11Error && err.code === pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED)) throw err;
  }
  return p;
}

/** A logged-in read-write session on the token labelled `label`. */
export function rawSession(p: pkcs11js.PKCS11, label: string, pin = USER_PIN): Buffer {
  const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.replace(/[\s\0]+$/u, '') === label);
  if (!slot) throw new Error(`token ${label} not found`);
  const session = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  try {
    p.C_Login(session, pkcs11js.CKU_USER, pin);
  } catch (err) {
    if (!(err instanceof pkcs11js.Pkcs11Error && err.code === pkcs11js.CKR_USER_ALREADY_LOGGED_IN)) throw err;
  }
  return session;
}

export function findObjects(p: pkcs11js.PKCS11, session: Buffer, template: pkcs11js.Template): Buffer[] {
  p.C_FindObjectsInit(session, template);
  try {
    return p.C_FindObjects(session, 100);
  } finally {
    p.C_FindObjectsFinal(session);
  }
}

/** The BIP327 sign/verify vector's secret key and its public key (pubkeys[0]). */
export function bip327SignVector(): { sk: Uint8Array; pk: string } {
  const v = readVectorJson<{ sk: string; pubkeys: string[] }>('bip327/sign_verify_vectors.json');
  return { sk: Uint8Array.from(Buffer.from(v.sk, 'hex')), pk: v.pubkeys[0]!.toLowerCase() };
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
