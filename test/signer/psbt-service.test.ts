// PsbtSignerService over a real SoftHSM2 token and a real SQLite ledger: the ledger ordering of a
// multi-input session (every nonce marked used before any partial signature is computed), what a
// failure part-way leaves (never a second, different signature from one nonce), concurrent
// identical calls, replays from memory and from the ledger, burning on a changed transaction,
// expiry, and the nonce cap.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Keystore } from '../../src/keystore/index.js';
import { LedgerUnavailableError, openLedger, type NonceLedger } from '../../src/ledger/index.js';
import { combinePsbts } from '../../src/psbt/index.js';
import { ComputePool, ledgerSessionId, PsbtSignerService, type PsbtServiceOptions } from '../../src/signer/index.js';
import { buildFixture, scureParticipant, type Fixture } from '../e2e/psbt-fixture.js';
import { openTestKeystore, signerError } from './helpers.js';

let dir: string;
let keystore: Keystore;
let ourPk: Uint8Array;
let seq = 0;
const others = [secp256k1.utils.randomSecretKey(), secp256k1.utils.randomSecretKey()];
const open: { service: PsbtSignerService; ledger: NonceLedger }[] = [];

beforeAll(async () => {
  ({ dir, keystore } = await openTestKeystore('psbt-service-'));
  ourPk = (await keystore.createKey('ours')).publicKey;
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

type Events = string[];

/** A service whose ledger and keystore log the order of markUsed and key use. */
async function harness(opts: Partial<PsbtServiceOptions> & { failMarkUsedAt?: number; failStorePsig?: boolean } = {}) {
  const inner = await openLedger(`sqlite:${join(dir, `ledger-${++seq}.db`)}`);
  const events: Events = [];
  const ctl = { failStorePsig: opts.failStorePsig === true };
  let marks = 0;
  const ledger: NonceLedger = Object.assign(Object.create(inner) as NonceLedger, {
    markUsed: async (pubnonce: Uint8Array, digest: Uint8Array) => {
      const n = marks++;
      if (n === opts.failMarkUsedAt) throw new LedgerUnavailableError('test: markUsed refused');
      const r = await inner.markUsed(pubnonce, digest);
      events.push('markUsed');
      return r;
    },
    storePsig: async (p: Uint8Array, d: Uint8Array, s: Uint8Array) => {
      if (ctl.failStorePsig) throw new LedgerUnavailableError('test: storePsig refused');
      return inner.storePsig(p, d, s);
    },
  });
  const ks = Object.assign(Object.create(keystore) as Keystore, {
    withSecretKey: (label: string, fn: Parameters<Keystore['withSecretKey']>[1]) => {
      events.push('key');
      return keystore.withSecretKey(label, fn);
    },
  });
  const alarms: string[] = [];
  const service = new PsbtSignerService({ keystore: ks, ledger, onAlarm: (k) => alarms.push(k), ...opts });
  open.push({ service, ledger: inner });
  return { service, ledger: inner, events, alarms, ctl };
}

/** A transaction, our round 1, and the PSBT with every participant's nonce. */
async function round1(service: PsbtSignerService, f: Fixture = buildFixture([ourPk, ...others.map((s) => secp256k1.getPublicKey(s, true))], secp256k1.utils.randomSecretKey(), { seed: ++seq }), caller?: string) {
  const parts = others.map((s) => scureParticipant(s, f));
  const r1 = await service.psbtNonceGen({ keyId: 'ours', psbt: f.psbt }, caller);
  const all = combinePsbts([f.psbt, r1.psbt, ...(await Promise.all(parts.map((p) => p.nonceGen(f.psbt))))]);
  return { f, r1, all };
}

describe('PsbtSign ledger ordering', () => {
  it('marks every nonce used before any partial signature is computed; one session, four nonces', async () => {
    const h = await harness();
    const { r1, all } = await round1(h.service);
    expect(r1.inputs).toEqual([0, 1, 2, 3]);
    h.events.length = 0;
    const signed = await h.service.psbtSign({ sessionId: r1.sessionId, psbt: all });
    expect(signed.inputs).toEqual([0, 1, 2, 3]);
    expect(h.events.slice(0, 4)).toEqual(['markUsed', 'markUsed', 'markUsed', 'markUsed']);
    expect(h.events.filter((e) => e === 'key')).toHaveLength(4);
    // Each input's row, under its own ledger session id, is used and holds the psig.
    for (let k = 0; k < 4; k++) {
      const row = await h.ledger.findBySession(ledgerSessionId(r1.sessionId, k));
      expect(row?.usedAtMs).not.toBeNull();
      expect(row?.psig).toHaveLength(32);
    }
    expect(await h.service.sessionKeyId(r1.sessionId)).toBe('ours');
  });

  it('a ledger failure on the third markUsed: nothing signed, the session can never sign again', async () => {
    const h = await harness({ failMarkUsedAt: 2 });
    const { r1, all } = await round1(h.service);
    h.events.length = 0;
    await signerError(h.service.psbtSign({ sessionId: r1.sessionId, psbt: all }), 'UNAVAILABLE');
    expect(h.events).not.toContain('key');
    const again = await signerError(h.service.psbtSign({ sessionId: r1.sessionId, psbt: all }), 'FAILED_PRECONDITION');
    expect(again.message).toMatch(/can no longer sign/);
    expect(h.events).not.toContain('key');
    for (let k = 0; k < 4; k++) expect((await h.ledger.findBySession(ledgerSessionId(r1.sessionId, k)))?.psig ?? null).toBeNull();
  });

  it('a failed storePsig withholds the answer; the identical retry gets the same signatures once stored', async () => {
    const h = await harness({ failStorePsig: true });
    const { r1, all } = await round1(h.service);
    h.events.length = 0;
    await signerError(h.service.psbtSign({ sessionId: r1.sessionId, psbt: all }), 'UNAVAILABLE');
    await signerError(h.service.psbtSign({ sessionId: r1.sessionId, psbt: all }), 'UNAVAILABLE');
    h.ctl.failStorePsig = false;
    const r = await h.service.psbtSign({ sessionId: r1.sessionId, psbt: all });
    expect(r.inputs).toEqual([0, 1, 2, 3]);
    // Signed once: the retries answered the signatures kept in memory, never signing again.
    expect(h.events.filter((e) => e === 'key')).toHaveLength(4);
    for (let k = 0; k < 4; k++) expect((await h.ledger.findBySession(ledgerSessionId(r1.sessionId, k)))?.psig).toHaveLength(32);
  });

  it('two identical concurrent calls: one signs, the other is told to retry, then both answers match', async () => {
    const h = await harness();
    const { r1, all } = await round1(h.service);
    h.events.length = 0;
    const [a, b] = await Promise.allSettled([h.service.psbtSign({ sessionId: r1.sessionId, psbt: all }), h.service.psbtSign({ sessionId: r1.sessionId, psbt: all })]);
    const ok = [a, b].filter((r) => r.status === 'fulfilled');
    expect(ok).toHaveLength(1);
    const refused = [a, b].find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(refused.reason.code).toBe('UNAVAILABLE');
    const retry = await h.service.psbtSign({ sessionId: r1.sessionId, psbt: all });
    expect(Buffer.from(retry.psbt).toString('hex')).toBe(Buffer.from((ok[0] as PromiseFulfilledResult<{ psbt: Uint8Array }>).value.psbt).toString('hex'));
    expect(h.events.filter((e) => e === 'key')).toHaveLength(4);
  });

  it('replays from the ledger after the session left memory (a restart), and alarms on anything else', async () => {
    const h = await harness();
    const { f, r1, all } = await round1(h.service);
    const first = await h.service.psbtSign({ sessionId: r1.sessionId, psbt: all });
    const restarted = new PsbtSignerService({ keystore, ledger: h.ledger, onAlarm: (k) => h.alarms.push(k) });
    open.push({ service: restarted, ledger: await openLedger('sqlite::memory:') });
    const replay = await restarted.psbtSign({ sessionId: r1.sessionId, psbt: all });
    expect(Buffer.from(replay.psbt).toString('hex')).toBe(Buffer.from(first.psbt).toString('hex'));
    // Another transaction under the same session id: a reuse attempt.
    const otherTx = await round1(h.service, buildFixture(f.participants, secp256k1.utils.randomSecretKey(), { seed: 777 }));
    await signerError(restarted.psbtSign({ sessionId: r1.sessionId, psbt: otherTx.all }), 'FAILED_PRECONDITION');
    expect(h.alarms).toContain('nonce_reuse_attempt');
  });
});

describe('per-client compute quota', () => {
  it('a PSBT with more inputs than the quota still signs: one call sends its inputs a few at a time', async () => {
    const compute = await ComputePool.start(1, { maxPerClient: 1 });
    try {
      const h = await harness({ compute });
      const { r1, all } = await round1(h.service, undefined, 'CN=one');
      expect(r1.inputs).toEqual([0, 1, 2, 3]);
      const signed = await h.service.psbtSign({ sessionId: r1.sessionId, psbt: all }, 'CN=one');
      expect(signed.inputs).toEqual([0, 1, 2, 3]);
    } finally {
      await compute.close();
    }
  });
});

describe('PsbtNonceGen sessions', () => {
  it('a changed transaction burns the session; the original then fails too, without an alarm', async () => {
    const h = await harness();
    const { f, r1, all } = await round1(h.service);
    const changed = buildFixture(f.participants, secp256k1.utils.randomSecretKey(), { seed: seq, outputAmount: 1234n });
    const err = await signerError(h.service.psbtSign({ sessionId: r1.sessionId, psbt: changed.psbt }), 'FAILED_PRECONDITION');
    expect(err.errorInfo?.reason).toBe('TRANSACTION_CHANGED');
    expect(h.service.openNonces()).toBe(0);
    await signerError(h.service.psbtSign({ sessionId: r1.sessionId, psbt: all }), 'FAILED_PRECONDITION');
    expect(h.alarms).toEqual([]);
    expect(h.events).not.toContain('markUsed');
  });

  it('the cap counts secret nonces (one per input), and expiry wipes them', async () => {
    let now = 1_000_000;
    const h = await harness({ maxOpenNonces: 6, sessionTtlMs: 1000, now: () => now });
    const { r1, all } = await round1(h.service);
    expect(h.service.openNonces()).toBe(4);
    await signerError(round1(h.service), 'RESOURCE_EXHAUSTED');
    now += 1001;
    expect(h.service.sweepExpiredSessions()).toBe(1);
    expect(h.service.openNonces()).toBe(0);
    await signerError(h.service.psbtSign({ sessionId: r1.sessionId, psbt: all }), 'FAILED_PRECONDITION');
  });
});
