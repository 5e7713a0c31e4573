// The compute pool: worker threads give the same bytes and the same typed errors as musig2 on
// this thread; secrets move as transferred buffers that end up detached here and zeroed there;
// a worker that dies fails its calls cleanly and is replaced; and SignerService signs through it.

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { schnorr } from '@noble/curves/secp256k1.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Keystore } from '../../src/keystore/index.js';
import { openLedger } from '../../src/ledger/index.js';
import * as musig2 from '../../src/musig2/index.js';
import { ComputePool, SignerError, SignerService, toSignerError } from '../../src/signer/index.js';
import type { ComputeOp, ComputePublicOp } from '../../src/signer/index.js';
import { LocalSigner, openTestKeystore, rand, rejection, signerError } from './helpers.js';

interface Sent {
  op: ComputeOp;
  secret: ArrayBuffer;
  threadId: number;
}
interface Wiped {
  op: ComputeOp;
  secret: Uint8Array;
}

const sent: Sent[] = [];
const wiped: Wiped[] = [];
let pool: ComputePool;
/** The most calls a worker already had in flight when another was posted to it. */
let busiestAtSend = 0;

beforeAll(async () => {
  pool = await ComputePool.start(2, {
    testHooks: {
      sent: (op, secret, threadId) => {
        sent.push({ op, secret, threadId });
        const i = pool.workers().findIndex((w) => w.threadId === threadId);
        busiestAtSend = Math.max(busiestAtSend, pool.load()[i]!);
      },
      wiped: (op, secret) => wiped.push({ op, secret }),
    },
  });
});

afterAll(async () => {
  await pool.close();
});

/** A 3-signer set with `me` in the middle, a tweak of each kind, and the others' nonces. */
function fixture() {
  const me = new LocalSigner();
  const a = new LocalSigner();
  const b = new LocalSigner();
  const pubkeys = [a.pk, me.pk, b.pk];
  const tweaks: musig2.Tweak[] = [
    { tweak: rand(32).fill(0, 0, 1), xonly: false },
    { tweak: rand(32).fill(0, 0, 1), xonly: true },
  ];
  const na = a.nonceGen();
  const nb = b.nonceGen();
  const aggothernonce = musig2.nonceAgg([na.pubnonce, nb.pubnonce]);
  return { me, a, b, pubkeys, tweaks, na, nb, aggothernonce, msg: rand(32) };
}

const allZero = (b: Uint8Array) => b.every((x) => x === 0);

