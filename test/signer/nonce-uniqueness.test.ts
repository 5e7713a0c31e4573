// 100,000 NonceGen calls give 100,000 distinct nonces.
//
// One NonceGen costs about 1 ms here, nearly all of it the two constant-time base-point
// multiplications BIP327 requires (k1·G, k2·G), so 100,000 on one core would take one to two
// minutes. The load is therefore split over two signer processes, one per core, each a full
// SignerService with its own Keystore session on the same SoftHSM2 token, both writing to
// one SQLite ledger: the multi-instance case, where the ledger's UNIQUE constraint is what
// catches a repeat across processes. Every call goes through the real path (token RNG mixed
// with the OS CSPRNG, key decrypted in the token, BIP327 NonceGen, group-committed ledger
// insert) with identical inputs, so only the randomness and the session id tell them apart.

import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Keystore } from '../../src/keystore/index.js';
import { openLedger } from '../../src/ledger/index.js';
import { TOKEN_LABEL, USER_PIN, hex, openTestKeystore } from './helpers.js';

const TOTAL = 100_000;
const WORKERS = 2;

let dir: string;
let keystore: Keystore;
let modulePath: string;

beforeAll(async () => {
  ({ dir, keystore, modulePath } = await openTestKeystore('signer-nonces-'));
});

afterAll(async () => {
  await keystore.close();
  rmSync(dir, { recursive: true, force: true });
});

function runWorker(envs: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'nonce-worker.ts')], {
      env: { ...process.env, ...envs },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker exited ${code}: ${stderr}`))));
  });
}

it(`gives ${TOTAL.toLocaleString('en')} distinct nonces over ${WORKERS} signer processes sharing one ledger`, { timeout: 600_000 }, async () => {
  const alice = await keystore.createKey('alice');
  const bob = await keystore.createKey('bob');
  const dbPath = join(dir, 'ledger.db');
  await (await openLedger(`sqlite:${dbPath}`)).close(); // create and migrate once, before the workers race

  const outs = Array.from({ length: WORKERS }, (_, i) => join(dir, `nonces-${i}.bin`));
  await Promise.all(
    outs.map((out) =>
      runWorker({
        WORKER_MODULE: modulePath,
        WORKER_TOKEN: TOKEN_LABEL,
        WORKER_PIN: USER_PIN,
        WORKER_LEDGER: `sqlite:${dbPath}?busy_timeout_ms=10000`,
        WORKER_COUNT: String(TOTAL / WORKERS),
        WORKER_CONCURRENCY: '32',
        WORKER_PUBKEYS: [alice.publicKey, bob.publicKey].map(hex).join(','),
        WORKER_OUT: out,
      }),
    ),
  );

  const pubnonces = new Set<string>();
  const sessionIds = new Set<string>();
  let returned = 0;
  for (const out of outs) {
    const buf = readFileSync(out);
    expect(buf.length % 98).toBe(0);
    for (let off = 0; off < buf.length; off += 98) {
      pubnonces.add(buf.subarray(off, off + 66).toString('hex'));
      sessionIds.add(buf.subarray(off + 66, off + 98).toString('hex'));
      returned++;
    }
  }
  expect(returned).toBe(TOTAL);
  expect(pubnonces.size).toBe(TOTAL);
  expect(sessionIds.size).toBe(TOTAL);

  // Every released pubnonce is in the ledger, unused, under its own session id.
  const db = new Database(dbPath, { readonly: true });
  try {
    expect(db.prepare('SELECT count(*) AS c FROM nonces').get()).toEqual({ c: TOTAL });
    const rows = db.prepare("SELECT pubnonce, session_id FROM nonces WHERE path = 'random' AND used_at IS NULL").all() as {
      pubnonce: Buffer;
      session_id: Buffer;
    }[];
    const inLedger = new Set(rows.map((r) => r.pubnonce.toString('hex') + r.session_id.toString('hex')));
    let missing = 0;
    for (const out of outs) {
      const buf = readFileSync(out);
      for (let off = 0; off < buf.length; off += 98) {
        if (!inLedger.has(buf.subarray(off, off + 98).toString('hex'))) missing++;
      }
    }
    expect(missing).toBe(0);
  } finally {
    db.close();
  }
});
