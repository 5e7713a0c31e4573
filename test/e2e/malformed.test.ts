// Thousands of generated bad requests against one real daemon, 50 in flight: wrong lengths,
// off-curve points, scalars >= n, missing fields, oversized repeated fields, unknown keys and
// sessions, bytes that are not protobuf at all, and bad round-2 calls on live sessions. Each
// must get its expected clean status; afterwards the daemon is healthy, logged no internal
// error, its open-session count is back where it was, and the live sessions still sign.
import { Client, credentials, status as Status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AggregatorClient, ClientError, SignerClient } from '../../src/client/index.js';
import { keyAggAndTweak, getXonlyPk, nonceAgg, partialSigAgg } from '../../src/musig2/index.js';
import { DEFAULT_PSBT_LIMITS } from '../../src/psbt/index.js';
import { maxReceiveBytes } from '../../src/server/index.js';
import { DEFAULT_LIMITS } from '../../src/signer/index.js';
import { createKey, Daemon, makeToken, removeToken } from './harness.js';
import type { Token } from './harness.js';

const REQUESTS = 5_200;
const IN_FLIGHT = 50;
const MAX_MESSAGE_BYTES = 4096;
const MAX_SIGNERS = 20;

// A seeded generator, so a failing case can be reproduced from its index.
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rng = mulberry32(0x5eed);
const int = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)]!;
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(0, 255)));
const lengthOtherThan = (len: number) => pick([0, 1, len - 1, len + 1, int(2, 3 * len)].filter((l) => l !== len));

const N = secp256k1.Point.Fn.ORDER;
const P = secp256k1.Point.Fp.ORDER;
const be32 = (x: bigint) => Buffer.from(x.toString(16).padStart(64, '0'), 'hex');
// A pool of valid points: deriving a fresh one per use would make generation the slow part.
const POINTS = Array.from({ length: 64 }, () => Buffer.from(secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true)));
const validPoint = () => pick(POINTS);

/** 33 bytes that are not a valid compressed point: bad prefix, x >= p, or x off the curve. */
function invalidPoint(): Buffer {
  switch (int(0, 2)) {
    case 0:
      return Buffer.concat([Buffer.from([pick([0x00, 0x01, 0x04, 0x05, 0x06, 0x07, 0xff])]), bytes(32)]);
    case 1:
      return Buffer.concat([Buffer.from([pick([2, 3])]), be32(P + BigInt(int(0, 1000)))]);
    default:
      for (;;) {
        const candidate = Buffer.concat([Buffer.from([pick([2, 3])]), bytes(32)]);
        try {
          secp256k1.Point.fromBytes(candidate);
        } catch {
          return candidate;
        }
      }
  }
}
/** A 32-byte scalar below n (its top byte is zero). */
const lowScalar = () => Buffer.concat([Buffer.alloc(1), bytes(31)]);
const scalarAtLeastN = () => be32(pick([N, N + 1n, N + BigInt(int(2, 1 << 30)), 2n ** 256n - 1n]));
const validNonce = () => Buffer.concat([validPoint(), validPoint()]);
const invalidNonce = () => (rng() < 0.5 ? Buffer.concat([invalidPoint(), validPoint()]) : Buffer.concat([validPoint(), invalidPoint()]));

type Rpc = 'nonceGen' | 'sign' | 'deterministicSign' | 'keySort' | 'keyAgg' | 'nonceAgg' | 'partialSigVerify' | 'partialSigAgg';
interface Case {
  rpc: Rpc | 'raw';
  request: unknown;
  /** For raw cases: the method path. */
  path?: string;
  expect: Status;
  kind: string;
}

let token: Token;
let daemon: Daemon;
let signer: SignerClient;
let aggregator: AggregatorClient;
let pkR: Buffer;
let pkD: Buffer;

/** Live round-1 sessions the flood aims bad Sign calls at; they must still sign afterwards. */
interface Live {
  sessionId: Uint8Array;
  pubnonce: Uint8Array;
  det: { pubnonce: Uint8Array; partialSig: Uint8Array };
  message: Buffer;
}
let live: Live[] = [];

beforeAll(async () => {
  token = await makeToken();
  pkR = Buffer.from(await createKey(token, 'r'));
  pkD = Buffer.from(await createKey(token, 'd'));
  daemon = await Daemon.start(token, {
    metrics: true,
    args: ['--max-message-bytes', String(MAX_MESSAGE_BYTES), '--max-signers', String(MAX_SIGNERS)],
  });
  signer = new SignerClient(daemon.address);
  aggregator = new AggregatorClient(daemon.address);
});

