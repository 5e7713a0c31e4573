// The nonce ledger on its own, SQLite against PostgreSQL: the writes the signer makes per call,
// at 1 and 32 callers in flight.
//
// - SQLite: a real file (WAL, group commit, each batch fsynced before it settles) in the OS temp dir.
// - PostgreSQL: a fresh throwaway cluster (scripts/postgres.sh, via test/ledger/pg-harness.ts)
//   in the same temp dir, on 127.0.0.1, with the ledger's default pool. If it cannot be
//   installed or started, its columns are skipped with the reason; SQLite still runs.
//
// - DeterministicSign: one recordDeterministic per call.
// - Sign: markUsed then storePsig per call, on rows recorded beforehand (untimed).
//
// Both backends run the same calls in interleaved rounds (order rotating), so a noisy
// neighbour slows both alike; ops/s is the median over rounds and the ratio the median of
// per-round ratios. Wall clock: PostgreSQL's work happens in another process, which CPU time
// of this one would leave out. Besides latency percentiles it prints the main thread's busy
// time per op (event-loop utilisation): better-sqlite3 runs its statements on this thread,
// while the SQLite ledger's fsync runs on the libuv pool.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { benchTimeMs, environment, fmtOps, fmtRatio, markdownTable, median } from './harness.js';
import { openLedger } from '../src/ledger/index.js';
import type { NonceLedger } from '../src/ledger/index.js';
import { PgCluster } from '../test/ledger/pg-harness.js';

type BackendName = 'SQLite' | 'PostgreSQL';

interface Backend {
  readonly name: BackendName;
  readonly ledger: NonceLedger;
}

interface Slice {
  readonly calls: number;
  readonly elapsedMs: number;
  readonly latencies: readonly number[];
  /** Main-thread busy milliseconds over the slice. */
  readonly busyMs: number;
}

interface Case {
  readonly what: string;
  /** Untimed: inputs (and rows) for `n` calls on `ledger`; returns the call to time. */
  prepare(ledger: NonceLedger, n: number): Promise<(i: number) => Promise<unknown>>;
}

const rand = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

const CASES: readonly Case[] = [
  {
    what: 'recordDeterministic',
    prepare: async (ledger, n) => {
      const inputs = Array.from({ length: n }, () => ({ keyId: 'bench', pubnonce: rand(66), digest: rand(32), psig: rand(32) }));
      return (i) => ledger.recordDeterministic(inputs[i]!);
    },
  },
  {
    what: 'markUsed + storePsig',
    prepare: async (ledger, n) => {
      const rows = Array.from({ length: n }, () => ({ keyId: 'bench', pubnonce: rand(66), sessionId: rand(32), digest: rand(32), psig: rand(32) }));
      // Modest chunks: pg's pool times out callers queued longer than its connect timeout.
      for (let i = 0; i < n; i += 200) await Promise.all(rows.slice(i, i + 200).map((r) => ledger.recordNonce(r)));
      return async (i) => {
        const r = rows[i]!;
        await ledger.markUsed(r.pubnonce, r.digest);
        await ledger.storePsig(r.pubnonce, r.digest, r.psig);
      };
    },
  },
];

/** Runs `op(i)` with `inFlight` callers for about `ms` of wall time, at most `max` calls. */
async function drive(op: (i: number) => Promise<unknown>, inFlight: number, ms: number, max: number): Promise<Slice> {
  let next = 0;
  let failed = false;
  let failure: unknown;
  const latencies: number[] = [];
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  const deadline = t0 + ms;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (!failed && next < max && performance.now() < deadline) {
        const i = next++;
        const s = performance.now();
        try {
          await op(i);
        } catch (err) {
          // Stop every caller before reporting, so nothing keeps writing into the next slice.
          if (!failed) failure = err;
          failed = true;
          return;
        }
        latencies.push(performance.now() - s);
      }
    }),
  );
  const elapsedMs = performance.now() - t0;
  const busyMs = performance.eventLoopUtilization(elu0).active;
  if (failed) throw failure;
  return { calls: latencies.length, elapsedMs, latencies, busyMs };
}

