// The compute queue's bounds and order on real worker threads: past its bound a call is refused
// at once (RESOURCE_EXHAUSTED), one client cannot hold more than its share, waiting calls are
// served round-robin across clients, and signing goes before queued Aggregator work.
import { describe, expect, it } from 'vitest';
import * as musig2 from '../../src/musig2/index.js';
import { ComputePool } from '../../src/signer/index.js';
import { LocalSigner, rand, rejection } from './helpers.js';

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

/** A pool of one worker (depth 2) whose two permits are held by blocked test ops until unblock(). */
async function blockedPool(opts: { maxQueued?: number; maxPerClient?: number }) {
  const pool = await ComputePool.start(1, { testHooks: {}, ...opts });
  const flags = new Int32Array(new SharedArrayBuffer(8));
  const blocked = [pool.testOp('block', flags.buffer as SharedArrayBuffer), pool.testOp('block', flags.buffer as SharedArrayBuffer)];
  await until(() => pool.load()[0] === 2);
  return {
    pool,
    unblock: async () => {
      Atomics.store(flags, 0, 1);
      Atomics.notify(flags, 0);
      await Promise.all(blocked);
    },
  };
}

function signing() {
  const me = new LocalSigner();
  const other = new LocalSigner();
  const pubkeys = [me.pk, other.pk];
  const aggothernonce = other.nonceGen().pubnonce;
  return (pool: ComputePool, caller?: string) => pool.deterministicSign(me.sk, aggothernonce, pubkeys, [], rand(32), undefined, caller);
}

describe('compute queue', () => {
  it('refuses a call past its bound at once, and serves the queued ones', async () => {
    const { pool, unblock } = await blockedPool({ maxQueued: 2 });
    try {
      const pk = new LocalSigner().pk;
      const queued = [pool.keyAgg([pk], []), signing()(pool)];
      await until(() => pool.queued() === 2);
      const err = await rejection(pool.keyAgg([pk], []));
      expect(err).toMatchObject({ code: 'RESOURCE_EXHAUSTED', message: expect.stringMatching(/compute queue is full \(2 calls waiting\)/) });
      await unblock();
      await Promise.all(queued);
    } finally {
      await pool.close();
    }
  });

  it('refuses a client past its own cap while another client still queues', async () => {
    const { pool, unblock } = await blockedPool({ maxPerClient: 2 });
    try {
      const sign = signing();
      const a = [sign(pool, 'CN=a'), sign(pool, 'CN=a')];
      const err = await rejection(sign(pool, 'CN=a'));
      expect(err).toMatchObject({ code: 'RESOURCE_EXHAUSTED', message: expect.stringMatching(/client 'CN=a' already has 2 .* \(cap 2 per client\)/) });
      const b = sign(pool, 'CN=b');
      await unblock();
      await Promise.all([...a, b]);
    } finally {
      await pool.close();
    }
  });

  it('serves waiting calls round-robin across clients, signing before Aggregator work', async () => {
    const { pool, unblock } = await blockedPool({});
    try {
      const order: string[] = [];
      const track = (name: string, p: Promise<unknown>) => p.then(() => order.push(name));
      const sign = signing();
      const pks = [new LocalSigner().pk, new LocalSigner().pk];
      const all = [
        track('agg-1', pool.partialSigAgg([rand(32).fill(0, 0, 1), rand(32).fill(0, 0, 1)], { aggnonce: musig2.nonceAgg([new LocalSigner().nonceGen().pubnonce, new LocalSigner().nonceGen().pubnonce]), pubkeys: pks, tweaks: [], msg: rand(32) }, 'CN=flood').catch(() => undefined)),
        track('a-1', sign(pool, 'CN=a')),
        track('a-2', sign(pool, 'CN=a')),
        track('a-3', sign(pool, 'CN=a')),
        track('b-1', sign(pool, 'CN=b')),
      ];
      await until(() => pool.queued() === 5);
      await unblock();
      await Promise.all(all);
      // Signing first (the Aggregator call queued first goes last), clients a and b in turn.
      expect(order).toEqual(['a-1', 'b-1', 'a-2', 'a-3', 'agg-1']);
    } finally {
      await pool.close();
    }
  });
});

describe('one lease, one worker', () => {
  it('sends every call of a lease to the worker its first call went to (its key cache is warm)', async () => {
    const threads: string[] = [];
    const pool = await ComputePool.start(2, {
      testHooks: { posted: (op, t) => threads.push(`${op}@${t}`), sent: (op, _s, t) => threads.push(`${op}@${t}`) },
    });
    try {
      const me = new LocalSigner();
      const other = new LocalSigner();
      const pubkeys = [me.pk, other.pk];
      for (let i = 0; i < 6; i++) {
        threads.length = 0;
        // Another call in flight, so "least busy" alone would pick the other worker next time.
        const busy = pool.keyAgg([new LocalSigner().pk], []);
        await pool.lease(async (c) => {
          await c.keyAgg(pubkeys, []);
          await busy;
          return c.deterministicSign(me.sk, other.nonceGen().pubnonce, pubkeys, [], rand(32));
        });
        const [, first, second] = threads;
        expect(first!.split('@')[0]).toBe('keyAgg');
        expect(second!.split('@')[0]).toBe('deterministicSign');
        expect(second!.split('@')[1]).toBe(first!.split('@')[1]);
      }
    } finally {
      await pool.close();
    }
  });
});
