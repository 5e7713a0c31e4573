// Keystore costs on SoftHSM2: withSecretKey per call, pool throughput (sessions leased per
// second) under concurrent load, and what a session costs to open, which the pool avoids.
//
// SoftHSM reads SOFTHSM2_CONF once per process, so the measurements run in a child process
// with a token of their own; benchKeystore() starts it and lets it print its table.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pkcs11js from 'pkcs11js';
import { benchTimeMs } from './harness.js';
import { Keystore, initSoftHsmToken } from '../src/keystore/index.js';
import type { KeystoreOptions } from '../src/keystore/index.js';

const CHILD_FLAG = '--keystore-bench-child';
const SO_PIN = 'bench-so-pin';
const USER_PIN = 'bench-user-pin';
const TOKEN = 'bench-keystore';

export async function benchKeystore(): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  const tsx = fileURLToPath(new URL('../node_modules/.bin/tsx', import.meta.url));
  await new Promise<void>((resolve, reject) => {
    const child = spawn(tsx, [self, CHILD_FLAG], { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`keystore bench exited with ${code}`))));
  });
}

interface Row {
  readonly what: string;
  readonly perSec: number;
  readonly note: string;
}

/** Runs `op` sequentially, or `concurrency` at a time, for about `ms`; returns ops/s. */
async function rate(op: () => Promise<unknown>, ms: number, concurrency = 1): Promise<number> {
  let done = 0;
  const t0 = performance.now();
  const deadline = t0 + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        await op();
        done++;
      }
    }),
  );
  return done / ((performance.now() - t0) / 1000);
}

function syncRate(op: () => void, ms: number): number {
  let done = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    op();
    done++;
  }
  return done / ((performance.now() - t0) / 1000);
}

function printTable(rows: readonly Row[]): void {
  const w = Math.max(...rows.map((r) => r.what.length));
  console.log('\nkeystore (SoftHSM2, one process)');
  console.log(`  ${'operation'.padEnd(w)}  ${'ops/s'.padStart(9)}  ${'µs/op'.padStart(8)}  note`);
  for (const r of rows) {
    console.log(`  ${r.what.padEnd(w)}  ${Math.round(r.perSec).toLocaleString('en-US').padStart(9)}  ${(1e6 / r.perSec).toFixed(1).padStart(8)}  ${r.note}`);
  }
}

async function measure(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-keystore-'));
  try {
    const t = await initSoftHsmToken({ dir, label: TOKEN, soPin: SO_PIN, userPin: USER_PIN });
    process.env.SOFTHSM2_CONF = t.conf;
    const opts: KeystoreOptions = { modulePath: t.modulePath, tokenLabel: TOKEN, pin: USER_PIN };
    const ms = benchTimeMs(1000);
    const rows: Row[] = [];
    const ks = await Keystore.open({ ...opts, poolSize: 4 });
    try {
      await ks.createKey('bench');
      const unseal = () => ks.withSecretKey('bench', (sk) => sk[0]);
      await rate(unseal, ms / 4); // warm-up
      rows.push({ what: 'withSecretKey, one caller', perSec: await rate(unseal, ms), note: 'read blob + C_DecryptInit + C_Decrypt + wipe' });
      for (const poolSize of [1, 4, 8]) {
        const pooled = await Keystore.open({ ...opts, poolSize });
        try {
          const op = () => pooled.withSecretKey('bench', (sk) => sk[0]);
          const perSec = await rate(op, ms, 64);
          rows.push({ what: `withSecretKey, 64 callers, pool ${poolSize}`, perSec, note: 'session leases per second under load' });
        } finally {
          await pooled.close();
        }
      }
      rows.push({ what: 'random(32)', perSec: await rate(() => ks.random(32), ms), note: 'C_GenerateRandom + OS CSPRNG, SHAKE256' });
      let n = 0;
      rows.push({ what: 'createKey', perSec: await rate(() => ks.createKey(`bench-${n++}`), ms), note: 'draw, seal, store, read back' });
      rows.push({ what: `listKeys (${n + 1} keys)`, perSec: await rate(() => ks.listKeys(), ms), note: 'full token scan' });
    } finally {
      await ks.close();
    }
    rows.push({ what: 'open + login + close a session', perSec: rawSessionRate(opts, ms), note: 'the cost the pool avoids' });
    printTable(rows);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** C_OpenSession + C_Login + C_CloseSession, with no other session keeping the login alive. */
function rawSessionRate(opts: KeystoreOptions, ms: number): number {
  const p = new pkcs11js.PKCS11();
  p.load(opts.modulePath);
  p.C_Initialize();
  try {
    const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === opts.tokenLabel)!;
    return syncRate(() => {
      const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      p.C_Login(s, pkcs11js.CKU_USER, opts.pin!);
      p.C_CloseSession(s); // the last session closing logs the token out again
    }, ms);
  } finally {
    p.C_Finalize();
  }
}

if (process.argv.includes(CHILD_FLAG)) {
  await measure();
}
