// The signing service end to end over a real SoftHSM2 token and a real SQLite ledger.

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { schnorr } from '@noble/curves/secp256k1.js';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Keystore } from '../../src/keystore/index.js';
import * as musig2 from '../../src/musig2/index.js';
import { openLedger, type NonceLedger } from '../../src/ledger/index.js';
import { SignerError, SignerService, type SignerServiceOptions } from '../../src/signer/index.js';
import { holdWriteLock, withFileWritesFailing } from '../ledger/faults.js';
import { LocalSigner, capturingLogger, hex, openTestKeystore, rand, signerError } from './helpers.js';

let dir: string;
let keystore: Keystore;
let alicePk: Uint8Array;
let bobPk: Uint8Array;
let ledgerSeq = 0;

const open: { service: SignerService; ledger: NonceLedger }[] = [];

beforeAll(async () => {
  ({ dir, keystore } = await openTestKeystore('signer-service-'));
  alicePk = (await keystore.createKey('alice')).publicKey;
  bobPk = (await keystore.createKey('bob')).publicKey;
});

afterEach(async () => {
  for (const { service, ledger } of open.splice(0)) {
    await service.close();
    await ledger.close();
  }
});

afterAll(async () => {
  await keystore.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Harness {
  service: SignerService;
  ledger: NonceLedger;
  dbPath: string;
  alarms: { kind: string; details: Record<string, string> }[];
}

async function harness(opts: Partial<SignerServiceOptions> = {}, dbPath?: string): Promise<Harness> {
  const path = dbPath ?? join(dir, 'ledgers', `ledger-${++ledgerSeq}.db`);
  const ledger = await openLedger(`sqlite:${path}?busy_timeout_ms=100`);
  const alarms: Harness['alarms'] = [];
  const service = new SignerService({
    keystore,
    ledger,
    onAlarm: (kind, details) => alarms.push({ kind, details }),
    ...opts,
  });
  open.push({ service, ledger });
  return { service, ledger, dbPath: path, alarms };
}

/** A session with alice (this daemon, random path) and a local co-signer: the Sign inputs. */
async function roundOne(service: SignerService, opts: { tweaks?: musig2.Tweak[]; message?: Uint8Array } = {}) {
  const carol = new LocalSigner();
  const pubkeys = [alicePk, carol.pk];
  const tweaks = opts.tweaks ?? [];
  const ng = await service.nonceGen({ keyId: 'alice', pubkeys, tweaks, message: opts.message });
  const c = carol.nonceGen();
  const aggnonce = musig2.nonceAgg([ng.pubnonce, c.pubnonce]);
  return { carol, carolNonce: c, pubkeys, tweaks, ng, aggnonce };
}

const plainTweak = (): musig2.Tweak => ({ tweak: rand(32).fill(0, 0, 1), xonly: false });
const xonlyTweak = (): musig2.Tweak => ({ tweak: rand(32).fill(0, 0, 1), xonly: true });

describe('full sessions', () => {
  it('lists the keys on the token', async () => {
    const { service } = await harness();
    const keys = await service.listKeys();
    expect(keys.map((k) => k.keyId)).toEqual(['alice', 'bob']);
    expect(keys[0]!.publicKey).toEqual(alicePk);
  });

  it('signs a 3-party session (random + local + deterministic last) that BIP340-verifies', async () => {
    const { service, ledger } = await harness();
    const carol = new LocalSigner();
    const pubkeys = [alicePk, carol.pk, bobPk];
    const tweaks = [plainTweak(), xonlyTweak()];
    const msg = rand(32);

    const ng = await service.nonceGen({ keyId: 'alice', pubkeys, tweaks, message: msg, extraIn: rand(16) });
    expect(ng.sessionId).toHaveLength(32);
    expect(ng.pubnonce).toHaveLength(66);
    expect(service.openSessions()).toBe(1);
    // Recorded before it was released.
    expect((await ledger.findByPubnonce(ng.pubnonce))?.sessionId).toEqual(ng.sessionId);

    const c = carol.nonceGen();
    const aggothernonce = musig2.nonceAgg([ng.pubnonce, c.pubnonce]);
    const det = await service.deterministicSign({ keyId: 'bob', aggothernonce, pubkeys, tweaks, message: msg });
    const aggnonce = musig2.nonceAgg([ng.pubnonce, c.pubnonce, det.pubnonce]);

    const a = await service.sign({ sessionId: ng.sessionId, aggnonce, pubkeys, tweaks, message: msg });
    expect(a.pubnonce).toEqual(ng.pubnonce);
    expect(service.openSessions()).toBe(0);
    const ctx = { aggnonce, pubkeys, tweaks, msg };
    const psigC = carol.sign(c.secnonce, ctx);

    const pubnonces = [ng.pubnonce, c.pubnonce, det.pubnonce];
    expect(musig2.partialSigVerify(a.partialSig, pubnonces, pubkeys, tweaks, msg, 0)).toBe(true);
    expect(musig2.partialSigVerify(det.partialSig, pubnonces, pubkeys, tweaks, msg, 2)).toBe(true);
    const sig = musig2.partialSigAgg([a.partialSig, psigC, det.partialSig], ctx);
    const aggpk = musig2.getXonlyPk(musig2.keyAggAndTweak(pubkeys, tweaks));
    expect(schnorr.verify(sig, msg, aggpk)).toBe(true);

    const rowA = await ledger.findByPubnonce(ng.pubnonce);
    expect(rowA).toMatchObject({ keyId: 'alice', path: 'random' });
    expect(rowA?.psig).toEqual(a.partialSig);
    const rowB = await ledger.findByPubnonce(det.pubnonce);
    expect(rowB).toMatchObject({ keyId: 'bob', path: 'deterministic', sessionId: null });
    expect(rowB?.psig).toEqual(det.partialSig);
  });

  it('signs messages of length 0 and 100 with no tweaks', async () => {
    const { service } = await harness();
    for (const msg of [new Uint8Array(0), rand(100)]) {
      const r = await roundOne(service);
      const a = await service.sign({ sessionId: r.ng.sessionId, aggnonce: r.aggnonce, pubkeys: r.pubkeys, tweaks: [], message: msg });
      const ctx = { aggnonce: r.aggnonce, pubkeys: r.pubkeys, tweaks: [], msg };
      const sig = musig2.partialSigAgg([a.partialSig, r.carol.sign(r.carolNonce.secnonce, ctx)], ctx);
      expect(schnorr.verify(sig, msg, musig2.getXonlyPk(musig2.keyAgg(r.pubkeys)))).toBe(true);
    }
  });

  it('gives every NonceGen a fresh session id and pubnonce, even with identical inputs', async () => {
    const { service } = await harness();
    const pubkeys = [alicePk, bobPk];
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const ng = await service.nonceGen({ keyId: 'alice', pubkeys, tweaks: [], message: new Uint8Array(32) });
      seen.add(hex(ng.pubnonce));
      seen.add(hex(ng.sessionId));
    }
    expect(seen.size).toBe(40);
  });
});

describe('Sign: one context per nonce', () => {
  it('returns the identical psig to an identical retry, from memory and from the ledger after a restart', async () => {
    const h = await harness();
    const r = await roundOne(h.service);
    const req = { sessionId: r.ng.sessionId, aggnonce: r.aggnonce, pubkeys: r.pubkeys, tweaks: [], message: rand(32) };
    const first = await h.service.sign(req);
    const again = await h.service.sign({ ...req, pubkeys: req.pubkeys.map((p) => p.slice()) });
    expect(again.partialSig).toEqual(first.partialSig);

    // A "restarted daemon": a new service on the same ledger has no sessions in memory.
    await h.service.close();
    const restarted = new SignerService({ keystore, ledger: h.ledger });
    try {
      expect((await restarted.sign(req)).partialSig).toEqual(first.partialSig);
      // ...and refuses another context for it, from the ledger alone.
      const e = await signerError(restarted.sign({ ...req, message: rand(32) }), 'FAILED_PRECONDITION');
      expect(e.message).toMatch(/different signing context/);
      expect(restarted.counters.nonceReuseAttempts).toBe(1);
    } finally {
      await restarted.close();
    }
  });

  it('50 concurrent Sign calls with different messages: exactly one signs, the rest are refused and alarmed', async () => {
    const h = await harness();
    const r = await roundOne(h.service);
    const messages = Array.from({ length: 50 }, () => rand(32));
    const results = await Promise.allSettled(
      messages.map((message) =>
        h.service.sign({ sessionId: r.ng.sessionId, aggnonce: r.aggnonce, pubkeys: r.pubkeys, tweaks: [], message }),
      ),
    );
    const won = results.flatMap((res, i) => (res.status === 'fulfilled' ? [{ i, psig: res.value.partialSig }] : []));
    expect(won).toHaveLength(1);
    for (const res of results) {
      if (res.status === 'rejected') {
        expect(res.reason).toBeInstanceOf(SignerError);
        expect((res.reason as SignerError).code).toBe('FAILED_PRECONDITION');
      }
    }
    expect(h.service.counters.nonceReuseAttempts).toBe(49);
    expect(h.alarms.filter((a) => a.kind === 'nonce_reuse_attempt')).toHaveLength(49);
    expect(h.alarms[0]!.details.sessionId).toBe(hex(r.ng.sessionId));

    // The one signature is for its own message, and the ledger holds exactly that context.
    const { i, psig } = won[0]!;
    const pubnonces = [r.ng.pubnonce, r.carolNonce.pubnonce];
    expect(musig2.partialSigVerify(psig, pubnonces, r.pubkeys, [], messages[i]!, 0)).toBe(true);
    expect((await h.ledger.findByPubnonce(r.ng.pubnonce))?.psig).toEqual(psig);
  });

  it('answers concurrent identical requests with the one psig or "retry", never a second signature', async () => {
    const h = await harness();
    const r = await roundOne(h.service);
    const req = { sessionId: r.ng.sessionId, aggnonce: r.aggnonce, pubkeys: r.pubkeys, tweaks: [], message: rand(32) };
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => h.service.sign(req)));
    const psigs = new Set(results.flatMap((res) => (res.status === 'fulfilled' ? [hex(res.value.partialSig)] : [])));
    expect(psigs.size).toBe(1);
    for (const res of results) {
      if (res.status === 'rejected') expect((res.reason as SignerError).code).toBe('UNAVAILABLE');
    }
    expect(h.service.counters.nonceReuseAttempts).toBe(0);
    expect(hex((await h.service.sign(req)).partialSig)).toBe([...psigs][0]);
  });

  it('refuses the used session with a different aggnonce, pubkeys or tweaks, counting each', async () => {
    const h = await harness();
    const r = await roundOne(h.service);
    const req = { sessionId: r.ng.sessionId, aggnonce: r.aggnonce, pubkeys: r.pubkeys, tweaks: [], message: rand(32) };
    await h.service.sign(req);
    const other = musig2.nonceAgg([r.ng.pubnonce, new LocalSigner().nonceGen().pubnonce]);
    const variants = [
      { ...req, aggnonce: other },
      { ...req, pubkeys: [r.pubkeys[0]!, bobPk] },
      { ...req, tweaks: [plainTweak()] },
      { ...req, message: rand(32) },
    ];
    for (const v of variants) {
      const e = await signerError(h.service.sign(v), 'FAILED_PRECONDITION');
      expect(e.message).toMatch(/different signing context/);
    }
    expect(h.service.counters.nonceReuseAttempts).toBe(4);
  });

  it('refuses pubkeys, tweaks or message other than NonceGen bound, without consuming the session', async () => {
    const h = await harness();
    const msg = rand(32);
    const tweaks = [xonlyTweak()];
    const r = await roundOne(h.service, { tweaks, message: msg });
    const req = { sessionId: r.ng.sessionId, aggnonce: r.aggnonce, pubkeys: r.pubkeys, tweaks, message: msg };
    for (const v of [
      { ...req, pubkeys: [r.pubkeys[1]!, r.pubkeys[0]!] },
      { ...req, tweaks: [] },
      { ...req, message: rand(32) },
    ]) {
      const e = await signerError(h.service.sign(v), 'FAILED_PRECONDITION');
      expect(e.message).toMatch(/session bound to different pubkeys\/tweaks/);
    }
    expect(h.service.counters.bindingMismatches).toBe(3);
    expect(h.service.openSessions()).toBe(1);
    const ok = await h.service.sign(req);
    expect(musig2.partialSigVerify(ok.partialSig, [r.ng.pubnonce, r.carolNonce.pubnonce], r.pubkeys, tweaks, msg, 0)).toBe(true);
  });

  it('answers NOT_FOUND for an unknown session', async () => {
    const { service } = await harness();
    const e = await signerError(
      service.sign({ sessionId: rand(32), aggnonce: new Uint8Array(66), pubkeys: [alicePk], tweaks: [], message: rand(32) }),
      'NOT_FOUND',
    );
    expect(e.field).toBe('session_id');
  });
});

