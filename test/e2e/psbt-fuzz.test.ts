// A property-based fuzz of the PSBT RPCs against one long-lived daemon: 10,000 PSBTs mutated by
// fast-check (byte flips, truncations, insertions, and structured edits of BIP174 key-value
// records: values replaced, records dropped, duplicated or moved, key types changed), taken from
// four valid stages of one session (bare, with nonces, with every nonce, with every partial
// signature) and sent to PsbtNonceGen, PsbtDeterministicSign, PsbtSign (on live sessions),
// PsbtCombine and PsbtFinalize. Every answer must be OK or a clean refusal, never INTERNAL or
// UNKNOWN; afterwards the daemon is SERVING, logged no unexpected error, and still signs.
import { status as Status } from '@grpc/grpc-js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AggregatorClient, ClientError, runPsbtSession, SignerClient } from '../../src/client/index.js';
import { combinePsbts } from '../../src/psbt/index.js';
import { createKey, Daemon, makeToken, removeToken } from './harness.js';
import type { Token } from './harness.js';
import { buildFixture, scureParticipant, verifyWithBitcoinjs } from './psbt-fixture.js';
import type { Fixture } from './psbt-fixture.js';

const RUNS = 100;
const PER_RUN = 100; // 10,000 PSBTs, each run's sent at once
const SESSIONS = 40;

let token: Token;
let daemon: Daemon;
let signer: SignerClient;
let aggregator: AggregatorClient;
let f: Fixture;
const scureSecret = secp256k1.utils.randomSecretKey();
let stages: Uint8Array[] = [];
let sessions: Uint8Array[] = [];

beforeAll(async () => {
  token = await makeToken();
  const random = await createKey(token, 'random');
  const final = await createKey(token, 'final');
  // Every successful PsbtNonceGen opens a session: room for them all.
  daemon = await Daemon.start(token, { args: ['--max-sessions', '200000'] });
  signer = new SignerClient(daemon.address);
  aggregator = new AggregatorClient(daemon.address);
  f = buildFixture([secp256k1.getPublicKey(scureSecret, true), random, final], secp256k1.utils.randomSecretKey());
  const scure = scureParticipant(scureSecret, f);
  const r1 = await signer.psbtNonceGen({ keyId: 'random', psbt: f.psbt });
  const withNonces = combinePsbts([f.psbt, await scure.nonceGen(f.psbt), r1.psbt]);
  const all = combinePsbts([withNonces, (await signer.psbtDeterministicSign({ keyId: 'final', psbt: withNonces })).psbt]);
  const signed = combinePsbts([all, (await signer.psbtSign({ sessionId: r1.sessionId, psbt: all })).psbt, await scure.sign(all)]);
  stages = [f.psbt, withNonces, all, signed];
  // Live sessions for PsbtSign to be fuzzed against (mutations may burn some: that is a refusal too).
  sessions = [];
  for (let i = 0; i < SESSIONS; i++) sessions.push((await signer.psbtNonceGen({ keyId: 'random', psbt: f.psbt })).sessionId);
});

afterAll(async () => {
  signer?.close();
  aggregator?.close();
  await daemon?.stop();
  await removeToken(token);
});

// ---- a minimal BIP174 map reader and writer, so mutations can keep the framing valid ----------

type Rec = { key: Uint8Array; value: Uint8Array };

function readCompact(b: Uint8Array, at: number): [number, number] {
  const first = b[at]!;
  if (first < 0xfd) return [first, at + 1];
  const n = first === 0xfd ? 2 : first === 0xfe ? 4 : 8;
  let v = 0;
  for (let i = n; i >= 1; i--) v = v * 256 + b[at + i]!;
  return [v, at + 1 + n];
}

function compact(n: number): Uint8Array {
  if (n < 0xfd) return Uint8Array.of(n);
  if (n <= 0xffff) return Uint8Array.of(0xfd, n & 0xff, n >>> 8);
  return Uint8Array.of(0xfe, n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
}

/** The maps (global, inputs, outputs) of a valid PSBT, as raw records. */
function readMaps(psbt: Uint8Array): Rec[][] {
  const maps: Rec[][] = [];
  let at = 5;
  let cur: Rec[] = [];
  while (at < psbt.length) {
    let klen: number;
    [klen, at] = readCompact(psbt, at);
    if (klen === 0) {
      maps.push(cur);
      cur = [];
      continue;
    }
    const key = psbt.slice(at, at + klen);
    at += klen;
    let vlen: number;
    [vlen, at] = readCompact(psbt, at);
    cur.push({ key, value: psbt.slice(at, at + vlen) });
    at += vlen;
  }
  return maps;
}

function writeMaps(maps: Rec[][]): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(0x70, 0x73, 0x62, 0x74, 0xff)];
  for (const m of maps) {
    for (const r of m) parts.push(compact(r.key.length), r.key, compact(r.value.length), r.value);
    parts.push(Uint8Array.of(0));
  }
  return Uint8Array.from(Buffer.concat(parts));
}

// ---- mutations ------------------------------------------------------------------------------

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; len: number }
  | { kind: 'value'; map: number; rec: number; bytes: Uint8Array }
  | { kind: 'valueFlip'; map: number; rec: number; at: number }
  | { kind: 'drop'; map: number; rec: number }
  | { kind: 'dup'; map: number; rec: number; to: number }
  | { kind: 'keyType'; map: number; rec: number; type: number };

