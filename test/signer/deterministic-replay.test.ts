// DeterministicSign on real SoftHSM2 with SQLite and PostgreSQL ledgers: a request written
// differently that releases the same partial signature from the same nonce is a replay and is
// answered (tweaks [5, 7] then [12]; one key imported under two labels), with no alarm; a row
// holding another psig for the nonce is refused and alarmed; rows written by earlier versions
// (the request's context digest) are still handled by comparing the stored psig. Also: key
// aggregation for NonceGen and DeterministicSign runs on a compute worker, not the event loop.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Keystore } from '../../src/keystore/index.js';
import { openLedger, type NonceLedger } from '../../src/ledger/index.js';
import * as musig2 from '../../src/musig2/index.js';
import { ComputePool, contextDigest, SignerService } from '../../src/signer/index.js';
import type { ComputePublicOp } from '../../src/signer/index.js';
import { PgCluster } from '../ledger/pg-harness.js';
import { hex, LocalSigner, openTestKeystore, rand, signerError } from './helpers.js';

let dir: string;
let keystore: Keystore;
let cluster: PgCluster;
const sk = Uint8Array.from(Buffer.from('7e1c1b35e5b6f4ad7b2f1e9b5d3a4c6f8e0d2c4b6a8f0e2d4c6b8a0f2e4d6c8b', 'hex'));
let pk: Uint8Array;
let seq = 0;

beforeAll(async () => {
  ({ dir, keystore } = await openTestKeystore('signer-detreplay-'));
  pk = (await keystore.importKey('dup-a', sk)).publicKey;
  await keystore.importKey('dup-b', sk);
  cluster = await PgCluster.start();
}, 120_000);

afterAll(async () => {
  await keystore?.close();
  await cluster?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

const tweak = (v: number) => ({ tweak: Uint8Array.from(Buffer.from(v.toString(16).padStart(64, '0'), 'hex')), xonly: false });

const backends: [string, () => Promise<string>][] = [
  ['SQLite', async () => `sqlite:${join(dir, `ledger-${++seq}.db`)}`],
  ['PostgreSQL', () => cluster.createDatabase()],
];

describe.each(backends)('DeterministicSign replays on %s', (_name, ledgerUrl) => {
  async function harness(): Promise<{ service: SignerService; ledger: NonceLedger; alarms: string[]; close(): Promise<void> }> {
    const ledger = await openLedger(await ledgerUrl());
    const alarms: string[] = [];
    const service = new SignerService({ keystore, ledger, onAlarm: (kind) => alarms.push(kind) });
    return { service, ledger, alarms, close: async () => (await service.close(), await ledger.close()) };
  }

  const request = () => {
    const carol = new LocalSigner();
    return { keyId: 'dup-a', aggothernonce: carol.nonceGen().pubnonce, pubkeys: [pk, carol.pk], message: rand(32) };
  };

  it('answers tweaks [5, 7] and then [12] (same nonce, same psig) without an alarm', async () => {
    const h = await harness();
    try {
      const base = request();
      const a = await h.service.deterministicSign({ ...base, tweaks: [tweak(5), tweak(7)] });
      const b = await h.service.deterministicSign({ ...base, tweaks: [tweak(12)] });
      expect(hex(b.pubnonce)).toBe(hex(a.pubnonce));
      expect(hex(b.partialSig)).toBe(hex(a.partialSig));
      expect(h.alarms).toEqual([]);
      expect(h.service.counters.nonceReuseAttempts).toBe(0);
    } finally {
      await h.close();
    }
  });

  it('answers one key under two labels without an alarm', async () => {
    const h = await harness();
    try {
      const base = { ...request(), tweaks: [] };
      const a = await h.service.deterministicSign(base);
      const b = await h.service.deterministicSign({ ...base, keyId: 'dup-b' });
      expect(hex(b.partialSig)).toBe(hex(a.partialSig));
      expect(h.alarms).toEqual([]);
    } finally {
      await h.close();
    }
  });

  it('handles rows of earlier versions: same psig answered, another psig refused and alarmed', async () => {
    const h = await harness();
    try {
      const base = { ...request(), tweaks: [tweak(3)] };
      // What the request will release, computed here from the known key.
      const want = musig2.deterministicSign(sk.slice(), base.aggothernonce, base.pubkeys, base.tweaks, base.message);
      // An earlier version recorded the request's context digest (and tweak lists written another way gave another one).
      const oldDigest = contextDigest({ path: 'deterministic', keyId: 'dup-a', nonce: base.aggothernonce, pubkeys: base.pubkeys, tweaks: [tweak(1), tweak(2)], message: base.message });
      await h.ledger.recordDeterministic({ keyId: 'dup-a', pubnonce: want.pubnonce, digest: oldDigest, psig: want.psig });
      const again = await h.service.deterministicSign(base);
      expect(hex(again.partialSig)).toBe(hex(want.psig));
      expect(h.alarms).toEqual([]);

      // A row holding another psig for the nonce the request derives: never a second psig.
      const base2 = { ...request(), tweaks: [] };
      const want2 = musig2.deterministicSign(sk.slice(), base2.aggothernonce, base2.pubkeys, base2.tweaks, base2.message);
      await h.ledger.recordDeterministic({ keyId: 'dup-a', pubnonce: want2.pubnonce, digest: rand(32), psig: rand(32) });
      const e = await signerError(h.service.deterministicSign(base2), 'FAILED_PRECONDITION');
      expect(e.message).toMatch(/different signing context/);
      expect(h.alarms).toEqual(['nonce_reuse_attempt']);
    } finally {
      await h.close();
    }
  });
});

describe('key aggregation off the event loop', () => {
  it('NonceGen and DeterministicSign aggregate the key list on a compute worker', async () => {
    const posted: ComputePublicOp[] = [];
    const compute = await ComputePool.start(1, { testHooks: { posted: (op) => posted.push(op) } });
    const ledger = await openLedger(`sqlite:${join(dir, `ledger-${++seq}.db`)}`);
    const service = new SignerService({ keystore, ledger, compute });
    try {
      const carol = new LocalSigner();
      await service.nonceGen({ keyId: 'dup-a', pubkeys: [pk, carol.pk], tweaks: [] });
      expect(posted).toEqual(['keyAgg']);
      // Another list (the order counts) is aggregated on the worker too; the first one is known.
      await service.deterministicSign({ keyId: 'dup-a', aggothernonce: carol.nonceGen().pubnonce, pubkeys: [carol.pk, pk], tweaks: [], message: rand(32) });
      expect(posted).toEqual(['keyAgg', 'keyAgg']);
      await service.deterministicSign({ keyId: 'dup-a', aggothernonce: carol.nonceGen().pubnonce, pubkeys: [pk, carol.pk], tweaks: [], message: rand(32) });
      expect(posted).toEqual(['keyAgg', 'keyAgg']);
      // An invalid key is still refused before the key is opened, now by the worker.
      const bad = new Uint8Array(33).fill(0xff);
      bad[0] = 2;
      await signerError(service.deterministicSign({ keyId: 'dup-a', aggothernonce: carol.nonceGen().pubnonce, pubkeys: [pk, bad], tweaks: [], message: rand(32) }), 'INVALID_ARGUMENT');
    } finally {
      await service.close();
      await compute.close();
      await ledger.close();
    }
  });
});