describe('session lifetime', () => {
  it('refuses Sign after the TTL, and the sweeper wipes expired sessions', async () => {
    let clock = 1_000_000;
    const h = await harness({ now: () => clock, sessionTtlMs: 60_000, sweepIntervalMs: 5 });
    const r1 = await roundOne(h.service);
    const r2 = await roundOne(h.service);
    expect(r1.ng.expiresAtUnixMs).toBe(1_060_000);
    expect(h.service.openSessions()).toBe(2);

    clock += 60_000;
    // Sign-time check (whether or not the sweeper got there first): expired, never a signature.
    const e = await signerError(
      h.service.sign({ sessionId: r1.ng.sessionId, aggnonce: r1.aggnonce, pubkeys: r1.pubkeys, tweaks: [], message: rand(32) }),
      'FAILED_PRECONDITION',
    );
    expect(e.message).toMatch(/expired/);
    await vi.waitFor(() => expect(h.service.openSessions()).toBe(0));
    expect(h.service.counters.sessionsExpired).toBe(2);
    await signerError(
      h.service.sign({ sessionId: r2.ng.sessionId, aggnonce: r2.aggnonce, pubkeys: r2.pubkeys, tweaks: [], message: rand(32) }),
      'FAILED_PRECONDITION',
    );
    // Nothing was marked used.
    expect((await h.ledger.findByPubnonce(r1.ng.pubnonce))?.usedAtMs).toBeNull();
  });

  it('caps open sessions with RESOURCE_EXHAUSTED, also under concurrency', async () => {
    const h = await harness({ maxSessions: 3 });
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, () => h.service.nonceGen({ keyId: 'alice', pubkeys: [alicePk], tweaks: [] })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as SignerError).code).toBe('RESOURCE_EXHAUSTED');
    }
    expect(h.service.openSessions()).toBe(3);

    // Signing one frees a slot.
    const ng = (results.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<{ sessionId: Uint8Array; pubnonce: Uint8Array }>).value;
    const other = new LocalSigner().nonceGen();
    await h.service.sign({
      sessionId: ng.sessionId,
      aggnonce: musig2.nonceAgg([ng.pubnonce, other.pubnonce]),
      pubkeys: [alicePk],
      tweaks: [],
      message: rand(32),
    });
    await expect(h.service.nonceGen({ keyId: 'alice', pubkeys: [alicePk], tweaks: [] })).resolves.toBeDefined();
    await signerError(h.service.nonceGen({ keyId: 'alice', pubkeys: [alicePk], tweaks: [] }), 'RESOURCE_EXHAUSTED');
  });

  it('close() wipes every session; later calls are refused', async () => {
    const h = await harness();
    const r = await roundOne(h.service);
    await h.service.close();
    expect(h.service.openSessions()).toBe(0);
    await signerError(
      h.service.sign({ sessionId: r.ng.sessionId, aggnonce: r.aggnonce, pubkeys: r.pubkeys, tweaks: [], message: rand(32) }),
      'UNAVAILABLE',
    );
    await signerError(h.service.nonceGen({ keyId: 'alice', pubkeys: [alicePk], tweaks: [] }), 'UNAVAILABLE');
  });
});

