// End-to-end daemon benchmark: one real `musig2-signer serve` process (SoftHSM2 token, SQLite
// ledger) driven over gRPC from this process, at 1 and 32 calls in flight, beside the
// in-process core DeterministicSign on one thread. Wall-clock rates (the work happens in another
// process) and per-call latency percentiles. Targets: DeterministicSign over gRPC at 32 in
// flight >= 80% of the in-process single-thread rate, and p99 < 50 ms. Never fails a build.
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { SignerClient } from '../src/client/index.js';
import * as musig2 from '../src/musig2/index.js';
import { createKey, Daemon, importKey, makeToken, removeToken } from '../test/e2e/harness.js';
import type { Token } from '../test/e2e/harness.js';
import { benchTimeMs, environment, fmtOps, fmtRatio, markdownTable, median } from './harness.js';

interface Run {
  perSec: number;
  p50: number;
  p99: number;
  calls: number;
  /** The daemon process's CPU time per call (user + system), in ms. */
  daemonCpuMs: number;
}

/** CPU time (user + system) of a process so far, in ms, from /proc (Linux). */
function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
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
async function drive(op: () => Promise<unknown>, inFlight: number, ms: number, daemonPid: number): Promise<Run> {
  const latencies: number[] = [];
  const cpu0 = processCpuMs(daemonPid);
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
  const elapsed = performance.now() - t0;
  const daemonCpuMs = (processCpuMs(daemonPid) - cpu0) / latencies.length;
  latencies.sort((a, b) => a - b);
  return {
    perSec: latencies.length / (elapsed / 1000),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    calls: latencies.length,
    daemonCpuMs,
  };
}

/** The in-process core rate: one thread, the same key set and shape as the gRPC calls. */
function coreDeterministicSign(sk: Uint8Array, pubkeys: Uint8Array[], aggothernonce: Uint8Array, ms: number): number {
  const rounds: number[] = [];
  for (let r = 0; r < 5; r++) {
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < ms / 5) {
      musig2.deterministicSign(sk, aggothernonce, pubkeys, [], randomBytes(32));
      n++;
    }
    rounds.push(n / ((performance.now() - t0) / 1000));
  }
  return median(rounds);
}

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');

export async function benchDaemon(): Promise<void> {
  const sliceMs = benchTimeMs(3000);
  let token: Token | undefined;
  let daemon: Daemon | undefined;
  let client: SignerClient | undefined;
  try {
    token = await makeToken('musig2-bench-daemon-');
    // The deterministic signer's key is known here too, for the in-process comparison.
    const detSk = secp256k1.utils.randomSecretKey();
    const detPk = await importKey(token, 'det', Buffer.from(detSk).toString('hex'));
    const rndPk = await createKey(token, 'rnd');
    daemon = await Daemon.start(token);
    client = new SignerClient(daemon.address);
    const c = client;

    // Three signers: ours (det, rnd) and a stranger, so key aggregation has real work.
    const stranger = secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true);
    const pubkeys = [rndPk, stranger, detPk];
    const otherNonce = () => {
      const k = () => secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true);
      return Uint8Array.from([...k(), ...k()]);
    };
    const aggothernonce = otherNonce();
    const strangerNonce = otherNonce();

    const detSign = () => c.deterministicSign({ keyId: 'det', aggothernonce, pubkeys, message: randomBytes(32) });
    const session = async () => {
      const message = randomBytes(32);
      const r1 = await c.nonceGen({ keyId: 'rnd', pubkeys, message });
      const aggnonce = musig2.nonceAgg([r1.pubnonce, strangerNonce, strangerNonce]);
      await c.sign({ sessionId: r1.sessionId, aggnonce, pubkeys, message });
    };

    const pid = daemon.pid;
    // Warm up the daemon (key-aggregation caches, JIT) and this process before measuring.
    await drive(detSign, 8, Math.min(1000, sliceMs / 3), pid);
    await drive(session, 8, Math.min(1000, sliceMs / 3), pid);

    const core = coreDeterministicSign(detSk, pubkeys, aggothernonce, sliceMs);
    const floor = await drive(() => c.listKeys(), 32, sliceMs, pid);
    const det1 = await drive(detSign, 1, sliceMs, pid);
    const det32 = await drive(detSign, 32, sliceMs, pid);
    const ses1 = await drive(session, 1, sliceMs, pid);
    const ses32 = await drive(session, 32, sliceMs, pid);

    const row = (what: string, r: Run): string[] => [
      what,
      fmtOps(r.perSec),
      ms(r.p50),
      ms(r.p99),
      ms(r.daemonCpuMs),
      fmtRatio(r.perSec / core),
    ];
    console.log('## daemon (end to end over gRPC)\n');
    console.log(
      `${await environment()}; one daemon process (SoftHSM2, SQLite ledger) on 127.0.0.1, the client in this process; ` +
        `3-signer key set, no tweaks, 32-byte messages; wall clock, ${sliceMs} ms per row\n`,
    );
    console.log(
      markdownTable(
        ['operation', 'per second', 'p50 ms', 'p99 ms', 'daemon CPU ms/op', 'vs in-process'],
        [
          ['in-process core DeterministicSign, 1 thread', fmtOps(core), '', '', ms(1000 / core), '1.00x'],
          row('gRPC ListKeys, 32 in flight (transport floor)', floor),
          row('gRPC DeterministicSign, 1 in flight', det1),
          row('gRPC DeterministicSign, 32 in flight', det32),
          row('gRPC NonceGen+Sign sessions, 1 in flight', ses1),
          row('gRPC NonceGen+Sign sessions, 32 in flight', ses32),
        ],
      ),
    );
    const ratio = det32.perSec / core;
    const cpuRatio = 1000 / core / det32.daemonCpuMs;
    const worstP99 = Math.max(det1.p99, det32.p99, ses1.p99, ses32.p99);
    console.log(
      `\ntargets: DeterministicSign at 32 in flight / in-process = ${fmtRatio(ratio)} (target >= 0.80x: ${ratio >= 0.8 ? 'met' : 'NOT met'}); ` +
        `worst p99 = ${ms(worstP99)} ms (target < 50 ms: ${worstP99 < 50 ? 'met' : 'NOT met'})`,
    );
    // Load-independent view: how much CPU the daemon spends per call against the core alone.
    console.log(
      `CPU-normalised: in-process ms/op / daemon CPU ms/op at 32 in flight = ${fmtRatio(cpuRatio)}; ` +
        `load average during the run ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} cores. ` +
        `With one signing thread, 32 in flight queue behind each other: latency >= 32 / rate (Little's law).\n`,
    );
  } finally {
    client?.close();
    await daemon?.stop();
    await removeToken(token);
  }
}

// Run directly: `npx tsx bench/daemon.ts`.
if (import.meta.url === `file://${process.argv[1]}`) await benchDaemon();