afterAll(async () => {
  signer?.close();
  aggregator?.close();
  await daemon?.stop();
  await removeToken(token);
});

function generate(count: number): Case[] {
  const pubkeys = () => [pkR, pkD];
  const mut = (base: Record<string, unknown>, patch: Record<string, unknown>) => ({ ...base, ...patch });
  const tooManyKeys = () => Array.from({ length: int(MAX_SIGNERS + 1, 3000) }, () => pick([pkR, pkD]));
  const tooManyTweaks = () => Array.from({ length: int(101, 2000) }, () => ({ tweak: bytes(32), xonly: false }));
  const longMessage = () => bytes(int(MAX_MESSAGE_BYTES + 1, MAX_MESSAGE_BYTES * 3));
  const withInvalidKey = (own: Buffer) => {
    const list = [own, validPoint(), validPoint()];
    list[int(1, 2)] = invalidPoint();
    return list;
  };
  const IA = Status.INVALID_ARGUMENT;

  const nonceGenBase = () => ({ keyId: 'r', pubkeys: pubkeys(), tweaks: [], extraIn: Buffer.alloc(0) });
  const detBase = () => ({ keyId: 'd', aggothernonce: validNonce(), pubkeys: pubkeys(), tweaks: [], message: bytes(32) });
  const signBase = () => ({ sessionId: bytes(32), aggnonce: validNonce(), pubkeys: pubkeys(), tweaks: [], message: bytes(32) });
  const liveSign = (l: Live) => ({ sessionId: Buffer.from(l.sessionId), aggnonce: validNonce(), pubkeys: pubkeys(), tweaks: [], message: l.message });
  const verifyBase = () => ({ partialSig: bytes(32), pubnonces: [validNonce(), validNonce()], pubkeys: [validPoint(), validPoint()], tweaks: [], message: bytes(32), signerIndex: 0 });
  const aggBase = () => ({ partialSigs: [lowScalar(), lowScalar()], aggnonce: validNonce(), pubkeys: [validPoint(), validPoint()], tweaks: [], message: bytes(32) });

  const makers: (() => Case)[] = [
    // NonceGen
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { keyId: '' }), expect: IA, kind: 'missing key_id' }),
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { keyId: 'k'.repeat(int(257, 2000)) }), expect: IA, kind: 'long key_id' }),
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { keyId: `r\n${int(0, 9)}` }), expect: IA, kind: 'control char key_id' }),
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { pubkeys: [] }), expect: IA, kind: 'missing pubkeys' }),
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { pubkeys: [pkR, bytes(lengthOtherThan(33))] }), expect: IA, kind: 'pubkey length' }),
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { pubkeys: withInvalidKey(pkR) }), expect: IA, kind: 'off-curve pubkey' }),
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { pubkeys: [validPoint(), validPoint()] }), expect: IA, kind: 'own key missing' }),
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { pubkeys: tooManyKeys() }), expect: IA, kind: 'huge pubkeys' }),
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { tweaks: [{ tweak: bytes(lengthOtherThan(32)), xonly: true }] }), expect: IA, kind: 'tweak length' }),
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { tweaks: [{ tweak: scalarAtLeastN(), xonly: rng() < 0.5 }] }), expect: IA, kind: 'tweak >= n' }),
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { tweaks: tooManyTweaks() }), expect: IA, kind: 'huge tweaks' }),
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { message: longMessage() }), expect: IA, kind: 'long message' }),
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { extraIn: bytes(int(1025, 5000)) }), expect: IA, kind: 'long extra_in' }),
    () => ({ rpc: 'nonceGen', request: mut(nonceGenBase(), { keyId: `unknown-${int(0, 1e9)}` }), expect: Status.NOT_FOUND, kind: 'unknown key' }),
    // DeterministicSign
    () => ({ rpc: 'deterministicSign', request: mut(detBase(), { keyId: '' }), expect: IA, kind: 'missing key_id' }),
    () => ({ rpc: 'deterministicSign', request: mut(detBase(), { keyId: `unknown-${int(0, 1e9)}` }), expect: Status.NOT_FOUND, kind: 'unknown key' }),
    () => ({ rpc: 'deterministicSign', request: mut(detBase(), { aggothernonce: bytes(lengthOtherThan(66)) }), expect: IA, kind: 'aggothernonce length' }),
    () => ({ rpc: 'deterministicSign', request: mut(detBase(), { aggothernonce: Buffer.alloc(0) }), expect: IA, kind: 'missing aggothernonce' }),
    () => ({ rpc: 'deterministicSign', request: mut(detBase(), { aggothernonce: invalidNonce() }), expect: IA, kind: 'off-curve aggothernonce' }),
    () => ({ rpc: 'deterministicSign', request: mut(detBase(), { aggothernonce: Buffer.concat([Buffer.alloc(33), validPoint()]) }), expect: IA, kind: 'infinite aggothernonce' }),
    () => ({ rpc: 'deterministicSign', request: mut(detBase(), { rand: bytes(lengthOtherThan(32)) }), expect: IA, kind: 'rand length' }),
    () => ({ rpc: 'deterministicSign', request: mut(detBase(), { tweaks: [{ tweak: scalarAtLeastN(), xonly: rng() < 0.5 }] }), expect: IA, kind: 'tweak >= n' }),
    () => ({ rpc: 'deterministicSign', request: mut(detBase(), { pubkeys: [validPoint()] }), expect: IA, kind: 'own key missing' }),
    () => ({ rpc: 'deterministicSign', request: mut(detBase(), { pubkeys: withInvalidKey(pkD) }), expect: IA, kind: 'off-curve pubkey' }),
    () => ({ rpc: 'deterministicSign', request: mut(detBase(), { pubkeys: tooManyKeys() }), expect: IA, kind: 'huge pubkeys' }),
    () => ({ rpc: 'deterministicSign', request: mut(detBase(), { message: longMessage() }), expect: IA, kind: 'long message' }),
    // Sign
    () => ({ rpc: 'sign', request: mut(signBase(), { sessionId: Buffer.alloc(0) }), expect: IA, kind: 'missing session_id' }),
    () => ({ rpc: 'sign', request: mut(signBase(), { sessionId: bytes(lengthOtherThan(32)) }), expect: IA, kind: 'session_id length' }),
    () => ({ rpc: 'sign', request: mut(signBase(), { aggnonce: bytes(lengthOtherThan(66)) }), expect: IA, kind: 'aggnonce length' }),
    () => ({ rpc: 'sign', request: signBase(), expect: Status.NOT_FOUND, kind: 'unknown session' }),
    () => ({ rpc: 'sign', request: mut(liveSign(pick(live)), { aggnonce: invalidNonce() }), expect: IA, kind: 'live session, off-curve aggnonce' }),
    () => ({ rpc: 'sign', request: mut(liveSign(pick(live)), { aggnonce: bytes(lengthOtherThan(66)) }), expect: IA, kind: 'live session, aggnonce length' }),
    () => ({ rpc: 'sign', request: mut(liveSign(pick(live)), { pubkeys: [pkR, validPoint()] }), expect: Status.FAILED_PRECONDITION, kind: 'live session, other pubkeys' }),
    () => ({ rpc: 'sign', request: mut(liveSign(pick(live)), { message: bytes(32) }), expect: Status.FAILED_PRECONDITION, kind: 'live session, other message' }),
    () => ({ rpc: 'sign', request: mut(liveSign(pick(live)), { pubkeys: tooManyKeys() }), expect: IA, kind: 'live session, huge pubkeys' }),
    // The session binding (pubkeys, tweaks, message) is checked before the tweak's value.
    () => ({ rpc: 'sign', request: mut(liveSign(pick(live)), { tweaks: [{ tweak: scalarAtLeastN(), xonly: true }] }), expect: Status.FAILED_PRECONDITION, kind: 'live session, other tweaks (>= n)' }),
    // Aggregator
    () => ({ rpc: 'keySort', request: { pubkeys: [] }, expect: IA, kind: 'empty' }),
    () => ({ rpc: 'keySort', request: { pubkeys: [validPoint(), bytes(lengthOtherThan(33))] }, expect: IA, kind: 'pubkey length' }),
    () => ({ rpc: 'keySort', request: { pubkeys: tooManyKeys() }, expect: IA, kind: 'huge pubkeys' }),
    () => ({ rpc: 'keyAgg', request: { pubkeys: withInvalidKey(validPoint()), tweaks: [] }, expect: IA, kind: 'off-curve pubkey' }),
    () => ({ rpc: 'keyAgg', request: { pubkeys: [validPoint()], tweaks: [{ tweak: scalarAtLeastN(), xonly: rng() < 0.5 }] }, expect: IA, kind: 'tweak >= n' }),
    () => ({ rpc: 'keyAgg', request: { pubkeys: [validPoint()], tweaks: tooManyTweaks() }, expect: IA, kind: 'huge tweaks' }),
    () => ({ rpc: 'keyAgg', request: {}, expect: IA, kind: 'missing pubkeys' }),
    () => ({ rpc: 'nonceAgg', request: { pubnonces: [] }, expect: IA, kind: 'empty' }),
    () => ({ rpc: 'nonceAgg', request: { pubnonces: [validNonce(), bytes(lengthOtherThan(66))] }, expect: IA, kind: 'pubnonce length' }),
    () => ({ rpc: 'nonceAgg', request: { pubnonces: [validNonce(), invalidNonce()] }, expect: IA, kind: 'off-curve pubnonce' }),
    () => ({ rpc: 'nonceAgg', request: { pubnonces: Array.from({ length: int(MAX_SIGNERS + 1, 3000) }, validNonce) }, expect: IA, kind: 'huge pubnonces' }),
    () => ({ rpc: 'partialSigVerify', request: mut(verifyBase(), { partialSig: bytes(lengthOtherThan(32)) }), expect: IA, kind: 'psig length' }),
    () => ({ rpc: 'partialSigVerify', request: mut(verifyBase(), { pubnonces: [validNonce()] }), expect: IA, kind: 'count mismatch' }),
    () => ({ rpc: 'partialSigVerify', request: mut(verifyBase(), { signerIndex: int(2, 2 ** 32 - 1) }), expect: IA, kind: 'signer_index out of range' }),
    () => ({ rpc: 'partialSigVerify', request: mut(verifyBase(), { pubnonces: [invalidNonce(), validNonce()] }), expect: IA, kind: 'off-curve pubnonce' }),
    () => ({ rpc: 'partialSigVerify', request: mut(verifyBase(), { pubkeys: [invalidPoint(), validPoint()] }), expect: IA, kind: 'off-curve pubkey' }),
    () => ({ rpc: 'partialSigVerify', request: mut(verifyBase(), { message: longMessage() }), expect: IA, kind: 'long message' }),
    () => ({ rpc: 'partialSigAgg', request: mut(aggBase(), { partialSigs: [lowScalar(), scalarAtLeastN()] }), expect: IA, kind: 'psig >= n' }),
    () => ({ rpc: 'partialSigAgg', request: mut(aggBase(), { partialSigs: [lowScalar()] }), expect: IA, kind: 'count mismatch' }),
    () => ({ rpc: 'partialSigAgg', request: mut(aggBase(), { aggnonce: bytes(lengthOtherThan(66)) }), expect: IA, kind: 'aggnonce length' }),
    () => ({ rpc: 'partialSigAgg', request: mut(aggBase(), { aggnonce: invalidNonce() }), expect: IA, kind: 'off-curve aggnonce' }),
    () => ({ rpc: 'partialSigAgg', request: mut(aggBase(), { pubkeys: [validPoint(), invalidPoint()] }), expect: IA, kind: 'off-curve pubkey' }),
    // Bytes that do not decode as the request message at all.
    () => {
      const path = pick([
        '/musig2.signer.v1.Signer/NonceGen',
        '/musig2.signer.v1.Signer/Sign',
        '/musig2.signer.v1.Signer/DeterministicSign',
        '/musig2.signer.v1.Signer/ListKeys',
        '/musig2.signer.v1.Aggregator/KeyAgg',
        '/musig2.signer.v1.Aggregator/PartialSigAgg',
      ]);
      // A length-delimited field whose declared length runs past the end, or an invalid wire type.
      const garbage =
        rng() < 0.5
          ? Buffer.concat([Buffer.from([(int(1, 6) << 3) | 2, int(10, 120)]), bytes(int(0, 9))])
          : Buffer.from([(int(1, 15) << 3) | pick([6, 7])]);
      return { rpc: 'raw', path, request: garbage, expect: IA, kind: 'undecodable bytes' };
    },
  ];
  return Array.from({ length: count }, () => pick(makers)());
}

