// Timing helpers for side-by-side benchmarks. Contenders of one comparison are measured in
// interleaved rounds within the same run, so a noisy neighbour on the machine slows all of them
// alike; ratios are taken per round and their median is reported. Rates come from process CPU
// time by default (see Clock). Benchmarks print numbers; they never fail a build.

import { readFileSync } from 'node:fs';
/** One implementation of one operation. */
export interface Contender {
  readonly name: string;
  /**
   * Untimed: build the inputs for `n` calls (fresh key sets for a cold run, and so on) and return
   * the call to time; it is invoked with i = 0 .. n-1.
   */
  prepare(n: number): (i: number) => unknown;
}

export interface Measured {
  readonly name: string;
  /** Median over the rounds. */
  readonly opsPerSec: number;
  readonly rounds: readonly number[];
}

export interface Comparison {
  readonly results: readonly Measured[];
  get(name: string): Measured;
  /** Median over rounds of a's ops/s divided by b's in the same round. */
  ratio(a: string, b: string): number;
}

export interface CompareOptions {
  /** Measuring time per contender, warm-up included. */
  readonly timeMs: number;
  /** Interleaved rounds; default 5. */
  readonly rounds?: number;
  /** Default: BENCH_CLOCK, else cpu. */
  readonly clock?: Clock;
}

/** BENCH_TIME_MS scales every section; `fallback` is the section's default. */
export function benchTimeMs(fallback: number): number {
  const raw = process.env.BENCH_TIME_MS;
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`BENCH_TIME_MS must be a positive number, got ${raw}`);
  return v;
}

// Results go here so the engine cannot drop a call whose value is unused.
export const sink: { value: unknown } = { value: undefined };

const now = (): number => Number(process.hrtime.bigint()) / 1e6;
const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/**
 * Which clock rates are computed from. `cpu` (the default) is this process's CPU time: on a
 * shared machine it leaves out the time the process waits for a core, which wall time counts
 * against whoever happens to be running. It does include V8's helper threads (parallel GC), so
 * allocation-heavy code is charged for its garbage. `wall` is plain elapsed time.
 */
export type Clock = 'cpu' | 'wall';

export function benchClock(): Clock {
  const raw = process.env.BENCH_CLOCK ?? 'cpu';
  if (raw !== 'cpu' && raw !== 'wall') throw new Error(`BENCH_CLOCK must be cpu or wall, got ${raw}`);
  return raw;
}

function maybeGc(): void {
  // Only when node runs with --expose-gc: start every timed slice with an empty young generation.
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc !== undefined) gc();
}

/** Time `n` calls with inputs prepared outside the timed region; returns ops/s. */
export function timeBatch(c: Contender, n: number, clock: Clock = benchClock()): number {
  const fn = c.prepare(n);
  maybeGc();
  const read = clock === 'cpu' ? cpuNow : now;
  const t0 = read();
  for (let i = 0; i < n; i++) sink.value = fn(i);
  const elapsed = read() - t0;
  return n / (Math.max(elapsed, 1e-3) / 1000);
}

/** Warm up with growing batches for about `ms` (preparation included); returns the last rate. */
function warmUp(c: Contender, ms: number, clock: Clock): number {
  const start = now();
  let n = 1;
  for (;;) {
    const rate = timeBatch(c, n, clock);
    const left = ms - (now() - start);
    if (left <= 0 || n >= 1 << 20) return rate;
    // Grow geometrically, but never past what fits in the time that is left.
    n = Math.max(1, Math.min(2 * n, Math.floor((rate * left) / 1000)));
  }
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function compare(contenders: readonly Contender[], opts: CompareOptions): Comparison {
  const rounds = opts.rounds ?? 5;
  const clock = opts.clock ?? benchClock();
  const warmMs = opts.timeMs * 0.2;
  const sliceMs = (opts.timeMs * 0.8) / rounds;
  const rate = new Map<string, number>();
  for (const c of contenders) rate.set(c.name, warmUp(c, warmMs, clock));

  const perRound = new Map<string, number[]>(contenders.map((c) => [c.name, []]));
  for (let r = 0; r < rounds; r++) {
    // Rotate the order each round so nobody always runs first or last.
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(r + k) % contenders.length]!;
      const n = Math.max(1, Math.round((rate.get(c.name)! * sliceMs) / 1000));
      const ops = timeBatch(c, n, clock);
      perRound.get(c.name)!.push(ops);
      rate.set(c.name, ops);
    }
  }

  const results = contenders.map((c) => {
    const rs = perRound.get(c.name)!;
    return { name: c.name, opsPerSec: median(rs), rounds: rs };
  });
  const get = (name: string): Measured => {
    const m = results.find((x) => x.name === name);
    if (m === undefined) throw new Error(`no contender named ${name}`);
    return m;
  };
  return {
    results,
    get,
    ratio: (a, b) => {
      const ra = get(a).rounds;
      const rb = get(b).rounds;
      return median(ra.map((x, i) => x / rb[i]!));
    },
  };
}

/** Ops/s with thousands separators and sensible precision. */
export function fmtOps(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  if (v >= 100) return Math.round(v).toLocaleString('en-US');
  return v.toFixed(1);
}

export function fmtRatio(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  return v >= 10 ? `${v.toFixed(0)}x` : `${v.toFixed(2)}x`;
}

/** A Markdown table with padded columns, readable both raw and rendered. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const width = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    '| ' + cells.map((c, i) => (i === 0 ? c.padEnd(width[i]!) : c.padStart(width[i]!))).join(' | ') + ' |';
  const sep = '|' + width.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|';
  return [line(header), sep, ...rows.map(line)].join('\n');
}

/** A one-line description of the machine and runtime, for the report header. */
export async function environment(): Promise<string> {
  const os = await import('node:os');
  const cpus = os.cpus();
  const model = cpus[0]?.model.trim() ?? 'unknown CPU';
  return `node ${process.version}, ${os.platform()} ${os.arch()}, ${cpus.length} x ${model}`;
}

/**
 * What a thread hand-off costs on this machine: CPU time (both threads) per round trip of a
 * message to an idle worker thread and its answer, with no work in between. Each is two
 * wake-ups of a sleeping thread; a virtual machine may make those far dearer than on bare metal.
 */
export async function wakeUpRoundTripUs(rounds = 2000): Promise<number> {
  const { Worker } = await import('node:worker_threads');
  const w = new Worker("require('node:worker_threads').parentPort.on('message', (m) => require('node:worker_threads').parentPort.postMessage(m));", { eval: true });
  try {
    const once = () => new Promise<void>((resolve) => {
      w.once('message', () => resolve());
      w.postMessage(0);
    });
    for (let i = 0; i < 200; i++) await once();
    const c0 = process.cpuUsage();
    for (let i = 0; i < rounds; i++) await once();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / rounds;
  } finally {
    await w.terminate();
  }
}

/** The machine's CPU time stolen by the hypervisor so far, and all CPU time, in clock ticks (Linux). */
export function stealTicks(): { steal: number; total: number } {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return { steal: fields[7] ?? 0, total: fields.reduce((a, b) => a + b, 0) };
  } catch {
    return { steal: NaN, total: NaN };
  }
}

/** The share of CPU time stolen between two readings, as a percentage. */
export function stealPercent(from: { steal: number; total: number }, to = stealTicks()): number {
  return (100 * (to.steal - from.steal)) / (to.total - from.total);
}