const pos = fc.nat({ max: 1 << 16 });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: pos, bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: pos }),
  fc.record({ kind: fc.constant('insert' as const), at: pos, bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: pos, len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('value' as const), map: pos, rec: pos, bytes: fc.oneof(fc.uint8Array({ maxLength: 80 }), fc.constantFrom(new Uint8Array(32), new Uint8Array(33), new Uint8Array(66))) }),
  fc.record({ kind: fc.constant('valueFlip' as const), map: pos, rec: pos, at: pos }),
  fc.record({ kind: fc.constant('drop' as const), map: pos, rec: pos }),
  fc.record({ kind: fc.constant('dup' as const), map: pos, rec: pos, to: pos }),
  fc.record({ kind: fc.constant('keyType' as const), map: pos, rec: pos, type: fc.nat({ max: 0x20 }) }),
);

function apply(psbt: Uint8Array, muts: Mutation[]): Uint8Array {
  let b = psbt;
  for (const m of muts) {
    if (m.kind === 'flip' || m.kind === 'truncate' || m.kind === 'insert' || m.kind === 'delete') {
      const at = m.at % (b.length + 1);
      if (m.kind === 'flip' && at < b.length) b = b.map((x, i) => (i === at ? x ^ (1 << m.bit) : x));
      if (m.kind === 'truncate') b = b.slice(0, at);
      if (m.kind === 'insert') b = Uint8Array.from(Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]));
      if (m.kind === 'delete') b = Uint8Array.from(Buffer.concat([b.subarray(0, at), b.subarray(at + m.len)]));
      continue;
    }
    let maps: Rec[][];
    try {
      maps = readMaps(b);
    } catch {
      continue;
    }
    const map = maps[m.map % Math.max(1, maps.length)];
    if (!map || map.length === 0) continue;
    const i = m.rec % map.length;
    const r = map[i]!;
    if (m.kind === 'value') map[i] = { key: r.key, value: m.bytes };
    if (m.kind === 'valueFlip' && r.value.length > 0) map[i] = { key: r.key, value: r.value.map((x, j) => (j === m.at % r.value.length ? x ^ 0x01 : x)) };
    if (m.kind === 'drop') map.splice(i, 1);
    if (m.kind === 'dup') map.splice(m.to % (map.length + 1), 0, { key: r.key, value: r.value });
    if (m.kind === 'keyType') map[i] = { key: Uint8Array.from([m.type, ...r.key.subarray(1)]), value: r.value };
    b = writeMaps(maps);
  }
  return b;
}

const CLEAN = new Set([Status.OK, Status.INVALID_ARGUMENT, Status.FAILED_PRECONDITION, Status.NOT_FOUND]);
const seen = new Map<string, number>();

async function send(rpc: number, psbt: Uint8Array, session: number): Promise<number> {
  try {
    switch (rpc % 5) {
      case 0:
        await signer.psbtNonceGen({ keyId: 'random', psbt });
        break;
      case 1:
        await signer.psbtDeterministicSign({ keyId: 'final', psbt });
        break;
      case 2:
        await signer.psbtSign({ sessionId: sessions[session % sessions.length]!, psbt });
        break;
      case 3:
        await aggregator.psbtCombine([stages[0]!, psbt]);
        break;
      default:
        await aggregator.psbtFinalize(psbt);
    }
    return Status.OK;
  } catch (err) {
    if (!(err instanceof ClientError)) throw err;
    if (!CLEAN.has(err.code)) throw new Error(`rpc ${rpc % 5}: ${err.codeName}: ${err.details}`);
    const reason = err.errorInfo?.reason ?? err.codeName;
    seen.set(reason, (seen.get(reason) ?? 0) + 1);
    return err.code;
  }
}

describe('10,000 mutated PSBTs through the RPCs', () => {
  it('each gets OK or a clean refusal; the daemon stays healthy and still signs', { timeout: 600_000 }, async () => {
    let sent = 0;
    const codes = new Map<number, number>();
    const one = fc.record({
      stage: fc.nat({ max: 3 }),
      rpc: fc.nat({ max: 4 }),
      session: fc.nat({ max: SESSIONS - 1 }),
      muts: fc.array(mutation, { minLength: 1, maxLength: 3 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(one, { minLength: PER_RUN, maxLength: PER_RUN }), async (cases) => {
        const results = await Promise.all(cases.map((c) => send(c.rpc, apply(stages[c.stage]!, c.muts), c.session)));
        for (const code of results) codes.set(code, (codes.get(code) ?? 0) + 1);
        sent += cases.length;
      }),
      { numRuns: RUNS, seed: 0x5eed, endOnFailure: true },
    );
    expect(sent).toBeGreaterThanOrEqual(10_000);
    // The mutations reach past the parser: refusals of many kinds, and some PSBTs still valid.
    expect(codes.get(Status.INVALID_ARGUMENT)).toBeGreaterThan(1000);
    expect(seen.size).toBeGreaterThan(8);
    console.log('fuzz outcomes', Object.fromEntries([...codes].map(([c, n]) => [Status[c], n])), Object.fromEntries(seen));

    expect(await signer.health()).toBe('SERVING');
    const unexpected = daemon.logEntries().filter((e) => e.msg === 'unexpected error in handler' || e.code === 'INTERNAL');
    expect(unexpected).toEqual([]);
    const fresh = buildFixture(f.participants, secp256k1.utils.randomSecretKey(), { seed: 99 });
    const scure = scureParticipant(scureSecret, fresh);
    const r = await runPsbtSession({ psbt: fresh.psbt, signers: [scure, { keyId: 'random', client: signer }, { keyId: 'final', client: signer }] });
    expect(verifyWithBitcoinjs(r.rawTx!, fresh.prevoutScripts, fresh.amounts)).toBe(5);
  });
});
