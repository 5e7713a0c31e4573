// What an open NonceGen session costs in memory (issue 5: at most 1 KiB each). A real
// SignerService (SoftHSM2 token, SQLite ledger) opens BENCH_SESSIONS sessions (default
// 100,000), then a fake clock expires them and a second step lets their retention lapse.
// Memory is read after forced GCs at each step: the main isolate's heap (JS objects: the
// Session records, the Map entries, the hex ids) plus its external memory (the ArrayBuffer
// backing stores: the session bytes), and the process RSS. The ledger rows are on disk, not in
// memory (SQLite's page cache is bounded and is part of the baseline after a warm-up).
// BENCH_MEMORY_POOL=N runs NonceGen on N compute workers (default inline: on two shared cores
// the pool is no faster here, and inline keeps every session byte in the measured isolate).
//
// SoftHSM reads SOFTHSM2_CONF once per process, and the baseline should be this section's alone, so the measurement
// runs in a child process of its own; benchMemory() starts it.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { markdownTable } from './harness.js';
import { Keystore, initSoftHsmToken } from '../src/keystore/index.js';
import { openLedger } from '../src/ledger/index.js';
import * as musig2 from '../src/musig2/index.js';
import { ComputePool } from '../src/signer/compute-pool.js';
import { SignerService, type NonceGenRequest } from '../src/signer/index.js';

const CHILD_FLAG = '--memory-bench-child';
const TOKEN = 'bench-memory';
const SO_PIN = 'bench-so-pin';
const USER_PIN = 'bench-user-pin';
const TTL_MS = 60_000;
/** The issue's bound on one open session. */
const TARGET_BYTES = 1024;
/** RSS counts as "back near its start" within this share of the growth... */
const RSS_RETURN_SHARE = 0.25;
/** ...or within this many bytes of the start (allocator slack on small runs). */
const RSS_RETURN_SLACK = 16 * 1024 * 1024;
/** NonceGen calls in flight at once. */
const CONCURRENCY = 32;
/** Quiet time before the last reading. */
const IDLE_MS = 10_000;

export async function benchMemory(): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', self, CHILD_FLAG], { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`memory bench exited with ${code}`))));
  });
}