describe('DeterministicSign', () => {
  it('is idempotent, treats an all-zero rand as present, and records before replying', async () => {
    const h = await harness();
    const carol = new LocalSigner();
    const pubkeys = [carol.pk, bobPk];
    const aggothernonce = carol.nonceGen().pubnonce;
    const req = { keyId: 'bob', aggothernonce, pubkeys, tweaks: [], message: rand(32) };
    const a = await h.service.deterministicSign(req);
    const b = await h.service.deterministicSign(req);
    expect(b).toEqual(a);
    const zero = await h.service.deterministicSign({ ...req, rand: new Uint8Array(32) });
    expect(zero.pubnonce).not.toEqual(a.pubnonce);
    expect(await h.service.deterministicSign({ ...req, rand: new Uint8Array(32) })).toEqual(zero);
    expect((await h.ledger.findByPubnonce(zero.pubnonce))?.psig).toEqual(zero.partialSig);
  });

  it('answers a pubnonce that comes back with the same psig from a request written otherwise (no alarm)', async () => {
    // Two plain tweaks t1, t2 and the single tweak t1 + t2 give the same aggregate key, so
    // DeterministicSign derives the same nonce and the same psig: a replay, nothing leaks.
    const h = await harness();
    const carol = new LocalSigner();
    const pubkeys = [carol.pk, bobPk];
    const t1 = 5n;
    const t2 = 7n;
    const tw = (v: bigint) => ({ tweak: Uint8Array.from(Buffer.from(v.toString(16).padStart(64, '0'), 'hex')), xonly: false });
    const base = { keyId: 'bob', aggothernonce: carol.nonceGen().pubnonce, pubkeys, message: rand(32) };
    const first = await h.service.deterministicSign({ ...base, tweaks: [tw(t1), tw(t2)] });
    const second = await h.service.deterministicSign({ ...base, tweaks: [tw(t1 + t2)] });
    expect(hex(second.partialSig)).toBe(hex(first.partialSig));
    expect(h.service.counters.nonceReuseAttempts).toBe(0);
    expect(h.alarms).toEqual([]);
  });
});