/** Prepares enough calls for `ms` at `rate` (with margin; a slice that runs out just ends early) and runs them. */
async function measure(b: Backend, c: Case, inFlight: number, ms: number, rate: number): Promise<Slice> {
  const n = Math.ceil((rate * ms * 2) / 1000) + 2 * inFlight;
  const op = await c.prepare(b.ledger, n);
  return drive(op, inFlight, ms, n);
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const rateOf = (s: Slice): number => s.calls / (s.elapsedMs / 1000);

function fmtMs(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  return v < 1 ? v.toFixed(3) : v < 10 ? v.toFixed(2) : v.toFixed(1);
}

/** One line out of an error whose message may carry a script's whole stderr. */
function oneLine(err: unknown): string {
  const lines = (err instanceof Error ? err.message : String(err))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const text = lines.length <= 1 ? (lines[0] ?? 'unknown error') : `${lines[0]} ... ${lines[lines.length - 1]}`;
  return text.length > 300 ? `${text.slice(0, 300)}...` : text;
}

export async function benchLedger(): Promise<void> {
  const started = Date.now();
  const timeMs = benchTimeMs(2000); // per row and backend, warm-up excluded
  const rounds = 4;
  const sliceMs = timeMs / rounds;
  const dir = mkdtempSync(join(tmpdir(), 'bench-ledger-'));
  const backends: Backend[] = [];
  let cluster: PgCluster | undefined;
  let pgNote = '';
  let pgSkipped: string | undefined;
  // slices.get(`${backend}/${case}/${inFlight}`): one per round, in round order.
  const slices = new Map<string, Slice[]>();
  const key = (b: BackendName, what: string, inFlight: number): string => `${b}/${what}/${inFlight}`;

  try {
    backends.push({ name: 'SQLite', ledger: await openLedger(`sqlite:${join(dir, 'ledger.sqlite')}`) });
    try {
      cluster = await PgCluster.start();
      const [v] = await cluster.sql<{ server_version: string }>('postgres', 'SHOW server_version');
      pgNote = `PostgreSQL ${v?.server_version ?? '?'}`;
      backends.push({ name: 'PostgreSQL', ledger: await openLedger(await cluster.createDatabase('bench_ledger')) });
    } catch (err) {
      pgSkipped = `could not start PostgreSQL: ${oneLine(err)}`;
    }

    for (const c of CASES) {
      for (const inFlight of [1, 32]) {
        const rate = new Map<BackendName, number>();
        // A PostgreSQL failure mid-run drops it from the rest of the run; SQLite's is a bug and throws.
        const attempt = async (b: Backend, fn: () => Promise<void>): Promise<void> => {
          try {
            await fn();
          } catch (err) {
            if (b.name !== 'PostgreSQL') throw err;
            pgSkipped = `PostgreSQL failed during "${c.what}" at ${inFlight} in flight: ${oneLine(err)}`;
            backends.splice(backends.indexOf(b), 1);
            await b.ledger.close().catch(() => undefined);
          }
        };
        // Warm-up (JIT, connections, caches), which also estimates the rate for sizing the rounds.
        for (const b of [...backends]) {
          await attempt(b, async () => {
            rate.set(b.name, rateOf(await measure(b, c, inFlight, Math.max(50, sliceMs / 2), 2000)));
          });
        }
        for (let r = 0; r < rounds; r++) {
          const order = [...backends];
          for (let k = 0; k < order.length; k++) {
            const b = order[(r + k) % order.length]!;
            await attempt(b, async () => {
              const s = await measure(b, c, inFlight, sliceMs, rate.get(b.name) ?? 2000);
              rate.set(b.name, Math.max(1, rateOf(s)));
              const list = slices.get(key(b.name, c.what, inFlight)) ?? [];
              list.push(s);
              slices.set(key(b.name, c.what, inFlight), list);
            });
          }
        }
      }
    }
  } finally {
    for (const b of backends) await b.ledger.close().catch(() => undefined);
    if (cluster !== undefined) {
      await cluster.destroy().catch((err: unknown) => console.log(`ledger bench: could not remove ${cluster?.dir}: ${oneLine(err)}`));
    }
    rmSync(dir, { recursive: true, force: true });
  }

  // PostgreSQL columns appear only if it produced at least one row.
  const withPg = [...slices.keys()].some((k) => k.startsWith('PostgreSQL/'));
  const rows: string[][] = [];
  for (const c of CASES) {
    for (const inFlight of [1, 32]) {
      const sq = slices.get(key('SQLite', c.what, inFlight)) ?? [];
      const pq = slices.get(key('PostgreSQL', c.what, inFlight)) ?? [];
      const stats = (list: readonly Slice[]) => {
        const lat = list.flatMap((s) => s.latencies).sort((a, b) => a - b);
        const calls = lat.length;
        return {
          ops: median(list.map(rateOf)),
          p50: percentile(lat, 50),
          p99: percentile(lat, 99),
          busy: calls === 0 ? NaN : list.reduce((t, s) => t + s.busyMs, 0) / calls,
        };
      };
      const s = stats(sq);
      if (!withPg) {
        rows.push([c.what, String(inFlight), fmtOps(s.ops), fmtMs(s.p50), fmtMs(s.p99), fmtMs(s.busy)]);
        continue;
      }
      const p = stats(pq);
      // Per-round ratios only over rounds both backends completed.
      const n = Math.min(sq.length, pq.length);
      const ratio = n === 0 ? NaN : median(Array.from({ length: n }, (_, i) => rateOf(pq[i]!) / rateOf(sq[i]!)));
      rows.push([
        c.what,
        String(inFlight),
        fmtOps(s.ops),
        fmtOps(p.ops),
        fmtRatio(ratio),
        fmtMs(s.p50),
        fmtMs(s.p99),
        fmtMs(p.p50),
        fmtMs(p.p99),
        fmtMs(s.busy),
        fmtMs(p.busy),
      ]);
    }
  }

  console.log('## ledger (SQLite vs PostgreSQL)\n');
  console.log(
    `${await environment()}; SQLite file (WAL, group commit, each batch fsynced before it settles) and ` +
      `${withPg ? `a local ${pgNote} cluster on 127.0.0.1 (fsync on, pool of 16)` : 'no PostgreSQL'}, both in ${tmpdir()}; ` +
      `wall clock, ${timeMs} ms per row and backend in ${rounds} interleaved rounds after a warm-up; ` +
      'latency is per call (markUsed + storePsig together); busy = main-thread event-loop time per op\n',
  );
  if (pgSkipped !== undefined) console.log(`PostgreSQL rows skipped: ${pgSkipped}\n`);
  console.log(
    markdownTable(
      withPg
        ? [
            'operation',
            'in flight',
            'SQLite ops/s',
            'PostgreSQL ops/s',
            'PostgreSQL/SQLite',
            'SQLite p50 ms',
            'SQLite p99 ms',
            'PostgreSQL p50 ms',
            'PostgreSQL p99 ms',
            'SQLite busy ms/op',
            'PostgreSQL busy ms/op',
          ]
        : ['operation', 'in flight', 'SQLite ops/s', 'SQLite p50 ms', 'SQLite p99 ms', 'SQLite busy ms/op'],
      rows,
    ),
  );
  console.log(`\nLedger section took ${((Date.now() - started) / 1000).toFixed(0)} s.\n`);
}

// Run directly: `npx tsx bench/ledger.ts`.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await benchLedger();
