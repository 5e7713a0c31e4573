/**
 * Bad input and misbehaving participants: tampered contributions name the right culprit, a
 * secnonce cannot be used twice, out-of-range scalars and wrong lengths are refused with clear
 * errors that carry no secret bytes.
 */
import { describe, expect, it } from 'vitest';
import { schnorr } from '@noble/curves/secp256k1.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { InvalidContributionError, InvalidInputError, Musig2Error, musig2For } from '../../src/musig2/index.js';
import type { SessionContext, Tweak } from '../../src/musig2/index.js';
import { BACKENDS, hex, toHexUpper } from './helpers.js';

const N_HEX = 'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141';
const N_BYTES = hex(N_HEX);
const ZERO32 = new Uint8Array(32);
const MAX32 = new Uint8Array(32).fill(0xff);
/** 33 bytes that are not a point: x = 5 has no square root of x^3 + 7 mod p. */
const NOT_A_POINT = hex('020000000000000000000000000000000000000000000000000000000000000005');

const seeded = (label: string): Uint8Array => sha256(new TextEncoder().encode(label));

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to throw');
}

function expectContribution(fn: () => unknown, signer: number | null, contrib: string): void {
  const err = caught(fn);
  expect(err).toBeInstanceOf(InvalidContributionError);
  expect((err as InvalidContributionError).signer).toBe(signer);
  expect((err as InvalidContributionError).contrib).toBe(contrib);
}

/** InvalidInputError naming `argument`; `text` (if given) must appear in the message. */
function expectInvalidInput(fn: () => unknown, argument?: string, text?: string | RegExp): InvalidInputError {
  const err = caught(fn);
  expect(err).toBeInstanceOf(InvalidInputError);
  expect(err).toBeInstanceOf(Musig2Error);
  const e = err as InvalidInputError;
  if (argument !== undefined) {
    expect(e.argument).toBe(argument);
    expect(e.message).toContain(argument);
  }
  if (text !== undefined) expect(e.message).toMatch(text);
  return e;
}

const flipBit = (b: Uint8Array, byte: number, bit = 0): Uint8Array => {
  const c = b.slice();
  c[byte] = (c[byte] as number) ^ (1 << bit);
  return c;
};

