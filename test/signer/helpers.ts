// Shared set-up for the signer tests: a real SoftHSM2 token in a temp dir per test file, a
// real SQLite ledger per test, and a local (in-test) MuSig2 participant for the other seats.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { Keystore, initSoftHsmToken } from '../../src/keystore/index.js';
import * as musig2 from '../../src/musig2/index.js';
import { SignerError, type SignerErrorCode } from '../../src/signer/index.js';

export const USER_PIN = 'signer-test-user-pin';
const SO_PIN = 'signer-test-so-pin';
export const TOKEN_LABEL = 'signer-test';

export const rand = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** A fresh token in its own temp dir, this process pointed at it, and the keystore open on it. */
export async function openTestKeystore(prefix: string): Promise<{ dir: string; keystore: Keystore; modulePath: string }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const t = await initSoftHsmToken({ dir: join(dir, 'token'), label: TOKEN_LABEL, soPin: SO_PIN, userPin: USER_PIN });
  process.env.SOFTHSM2_CONF = t.conf;
  const keystore = await Keystore.open({ modulePath: t.modulePath, tokenLabel: TOKEN_LABEL, pin: USER_PIN });
  return { dir, keystore, modulePath: t.modulePath };
}

/** A participant whose key lives in the test: stands in for the other signers of a session. */
export class LocalSigner {
  readonly sk = rand(32);
  readonly pk: Uint8Array;
  constructor() {
    // A random 32-byte value is a valid scalar with overwhelming probability; individualPubkey checks it.
    this.pk = musig2.individualPubkey(this.sk);
  }
  nonceGen(): { secnonce: Uint8Array; pubnonce: Uint8Array } {
    return musig2.nonceGen({ sk: this.sk, pk: this.pk, extraIn: rand(32) });
  }
  sign(secnonce: Uint8Array, ctx: musig2.SessionContext): Uint8Array {
    return musig2.sign(secnonce, this.sk, ctx);
  }
}

/** Await a promise expected to reject with a SignerError; returns it. */
/** What `p` rejects with; fails the test if it resolves. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

export async function signerError(p: Promise<unknown>, code?: SignerErrorCode): Promise<SignerError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  if (!(err instanceof SignerError)) throw new Error(`expected a SignerError, got ${String(err)}`);
  if (code !== undefined && err.code !== code) throw new Error(`expected ${code}, got ${err.code}: ${err.message}`);
  return err;
}

/** A pino logger that keeps every line, to check what gets logged (and what never does). */
export function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}
