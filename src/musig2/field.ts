/**
 * Arithmetic modulo the secp256k1 field prime p = 2^256 − 2^32 − 977, on plain bigints, for the
 * variable-time public-data paths (msm.ts, point decompression). The special form of p gives a
 * reduction that is cheaper than bigint `%`.
 */
import { secp256k1 } from '@noble/curves/secp256k1.js';

const Fp = secp256k1.Point.Fp;
export const P = Fp.ORDER;
const MASK256 = (1n << 256n) - 1n;
const P_FOLD = 0x1000003d1n; // 2^256 ≡ 2^32 + 977 (mod p)

/** x mod p for 0 <= x < 2^700 (two folds of the top half, then one conditional subtraction). */
export function red(x: bigint): bigint {
  x = (x & MASK256) + (x >> 256n) * P_FOLD;
  x = (x & MASK256) + (x >> 256n) * P_FOLD;
  return x >= P ? x - P : x;
}
export const fmul = (a: bigint, b: bigint): bigint => red(a * b);
export const fsqr = (a: bigint): bigint => red(a * a);
export const fsub = (a: bigint, b: bigint): bigint => (a >= b ? a - b : a - b + P);

/** a^(2^k) · b. */
function sqrMul(a: bigint, k: number, b: bigint): bigint {
  for (let i = 0; i < k; i++) a = fsqr(a);
  return fmul(a, b);
}

/** A square root of a mod p, or null if a is not a square (addition chain for (p+1)/4). */
export function fsqrt(a: bigint): bigint | null {
  const b2 = fmul(fsqr(a), a);
  const b3 = fmul(fsqr(b2), a);
  const b6 = sqrMul(b3, 3, b3);
  const b9 = sqrMul(b6, 3, b3);
  const b11 = sqrMul(b9, 2, b2);
  const b22 = sqrMul(b11, 11, b11);
  const b44 = sqrMul(b22, 22, b22);
  const b88 = sqrMul(b44, 44, b44);
  const b176 = sqrMul(b88, 88, b88);
  const b220 = sqrMul(b176, 44, b44);
  const b223 = sqrMul(b220, 3, b3);
  let t = sqrMul(b223, 23, b22);
  t = sqrMul(t, 6, b2);
  t = fsqr(fsqr(t));
  return fsqr(t) === a ? t : null;
}

/** Inverses of many non-zero field elements with one inversion (Montgomery's trick). */
export function finvBatch(xs: readonly bigint[]): bigint[] {
  return Fp.invertBatch(xs as bigint[]);
}
