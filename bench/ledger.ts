// The SQLite nonce ledger on its own: the writes the signer makes per call, at 1 and 32
// callers in flight, on a real file (WAL, synchronous=FULL) in the OS temp dir.
//
// - DeterministicSign: one recordDeterministic per call.
// - Sign: markUsed then storePsig per call, on rows recorded beforehand (untimed).
//
// Besides wall-clock ops/s it prints the main thread's busy time per op (event-loop
// utilisation): better-sqlite3 commits synchronously, so a commit's fsync is time the
// daemon's only JavaScript thread spends on nothing else.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { benchTimeMs } from './harness.js';
import { SqliteLedger } from '../src/ledger/index.js';

interface Row {
  readonly what: string;
  readonly inFlight: number;
  readonly opsPerSec: number;
  /** Main-thread busy milliseconds per op. */
  readonly busyMsPerOp: number;
}

const rand = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

/** Runs `op(i)` with `inFlight` callers for about `ms` of wall time, at most `max` calls. */
async function run(
  op: (i: number) => Promise<unknown>,
  ms: number,
  inFlight: number,
  max = Infinity,
): Promise<{ opsPerSec: number; busyMsPerOp: number }> {
  let next = 0;
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  const deadline = t0 + ms;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline && next < max) await op(next++);
    }),
  );
  const wall = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  return { opsPerSec: next / (wall / 1000), busyMsPerOp: elu.active / next };
}

export async function benchLedger(): Promise<void> {
  const ms = benchTimeMs(1500);
  const dir = mkdtempSync(join(tmpdir(), 'bench-ledger-'));
  const rows: Row[] = [];
  try {
    const ledger = SqliteLedger.open({ path: join(dir, 'ledger.sqlite') });
    try {
      for (const inFlight of [1, 32]) {
        const r = await run(
          () => ledger.recordDeterministic({ keyId: 'bench', pubnonce: rand(66), digest: rand(32), psig: rand(32) }),
          ms,
          inFlight,
        );
        rows.push({ what: 'recordDeterministic', inFlight, ...r });
      }
      for (const inFlight of [1, 32]) {
        // Rows for Sign, recorded untimed; a run that uses them all up ends early.
        const n = Math.ceil((ms / 1000) * 40_000);
        const recorded = Array.from({ length: n }, () => ({ keyId: 'bench', pubnonce: rand(66), sessionId: rand(32) }));
        for (let i = 0; i < n; i += 1000) await Promise.all(recorded.slice(i, i + 1000).map((e) => ledger.recordNonce(e)));
        const r = await run(
          async (i) => {
            const e = recorded[i]!;
            const digest = rand(32);
            await ledger.markUsed(e.pubnonce, digest);
            await ledger.storePsig(e.pubnonce, digest, rand(32));
          },
          ms,
          inFlight,
          n,
        );
        rows.push({ what: 'markUsed + storePsig', inFlight, ...r });
      }
    } finally {
      await ledger.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const w = Math.max(...rows.map((r) => r.what.length));
  console.log(`\nledger (SQLite file in ${tmpdir()}, WAL, synchronous=FULL; one process)`);
  console.log(`  ${'operation'.padEnd(w)}  in flight  ${'ops/s'.padStart(8)}  main-thread busy ms/op`);
  for (const r of rows) {
    console.log(
      `  ${r.what.padEnd(w)}  ${String(r.inFlight).padStart(9)}  ${Math.round(r.opsPerSec).toLocaleString('en-US').padStart(8)}  ${r.busyMsPerOp.toFixed(3).padStart(22)}`,
    );
  }
  console.log('');
}

// Run directly: `npx tsx bench/ledger.ts`.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await benchLedger();