describe('errors', () => {
  it('maps unknown keys to NOT_FOUND and a missing own key to INVALID_ARGUMENT', async () => {
    const { service } = await harness();
    const other = new LocalSigner();
    let e = await signerError(service.nonceGen({ keyId: 'nobody', pubkeys: [alicePk], tweaks: [] }), 'NOT_FOUND');
    expect(e.field).toBe('key_id');
    await signerError(
      service.deterministicSign({ keyId: 'nobody', aggothernonce: other.nonceGen().pubnonce, pubkeys: [alicePk], tweaks: [], message: rand(1) }),
      'NOT_FOUND',
    );
    e = await signerError(service.nonceGen({ keyId: 'alice', pubkeys: [other.pk, bobPk], tweaks: [] }), 'INVALID_ARGUMENT');
    expect(e.field).toBe('pubkeys');
    expect(e.message).toMatch(/not in the list/);
    expect(service.openSessions()).toBe(0);
  });

  it('reports invalid contributions with ErrorInfo naming the culprit', async () => {
    const h = await harness();
    const badPk = new Uint8Array(33).fill(0xff);
    badPk[0] = 2;
    let e = await signerError(h.service.nonceGen({ keyId: 'alice', pubkeys: [alicePk, badPk], tweaks: [] }), 'INVALID_ARGUMENT');
    expect(e.errorInfo).toEqual({ reason: 'INVALID_CONTRIBUTION', metadata: { signer: '1', contribution: 'pubkey' } });
    expect(e.field).toBe('pubkeys[1]');

    const carol = new LocalSigner();
    const badNonce = carol.nonceGen().pubnonce;
    badNonce[0] = 9;
    e = await signerError(
      h.service.deterministicSign({ keyId: 'bob', aggothernonce: badNonce, pubkeys: [carol.pk, bobPk], tweaks: [], message: rand(32) }),
      'INVALID_ARGUMENT',
    );
    expect(e.errorInfo).toEqual({ reason: 'INVALID_CONTRIBUTION', metadata: { signer: 'aggregator', contribution: 'aggothernonce' } });

    // A bad aggnonce is refused before the session's nonce is consumed.
    const r = await roundOne(h.service);
    const badAgg = r.aggnonce.slice();
    badAgg[33] = 7;
    const req = { sessionId: r.ng.sessionId, aggnonce: badAgg, pubkeys: r.pubkeys, tweaks: [], message: rand(32) };
    e = await signerError(h.service.sign(req), 'INVALID_ARGUMENT');
    expect(e.errorInfo).toEqual({ reason: 'INVALID_CONTRIBUTION', metadata: { signer: 'aggregator', contribution: 'aggnonce' } });
    expect(e.field).toBe('aggnonce');
    await expect(h.service.sign({ ...req, aggnonce: r.aggnonce })).resolves.toHaveProperty('partialSig');
  });

  it('refuses a tweak out of range, naming it', async () => {
    const { service } = await harness();
    const e = await signerError(
      service.nonceGen({ keyId: 'alice', pubkeys: [alicePk], tweaks: [{ tweak: new Uint8Array(32).fill(0xff), xonly: true }] }),
      'INVALID_ARGUMENT',
    );
    expect(e.field).toBe('tweaks[0]');
    expect(e.message).toMatch(/less than n/);
  });

  it('answers every malformed request with INVALID_ARGUMENT naming the field and the expectation', async () => {
    const { service } = await harness({ maxMessageBytes: 64 });
    const good = { keyId: 'alice', pubkeys: [alicePk], tweaks: [] as musig2.Tweak[] };
    const signGood = { sessionId: rand(32), aggnonce: rand(66), pubkeys: [alicePk], tweaks: [], message: rand(32) };
    const detGood = { keyId: 'bob', aggothernonce: rand(66), pubkeys: [bobPk], tweaks: [], message: rand(32) };
    const cases: [() => Promise<unknown>, string, RegExp][] = [
      [() => service.nonceGen({ ...good, keyId: '' }), 'key_id', /non-empty/],
      [() => service.nonceGen({ ...good, keyId: 'x'.repeat(300) }), 'key_id', /at most 64/],
      [() => service.nonceGen({ ...good, keyId: 'a\nb' }), 'key_id', /not a valid key label/],
      [() => service.nonceGen({ ...good, pubkeys: [] }), 'pubkeys', /1 to 1000 entries/],
      [() => service.nonceGen({ ...good, pubkeys: [alicePk.subarray(1)] }), 'pubkeys[0]', /33 bytes, got 32/],
      [() => service.nonceGen({ ...good, tweaks: [{ tweak: rand(31), xonly: true }] }), 'tweaks[0].tweak', /32 bytes, got 31/],
      [() => service.nonceGen({ ...good, tweaks: [{ tweak: rand(32), xonly: 1 as unknown as boolean }] }), 'tweaks[0].xonly', /boolean/],
      [() => service.nonceGen({ ...good, message: rand(65) }), 'message', /at most 64 bytes, got 65/],
      [() => service.nonceGen({ ...good, extraIn: rand(2000) }), 'extra_in', /at most 1024 bytes/],
      [() => service.nonceGen(null as unknown as typeof good), 'request', /object/],
      [() => service.sign({ ...signGood, sessionId: rand(31) }), 'session_id', /32 bytes, got 31/],
      [() => service.sign({ ...signGood, aggnonce: rand(65) }), 'aggnonce', /66 bytes, got 65/],
      [() => service.sign({ ...signGood, message: 'hi' as unknown as Uint8Array }), 'message', /bytes/],
      [() => service.deterministicSign({ ...detGood, aggothernonce: rand(33) }), 'aggothernonce', /66 bytes/],
      [() => service.deterministicSign({ ...detGood, rand: rand(31) }), 'rand', /32 bytes, got 31/],
    ];
    for (const [call, field, msg] of cases) {
      const e = await signerError(call(), 'INVALID_ARGUMENT');
      expect(e.field, e.message).toBe(field);
      expect(e.message).toMatch(msg);
    }
  });

  it('survives a barrage of random garbage requests with clean errors and no half-used session', async () => {
    const h = await harness();
    const r = await roundOne(h.service);
    const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
    const junk = (): unknown =>
      pick([undefined, null, 0, -1, 'x', {}, [], rand(0), rand(32), rand(33), rand(66), [rand(33)], [alicePk], [{ tweak: rand(32), xonly: 'no' }], r.ng.sessionId]);
    const codes = new Set<string>();
    for (let i = 0; i < 600; i++) {
      const req = { keyId: pick(['alice', 'bob', '', 'zz', junk()]), sessionId: junk(), aggnonce: junk(), aggothernonce: junk(), pubkeys: junk(), tweaks: junk(), message: junk(), rand: junk(), extraIn: junk() };
      const call = pick([
        () => h.service.nonceGen(req as never),
        () => h.service.sign(req as never),
        () => h.service.deterministicSign(req as never),
      ]);
      try {
        await call();
      } catch (e) {
        expect(e).toBeInstanceOf(SignerError);
        codes.add((e as SignerError).code);
      }
    }
    expect([...codes].every((c) => ['INVALID_ARGUMENT', 'NOT_FOUND', 'FAILED_PRECONDITION', 'RESOURCE_EXHAUSTED'].includes(c))).toBe(true);
    // The real session is still whole: it signs.
    const ok = await h.service.sign({ sessionId: r.ng.sessionId, aggnonce: r.aggnonce, pubkeys: r.pubkeys, tweaks: [], message: rand(32) });
    expect(ok.partialSig).toHaveLength(32);
  });

  it('never logs or returns secret key bytes', async () => {
    const { logger, lines } = capturingLogger();
    const carol = new LocalSigner();
    const sk = rand(32);
    const info = await keystore.importKey('dave', sk);
    const h = await harness({ logger });
    const pubkeys = [info.publicKey, carol.pk];
    const messages: string[] = [];
    const r = await h.service.nonceGen({ keyId: 'dave', pubkeys, tweaks: [] });
    const aggnonce = musig2.nonceAgg([r.pubnonce, carol.nonceGen().pubnonce]);
    await h.service.sign({ sessionId: r.sessionId, aggnonce, pubkeys, tweaks: [], message: rand(32) });
    for (const bad of [rand(32), rand(32)]) {
      await h.service.sign({ sessionId: r.sessionId, aggnonce, pubkeys, tweaks: [], message: bad }).catch((e: Error) => messages.push(e.message));
    }
    await h.service.deterministicSign({ keyId: 'dave', aggothernonce: rand(66), pubkeys, tweaks: [], message: rand(3) }).catch((e: Error) => messages.push(e.message));
    expect(lines.some((l) => l.includes('nonce_reuse_attempt'))).toBe(true);
    expect(messages).toHaveLength(3);
    const skHex = hex(sk);
    for (const text of [...lines, ...messages]) expect(text.toLowerCase()).not.toContain(skHex);
  });
});

