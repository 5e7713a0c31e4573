// End-to-end daemon benchmark: real `musig2-signer serve` processes (SoftHSM2 token, SQLite
// ledger) driven over gRPC from this process, at 1 and 32 calls in flight, beside the
// in-process core DeterministicSign on one thread. One daemon per worker setting (--workers 0 =
// signing on the event loop, 1, and one per core), all on the same token and key set, measured
// in interleaved rounds (a noisy neighbour slows every contender of a round alike; ratios are
// per-round medians). Wall-clock rates (the work happens in other processes) and per-call
// latency percentiles. Targets: DeterministicSign over gRPC at 32 in flight >= 80% of the
// in-process single-thread rate with p99 < 50 ms, and the all-cores daemon >= 1.6x its
// single-worker throughput. Never fails a build.
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { SignerClient } from '../src/client/index.js';
import * as musig2 from '../src/musig2/index.js';
import { ComputePool } from '../src/signer/index.js';
import { createKey, Daemon, importKey, makeToken, removeToken } from '../test/e2e/harness.js';
import type { Token } from '../test/e2e/harness.js';
import { benchTimeMs, environment, fmtOps, fmtRatio, markdownTable, median } from './harness.js';

interface Slice {
  calls: number;
  elapsedMs: number;
  latencies: number[];
  /** The daemon's CPU time (all threads) and its main thread's, in ms, over the slice. */
  cpuMs: number;
  mainCpuMs: number;
  /** This process's (the client's) CPU time over the slice, in ms. */
  clientCpuMs: number;
}

interface Run {
  perSec: number;
  p50: number;
  p99: number;
  calls: number;
  /** Per-slice rates, in the order of the rounds. */
  rounds: number[];
  /** The daemon process's CPU time per call (user + system, every thread), in ms. */
  daemonCpuMs: number;
  /** The daemon's main (event-loop) thread's CPU time per call, in ms. */
  mainCpuMs: number;
  /** The client's (this process's) CPU time per call, in ms. */
  clientCpuMs: number;
}

/** CPU time (user + system) of a process or one of its threads so far, in ms, from /proc (Linux). */
function cpuMs(pid: number, tid?: number): number {
  try {
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of stat, in clock ticks (100 per second on Linux).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Runs `op` with `inFlight` calls outstanding for about `ms` of wall time. */
async function drive(op: () => Promise<unknown>, inFlight: number, ms: number, daemonPid: number): Promise<Slice> {
  const latencies: number[] = [];
  const cpu0 = cpuMs(daemonPid);
  const main0 = cpuMs(daemonPid, daemonPid);
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + ms;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) {
        const start = performance.now();
        await op();
        latencies.push(performance.now() - start);
      }
    }),
  );
  return {
    calls: latencies.length,
    elapsedMs: performance.now() - t0,
    latencies,
    cpuMs: cpuMs(daemonPid) - cpu0,
    mainCpuMs: cpuMs(daemonPid, daemonPid) - main0,
    clientCpuMs: (() => {
      const u = process.cpuUsage(client0);
      return (u.user + u.system) / 1000;
    })(),
  };
}

function summarise(slices: readonly Slice[]): Run {
  const latencies = slices.flatMap((s) => s.latencies).sort((a, b) => a - b);
  const calls = latencies.length;
  const elapsed = slices.reduce((t, s) => t + s.elapsedMs, 0);
  return {
    perSec: calls / (elapsed / 1000),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    calls,
    rounds: slices.map((s) => s.calls / (s.elapsedMs / 1000)),
    daemonCpuMs: slices.reduce((t, s) => t + s.cpuMs, 0) / calls,
    mainCpuMs: slices.reduce((t, s) => t + s.mainCpuMs, 0) / calls,
    clientCpuMs: slices.reduce((t, s) => t + s.clientCpuMs, 0) / calls,
  };
}

/** The in-process core rate over about `ms`: one thread, the same key set and shape as the gRPC calls. */
function coreDeterministicSign(sk: Uint8Array, pubkeys: Uint8Array[], aggothernonce: Uint8Array, ms: number): number {
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    musig2.deterministicSign(sk, aggothernonce, pubkeys, [], randomBytes(32));
    n++;
  }
  return n / ((performance.now() - t0) / 1000);
}

