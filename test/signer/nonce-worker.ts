// A signer daemon's worth of NonceGen load, run as its own process by
// nonce-uniqueness.test.ts: a real Keystore on the shared SoftHSM2 token, a real
// SignerService on the shared SQLite ledger. It writes each returned (pubnonce, session id)
// as 98 raw bytes to OUT and exits 0 only if every call succeeded.
//
// Configuration comes in the environment (the PIN never in argv): WORKER_MODULE, WORKER_TOKEN,
// WORKER_PIN, WORKER_LEDGER, WORKER_COUNT, WORKER_CONCURRENCY, WORKER_PUBKEYS (comma-separated
// hex), WORKER_OUT; SOFTHSM2_CONF is inherited.

import { openSync, writeSync, closeSync } from 'node:fs';
import { Keystore } from '../../src/keystore/index.js';
import { openLedger } from '../../src/ledger/index.js';
import { SignerService } from '../../src/signer/index.js';

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const count = Number(env('WORKER_COUNT'));
const concurrency = Number(env('WORKER_CONCURRENCY'));
const pubkeys = env('WORKER_PUBKEYS').split(',').map((h) => Uint8Array.from(Buffer.from(h, 'hex')));
const keystore = await Keystore.open({ modulePath: env('WORKER_MODULE'), tokenLabel: env('WORKER_TOKEN'), pin: env('WORKER_PIN') });
const ledger = await openLedger(env('WORKER_LEDGER'));
const service = new SignerService({ keystore, ledger, maxSessions: count });
const out = openSync(env('WORKER_OUT'), 'w');
let next = 0;
try {
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++;
        const r = await service.nonceGen({ keyId: 'alice', pubkeys, tweaks: [] });
        const rec = Buffer.alloc(98);
        rec.set(r.pubnonce, 0);
        rec.set(r.sessionId, 66);
        writeSync(out, rec);
      }
    }),
  );
  if (service.openSessions() !== count) throw new Error(`expected ${count} open sessions, have ${service.openSessions()}`);
} finally {
  closeSync(out);
  await service.close();
  await ledger.close();
  await keystore.close();
}