describe('ledger faults: fail closed', () => {
  it('gives UNAVAILABLE and no signature while another process holds the ledger lock', async () => {
    const h = await harness();
    const r = await roundOne(h.service);
    const req = { sessionId: r.ng.sessionId, aggnonce: r.aggnonce, pubkeys: r.pubkeys, tweaks: [], message: rand(32) };
    const holder = await holdWriteLock(h.dbPath);
    try {
      await signerError(h.service.sign(req), 'UNAVAILABLE');
      await signerError(h.service.nonceGen({ keyId: 'alice', pubkeys: r.pubkeys, tweaks: [] }), 'UNAVAILABLE');
      await signerError(
        h.service.deterministicSign({ keyId: 'bob', aggothernonce: r.aggnonce, pubkeys: [alicePk, bobPk], tweaks: [], message: rand(32) }),
        'UNAVAILABLE',
      );
      expect(await h.service.health()).toEqual({ keystore: true, ledger: false });
    } finally {
      await holder.release();
    }
    expect(h.service.counters.ledgerErrors).toBe(3);
    expect(h.service.openSessions()).toBe(0); // the NonceGen reservation was released, the Sign session consumed
    // The nonce was taken out of memory and is gone: a retry cannot sign, and nothing was ever marked.
    const e = await signerError(h.service.sign(req), 'FAILED_PRECONDITION');
    expect(e.message).toMatch(/can no longer sign/);
    expect((await h.ledger.findByPubnonce(r.ng.pubnonce))?.usedAtMs).toBeNull();
    expect(await h.service.health()).toEqual({ keystore: true, ledger: true });
  });

  it('gives UNAVAILABLE and no signature when the kernel refuses ledger writes', async () => {
    const h = await harness();
    const r = await roundOne(h.service);
    const req = { sessionId: r.ng.sessionId, aggnonce: r.aggnonce, pubkeys: r.pubkeys, tweaks: [], message: rand(32) };
    const outcome = await withFileWritesFailing(() => h.service.sign(req).catch((err: unknown) => err));
    expect(outcome).toBeInstanceOf(SignerError);
    expect((outcome as SignerError).code).toBe('UNAVAILABLE');
    expect((await h.ledger.findByPubnonce(r.ng.pubnonce))?.psig).toBeNull();
  });

  it('withholds the psig when storing it fails after the nonce is marked, and releases it once stored', async () => {
    // The real ledger, with a second process taking its lock right after markUsed commits.
    const h = await harness();
    let holder: Awaited<ReturnType<typeof holdWriteLock>> | undefined;
    const real = h.ledger;
    const faulty: NonceLedger = {
      recordNonce: (e) => real.recordNonce(e),
      markUsed: async (pubnonce, digest) => {
        const res = await real.markUsed(pubnonce, digest);
        holder = await holdWriteLock(h.dbPath);
        return res;
      },
      storePsig: (p, d, s) => real.storePsig(p, d, s),
      recordDeterministic: (e) => real.recordDeterministic(e),
      findByPubnonce: (p) => real.findByPubnonce(p),
      findBySession: (s) => real.findBySession(s),
      spentInPeriod: (k, r, p, x) => real.spentInPeriod(k, r, p, x),
      markUsedCharging: (m, c) => real.markUsedCharging(m, c),
      recordDeterministicCharging: (e, c) => real.recordDeterministicCharging(e, c),
      recordAuditHead: (h) => real.recordAuditHead(h),
      auditHead: (c) => real.auditHead(c),
      healthy: () => real.healthy(),
      close: () => real.close(),
    };
    const service = new SignerService({ keystore, ledger: faulty });
    try {
      const r = await roundOne(service);
      const req = { sessionId: r.ng.sessionId, aggnonce: r.aggnonce, pubkeys: r.pubkeys, tweaks: [], message: rand(32) };
      await signerError(service.sign(req), 'UNAVAILABLE');
      expect(holder).toBeDefined();
      const row = await real.findByPubnonce(r.ng.pubnonce);
      expect(row?.usedAtMs).not.toBeNull(); // marked used, committed
      expect(row?.psig).toBeNull();
      await signerError(service.sign(req), 'UNAVAILABLE'); // still locked: still withheld
      await holder!.release();
      const ok = await service.sign(req);
      expect((await real.findByPubnonce(r.ng.pubnonce))?.psig).toEqual(ok.partialSig);
      expect(service.counters.ledgerErrors).toBe(2);
    } finally {
      await service.close();
    }
  });
});