/** The in-process compute pool's rate over about `ms` with 16 calls in flight: the arithmetic alone, no gRPC, ledger or token. */
async function poolDeterministicSign(
  pool: ComputePool, sk: Uint8Array, pubkeys: Uint8Array[], aggothernonce: Uint8Array, ms: number,
): Promise<number> {
  let n = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (performance.now() - t0 < ms) {
        await pool.deterministicSign(sk, aggothernonce, pubkeys, [], randomBytes(32));
        n++;
      }
    }),
  );
  return n / ((performance.now() - t0) / 1000);
}

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');
/** Median over rounds of a's rate divided by b's in the same round. */
const roundRatio = (a: readonly number[], b: readonly number[]) => median(a.map((x, i) => x / b[i]!));

interface Contender {
  /** The --workers value. */
  workers: number;
  label: string;
  daemon: Daemon;
  client: SignerClient;
}

type Shape = 'det1' | 'det32' | 'ses1' | 'ses32';
const SHAPES: readonly { shape: Shape; what: string; inFlight: number; session: boolean }[] = [
  { shape: 'det1', what: 'DeterministicSign, 1 in flight', inFlight: 1, session: false },
  { shape: 'det32', what: 'DeterministicSign, 32 in flight', inFlight: 32, session: false },
  { shape: 'ses1', what: 'NonceGen+Sign sessions, 1 in flight', inFlight: 1, session: true },
  { shape: 'ses32', what: 'NonceGen+Sign sessions, 32 in flight', inFlight: 32, session: true },
];

/** Worker settings to compare: BENCH_DAEMON_WORKERS (e.g. "0,1,2"), else inline, 1 and all cores. */
function workerSettings(): number[] {
  const raw = process.env.BENCH_DAEMON_WORKERS;
  const all = availableParallelism();
  const list = raw ? raw.split(',').map((x) => Number(x.trim())) : [0, 1, all];
  if (list.some((n) => !Number.isInteger(n) || n < 0)) throw new Error(`BENCH_DAEMON_WORKERS must list whole numbers, got ${raw}`);
  return [...new Set(list)];
}

