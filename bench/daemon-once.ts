// One daemon, one load, one line of JSON: for comparing two builds of the daemon in alternating
// runs (bench/compare-commits.sh), where the full daemon section would take too long per round.
// Starts a SoftHSM2 token with two keys and one `musig2-signer serve` (SQLite ledger), warms
// it up, then drives DeterministicSign (or NonceGen+Sign sessions) with a fixed number of calls
// in flight from the lean load generator, and prints the rate, p50/p99 latency, the daemon's
// CPU per call (all threads, and the main thread alone), how often its threads went to sleep
// per call (each a wake-up later) and the hypervisor's steal meanwhile.
//
// Settings (environment): BACKEND native|noble (native), WORKERS (one per core), IN_FLIGHT (32),
// SECONDS (6), OP det|session (det).
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { randomBytes } from '@noble/hashes/utils.js';
import * as musig2 from '../src/musig2/index.js';
import { createKey, Daemon, importKey, makeToken, removeToken } from '../test/e2e/harness.js';
import { LoadGenerator } from './loadgen.js';

const backend = process.env.BACKEND ?? 'native';
const workers = process.env.WORKERS ?? String(availableParallelism());
const inFlight = Number(process.env.IN_FLIGHT ?? 32);
const seconds = Number(process.env.SECONDS ?? 6);
const op = process.env.OP ?? 'det';

/** CPU time of a process or one of its threads, in ms (Linux /proc; 100 ticks a second). */
function cpuMs(pid: number, tid = pid): number {
  const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}
const processCpuMs = (pid: number) => readdirSync(`/proc/${pid}/task`).reduce((sum, tid) => sum + cpuMs(pid, Number(tid)), 0);
/** How often the process's threads have gone to sleep waiting (voluntary context switches). */
const sleeps = (pid: number) =>
  readdirSync(`/proc/${pid}/task`).reduce((sum, tid) => {
    const m = /voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'));
    return sum + Number(m?.[1] ?? 0);
  }, 0);

function steal(): { steal: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { steal: f[7]!, total: f.reduce((a, b) => a + b, 0) };
}

const token = await makeToken('musig2-bench-once-');
let daemon: Daemon | undefined;
let load: LoadGenerator | undefined;
try {
  const detSk = secp256k1.utils.randomSecretKey();
  const detPk = await importKey(token, 'det', Buffer.from(detSk).toString('hex'));
  const rndPk = await createKey(token, 'rnd');
  daemon = await Daemon.start(token, { ledger: `sqlite:${token.dir}/ledger.sqlite`, args: ['--workers', workers, '--curve-backend', backend] });
  load = new LoadGenerator(daemon.address);
  const lg = load;
  const point = () => secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true);
  const pubkeys = [rndPk, point(), detPk];
  const aggothernonce = Uint8Array.from([...point(), ...point()]);
  const strangerNonce = Uint8Array.from([...point(), ...point()]);
  const call =
    op === 'session'
      ? async () => {
          const message = randomBytes(32);
          const r1 = await lg.call<{ sessionId: Uint8Array; pubnonce: Uint8Array }>('NonceGen', { keyId: 'rnd', pubkeys, message });
          const aggnonce = musig2.nonceAgg([r1.pubnonce, strangerNonce, strangerNonce]);
          await lg.call('Sign', { sessionId: r1.sessionId, aggnonce, pubkeys, message });
        }
      : () => lg.call('DeterministicSign', { keyId: 'det', aggothernonce, pubkeys, message: randomBytes(32) });
  const drive = async (ms: number) => {
    const latencies: number[] = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (performance.now() - t0 < ms) {
          const s = performance.now();
          await call();
          latencies.push(performance.now() - s);
        }
      }),
    );
    latencies.sort((a, b) => a - b);
    const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)]!;
    return { n: latencies.length, elapsedMs: performance.now() - t0, p50: at(50), p99: at(99) };
  };
  await drive(3000); // JIT, caches, the ledger file
  const pid = daemon.pid;
  const [cpu0, main0, sleeps0, steal0] = [processCpuMs(pid), cpuMs(pid), sleeps(pid), steal()];
  const r = await drive(seconds * 1000);
  const [cpu1, main1, sleeps1, steal1] = [processCpuMs(pid), cpuMs(pid), sleeps(pid), steal()];
  const round = (v: number) => Math.round(v * 100) / 100;
  console.log(
    JSON.stringify({
      backend, workers: Number(workers), op, inFlight,
      perSec: round(r.n / (r.elapsedMs / 1000)), p50: round(r.p50), p99: round(r.p99),
      daemonCpuMsPerOp: round((cpu1 - cpu0) / r.n), mainCpuMsPerOp: round((main1 - main0) / r.n),
      threadSleepsPerOp: round((sleeps1 - sleeps0) / r.n),
      stealPercent: round((100 * (steal1.steal - steal0.steal)) / (steal1.total - steal0.total)),
    }),
  );
} finally {
  load?.close();
  await daemon?.stop();
  await removeToken(token);
}
