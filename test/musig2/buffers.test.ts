// Node Buffers as inputs: Buffer.prototype.slice() is a view, not a copy, so the core must copy
// explicitly. deterministicSign() without rand must leave the caller's sk intact, nonceGen()
// the caller's rand, sign() must work from a Buffer secnonce, and the key-aggregation cache
// must hold copies, not views of caller memory.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as musig2 from '../../src/musig2/index.js';
import { newEngine } from '../../src/musig2/engine.js';
import { getKeySet } from '../../src/musig2/keyagg.js';
import { nobleBackend } from '../../src/musig2/noble-backend.js';

const secret = () => {
  const sk = Buffer.from(randomBytes(32));
  return { sk, pk: Buffer.from(musig2.individualPubkey(sk)) };
};

describe('Buffer inputs', () => {
  it('deterministicSign without rand leaves the caller’s sk as it was', () => {
    const me = secret();
    const other = secret();
    const before = Buffer.from(me.sk);
    const aggothernonce = musig2.nonceGen({ sk: other.sk, pk: other.pk, extraIn: randomBytes(8) }).pubnonce;
    const out = musig2.deterministicSign(me.sk, Buffer.from(aggothernonce), [me.pk, other.pk], [], Buffer.from('msg'));
    expect(me.sk.equals(before)).toBe(true);
    expect(out.psig).toHaveLength(32);
  });

  it('nonceGen leaves the caller’s rand as it was, and sign works from a Buffer secnonce', () => {
    const me = secret();
    const other = secret();
    const rand = Buffer.from(randomBytes(32));
    const before = Buffer.from(rand);
    const mine = musig2.nonceGen({ sk: me.sk, pk: me.pk, rand });
    expect(rand.equals(before)).toBe(true);
    const theirs = musig2.nonceGen({ sk: other.sk, pk: other.pk, extraIn: randomBytes(8) });
    const pubkeys = [me.pk, other.pk];
    const msg = Buffer.from('hello');
    const aggnonce = musig2.nonceAgg([mine.pubnonce, theirs.pubnonce]);
    const psig = musig2.sign(Buffer.from(mine.secnonce), me.sk, { aggnonce, pubkeys, tweaks: [], msg });
    expect(musig2.partialSigVerify(psig, [mine.pubnonce, theirs.pubnonce], pubkeys, [], msg, 0)).toBe(true);
  });

  it('caches copies of the keys, not views of the caller’s buffers', () => {
    const backing = Buffer.concat([secret().pk, secret().pk]);
    const keys = [backing.subarray(0, 33), backing.subarray(33, 66)];
    const want = keys.map((k) => Buffer.from(k).toString('hex'));
    const sorted = musig2.keySort(keys);
    const set = getKeySet(newEngine(nobleBackend), keys);
    backing.fill(0xee); // the caller reuses its memory
    expect(set.pubkeys.map((k) => Buffer.from(k).toString('hex'))).toEqual(want);
    expect(sorted.map((k) => Buffer.from(k).toString('hex')).sort()).toEqual([...want].sort());
  });
});