/** Yields to the event loop until `cond` holds (no clock involved). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

describe('results match musig2 on this thread', () => {
  it('DeterministicSign: the same pubnonce and psig, with rand absent, zero and random', async () => {
    const f = fixture();
    for (const r of [undefined, new Uint8Array(32), rand(32)]) {
      const want = musig2.deterministicSign(f.me.sk, f.aggothernonce, f.pubkeys, f.tweaks, f.msg, r);
      const got = await pool.deterministicSign(f.me.sk, f.aggothernonce, f.pubkeys, f.tweaks, f.msg, r);
      expect(got.pubnonce).toEqual(want.pubnonce);
      expect(got.psig).toEqual(want.psig);
    }
  });

  it('NonceGen with an injected rand: the same secnonce and pubnonce, with and without the optional inputs', async () => {
    const f = fixture();
    const aggpk = musig2.getXonlyPk(musig2.keyAggAndTweak(f.pubkeys, f.tweaks));
    const inputs: musig2.NonceGenInput[] = [
      { sk: f.me.sk, pk: f.me.pk, aggpk, msg: f.msg, extraIn: rand(40), rand: rand(32) },
      { sk: f.me.sk, pk: f.me.pk, msg: new Uint8Array(0), rand: rand(32) },
      { pk: f.me.pk, rand: rand(32) },
    ];
    for (const input of inputs) {
      const want = musig2.nonceGen(input);
      const got = await pool.nonceGen(input);
      expect(got.secnonce).toEqual(want.secnonce);
      expect(got.pubnonce).toEqual(want.pubnonce);
      // The secnonce is the transferred buffer itself, not a view into something larger.
      expect(got.secnonce.buffer.byteLength).toBe(97);
    }
  });

  it('Sign: the same psig, and the caller’s secnonce is zeroed as musig2.sign zeroes it', async () => {
    const f = fixture();
    const mine = f.me.nonceGen();
    const aggnonce = musig2.nonceAgg([f.na.pubnonce, mine.pubnonce, f.nb.pubnonce]);
    const ctx = { aggnonce, pubkeys: f.pubkeys, tweaks: f.tweaks, msg: f.msg };
    const copy = mine.secnonce.slice();
    const want = musig2.sign(copy, f.me.sk, ctx);
    const got = await pool.sign(mine.secnonce, f.me.sk, ctx);
    expect(got).toEqual(want);
    expect(mine.secnonce).toEqual(copy); // both zeroed in [0, 64), pk kept
    expect(allZero(mine.secnonce.subarray(0, 64))).toBe(true);
    expect(musig2.partialSigVerify(got, [f.na.pubnonce, mine.pubnonce, f.nb.pubnonce], f.pubkeys, f.tweaks, f.msg, 1)).toBe(true);
  });

  it('an inline pool (size 0) gives the same bytes', async () => {
    const inline = ComputePool.inline();
    const f = fixture();
    const want = musig2.deterministicSign(f.me.sk, f.aggothernonce, f.pubkeys, f.tweaks, f.msg);
    expect((await inline.deterministicSign(f.me.sk, f.aggothernonce, f.pubkeys, f.tweaks, f.msg)).psig).toEqual(want.psig);
    await inline.close();
  });
});

describe('typed errors survive the thread hop', () => {
  it('InvalidContributionError keeps the signer index and the contribution', async () => {
    const f = fixture();
    const pubkeys = [f.a.pk, f.me.pk, Uint8Array.of(2, ...new Uint8Array(32).fill(0xff))];
    const err = await rejection(pool.deterministicSign(f.me.sk, f.aggothernonce, pubkeys, [], f.msg));
    expect(err).toBeInstanceOf(musig2.InvalidContributionError);
    expect(err).toMatchObject({ signer: 2, contrib: 'pubkey' });
    const mapped = toSignerError(err);
    expect(mapped.code).toBe('INVALID_ARGUMENT');
    expect(mapped.errorInfo).toEqual({ reason: 'INVALID_CONTRIBUTION', metadata: { signer: '2', contribution: 'pubkey' } });

    const badNonce = Uint8Array.of(2, ...new Uint8Array(32).fill(0xff), ...f.aggothernonce.subarray(33));
    const err2 = await rejection(pool.deterministicSign(f.me.sk, badNonce, f.pubkeys, [], f.msg));
    expect(err2).toBeInstanceOf(musig2.InvalidContributionError);
    expect(err2).toMatchObject({ signer: null, contrib: 'aggothernonce' });
    expect(toSignerError(err2).errorInfo?.metadata).toEqual({ signer: 'aggregator', contribution: 'aggothernonce' });
  });

  it('InvalidInputError keeps its argument and message; a used secnonce maps to INTERNAL', async () => {
    const f = fixture();
    const stranger = new LocalSigner();
    const want = rejectionSync(() => musig2.deterministicSign(f.me.sk, f.aggothernonce, [f.a.pk, stranger.pk], [], f.msg));
    const err = await rejection(pool.deterministicSign(f.me.sk, f.aggothernonce, [f.a.pk, stranger.pk], [], f.msg));
    expect(err).toBeInstanceOf(musig2.InvalidInputError);
    expect(err).toMatchObject({ argument: 'pubkeys', message: (want as Error).message });

    const used = new Uint8Array(97);
    used.set(f.me.pk, 64);
    const ctx = { aggnonce: f.aggothernonce, pubkeys: f.pubkeys, tweaks: [], msg: f.msg };
    const err2 = await rejection(pool.sign(used, f.me.sk, ctx));
    expect(err2).toBeInstanceOf(musig2.InvalidInputError);
    expect(err2).toMatchObject({ argument: 'secnonce' });
    expect(toSignerError(err2).code).toBe('INTERNAL');
  });

  it('a malformed secret input is refused with musig2’s own error, without a worker', async () => {
    const f = fixture();
    const before = sent.length;
    const err = await rejection(pool.deterministicSign(f.me.sk.subarray(0, 31), f.aggothernonce, f.pubkeys, [], f.msg));
    expect(err).toBeInstanceOf(musig2.InvalidInputError);
    expect(err).toMatchObject({ argument: 'sk' });
    expect(sent.length).toBe(before);
  });
});

/** Resolves once a worker running the 'block' test op on `flags` is blocked (flags[1] set). */
async function blockedNow(flags: Int32Array): Promise<void> {
  // Atomics.waitAsync is in Node 20 but not in the ES2022 lib this project compiles against.
  const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: unknown } }).waitAsync;
  const r = waitAsync(flags, 1, 0);
  if (r.async) await r.value;
}

