// SoftHSM2 for development, tests and `npm start`: a token in a folder of the caller's
// choosing, created by softhsm/init-token.sh. Production points the keystore at its HSM's
// own module instead (see docs/key-custody.md).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Keystore } from './keystore.js';
import { Pkcs11Module } from './module.js';
import { pkcs11js, trimPadded } from './pkcs11.js';
import type { Handle, PKCS11 } from './pkcs11.js';

const INIT_SCRIPT = fileURLToPath(new URL('../../softhsm/init-token.sh', import.meta.url));

/** Where Debian and Ubuntu put the module, first match wins. */
export const SOFTHSM_MODULE_CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
] as const;

export function findSoftHsmModule(): string | undefined {
  return SOFTHSM_MODULE_CANDIDATES.find((p) => existsSync(p));
}

export interface SoftHsmTokenSpec {
  /** Folder for softhsm2.conf and tokens/; created if missing. */
  dir: string;
  label: string;
  soPin: string;
  userPin: string;
}

export interface SoftHsmToken {
  /** Set SOFTHSM2_CONF to this before the module is first initialized in a process. */
  conf: string;
  modulePath: string;
}

/**
 * Creates the token and its KEK if they do not exist yet (idempotent), by running
 * softhsm/init-token.sh. The PINs travel in the child's environment, never in its arguments.
 */
export async function initSoftHsmToken(spec: SoftHsmTokenSpec): Promise<SoftHsmToken> {
  const env = { ...process.env, SOFTHSM_SO_PIN: spec.soPin, SOFTHSM_USER_PIN: spec.userPin };
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile('bash', [INIT_SCRIPT, spec.dir, spec.label], { env }, (err, out, errText) => {
      if (err) reject(new Error(`softhsm/init-token.sh failed: ${errText.trim() || err.message}`));
      else resolve(out);
    });
  });
  const vars = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) vars.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const conf = vars.get('SOFTHSM2_CONF');
  const modulePath = vars.get('MUSIG2_PKCS11_MODULE');
  if (!conf || !modulePath) throw new Error(`softhsm/init-token.sh printed no configuration: ${stdout.trim()}`);
  return { conf, modulePath };
}

const TOKEN_LABEL_WIDTH = 32; // CK_TOKEN_INFO.label is 32 bytes, blank-padded

function tokenSlot(api: PKCS11, label: string): { slot: Handle; pinInitialized: boolean } | undefined {
  for (const slot of api.C_GetSlotList(true)) {
    const info = api.C_GetTokenInfo(slot);
    if ((info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) !== 0 && trimPadded(info.label) === label) {
      return { slot, pinInitialized: (info.flags & pkcs11js.CKF_USER_PIN_INITIALIZED) !== 0 };
    }
  }
  return undefined;
}

function freeSlot(api: PKCS11): Handle {
  for (const slot of api.C_GetSlotList(true)) {
    if ((api.C_GetTokenInfo(slot).flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0) return slot;
  }
  throw new Error('no free SoftHSM slot');
}

/**
 * Initialises the token (label, SO PIN, user PIN) unless it exists, then creates its KEK and
 * its audit MAC key unless present, all through PKCS#11. Needs SOFTHSM2_CONF set to a project-local config
 * before the module is loaded. Returns what it did (empty when nothing was needed).
 */
export async function provisionSoftHsmToken(modulePath: string, label: string, soPin: string, userPin: string): Promise<string[]> {
  if (!process.env.SOFTHSM2_CONF) throw new Error('SOFTHSM2_CONF must point at a project-local config');
  if (Buffer.byteLength(label) > TOKEN_LABEL_WIDTH || label === '') throw new Error(`token label must be 1 to ${TOKEN_LABEL_WIDTH} bytes`);
  const done: string[] = [];
  const mod = Pkcs11Module.acquire(modulePath);
  try {
    const api = mod.api;
    let token = tokenSlot(api, label);
    if (!token) {
      api.C_InitToken(freeSlot(api), soPin, label.padEnd(TOKEN_LABEL_WIDTH, ' '));
      done.push('token initialised');
      token = tokenSlot(api, label);
      if (!token) throw new Error('token not listed after C_InitToken');
    }
    if (!token.pinInitialized) {
      // The SO sets the user PIN; also completes a run that stopped between the two steps.
      const session = api.C_OpenSession(token.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      try {
        api.C_Login(session, pkcs11js.CKU_SO, soPin);
        api.C_InitPIN(session, userPin);
        api.C_Logout(session);
      } finally {
        api.C_CloseSession(session);
      }
      done.push('user PIN set');
    }
  } finally {
    mod.release();
  }
  const ks = await Keystore.open({ modulePath, tokenLabel: label, pin: userPin, poolSize: 1 });
  try {
    if (await ks.ensureKek()) done.push('KEK created');
    if ((await ks.ensureAuditKey(true)) === 'created') done.push('audit MAC key created');
  } finally {
    await ks.close();
  }
  return done;
}
