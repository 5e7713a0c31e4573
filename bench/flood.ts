// A flooding client against a well-behaved one, on a real daemon over mTLS (two client
// certificates, so two identities). For FLOOD_MS the flooder keeps opening round-1 sessions it
// never signs, keeps FLOOD_DET DeterministicSign calls in flight, and keeps FLOOD_AGG
// PartialSigVerify calls on 100-key lists in flight; the well-behaved client runs
// DeterministicSign and NonceGen one at a time. Prints the well-behaved client's success rate
// and p50/p99 latency. Run: `npx tsx bench/flood.ts` (not part of `npm run bench`).
// DAEMON_ARGS adds serve flags (e.g. to compare settings). The flooder runs in a child process,
// so its own CPU does not stretch the well-behaved client's measured latency.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import { AggregatorClient, SignerClient } from '../src/client/index.js';
import * as musig2 from '../src/musig2/index.js';
import { createKey, Daemon, makeToken, removeToken } from '../test/e2e/harness.js';
import { makePki } from '../test/e2e/pki.js';

const FLOOD_MS = Number(process.env.FLOOD_MS ?? 20_000);
const FLOOD_DET = Number(process.env.FLOOD_DET ?? 400);
const FLOOD_AGG = Number(process.env.FLOOD_AGG ?? 64);
const FLOOD_SESSIONS = Number(process.env.FLOOD_SESSIONS ?? 16);

const ROLE = process.env.FLOOD_ROLE ?? 'main';
const creds = (ca: string, key: string, cert: string) => credentials.createSsl(readFileSync(ca), readFileSync(key), readFileSync(cert));

// Other signers' material, made before the clock starts.
function otherSigner() {
  const sk = new Uint8Array(randomBytes(32));
  const opk = musig2.individualPubkey(sk);
  return { pk: opk, nonce: () => musig2.nonceGen({ sk, pk: opk, extraIn: new Uint8Array(randomBytes(32)) }).pubnonce };
}

if (ROLE === 'flooder') {
  const [target, ca, key, cert, pkHex, ms] = JSON.parse(process.env.FLOOD_ARGS!) as string[];
  const pk = Uint8Array.from(Buffer.from(pkHex!, 'hex'));
  const other = otherSigner();
  const pubkeys = [pk, other.pk];
  const nonces = Array.from({ length: 64 }, () => other.nonce());
  const lists = Array.from({ length: 300 }, () => Array.from({ length: 100 }, () => musig2.individualPubkey(new Uint8Array(randomBytes(32)))));
  const listNonces = Array.from({ length: 100 }, () => other.nonce());
  const c = () => creds(ca!, key!, cert!);
  const floodSigner = [new SignerClient(target!, { credentials: c(), deadlineMs: 30_000 }), new SignerClient(target!, { credentials: c(), deadlineMs: 30_000 })];
  const floodAgg = new AggregatorClient(target!, { credentials: c(), deadlineMs: 30_000 });
  process.send!('ready');
  const end = Date.now() + Number(ms);
  const counts = { ok: 0, refused: 0 };
  const loop = async (fn: (i: number) => Promise<unknown>) => {
    for (let i = 0; Date.now() < end; i++) {
      try {
        await fn(i);
        counts.ok++;
      } catch {
        counts.refused++;
        await new Promise((r) => setTimeout(r, 5)); // a refused flooder retries almost at once
      }
    }
  };
  await Promise.all([
    ...Array.from({ length: FLOOD_SESSIONS }, (_, j) => loop(() => floodSigner[j % 2]!.nonceGen({ keyId: 'k1', pubkeys }))),
    ...Array.from({ length: FLOOD_DET }, (_, j) =>
      loop((i) => floodSigner[j % 2]!.deterministicSign({ keyId: 'k1', aggothernonce: nonces[(i + j) % 64]!, pubkeys, message: new Uint8Array(randomBytes(32)) })),
    ),
    ...Array.from({ length: FLOOD_AGG }, (_, j) =>
      loop((i) =>
        floodAgg.partialSigVerify({ partialSig: new Uint8Array(32).fill(1), pubnonces: listNonces, pubkeys: lists[(i * FLOOD_AGG + j) % lists.length]!, message: new Uint8Array(32), signerIndex: 0 }),
      ),
    ),
  ]);
  for (const x of [...floodSigner, floodAgg]) x.close();
  process.send!(JSON.stringify(counts));
  process.exit(0);
}

const token = await makeToken('musig2-flood-');
const pki = makePki(token.dir, { flooder: '', calm: '' });
const pk = await createKey(token, 'k1');
const daemon = await Daemon.start(token, {
  args: ['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-client-ca', pki.ca, '--max-sessions', '2000', ...(process.env.DAEMON_ARGS ?? '').split(' ').filter(Boolean)],
});
const target = `localhost:${daemon.port}`;
const other = otherSigner();
const pubkeys = [pk, other.pk];
const calm = new SignerClient(target, { credentials: creds(pki.ca, pki.clients.calm!.key, pki.clients.calm!.cert), deadlineMs: 30_000 });

const child = spawn(process.execPath, [...process.execArgv, new URL(import.meta.url).pathname], {
  env: { ...process.env, FLOOD_ROLE: 'flooder', FLOOD_ARGS: JSON.stringify([target, pki.ca, pki.clients.flooder!.key, pki.clients.flooder!.cert, Buffer.from(pk).toString('hex'), String(FLOOD_MS)]) },
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
const messages: string[] = [];
const ready = new Promise<void>((resolve) => child.on('message', (m) => (messages.push(String(m)), m === 'ready' && resolve())));
const exited = new Promise((r) => child.on('exit', r));
await ready;
const end = Date.now() + FLOOD_MS;

// The well-behaved client: one call at a time, alternating DeterministicSign and NonceGen.
await new Promise((r) => setTimeout(r, 2_000)); // let the flood build up first
const latencies: number[] = [];
const failures = new Map<string, number>();
let calls = 0;
while (Date.now() < end) {
  const t0 = performance.now();
  calls++;
  try {
    if (calls % 2 === 0) await calm.nonceGen({ keyId: 'k1', pubkeys });
    else await calm.deterministicSign({ keyId: 'k1', aggothernonce: other.nonce(), pubkeys, message: new Uint8Array(randomBytes(32)) });
    latencies.push(performance.now() - t0);
  } catch (err) {
    const why = (err as Error).message.slice(0, 120);
    failures.set(why, (failures.get(why) ?? 0) + 1);
  }
}
await exited;
latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]?.toFixed(1) ?? '-';
console.log(
  `well-behaved client: ${latencies.length}/${calls} ok (${((100 * latencies.length) / Math.max(1, calls)).toFixed(1)}%), ` +
    `p50 ${pct(50)} ms, p99 ${pct(99)} ms, max ${latencies.at(-1)?.toFixed(1) ?? '-'} ms`,
);
for (const [why, n] of failures) console.log(`  ${n} x ${why}`);
const counts = messages.find((m) => m.startsWith('{'));
if (counts) console.log(`flooder: ${counts}`);
calm.close();
await daemon.stop();
await removeToken(token);