function rejectionSync(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('secrets cross as transferred buffers, wiped on both sides', () => {
  it('each op: the posted secret buffer is detached here, and the worker zeroes its copy (sent back to check)', async () => {
    const f = fixture();
    sent.length = 0;
    wiped.length = 0;
    const skBefore = f.me.sk.slice();
    await pool.deterministicSign(f.me.sk, f.aggothernonce, f.pubkeys, f.tweaks, f.msg, rand(32));
    const ng = await pool.nonceGen({ sk: f.me.sk, pk: f.me.pk, rand: rand(32) });
    const aggnonce = musig2.nonceAgg([f.na.pubnonce, ng.pubnonce, f.nb.pubnonce]);
    await pool.sign(ng.secnonce, f.me.sk, { aggnonce, pubkeys: f.pubkeys, tweaks: f.tweaks, msg: f.msg });
    // A failing call wipes too.
    await rejection(pool.deterministicSign(f.me.sk, new Uint8Array(66), f.pubkeys, [], f.msg));

    expect(sent.map((s) => s.op)).toEqual(['deterministicSign', 'nonceGen', 'sign', 'deterministicSign']);
    for (const s of sent) {
      expect(s.secret.byteLength).toBe(0); // detached: moved to the worker, no copy left here
      expect(() => new Uint8Array(s.secret, 0, 1)).toThrow();
    }
    expect(wiped.map((w) => [w.op, w.secret.length])).toEqual([
      ['deterministicSign', 32 + 32],
      ['nonceGen', 32 + 32],
      ['sign', 32 + 97],
      ['deterministicSign', 32],
    ]);
    for (const w of wiped) expect(allZero(w.secret)).toBe(true);
    // The caller's sk is the caller's to wipe (withSecretKey does): the pool leaves it alone.
    expect(f.me.sk).toEqual(skBefore);
  });
});

describe('a worker that dies', () => {
  it('an uncaught exception fails the in-flight call with INTERNAL, and the pool recovers', async () => {
    const err = await rejection(pool.testOp('crash'));
    expect(err).toBeInstanceOf(SignerError);
    expect(err).toMatchObject({ code: 'INTERNAL' });
    expect((err as Error).message).toMatch(/worker stopped/);
    const f = fixture();
    const want = musig2.deterministicSign(f.me.sk, f.aggothernonce, f.pubkeys, [], f.msg);
    expect((await pool.deterministicSign(f.me.sk, f.aggothernonce, f.pubkeys, [], f.msg)).psig).toEqual(want.psig);
    await until(() => pool.workers().length === 2);
  });

  it('process.exit in the worker fails the call the same way', async () => {
    await expect(pool.testOp('exit')).rejects.toMatchObject({ code: 'INTERNAL' });
    await until(() => pool.workers().length === 2);
  });

  it('terminated mid-call (with a real call queued behind): both fail cleanly, nothing hangs, the replacement signs', async () => {
    const one = await ComputePool.start(1, { testHooks: {} });
    try {
      const flags = new Int32Array(new SharedArrayBuffer(8));
      const blocked = one.testOp('block', flags.buffer as SharedArrayBuffer);
      await blockedNow(flags); // the worker is now inside the call
      const f = fixture();
      const queued = one.deterministicSign(f.me.sk, f.aggothernonce, f.pubkeys, [], f.msg);
      await until(() => one.load()[0] === 2); // depth 2: the real call is posted to the blocked worker
      const [worker] = one.workers();
      await worker!.terminate();
      await expect(blocked).rejects.toMatchObject({ code: 'INTERNAL' });
      const err = await rejection(queued);
      expect(err).toMatchObject({ code: 'INTERNAL' });
      expect(toSignerError(err).code).toBe('INTERNAL');
      const want = musig2.deterministicSign(f.me.sk, f.aggothernonce, f.pubkeys, [], f.msg);
      expect((await one.deterministicSign(f.me.sk, f.aggothernonce, f.pubkeys, [], f.msg)).psig).toEqual(want.psig);
      expect(one.workers().length).toBe(1);
      expect(one.workers()[0]).not.toBe(worker);
    } finally {
      await one.close();
    }
  });

  it('calls in flight or queued when the pool closes fail with UNAVAILABLE', async () => {
    const one = await ComputePool.start(1, { testHooks: {} });
    const flags = new Int32Array(new SharedArrayBuffer(8));
    const blocked = [one.testOp('block', flags.buffer as SharedArrayBuffer), one.testOp('block', flags.buffer as SharedArrayBuffer)];
    await until(() => one.load()[0] === 2); // both permits taken: one running, one posted behind it
    const f = fixture();
    const waiting = one.deterministicSign(f.me.sk, f.aggothernonce, f.pubkeys, [], f.msg); // queued here, no permit
    const outcomes = Promise.allSettled([...blocked, waiting]);
    await one.close();
    for (const o of await outcomes) {
      expect(o.status).toBe('rejected');
      expect((o as PromiseRejectedResult).reason).toMatchObject({ code: 'UNAVAILABLE' });
    }
    await expect(one.deterministicSign(f.me.sk, f.aggothernonce, f.pubkeys, [], f.msg)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});

describe('a worker that cannot start', () => {
  it('start() rejects with the reason the worker gave (its start-up has seen no secret)', async () => {
    const err = await rejection(ComputePool.start(2, { testHooks: { failStart: true } }));
    expect((err as Error).message).toMatch(/a compute worker failed to start: Error: test start failure/);
  });
});

describe('concurrency', () => {
  it('64 concurrent calls spread over both workers, at most depth (2) in flight per worker, and all verify', async () => {
    const f = fixture();
    sent.length = 0;
    busiestAtSend = 0;
    const msgs = Array.from({ length: 64 }, () => rand(32));
    const othersNonces = [f.na.pubnonce, f.nb.pubnonce];
    const results = await Promise.all(
      msgs.map(async (msg, i) => {
        if (i % 2 === 0) return { msg, ...(await pool.deterministicSign(f.me.sk, f.aggothernonce, f.pubkeys, f.tweaks, msg)) };
        const ng = await pool.nonceGen({ sk: f.me.sk, pk: f.me.pk, msg });
        const aggnonce = musig2.nonceAgg([f.na.pubnonce, ng.pubnonce, f.nb.pubnonce]);
        const psig = await pool.sign(ng.secnonce, f.me.sk, { aggnonce, pubkeys: f.pubkeys, tweaks: f.tweaks, msg });
        return { msg, pubnonce: ng.pubnonce, psig };
      }),
    );
    for (const r of results) {
      const pubnonces = [othersNonces[0]!, r.pubnonce, othersNonces[1]!];
      expect(musig2.partialSigVerify(r.psig, pubnonces, f.pubkeys, f.tweaks, r.msg, 1)).toBe(true);
    }
    expect(new Set(sent.map((s) => s.threadId)).size).toBe(2);
    expect(busiestAtSend).toBe(1); // so never more than 2 in flight on one worker; the rest queued here
    expect(Math.max(...pool.load())).toBe(0);
  });
});

describe('SignerService over a worker pool (SoftHSM2 token, SQLite ledger)', () => {
  let dir: string;
  let keystore: Keystore;
  let alicePk: Uint8Array;
  let bobPk: Uint8Array;

  beforeAll(async () => {
    ({ dir, keystore } = await openTestKeystore('signer-compute-'));
    alicePk = (await keystore.createKey('alice')).publicKey;
    bobPk = (await keystore.createKey('bob')).publicKey;
  });

  afterAll(async () => {
    await keystore.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('NonceGen + Sign and DeterministicSign, many at once, give a signature that BIP340-verifies; the psig replays', async () => {
    const ledger = await openLedger(`sqlite:${join(dir, 'ledger.db')}`);
    const service = new SignerService({ keystore, ledger, compute: pool });
    try {
      const sessions = await Promise.all(
        Array.from({ length: 12 }, async () => {
          const carol = new LocalSigner();
          const pubkeys = [alicePk, carol.pk, bobPk];
          const msg = rand(32);
          const ng = await service.nonceGen({ keyId: 'alice', pubkeys, tweaks: [], message: msg });
          const c = carol.nonceGen();
          const det = await service.deterministicSign({
            keyId: 'bob',
            aggothernonce: musig2.nonceAgg([ng.pubnonce, c.pubnonce]),
            pubkeys,
            tweaks: [],
            message: msg,
          });
          const aggnonce = musig2.nonceAgg([ng.pubnonce, c.pubnonce, det.pubnonce]);
          const req = { sessionId: ng.sessionId, aggnonce, pubkeys, tweaks: [], message: msg };
          const a = await service.sign(req);
          expect((await service.sign(req)).partialSig).toEqual(a.partialSig); // replay, not a second signature
          const ctx = { aggnonce, pubkeys, tweaks: [], msg };
          const sig = musig2.partialSigAgg([a.partialSig, carol.sign(c.secnonce, ctx), det.partialSig], ctx);
          return schnorr.verify(sig, msg, musig2.getXonlyPk(musig2.keyAggAndTweak(pubkeys, [])));
        }),
      );
      expect(sessions).toEqual(Array(12).fill(true));
      expect(service.openSessions()).toBe(0);
    } finally {
      await service.close();
      await ledger.close();
    }
  });

  it('aggregates a key list on a worker once: a known list skips that round trip, a bad one never reaches the key', async () => {
    const posted: ComputePublicOp[] = [];
    const sentOps: ComputeOp[] = [];
    const one = await ComputePool.start(1, { testHooks: { posted: (op) => posted.push(op), sent: (op) => sentOps.push(op) } });
    const ledger = await openLedger(`sqlite:${join(dir, 'ledger-keysets.db')}`);
    const service = new SignerService({ keystore, ledger, compute: one });
    const keyAggs = () => posted.filter((op) => op === 'keyAgg').length;
    try {
      const carol = new LocalSigner();
      const pubkeys = [alicePk, carol.pk, bobPk];
      const det = (keys: Uint8Array[], tweaks: musig2.Tweak[] = []) =>
        service.deterministicSign({
          keyId: 'bob',
          aggothernonce: musig2.nonceAgg([carol.nonceGen().pubnonce, carol.nonceGen().pubnonce]),
          pubkeys: keys,
          tweaks,
          message: rand(32),
        });
      await det(pubkeys);
      await det(pubkeys);
      await service.nonceGen({ keyId: 'alice', pubkeys, tweaks: [] });
      expect(keyAggs()).toBe(1);
      expect(sentOps).toEqual(['deterministicSign', 'deterministicSign', 'nonceGen']);
      // Another tweak makes another list.
      await det(pubkeys, [{ tweak: rand(32).fill(0, 0, 1), xonly: true }]);
      expect(keyAggs()).toBe(2);
      // A key that is not a point: refused, and the signing key is never sent to a worker.
      sentOps.length = 0;
      const notAPoint = Uint8Array.from([0x02, ...Array<number>(32).fill(0xff)]);
      await signerError(det([alicePk, notAPoint, bobPk]), 'INVALID_ARGUMENT');
      await signerError(det([alicePk, notAPoint, bobPk]), 'INVALID_ARGUMENT');
      expect(sentOps).toEqual([]);
    } finally {
      await service.close();
      await ledger.close();
      await one.close();
    }
  });

  it('a worker dying during Sign: INTERNAL, the session cannot sign again, and new sessions work', async () => {
    const one = await ComputePool.start(1, { testHooks: {} });
    const ledger = await openLedger(`sqlite:${join(dir, 'ledger-crash.db')}`);
    const service = new SignerService({ keystore, ledger, compute: one });
    try {
      const carol = new LocalSigner();
      const pubkeys = [alicePk, carol.pk];
      const msg = rand(32);
      const ng = await service.nonceGen({ keyId: 'alice', pubkeys, tweaks: [] });
      const aggnonce = musig2.nonceAgg([ng.pubnonce, carol.nonceGen().pubnonce]);
      const flags = new Int32Array(new SharedArrayBuffer(8));
      const blocked = one.testOp('block', flags.buffer as SharedArrayBuffer);
      await blockedNow(flags);
      const req = { sessionId: ng.sessionId, aggnonce, pubkeys, tweaks: [], message: msg };
      const signing = service.sign(req);
      await until(() => one.load()[0] === 2); // the Sign is posted to the blocked worker
      await one.workers()[0]!.terminate();
      await expect(blocked).rejects.toMatchObject({ code: 'INTERNAL' });
      await signerError(signing, 'INTERNAL');
      // The nonce was marked used before the worker got it: never signed again.
      await signerError(service.sign(req), 'FAILED_PRECONDITION');
      const ng2 = await service.nonceGen({ keyId: 'alice', pubkeys, tweaks: [] });
      const aggnonce2 = musig2.nonceAgg([ng2.pubnonce, carol.nonceGen().pubnonce]);
      const ok = await service.sign({ sessionId: ng2.sessionId, aggnonce: aggnonce2, pubkeys, tweaks: [], message: msg });
      expect(ok.partialSig).toHaveLength(32);
    } finally {
      await service.close();
      await ledger.close();
      await one.close();
    }
  });
});
