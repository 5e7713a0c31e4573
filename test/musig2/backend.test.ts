// The curve backend seam: selection, the native addon's own checks, and the corners of the
// native scalar arithmetic that random sessions and the BIP327 vectors do not reach (hash
// outputs >= n, zero operands), each compared with the noble backend.
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { bytesToNumberBE, numberToBytesBE } from '@noble/curves/utils.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { afterAll, describe, expect, it } from 'vitest';
import {
  InvalidInputError, activeBackend, individualPubkey, musig2For, nativeStatus, selectBackend,
} from '../../src/musig2/index.js';
import { loadAddon, nativeBackend } from '../../src/musig2/native.js';
import { nobleBackend } from '../../src/musig2/noble-backend.js';
import { BACKENDS, hex, toHexUpper } from './helpers.js';

const N = secp256k1.Point.Fn.ORDER;
const seeded = (label: string): Uint8Array => sha256(new TextEncoder().encode(label));
const addon = (() => {
  const r = loadAddon();
  if (!('addon' in r)) throw new Error(r.error);
  return r.addon;
})();
const native = nativeBackend(addon);
const before = activeBackend();

afterAll(() => {
  selectBackend(before);
});

describe('selection', () => {
  it('the addon loads here (npm test builds it), auto picks it, and every choice is honoured', () => {
    expect(nativeStatus()).toEqual({ available: true });
    expect(selectBackend('auto')).toEqual({ backend: 'native' });
    expect(activeBackend()).toBe('native');
    expect(selectBackend('noble')).toEqual({ backend: 'noble' });
    expect(activeBackend()).toBe('noble');
    expect(selectBackend('native')).toEqual({ backend: 'native' });
    // The exported functions follow the selection and agree across it.
    const sk = seeded('backend/sk');
    const pk = individualPubkey(sk);
    selectBackend('noble');
    expect(individualPubkey(sk)).toEqual(pk);
  });

  it.each(BACKENDS)('a KeyAggContext made by the other backend is refused by %s', (backend) => {
    const other = musig2For(backend === 'native' ? 'noble' : 'native');
    const mine = musig2For(backend);
    const pks = [seeded('a'), seeded('b')].map((sk) => mine.individualPubkey(sk));
    const foreign = other.keyAgg(pks);
    expect(() => mine.getXonlyPk(foreign)).toThrow(InvalidInputError);
    expect(() => mine.applyTweak(foreign, seeded('t'), true)).toThrow(InvalidInputError);
    expect(mine.getXonlyPk(mine.keyAgg(pks))).toEqual(other.getXonlyPk(foreign));
  });
});