describe.each(BACKENDS)('%s backend', (backend) => {
  const {
    applyTweak, deterministicSign, getPlainPk, getXonlyPk, individualPubkey, keyAgg, keyAggAndTweak, keySort, nonceAgg, nonceGen,
    partialSigAgg, partialSigVerify, sign, warmUp,
  } = musig2For(backend);

  /** A complete honest 3-signer session, rebuilt per test so wiped secnonces never leak across. */
  function session(tweaks: Tweak[] = []) {
    const sks = [0, 1, 2].map((i) => seeded(`negative/sk/${i}`));
    const pubkeys = sks.map(individualPubkey);
    const msg = seeded('negative/msg');
    const aggpk = getXonlyPk(keyAggAndTweak(pubkeys, tweaks));
    const nonces = sks.map((sk, i) =>
      nonceGen({ sk, pk: pubkeys[i] as Uint8Array, aggpk, msg, rand: seeded(`negative/rand/${i}`) }));
    const pubnonces = nonces.map((n) => n.pubnonce);
    const aggnonce = nonceAgg(pubnonces);
    const ctx: SessionContext = { aggnonce, pubkeys, tweaks, msg };
    return { sks, pubkeys, msg, nonces, pubnonces, aggnonce, ctx, tweaks };
  }

  describe('tampered partial signatures', () => {
    it('an honest session (after warmUp, which must not change results) verifies and aggregates (baseline for the tampering below)', () => {
      warmUp();
      const s = session();
      const psigs = s.nonces.map((n, i) => sign(n.secnonce, s.sks[i] as Uint8Array, s.ctx));
      psigs.forEach((p, i) => expect(partialSigVerify(p, s.pubnonces, s.pubkeys, [], s.msg, i)).toBe(true));
      const sig = partialSigAgg(psigs, s.ctx);
      expect(schnorr.verify(sig, s.msg, getXonlyPk(keyAgg(s.pubkeys)))).toBe(true);
    });

    it('a flipped bit, another signer\'s psig, or psig >= n fail verification', () => {
      const s = session();
      const psigs = s.nonces.map((n, i) => sign(n.secnonce, s.sks[i] as Uint8Array, s.ctx));
      for (let i = 0; i < 3; i++) {
        expect(partialSigVerify(flipBit(psigs[i] as Uint8Array, 31), s.pubnonces, s.pubkeys, [], s.msg, i)).toBe(false);
        expect(partialSigVerify(psigs[(i + 1) % 3] as Uint8Array, s.pubnonces, s.pubkeys, [], s.msg, i)).toBe(false);
      }
      expect(partialSigVerify(N_BYTES, s.pubnonces, s.pubkeys, [], s.msg, 0)).toBe(false);
      expect(partialSigVerify(MAX32, s.pubnonces, s.pubkeys, [], s.msg, 0)).toBe(false);
      // Verified against a different message or tweak list, the same psig is wrong too.
      expect(partialSigVerify(psigs[0] as Uint8Array, s.pubnonces, s.pubkeys, [], flipBit(s.msg, 0), 0)).toBe(false);
      expect(partialSigVerify(psigs[0] as Uint8Array, s.pubnonces, s.pubkeys, [{ tweak: seeded('t'), xonly: true }], s.msg, 0)).toBe(false);
    });

    it('partialSigAgg blames the signer whose psig is >= n', () => {
      const s = session();
      const psigs = s.nonces.map((n, i) => sign(n.secnonce, s.sks[i] as Uint8Array, s.ctx));
      expectContribution(() => partialSigAgg([psigs[0] as Uint8Array, N_BYTES, psigs[2] as Uint8Array], s.ctx), 1, 'psig');
      expectContribution(() => partialSigAgg([psigs[0] as Uint8Array, psigs[1] as Uint8Array, MAX32], s.ctx), 2, 'psig');
    });
  });

  describe('tampered public nonces', () => {
    it('an undecodable pubnonce is blamed on its signer, in BIP order', () => {
      const s = session();
      for (let j = 0; j < 3; j++) {
        const bad = s.pubnonces.slice();
        bad[j] = Uint8Array.from([...NOT_A_POINT, ...(s.pubnonces[j] as Uint8Array).subarray(33)]);
        expectContribution(() => nonceAgg(bad), j, 'pubnonce');
        expectContribution(() => partialSigVerify(ZERO32, bad, s.pubkeys, [], s.msg, 0), j, 'pubnonce');
        // A bad second half, or a 0x04 prefix, is just as much that signer's fault.
        bad[j] = Uint8Array.from([...(s.pubnonces[j] as Uint8Array).subarray(0, 33), ...NOT_A_POINT]);
        expectContribution(() => nonceAgg(bad), j, 'pubnonce');
        bad[j] = flipBit(s.pubnonces[j] as Uint8Array, 0, 2); // 0x02/0x03 -> 0x06/0x07
        expectContribution(() => nonceAgg(bad), j, 'pubnonce');
      }
      // First halves are all decoded before any second half: signer 2's bad first half is found
      // before signer 0's bad second half.
      const both = s.pubnonces.slice();
      both[0] = Uint8Array.from([...(s.pubnonces[0] as Uint8Array).subarray(0, 33), ...NOT_A_POINT]);
      both[2] = Uint8Array.from([...NOT_A_POINT, ...(s.pubnonces[2] as Uint8Array).subarray(33)]);
      expectContribution(() => nonceAgg(both), 2, 'pubnonce');
    });

    it('a valid but swapped pubnonce makes the honest psig fail verification', () => {
      const s = session();
      const psig = sign(s.nonces[1]?.secnonce as Uint8Array, s.sks[1] as Uint8Array, s.ctx);
      const swapped = [s.pubnonces[0], s.pubnonces[2], s.pubnonces[1]] as Uint8Array[];
      expect(partialSigVerify(psig, swapped, s.pubkeys, [], s.msg, 1)).toBe(false);
    });

    it('an undecodable aggnonce is blamed on the aggregator, aggothernonce likewise', () => {
      const s = session();
      const badAgg = Uint8Array.from([...(s.aggnonce.subarray(0, 33)), ...NOT_A_POINT]);
      const secnonce = s.nonces[0]?.secnonce as Uint8Array;
      expectContribution(() => sign(secnonce, s.sks[0] as Uint8Array, { ...s.ctx, aggnonce: badAgg }), null, 'aggnonce');
      expectContribution(() => partialSigAgg([ZERO32, ZERO32, ZERO32], { ...s.ctx, aggnonce: badAgg }), null, 'aggnonce');
      expectContribution(() => deterministicSign(s.sks[2] as Uint8Array, badAgg, s.pubkeys, [], s.msg), null, 'aggothernonce');
      // Infinity is allowed in an aggnonce (33 zero bytes) but never in an aggothernonce.
      const infinite = new Uint8Array(66);
      expectContribution(() => deterministicSign(s.sks[2] as Uint8Array, infinite, s.pubkeys, [], s.msg), null, 'aggothernonce');
    });
  });

  describe('tampered public keys', () => {
    it('an undecodable pubkey is blamed on its signer everywhere it is used', () => {
      const s = session();
      for (let j = 0; j < 3; j++) {
        const bad = s.pubkeys.slice();
        bad[j] = NOT_A_POINT;
        expectContribution(() => keyAgg(bad), j, 'pubkey');
        expectContribution(() => keyAggAndTweak(bad, []), j, 'pubkey');
        expectContribution(() => partialSigVerify(ZERO32, s.pubnonces, bad, [], s.msg, 0), j, 'pubkey');
        expectContribution(() => partialSigAgg([ZERO32], { ...s.ctx, pubkeys: bad }), j, 'pubkey');
        const signer = (j + 1) % 3;
        expectContribution(() => sign(s.nonces[signer]?.secnonce as Uint8Array, s.sks[signer] as Uint8Array, { ...s.ctx, pubkeys: bad }), j, 'pubkey');
        expectContribution(() => deterministicSign(s.sks[signer] as Uint8Array, s.aggnonce, bad, [], s.msg), j, 'pubkey');
      }
      const xTooBig = hex('02FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC30');
      expectContribution(() => keyAgg([s.pubkeys[0] as Uint8Array, xTooBig]), 1, 'pubkey');
      expectContribution(() => keyAgg([flipBit(s.pubkeys[0] as Uint8Array, 0, 2), s.pubkeys[1] as Uint8Array]), 0, 'pubkey');
    });

    it('a signer whose key is missing from pubkeys is refused', () => {
      const s = session();
      const others = [s.pubkeys[1], s.pubkeys[2]] as Uint8Array[];
      expectInvalidInput(() => sign(s.nonces[0]?.secnonce as Uint8Array, s.sks[0] as Uint8Array, { ...s.ctx, pubkeys: others }),
        'pubkeys', "The signer's pubkey must be included in the list of pubkeys.");
      expectInvalidInput(() => deterministicSign(s.sks[0] as Uint8Array, s.aggnonce, others, [], s.msg),
        'pubkeys', "The signer's pubkey must be included in the list of pubkeys.");
    });

    it('a secnonce made for another key is refused', () => {
      const s = session();
      expectInvalidInput(() => sign(s.nonces[1]?.secnonce as Uint8Array, s.sks[0] as Uint8Array, s.ctx), 'secnonce', /different public key/);
    });
  });

  describe('secnonce reuse', () => {
    it('sign zeroes k1 || k2, so the second use fails', () => {
      const s = session();
      const secnonce = s.nonces[0]?.secnonce as Uint8Array;
      const pkPart = secnonce.slice(64);
      const psig = sign(secnonce, s.sks[0] as Uint8Array, s.ctx);
      expect(partialSigVerify(psig, s.pubnonces, s.pubkeys, [], s.msg, 0)).toBe(true);
      expect(secnonce.subarray(0, 64).every((b) => b === 0)).toBe(true);
      expect(secnonce.subarray(64)).toEqual(pkPart);
      expectInvalidInput(() => sign(secnonce, s.sks[0] as Uint8Array, s.ctx), 'secnonce', /first secnonce value is out of range/);
      // Reuse for another message is refused the same way.
      expectInvalidInput(() => sign(secnonce, s.sks[0] as Uint8Array, { ...s.ctx, msg: new Uint8Array(0) }), 'secnonce');
    });

    it('sign wipes the secnonce even when it then throws', () => {
      const failures: [string, (sn: Uint8Array, s: ReturnType<typeof session>) => unknown][] = [
        ['bad aggnonce', (sn, s) => sign(sn, s.sks[0] as Uint8Array, { ...s.ctx, aggnonce: new Uint8Array(66).fill(4) })],
        ['bad pubkey', (sn, s) => sign(sn, s.sks[0] as Uint8Array, { ...s.ctx, pubkeys: [NOT_A_POINT, s.pubkeys[0] as Uint8Array] })],
        ['key not in list', (sn, s) => sign(sn, s.sks[0] as Uint8Array, { ...s.ctx, pubkeys: [s.pubkeys[1] as Uint8Array] })],
        ['wrong sk', (sn, s) => sign(sn, s.sks[1] as Uint8Array, s.ctx)],
        ['short sk', (sn, s) => sign(sn, new Uint8Array(31), s.ctx)],
        ['sk = 0', (sn, s) => sign(sn, ZERO32, s.ctx)],
        ['tweak >= n', (sn, s) => sign(sn, s.sks[0] as Uint8Array, { ...s.ctx, tweaks: [{ tweak: N_BYTES, xonly: false }] })],
        ['bad msg', (sn, s) => sign(sn, s.sks[0] as Uint8Array, { ...s.ctx, msg: 'hello' as unknown as Uint8Array })],
        ['null ctx', (sn, s) => sign(sn, s.sks[0] as Uint8Array, null as unknown as SessionContext)],
      ];
      for (const [label, fn] of failures) {
        const s = session();
        const secnonce = s.nonces[0]?.secnonce as Uint8Array;
        expect(secnonce.subarray(0, 64).some((b) => b !== 0), label).toBe(true);
        expect(() => fn(secnonce, s), label).toThrow(Musig2Error);
        expect(secnonce.subarray(0, 64).every((b) => b === 0), label).toBe(true);
      }
      // Even a secnonce of the wrong length has whatever it holds wiped.
      const short = new Uint8Array(96).fill(7);
      expectInvalidInput(() => sign(short, seeded('x'), session().ctx), 'secnonce', /97 bytes/);
      expect(short.subarray(0, 64).every((b) => b === 0)).toBe(true);
    });
  });

  describe('out-of-range scalars', () => {
    it('k1 = 0, k2 = 0 and k >= n in a secnonce are refused', () => {
      const s = session();
      const pk = s.pubkeys[0] as Uint8Array;
      const withK = (k1: Uint8Array, k2: Uint8Array): Uint8Array => Uint8Array.from([...k1, ...k2, ...pk]);
      const k = seeded('k');
      expectInvalidInput(() => sign(withK(ZERO32, k), s.sks[0] as Uint8Array, s.ctx), 'secnonce', /first secnonce value/);
      expectInvalidInput(() => sign(withK(k, ZERO32), s.sks[0] as Uint8Array, s.ctx), 'secnonce', /second secnonce value/);
      expectInvalidInput(() => sign(withK(N_BYTES, k), s.sks[0] as Uint8Array, s.ctx), 'secnonce', /first secnonce value/);
      expectInvalidInput(() => sign(withK(k, MAX32), s.sks[0] as Uint8Array, s.ctx), 'secnonce', /second secnonce value/);
    });

    it('sk = 0 and sk >= n are refused everywhere', () => {
      const s = session();
      for (const bad of [ZERO32, N_BYTES, MAX32]) {
        expectInvalidInput(() => individualPubkey(bad), 'sk', /out of range/);
        expectInvalidInput(() => deterministicSign(bad, s.aggnonce, s.pubkeys, [], s.msg), 'sk', /out of range/);
        const sn = Uint8Array.from([...seeded('k1'), ...seeded('k2'), ...(s.pubkeys[0] as Uint8Array)]);
        expectInvalidInput(() => sign(sn, bad, s.ctx), 'sk', /out of range/);
      }
      // n - 1 is the largest valid key.
      const nMinus1 = N_BYTES.slice();
      nMinus1[31] = 0x40;
      expect(individualPubkey(nMinus1)).toHaveLength(33);
    });

    it('a tweak >= n is refused by every function that takes tweaks', () => {
      const s = session();
      const tweaks = [{ tweak: N_BYTES, xonly: true }];
      const msg = /The tweak must be less than n\./;
      expectInvalidInput(() => keyAggAndTweak(s.pubkeys, tweaks), 'tweaks[0]', msg);
      expectInvalidInput(() => applyTweak(keyAgg(s.pubkeys), MAX32, false), 'tweak', msg);
      expectInvalidInput(() => sign(s.nonces[0]?.secnonce as Uint8Array, s.sks[0] as Uint8Array, { ...s.ctx, tweaks }), 'tweaks[0]', msg);
      expectInvalidInput(() => partialSigVerify(ZERO32, s.pubnonces, s.pubkeys, tweaks, s.msg, 0), 'tweaks[0]', msg);
      expectInvalidInput(() => partialSigAgg([ZERO32], { ...s.ctx, tweaks }), 'tweaks[0]', msg);
      expectInvalidInput(() => deterministicSign(s.sks[0] as Uint8Array, s.aggnonce, s.pubkeys, tweaks, s.msg), 'tweaks[0]', msg);
    });

    it('a tweak that cancels the key (result at infinity) is refused', () => {
      // From key_agg_vectors.json: KeyAgg of this single key plus this plain tweak is infinity.
      const pk = hex('03935F972DA013F80AE011890FA89B67A27B7BE6CCB24D3274D18B2D4067F261A9');
      const tweak = hex('252E4BD67410A76CDF933D30EAA1608214037F1B105A013ECCD3C5C184A6110B');
      const msg = /The result of tweaking cannot be infinity\./;
      expectInvalidInput(() => keyAggAndTweak([pk], [{ tweak, xonly: false }]), 'tweaks[0]', msg);
      expectInvalidInput(() => applyTweak(keyAgg([pk]), tweak, false), 'tweak', msg);
      // The x-only variant negates an odd-y Q first, so it does not cancel.
      expect(getXonlyPk(keyAggAndTweak([pk], [{ tweak, xonly: true }]))).toHaveLength(32);
    });
  });

  describe('wrong lengths and types for every argument', () => {
    const s = session();
    const sk = s.sks[0] as Uint8Array;
    const pk = s.pubkeys[0] as Uint8Array;
    const secnonce = (): Uint8Array => Uint8Array.from([...seeded('k1'), ...seeded('k2'), ...pk]);
    const short = (b: Uint8Array): Uint8Array => b.subarray(0, b.length - 1);
    const long = (b: Uint8Array): Uint8Array => Uint8Array.from([...b, 0]);
    const tweak: Tweak = { tweak: seeded('tweak'), xonly: true };

    it('individualPubkey, keySort, keyAgg', () => {
      for (const bad of [short(sk), long(sk)]) expectInvalidInput(() => individualPubkey(bad), 'sk', /32 bytes/);
      expectInvalidInput(() => individualPubkey('00' as unknown as Uint8Array), 'sk', /32 bytes, got string/);
      for (const f of [keySort, keyAgg, (p: readonly Uint8Array[]) => keyAggAndTweak(p, [])]) {
        expectInvalidInput(() => f([pk, short(pk)]), 'pubkeys[1]', /33 bytes, got 32 bytes/);
        expectInvalidInput(() => f([long(pk)]), 'pubkeys[0]', /33 bytes/);
        expectInvalidInput(() => f([]), 'pubkeys', /at least 1/);
        expectInvalidInput(() => f(pk as unknown as Uint8Array[]), 'pubkeys', /array/);
      }
    });

    it('applyTweak, keyAggAndTweak tweaks', () => {
      const ctx = keyAgg(s.pubkeys);
      expectInvalidInput(() => applyTweak(ctx, short(tweak.tweak), true), 'tweak', /32 bytes/);
      expectInvalidInput(() => applyTweak(ctx, tweak.tweak, 'yes' as unknown as boolean), 'tweak', /boolean/);
      expectInvalidInput(() => applyTweak({} as never, tweak.tweak, true), 'ctx');
      expectInvalidInput(() => applyTweak({ ...ctx, gacc: 2n }, tweak.tweak, true), 'ctx');
      expectInvalidInput(() => getXonlyPk(null as never), 'ctx');
      expectInvalidInput(() => getPlainPk({ ...ctx, tacc: -1n }), 'ctx');
      expectInvalidInput(() => keyAggAndTweak(s.pubkeys, [tweak, { tweak: long(tweak.tweak), xonly: false }]), 'tweaks[1].tweak', /32 bytes/);
      expectInvalidInput(() => keyAggAndTweak(s.pubkeys, [{ tweak: tweak.tweak } as Tweak]), 'tweaks[0]', /boolean/);
      expectInvalidInput(() => keyAggAndTweak(s.pubkeys, [null as unknown as Tweak]), 'tweaks[0]');
      expectInvalidInput(() => keyAggAndTweak(s.pubkeys, tweak as unknown as Tweak[]), 'tweaks', /array/);
    });

    it('nonceGen', () => {
      const base = { sk, pk, aggpk: seeded('aggpk'), msg: s.msg, extraIn: new Uint8Array(3), rand: seeded('rand') };
      expectInvalidInput(() => nonceGen({ ...base, sk: short(sk) }), 'sk', /32 bytes/);
      expectInvalidInput(() => nonceGen({ ...base, pk: short(pk) }), 'pk', /33 bytes/);
      expectInvalidInput(() => nonceGen({ ...base, pk: undefined as unknown as Uint8Array }), 'pk', /33 bytes, got undefined/);
      expectInvalidInput(() => nonceGen({ ...base, aggpk: pk }), 'aggpk', /32 bytes/);
      expectInvalidInput(() => nonceGen({ ...base, rand: long(base.rand) }), 'rand', /32 bytes/);
      expectInvalidInput(() => nonceGen({ ...base, msg: 'm' as unknown as Uint8Array }), 'msg', /Uint8Array/);
      expectInvalidInput(() => nonceGen({ ...base, extraIn: 5 as unknown as Uint8Array }), 'extraIn', /Uint8Array/);
      expectInvalidInput(() => nonceGen(null as never), 'input');
      // Absent and empty message are different inputs and give different nonces.
      expect(nonceGen({ ...base, msg: undefined }).pubnonce).not.toEqual(nonceGen({ ...base, msg: new Uint8Array(0) }).pubnonce);
    });

    it('nonceAgg', () => {
      expectInvalidInput(() => nonceAgg([s.pubnonces[0] as Uint8Array, short(s.pubnonces[1] as Uint8Array)]), 'pubnonces[1]', /66 bytes, got 65/);
      expectInvalidInput(() => nonceAgg([long(s.pubnonces[0] as Uint8Array)]), 'pubnonces[0]', /66 bytes/);
      expectInvalidInput(() => nonceAgg([]), 'pubnonces', /at least 1/);
    });

    it('sign', () => {
      expectInvalidInput(() => sign(long(secnonce()), sk, s.ctx), 'secnonce', /97 bytes/);
      expectInvalidInput(() => sign('x' as unknown as Uint8Array, sk, s.ctx), 'secnonce', /97 bytes/);
      expectInvalidInput(() => sign(secnonce(), short(sk), s.ctx), 'sk', /32 bytes/);
      expectInvalidInput(() => sign(secnonce(), sk, { ...s.ctx, aggnonce: short(s.aggnonce) }), 'ctx.aggnonce', /66 bytes/);
      expectInvalidInput(() => sign(secnonce(), sk, { ...s.ctx, pubkeys: [pk, long(pk)] }), 'ctx.pubkeys[1]', /33 bytes/);
      expectInvalidInput(() => sign(secnonce(), sk, { ...s.ctx, pubkeys: [] }), 'ctx.pubkeys', /at least 1/);
      expectInvalidInput(() => sign(secnonce(), sk, { ...s.ctx, tweaks: [{ tweak: short(tweak.tweak), xonly: true }] }), 'ctx.tweaks[0].tweak', /32 bytes/);
      expectInvalidInput(() => sign(secnonce(), sk, { ...s.ctx, msg: undefined as unknown as Uint8Array }), 'ctx.msg', /Uint8Array/);
    });

    it('deterministicSign', () => {
      const ao = s.aggnonce;
      expectInvalidInput(() => deterministicSign(long(sk), ao, s.pubkeys, [], s.msg), 'sk', /32 bytes/);
      expectInvalidInput(() => deterministicSign(sk, short(ao), s.pubkeys, [], s.msg), 'aggothernonce', /66 bytes/);
      expectInvalidInput(() => deterministicSign(sk, ao, [short(pk)], [], s.msg), 'pubkeys[0]', /33 bytes/);
      expectInvalidInput(() => deterministicSign(sk, ao, [], [], s.msg), 'pubkeys', /at least 1/);
      expectInvalidInput(() => deterministicSign(sk, ao, s.pubkeys, [{ tweak: long(tweak.tweak), xonly: true }], s.msg), 'tweaks[0].tweak', /32 bytes/);
      expectInvalidInput(() => deterministicSign(sk, ao, s.pubkeys, [], null as unknown as Uint8Array), 'msg', /Uint8Array/);
      expectInvalidInput(() => deterministicSign(sk, ao, s.pubkeys, [], s.msg, short(seeded('r'))), 'rand', /32 bytes/);
    });

    it('partialSigVerify', () => {
      const args = [s.pubnonces, s.pubkeys, [], s.msg] as const;
      expectInvalidInput(() => partialSigVerify(short(ZERO32), ...args, 0), 'psig', /32 bytes/);
      expectInvalidInput(() => partialSigVerify(ZERO32, [s.pubnonces[0] as Uint8Array, long(s.pubnonces[1] as Uint8Array), s.pubnonces[2] as Uint8Array], s.pubkeys, [], s.msg, 0), 'pubnonces[1]', /66 bytes/);
      expectInvalidInput(() => partialSigVerify(ZERO32, s.pubnonces, [pk, pk, short(pk)], [], s.msg, 0), 'pubkeys[2]', /33 bytes/);
      expectInvalidInput(() => partialSigVerify(ZERO32, s.pubnonces.slice(0, 2), s.pubkeys, [], s.msg, 0), 'pubnonces', /same length/);
      expectInvalidInput(() => partialSigVerify(ZERO32, s.pubnonces, s.pubkeys, [{ tweak: short(tweak.tweak), xonly: false }], s.msg, 0), 'tweaks[0].tweak', /32 bytes/);
      expectInvalidInput(() => partialSigVerify(ZERO32, s.pubnonces, s.pubkeys, [], 7 as unknown as Uint8Array, 0), 'msg', /Uint8Array/);
      for (const i of [-1, 3, 1.5, Number.NaN]) expectInvalidInput(() => partialSigVerify(ZERO32, ...args, i), 'i', /integer in \[0, 3\)/);
    });

    it('partialSigAgg', () => {
      expectInvalidInput(() => partialSigAgg([ZERO32, long(ZERO32)], s.ctx), 'psigs[1]', /32 bytes/);
      expectInvalidInput(() => partialSigAgg([], s.ctx), 'psigs', /at least 1/);
      expectInvalidInput(() => partialSigAgg([ZERO32], { ...s.ctx, aggnonce: long(s.aggnonce) }), 'ctx.aggnonce', /66 bytes/);
      expectInvalidInput(() => partialSigAgg([ZERO32], { ...s.ctx, pubkeys: [short(pk)] }), 'ctx.pubkeys[0]', /33 bytes/);
      expectInvalidInput(() => partialSigAgg([ZERO32], undefined as unknown as SessionContext), 'ctx');
    });
  });

  describe('error messages carry no secrets', () => {
    it('no error names the secret key or secret nonce bytes', () => {
      const s = session();
      const sk = s.sks[0] as Uint8Array;
      const secnonce = s.nonces[0]?.secnonce as Uint8Array;
      const secretHex = [toHexUpper(sk), toHexUpper(secnonce.subarray(0, 32)), toHexUpper(secnonce.subarray(32, 64))];
      const errors = [
        caught(() => sign(secnonce.slice(), sk, { ...s.ctx, pubkeys: [s.pubkeys[1] as Uint8Array] })),
        caught(() => sign(secnonce.slice(), s.sks[1] as Uint8Array, s.ctx)),
        caught(() => deterministicSign(sk, new Uint8Array(66), s.pubkeys, [], s.msg)),
        caught(() => deterministicSign(sk, s.aggnonce, [s.pubkeys[1] as Uint8Array], [], s.msg)),
        caught(() => individualPubkey(MAX32)),
      ];
      for (const err of errors) {
        const text = `${String(err)} ${JSON.stringify(err)}`.toUpperCase();
        for (const h of secretHex) {
          expect(text).not.toContain(h);
          expect(text).not.toContain(h.slice(0, 16));
        }
      }
    });
  });
});