/** Sends raw bytes to a method path, bypassing any request encoding. */
function sendRaw(client: Client, path: string, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      body,
      (err: ServiceError | null) => (err ? reject(ClientError.fromServiceError(path, err)) : resolve()),
    ),
  );
}

describe('malformed requests', () => {
  it(`${REQUESTS} bad requests, ${IN_FLIGHT} in flight: each gets its clean status; the daemon stays healthy`, async () => {
    const openBefore = await daemon.metric('musig2_signer_open_sessions');

    // Live sessions (message bound in round 1) that bad Sign calls will aim at.
    live = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const message = bytes(32);
        const r1 = await signer.nonceGen({ keyId: 'r', pubkeys: [pkR, pkD], message });
        const det = await signer.deterministicSign({ keyId: 'd', aggothernonce: r1.pubnonce, pubkeys: [pkR, pkD], message });
        return { sessionId: r1.sessionId, pubnonce: r1.pubnonce, det, message };
      }),
    );
    expect(await daemon.metric('musig2_signer_open_sessions')).toBe(openBefore + live.length);

    const cases = generate(REQUESTS);
    const raw = new Client(daemon.address, credentials.createInsecure());
    const outcomes: { index: number; code: Status; details: string }[] = new Array(cases.length);
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < cases.length; i = next++) {
        const c = cases[i]!;
        try {
          if (c.rpc === 'raw') await sendRaw(raw, c.path!, c.request as Buffer);
          else if (c.rpc === 'nonceGen' || c.rpc === 'sign' || c.rpc === 'deterministicSign') await signer.raw(c.rpc, c.request);
          else await aggregator.raw(c.rpc, c.request);
          outcomes[i] = { index: i, code: Status.OK, details: '' };
        } catch (err) {
          if (!(err instanceof ClientError)) throw err;
          outcomes[i] = { index: i, code: err.code, details: err.details };
        }
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    raw.close();

    // An over-count list may also be past the transport's frame limit (the largest request the
    // caps allow): then grpc-js refuses it undecoded, with RESOURCE_EXHAUSTED.
    const framed = (o: { index: number; code: Status; details: string }) =>
      cases[o.index]!.kind.includes('huge') && o.code === Status.RESOURCE_EXHAUSTED && /^Received message larger than max/.test(o.details);
    const wrong = outcomes.filter((o) => o.code !== cases[o.index]!.expect && !framed(o));
    expect(
      wrong.slice(0, 5).map((o) => ({ ...o, kind: cases[o.index]!.kind, rpc: cases[o.index]!.rpc, expected: Status[cases[o.index]!.expect] })),
    ).toEqual([]);
    // Every INVALID_ARGUMENT names the field it is about ("field: ...", "pubkeys[2]: ...").
    const unnamed = outcomes.filter((o) => o.code === Status.INVALID_ARGUMENT && !/^[a-z_]+(\[\d+\])?(\.[a-z_]+)?: \S/.test(o.details));
    expect(unnamed.slice(0, 5)).toEqual([]);
    // The generator covered every kind of case many times.
    const kinds = new Map<string, number>();
    for (const c of cases) kinds.set(`${c.rpc}:${c.kind}`, (kinds.get(`${c.rpc}:${c.kind}`) ?? 0) + 1);
    expect(kinds.size).toBeGreaterThanOrEqual(55);
    expect(Math.min(...kinds.values())).toBeGreaterThanOrEqual(30);

    // Still up, healthy, and nothing was an internal error.
    expect(await signer.health()).toBe('SERVING');
    const logs = daemon.logEntries();
    expect(logs.filter((e) => e.msg === 'unexpected error in handler' || (e.level as number) >= 60 || 'alarm' in e)).toEqual([]);
    expect((await signer.listKeys()).map((k) => k.keyId).sort()).toEqual(['d', 'r']);

    // No bad call touched a live session: each still signs exactly once, and verifies.
    for (const l of live) {
      const pubnonces = [l.pubnonce, l.det.pubnonce];
      const aggnonce = nonceAgg(pubnonces);
      const r = await signer.sign({ sessionId: l.sessionId, aggnonce, pubkeys: [pkR, pkD], message: l.message });
      const sig = partialSigAgg([r.partialSig, l.det.partialSig], { aggnonce, pubkeys: [pkR, pkD], tweaks: [], msg: l.message });
      expect(schnorr.verify(sig, l.message, getXonlyPk(keyAggAndTweak([pkR, pkD], [])))).toBe(true);
    }
    expect(await daemon.metric('musig2_signer_open_sessions')).toBe(openBefore);
  });

  it('a frame beyond the transport limit is refused with RESOURCE_EXHAUSTED and the daemon carries on', async () => {
    // The limit is the largest request the caps allow (server/index.ts, maxReceiveBytes).
    const limit = maxReceiveBytes({ ...DEFAULT_LIMITS, maxMessageBytes: MAX_MESSAGE_BYTES, maxSigners: MAX_SIGNERS }, DEFAULT_PSBT_LIMITS);
    const err = await aggregator
      .keySort(Array.from({ length: Math.ceil(limit / 35) + 1000 }, () => new Uint8Array(33)))
      .then(() => undefined, (e: unknown) => e as ClientError);
    expect(err?.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(await signer.health()).toBe('SERVING');
  });
});