describe('the addon checks its arguments itself', () => {
  it('refuses wrong lengths and types with a TypeError, before any arithmetic', () => {
    expect(() => addon.pubkeyCreate(new Uint8Array(31))).toThrow(TypeError);
    expect(() => addon.pubkeyCreate('x' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => addon.parse(new Uint8Array(65))).toThrow(TypeError);
    expect(() => addon.seckeyVerify(new Uint16Array(16) as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => addon.nonces(new Uint8Array(32), new Uint8Array(32), new Uint8Array(63))).toThrow(TypeError);
    expect(() => addon.signScalar(new Uint8Array(64), new Uint8Array(32), new Uint8Array(31), false, new Uint8Array(32), false)).toThrow(TypeError);
    expect(() => addon.mulAdd([new Uint8Array(96)], [new Uint8Array(32)], null)).toThrow(TypeError);
    // 64 zero bytes are not a point the library made: refused, not handed to libsecp256k1.
    expect(() => addon.negate(new Uint8Array(97))).toThrow(TypeError);
    expect(() => (addon.parse as (...a: unknown[]) => unknown)()).toThrow(TypeError);
  });

  it('the JavaScript side checks lengths before calling', () => {
    expect(() => native.pubkeyOf(new Uint8Array(33))).toThrow(/32 bytes/);
    expect(() => native.noncePair(new Uint8Array(32), new Uint8Array(31), new Uint8Array(64))).toThrow(/32 bytes/);
    expect(() => native.signScalar(new Uint8Array(63), new Uint8Array(32), 1n, false, 1n, false)).toThrow(/64 bytes/);
    expect(() => native.mulAdd([native.G], [N], 0n)).toThrow(/\[0, n\)/);
  });

  it('range checks of secret scalars match BIP327: 0 < k < n', () => {
    for (const [k, ok] of [[0n, false], [1n, true], [N - 1n, true], [N, false], [2n ** 256n - 1n, false]] as const) {
      expect(native.isValidSecret(numberToBytesBE(k, 32))).toBe(ok);
      expect(native.pubkeyOf(numberToBytesBE(k, 32)) === null).toBe(!ok);
    }
  });
});

describe('scalar corners, native against noble', () => {
  it('nonce hashes >= n are reduced mod n (constant-time subtraction in the addon)', () => {
    const cases = [2n ** 256n - 1n, N, N + 1n, N - 1n, 2n ** 255n].map((h) => numberToBytesBE(h, 32));
    for (const h1 of cases) {
      const kN = new Uint8Array(64);
      const kJ = new Uint8Array(64);
      const h2 = seeded('h2');
      const rn = native.noncePair(h1, h2, kN);
      const rj = nobleBackend.noncePair(h1, h2, kJ);
      expect(rn === null).toBe(rj === null);
      if (rn === null) continue; // k1 = 0 (h1 = n): refused by both, k left for the caller to wipe
      expect(toHexUpper(kN)).toBe(toHexUpper(kJ));
      expect(bytesToNumberBE(kN.subarray(0, 32))).toBe(bytesToNumberBE(h1) % N);
      expect(rn && native.encode(rn[0])).toEqual(rj && nobleBackend.encode(rj[0]));
    }
    // k = 0 after reduction is refused by both.
    expect(native.noncePair(numberToBytesBE(N, 32).fill(0), seeded('x'), new Uint8Array(64))).toBeNull();
    expect(native.noncePair(numberToBytesBE(N, 32), seeded('x'), new Uint8Array(64))).toBeNull();
  });

  it('signScalar gives noble\'s bytes, including the zero cases libsecp256k1 refuses (b = 0, f = 0, t = 0, s = 0)', () => {
    const k1 = bytesToNumberBE(seeded('k1')) % N;
    const k2 = bytesToNumberBE(seeded('k2')) % N;
    const d = bytesToNumberBE(seeded('d')) % N;
    const b = bytesToNumberBE(seeded('b')) % N;
    const f = bytesToNumberBE(seeded('f')) % N;
    const k = (a: bigint, c: bigint) => Uint8Array.from([...numberToBytesBE(a, 32), ...numberToBytesBE(c, 32)]);
    const t = (k1 + b * k2) % N;
    const cases: [string, Uint8Array, bigint, bigint, boolean][] = [
      ['ordinary', k(k1, k2), b, f, false],
      ['negated', k(k1, k2), b, f, true],
      ['b = 0', k(k1, k2), 0n, f, false],
      ['f = 0', k(k1, k2), b, 0n, true],
      // k1 = n - b·k2: t = 0, so T is infinity and s = f·d.
      ['t = 0', k((N - ((b * k2) % N)) % N, k2), b, f, false],
      // f·d = t: s = 0 when negated.
      ['s = 0', k(k1, k2), b, (t * modInverse(d)) % N, true],
    ];
    for (const [what, kk, bb, ff, neg] of cases) {
      const a = native.signScalar(kk, numberToBytesBE(d, 32), bb, neg, ff, true);
      const c = nobleBackend.signScalar(kk, numberToBytesBE(d, 32), bb, neg, ff, true);
      expect(toHexUpper(a.s), what).toBe(toHexUpper(c.s));
      expect(native.isInf(a.T!), what).toBe(nobleBackend.isInf(c.T!));
      if (!nobleBackend.isInf(c.T!)) expect(native.encode(a.T!), what).toEqual(nobleBackend.encode(c.T!));
    }
    expect(bytesToNumberBE(native.signScalar(cases[5]![1], numberToBytesBE(d, 32), b, true, cases[5]![3], false).s)).toBe(0n);
  });

  it('mulAdd handles infinity, zero and one scalars, and more terms than one addon call takes', () => {
    const P = native.decode(hex('0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798'))!;
    expect(native.equals(P, native.G)).toBe(true);
    expect(native.isInf(native.mulAdd([P], [0n], 0n))).toBe(true);
    expect(native.isInf(native.mulAdd([P, native.negate(P)], [1n, 1n], 0n))).toBe(true);
    expect(native.isInf(native.mulAdd([P], [N - 5n], 5n))).toBe(true);
    expect(native.equals(native.mulAdd([native.INF, P], [7n, 1n], 0n), P)).toBe(true);
    const many = Array.from({ length: 150 }, () => P);
    const scalars = many.map((_, i) => BigInt(i + 1));
    const sum = (150n * 151n) / 2n;
    expect(native.encode(native.mulAdd(many, scalars, 3n))).toEqual(nobleBackend.encode(nobleBackend.mulAdd([nobleBackend.G], [sum + 3n], 0n)));
  });
});

function modInverse(a: bigint): bigint {
  let [r0, r1, s0, s1] = [N, a % N, 0n, 1n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return ((s0 % N) + N) % N;
}