function sessionCount(): number {
  const raw = process.env.BENCH_SESSIONS;
  if (raw === undefined || raw === '') return 100_000;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_SESSIONS must be a positive integer, got ${raw}`);
  return n;
}

function poolSize(): number {
  const raw = process.env.BENCH_MEMORY_POOL;
  if (raw === undefined || raw === '') return 0;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`BENCH_MEMORY_POOL must be an integer >= 0, got ${raw}`);
  return n;
}

/**
 * Where the token and the ledger file go: BENCH_MEMORY_DIR, else /dev/shm when there is one.
 * The ledger fsyncs every committed batch; on a disk that bounds the run at a few
 * hundred sessions a second, and durability is not what this section measures.
 */
function workDir(): string {
  const raw = process.env.BENCH_MEMORY_DIR;
  if (raw !== undefined && raw !== '') return raw;
  return existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
}

interface Snapshot {
  readonly rss: number;
  readonly heapTotal: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

/**
 * The GC function. Not through --expose-gc on the command line: worker threads inherit
 * execArgv and refuse that flag, so it is set at run time and `gc` taken from a fresh context.
 */
function exposeGc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing !== undefined) return existing;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** Full GCs with pauses between them (backing stores are freed off-thread), then a reading. */
async function settle(): Promise<Snapshot> {
  const gc = exposeGc();
  for (let i = 0; i < 4; i++) {
    gc();
    await sleep(50);
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
}

const MiB = 1024 * 1024;
const mib = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;
const signedMib = (b: number): string => `${b >= 0 ? '+' : ''}${mib(b)}`;

async function measure(): Promise<void> {
  const n = sessionCount();
  const dir = mkdtempSync(join(workDir(), 'bench-memory-'));
  let clock = Date.now();
  const now = (): number => clock;
  try {
    const t = await initSoftHsmToken({ dir: join(dir, 'token'), label: TOKEN, soPin: SO_PIN, userPin: USER_PIN });
    process.env.SOFTHSM2_CONF = t.conf;
    const keystore = await Keystore.open({ modulePath: t.modulePath, tokenLabel: TOKEN, pin: USER_PIN });
    const ledger = await openLedger(`sqlite:${join(dir, 'ledger.db')}`, { now });
    const compute = poolSize() > 0 ? await ComputePool.start(poolSize()) : ComputePool.inline();
    const service = new SignerService({
      keystore,
      ledger,
      compute,
      maxSessions: n,
      sessionTtlMs: TTL_MS,
      sweepIntervalMs: 3_600_000, // expiry is driven by hand below
      now,
    });
    try {
      const key = await keystore.createKey('bench');
      const other = musig2.individualPubkey(new Uint8Array(randomBytes(32)));
      const req: NonceGenRequest = { keyId: 'bench', pubkeys: [Uint8Array.from(key.publicKey), other], tweaks: [] };

      // Warm-up: JIT, the worker pool, SQLite's page cache and statement cache; then expire
      // and drop those sessions so the baseline holds none.
      const warm = Math.min(2_000, n);
      await openSessions(service, req, warm);
      clock += 2 * TTL_MS + 1;
      service.sweepExpiredSessions();
      service.sweepExpiredSessions();

      const start = await settle();
      const t0 = performance.now();
      await openSessions(service, req, n);
      const secs = (performance.now() - t0) / 1000;
      if (service.openSessions() !== n) throw new Error(`expected ${n} open sessions, have ${service.openSessions()}`);
      const opened = await settle();

      clock += TTL_MS; // past every TTL: the sweep wipes the secnonces; the sessions are retired
      const expired = service.sweepExpiredSessions();
      if (expired !== n || service.openSessions() !== 0) throw new Error(`sweep expired ${expired} of ${n}`);
      const retired = await settle();

      clock += TTL_MS + 1; // past retention: the retired sessions are dropped
      service.sweepExpiredSessions();
      const dropped = await settle();
      // V8 gives freed heap pages back to the OS from an idle-time task ("memory reducer"),
      // so RSS is read once more after some quiet time.
      await sleep(IDLE_MS);
      const idle = await settle();

      report(n, secs, compute.size, start, opened, retired, dropped, idle);
    } finally {
      await service.close();
      await compute.close();
      await ledger.close();
      await keystore.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function openSessions(
  service: SignerService,
  req: NonceGenRequest,
  n: number,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, n) }, async () => {
      while (next < n) {
        next++;
        await service.nonceGen(req);
      }
    }),
  );
}

function report(
  n: number,
  secs: number,
  pool: number,
  start: Snapshot,
  opened: Snapshot,
  retired: Snapshot,
  dropped: Snapshot,
  idle: Snapshot,
): void {
  const rows = [
    ['start (after warm-up, no sessions)', start],
    [`${n.toLocaleString('en-US')} sessions open`, opened],
    ['expired (secnonces wiped, retired for retries)', retired],
    ['retention passed (dropped)', dropped],
    [`idle ${IDLE_MS / 1000} s more`, idle],
  ] as const;
  console.log(
    `\n## memory: ${n.toLocaleString('en-US')} open sessions (${secs.toFixed(1)} s to open, ` +
      `${Math.round(n / secs).toLocaleString('en-US')}/s, compute pool ${pool === 0 ? 'inline' : `${pool} workers`})\n`,
  );
  console.log(
    markdownTable(
      ['step', 'RSS', 'heapTotal', 'heapUsed', 'external', 'of which ArrayBuffers'],
      rows.map(([what, s]) => [what, mib(s.rss), mib(s.heapTotal), mib(s.heapUsed), mib(s.external), mib(s.arrayBuffers)]),
    ),
  );

  const heapPer = (opened.heapUsed - start.heapUsed) / n;
  const extPer = (opened.external - start.external) / n;
  const totalPer = heapPer + extPer;
  const rssPer = (opened.rss - start.rss) / n;
  const growth = opened.rss - start.rss;
  const left = idle.rss - start.rss;
  const rssBack = left <= Math.max(RSS_RETURN_SHARE * Math.max(growth, 0), RSS_RETURN_SLACK);
  const verdict = (ok: boolean): string => (ok ? 'PASS' : 'MISS');
  console.log();
  console.log(
    markdownTable(
      ['per open session', 'bytes', 'target', 'verdict'],
      [
        ['JS heap (heapUsed delta / n)', heapPer.toFixed(0), '', ''],
        ['backing stores (external delta / n)', extPer.toFixed(0), '', ''],
        ['heap + external', totalPer.toFixed(0), `<= ${TARGET_BYTES}`, verdict(totalPer <= TARGET_BYTES)],
        ['RSS delta / n', rssPer.toFixed(0), `<= ${TARGET_BYTES} (informational)`, rssPer <= TARGET_BYTES ? 'pass' : 'over'],
        [
          'RSS after expiry + retention + idle vs start',
          signedMib(left),
          `within ${RSS_RETURN_SHARE * 100}% of growth or ${mib(RSS_RETURN_SLACK)}`,
          verdict(rssBack),
        ],
      ],
    ),
  );
  console.log(
    `\nAfter expiry alone the sessions stay ${signedMib(retired.heapUsed + retired.external - start.heapUsed - start.external)} ` +
      'of heap+external as retired records (no secnonce) so retries get answers; retention drops them. ' +
      'Ledger rows are on disk (SQLite), not in memory.\n',
  );
}

if (process.argv.includes(CHILD_FLAG)) {
  await measure();
}
