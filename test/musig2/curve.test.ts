/**
 * The variable-time multi-scalar multiplication in src/musig2/msm.ts is our own arithmetic, so
 * it is checked here against noble's on random and edge-case inputs.
 */
import { describe, expect, it } from 'vitest';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { mulAddUnsafe } from '@noble/curves/abstract/curve.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToNumberBE } from '@noble/curves/utils.js';
import { msmVartime, mulVartime, splitScalar, wnaf } from '../../src/musig2/msm.js';

const Point = secp256k1.Point;
const N = Point.Fn.ORDER;
const G = Point.BASE;

/** Deterministic pseudo-random scalars in [1, n), so a failure is reproducible. */
function scalarStream(seed: string): () => bigint {
  let counter = 0;
  return () => {
    const h = sha256(new TextEncoder().encode(`${seed}/${counter++}`));
    return (bytesToNumberBE(h) % (N - 1n)) + 1n;
  };
}

describe('msmVartime', () => {
  const next = scalarStream('msm');

  it('matches noble on random point sets of size 0 to 6, with and without a G term', () => {
    for (let t = 0; t < 120; t++) {
      const size = t % 7;
      const points = Array.from({ length: size }, () => G.multiply(next()));
      const scalars = points.map((_, i) => ((t + i) % 5 === 0 ? BigInt((t + i) % 3) : next()));
      const g = t % 2 === 0 ? next() : 0n;
      const want = mulAddUnsafe(Point, [...points, G], [...scalars, g]);
      expect(msmVartime(points, scalars, g).equals(want)).toBe(true);
    }
  });

  it('handles cancellation, repeated points, extreme scalars and infinity', () => {
    const Q = G.multiply(next());
    expect(msmVartime([Q, Q.negate()], [5n, 5n]).is0()).toBe(true);
    expect(msmVartime([Q, Q], [5n, 7n]).equals(Q.multiply(12n))).toBe(true);
    expect(msmVartime([Q], [N - 1n]).equals(Q.negate())).toBe(true);
    expect(msmVartime([Q], [1n]).equals(Q)).toBe(true);
    expect(msmVartime([G], [1n], N - 1n).is0()).toBe(true);
    expect(msmVartime([Point.ZERO, Q], [7n, 3n]).equals(Q.multiply(3n))).toBe(true);
    expect(msmVartime([], []).is0()).toBe(true);
    // A sum that passes through the doubling case of the mixed addition: Q + Q via two lanes.
    expect(msmVartime([Q, Q, Q], [1n, 1n, 1n]).equals(Q.multiply(3n))).toBe(true);
  });

  it('agrees with a decoded point (Z = 1) and with a computed one (Z != 1)', () => {
    const k = next();
    const computed = G.multiply(next()).add(G.multiply(next()));
    const decoded = Point.fromBytes(computed.toBytes(true));
    expect(mulVartime(computed, k).equals(decoded.multiplyUnsafe(k))).toBe(true);
    expect(mulVartime(decoded, k).toBytes(true)).toEqual(computed.multiplyUnsafe(k).toBytes(true));
  });

  it('caches tables of keyed points and reuses them correctly', () => {
    const A = G.multiply(next());
    const B = G.multiply(next());
    const idA = `test-${A.toHex(true)}`;
    const idB = `test-${B.toHex(true)}`;
    for (let round = 0; round < 3; round++) {
      const [ka, kb, kc, kg] = [next(), next(), next(), next()];
      const C = G.multiply(next());
      const want = mulAddUnsafe(Point, [A, B, C, G], [ka, kb, kc, kg]);
      expect(msmVartime([A, B, C], [ka, kb, kc], kg, [idA, idB, undefined]).equals(want)).toBe(true);
      // The same ids in another position, and a keyed point with scalar 0.
      expect(msmVartime([B, A], [kb, ka], 0n, [idB, idA]).equals(A.multiply(ka).add(B.multiply(kb)))).toBe(true);
      expect(msmVartime([A, B], [0n, kb], 0n, [idA, idB]).equals(B.multiply(kb))).toBe(true);
    }
  });

  it('rejects scalars outside [0, n) and mismatched lengths', () => {
    expect(() => msmVartime([G], [N])).toThrow(/out of range/);
    expect(() => msmVartime([G], [-1n])).toThrow(/out of range/);
    expect(() => msmVartime([], [], N)).toThrow(/out of range/);
    expect(() => msmVartime([G], [])).toThrow(/length/);
  });
});

describe('scalar recoding', () => {
  const next = scalarStream('recode');

  it('splitScalar recombines to k with halves below 2^129', () => {
    const LAMBDA = 0x5363ad4cc05c30e0a5261c028812645a122e22ea20816678df02967c1b23bd72n;
    for (const k of [0n, 1n, 2n, N - 1n, N - 2n, N / 2n, ...Array.from({ length: 200 }, next)]) {
      const { k1, k1neg, k2, k2neg } = splitScalar(k);
      expect(k1 < 1n << 129n && k2 < 1n << 129n).toBe(true);
      const sum = (k1neg ? -k1 : k1) + (k2neg ? -k2 : k2) * LAMBDA;
      expect(((sum % N) + N) % N).toBe(k);
    }
  });

  it('wnaf digits are odd, bounded, sparse and sum to k', () => {
    const ks = [0n, 1n, 2n, 3n, 15n, 16n, 31n, 255n, (1n << 129n) - 1n, ...Array.from({ length: 200 }, () => next() >> 120n)];
    for (const k of ks) {
      for (const w of [2, 4, 5, 8]) {
        const d = wnaf(k, w);
        let value = 0n;
        for (let i = d.length - 1; i >= 0; i--) value = value * 2n + BigInt(d[i] as number);
        expect(value).toBe(k);
        let last = -w;
        d.forEach((digit, i) => {
          if (digit === 0) return;
          expect(Math.abs(digit) % 2).toBe(1);
          expect(Math.abs(digit)).toBeLessThan(1 << (w - 1));
          expect(i - last).toBeGreaterThanOrEqual(w);
          last = i;
        });
      }
    }
  });
});