export async function benchDaemon(): Promise<void> {
  const sliceMs = benchTimeMs(3000);
  const rounds = 3;
  const settings = workerSettings();
  const all = availableParallelism();
  const load0 = loadavg();
  let token: Token | undefined;
  const contenders: Contender[] = [];
  const pools: ComputePool[] = [];
  try {
    token = await makeToken('musig2-bench-daemon-');
    // The deterministic signer's key is known here too, for the in-process comparison.
    const detSk = secp256k1.utils.randomSecretKey();
    const detPk = await importKey(token, 'det', Buffer.from(detSk).toString('hex'));
    const rndPk = await createKey(token, 'rnd');
    for (const workers of settings) {
      // Each daemon its own ledger file; the token (keys) is shared.
      const daemon = await Daemon.start(token, {
        ledger: `sqlite:${token.dir}/ledger-${workers}.sqlite`,
        args: ['--workers', String(workers)],
      });
      const label = workers === 0 ? 'inline (event loop)' : `${workers} worker${workers > 1 ? 's' : ''}${workers === all ? ' (all cores)' : ''}`;
      contenders.push({ workers, label, daemon, client: new SignerClient(daemon.address) });
    }

    // Three signers: ours (det, rnd) and a stranger, so key aggregation has real work.
    const stranger = secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true);
    const pubkeys = [rndPk, stranger, detPk];
    const otherNonce = () => {
      const k = () => secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true);
      return Uint8Array.from([...k(), ...k()]);
    };
    const aggothernonce = otherNonce();
    const strangerNonce = otherNonce();

    const detSign = (c: SignerClient) => () => c.deterministicSign({ keyId: 'det', aggothernonce, pubkeys, message: randomBytes(32) });
    const session = (c: SignerClient) => async () => {
      const message = randomBytes(32);
      const r1 = await c.nonceGen({ keyId: 'rnd', pubkeys, message });
      const aggnonce = musig2.nonceAgg([r1.pubnonce, strangerNonce, strangerNonce]);
      await c.sign({ sessionId: r1.sessionId, aggnonce, pubkeys, message });
    };

    // Warm up every daemon (key-aggregation caches, JIT) and this process before measuring.
    for (const c of contenders) {
      await drive(detSign(c.client), 8, Math.min(1000, sliceMs / 3), c.daemon.pid);
      await drive(session(c.client), 8, Math.min(1000, sliceMs / 3), c.daemon.pid);
    }
    coreDeterministicSign(detSk, pubkeys, aggothernonce, Math.min(500, sliceMs / 6));
    // The arithmetic alone in worker threads of this process, at 1 worker and at all cores:
    // how far the machine itself lets it scale, apart from the daemon's I/O.
    const pool1 = await ComputePool.start(1);
    pools.push(pool1);
    const poolAll = all > 1 ? await ComputePool.start(all) : undefined;
    if (poolAll) pools.push(poolAll);
    for (const p of pools) await poolDeterministicSign(p, detSk, pubkeys, aggothernonce, Math.min(500, sliceMs / 6));

    const widest = contenders[contenders.length - 1]!;
    const floor = summarise([await drive(() => widest.client.listKeys(), 32, sliceMs, widest.daemon.pid)]);

    // Interleaved rounds: per shape, each round runs every daemon (rotating the order) for a
    // slice; the in-process core gets a slice in every DeterministicSign-32 round.
    const slices = new Map<string, Slice[]>();
    const coreRounds: number[] = [];
    const pool1Rounds: number[] = [];
    const poolAllRounds: number[] = [];
    const key = (workers: number, shape: Shape) => `${workers}/${shape}`;
    for (const { shape, inFlight, session: isSession } of SHAPES) {
      for (let r = 0; r < rounds; r++) {
        for (let k = 0; k < contenders.length; k++) {
          const c = contenders[(r + k) % contenders.length]!;
          const op = isSession ? session(c.client) : detSign(c.client);
          const slice = await drive(op, inFlight, sliceMs / rounds, c.daemon.pid);
          const list = slices.get(key(c.workers, shape)) ?? [];
          list.push(slice);
          slices.set(key(c.workers, shape), list);
        }
        if (shape === 'det32') {
          coreRounds.push(coreDeterministicSign(detSk, pubkeys, aggothernonce, sliceMs / rounds));
          pool1Rounds.push(await poolDeterministicSign(pool1, detSk, pubkeys, aggothernonce, sliceMs / rounds));
          if (poolAll) poolAllRounds.push(await poolDeterministicSign(poolAll, detSk, pubkeys, aggothernonce, sliceMs / rounds));
        }
      }
    }
    const run = (workers: number, shape: Shape) => summarise(slices.get(key(workers, shape))!);
    const core = median(coreRounds);

    const row = (what: string, r: Run): string[] => [
      what,
      fmtOps(r.perSec),
      ms(r.p50),
      ms(r.p99),
      ms(r.daemonCpuMs),
      ms(r.mainCpuMs),
      ms(r.clientCpuMs),
      fmtRatio(r.perSec / core),
    ];
    const pool1Rate = median(pool1Rounds);
    const poolAllRate = median(poolAllRounds);
    const rows: string[][] = [
      ['in-process core DeterministicSign, 1 thread', fmtOps(core), '', '', ms(1000 / core), '', '', '1.00x'],
      ['in-process ComputePool DeterministicSign, 1 worker, 16 in flight', fmtOps(pool1Rate), '', '', '', '', '', fmtRatio(pool1Rate / core)],
      ...(poolAll
        ? [[`in-process ComputePool DeterministicSign, ${all} workers, 16 in flight`, fmtOps(poolAllRate), '', '', '', '', '', fmtRatio(poolAllRate / core)]]
        : []),
      row(`ListKeys, 32 in flight (transport floor), ${widest.label}`, floor),
    ];
    for (const { shape, what } of SHAPES) for (const c of contenders) rows.push(row(`${what}, ${c.label}`, run(c.workers, shape)));

    console.log('## daemon (end to end over gRPC)\n');
    console.log(
      `${await environment()}; one daemon process per worker setting (SoftHSM2, SQLite ledger) on 127.0.0.1, the client in this process; ` +
        `3-signer key set, no tweaks, 32-byte messages; wall clock, ${sliceMs} ms per row in ${rounds} interleaved rounds\n`,
    );
    console.log(
      markdownTable(
        ['operation (daemon)', 'per second', 'p50 ms', 'p99 ms', 'daemon CPU ms/op', 'main thread CPU ms/op', 'client CPU ms/op', 'vs in-process'],
        rows,
      ),
    );

    const lines: string[] = [];
    const single = contenders.find((c) => c.workers === 1);
    const multi = contenders.find((c) => c.workers === all && all > 1);
    const best = multi ?? widest;
    const det32 = run(best.workers, 'det32');
    const toCore = roundRatio(det32.rounds, coreRounds);
    lines.push(
      `- gRPC DeterministicSign at 32 in flight (${best.label}) / in-process 1 thread = ${fmtRatio(toCore)} ` +
        `(target >= 0.80x): ${verdict(toCore >= 0.8)}`,
    );
    lines.push(`- its p99 = ${ms(det32.p99)} ms (target < 50 ms): ${verdict(det32.p99 < 50)}`);
    if (single && multi) {
      const scale = roundRatio(det32.rounds, run(1, 'det32').rounds);
      const scaleSes = roundRatio(run(multi.workers, 'ses32').rounds, run(1, 'ses32').rounds);
      lines.push(
        `- ${multi.label} / 1 worker, DeterministicSign at 32 in flight = ${fmtRatio(scale)} (target >= 1.6x): ${verdict(scale >= 1.6)}; ` +
          `NonceGen+Sign sessions at 32 in flight = ${fmtRatio(scaleSes)}`,
      );
    }
    if (poolAll) {
      const poolScale = roundRatio(poolAllRounds, pool1Rounds);
      lines.push(
        `- the arithmetic alone (in-process ComputePool, no gRPC/ledger/token), ${all} workers / 1 worker = ${fmtRatio(poolScale)} ` +
          `(the same target, >= 1.6x): ${verdict(poolScale >= 1.6)}`,
      );
    }
    const inline = contenders.find((c) => c.workers === 0);
    if (inline) {
      const vsInline = roundRatio(det32.rounds, run(0, 'det32').rounds);
      lines.push(`- ${best.label} / inline, DeterministicSign at 32 in flight = ${fmtRatio(vsInline)}`);
    }
    // What the machine allows at all: every core busy with this daemon and this client.
    const ceiling = (cpus().length * 1000) / (det32.daemonCpuMs + det32.clientCpuMs);
    lines.push(
      `- CPU ceiling for DeterministicSign on ${cpus().length} cores with the client on the same machine: ` +
        `${cpus().length} x 1000 / (${ms(det32.daemonCpuMs)} daemon + ${ms(det32.clientCpuMs)} client ms/op) = ${fmtOps(ceiling)}/s ` +
        `(${fmtRatio(ceiling / core)} of in-process; measured ${fmtOps(det32.perSec)}/s = ${fmtRatio(det32.perSec / ceiling)} of the ceiling)`,
    );
    const worstP99 = Math.max(...SHAPES.map(({ shape }) => run(best.workers, shape).p99));
    lines.push(`- worst p99 of the ${best.label} daemon over all four rows = ${ms(worstP99)} ms (target < 50 ms): ${verdict(worstP99 < 50)}`);
    console.log(`\ntargets:\n${lines.join('\n')}`);
    console.log(
      `\nload average at the start ${load0.map((l) => l.toFixed(1)).join(' ')}, at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} cores (the client shares them). ` +
        `At 32 in flight latency >= 32 / rate (Little's law): p99 < 50 ms needs well over 640 calls/s.\n`,
    );
  } finally {
    await Promise.all(pools.map((p) => p.close()));
    for (const c of contenders) c.client.close();
    await Promise.all(contenders.map((c) => c.daemon.stop()));
    await removeToken(token);
  }
}

// Run directly: `npx tsx bench/daemon.ts`.
if (import.meta.url === `file://${process.argv[1]}`) await benchDaemon();
