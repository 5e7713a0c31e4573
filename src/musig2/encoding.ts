/**
 * Byte, integer and point encodings of BIP327 (the "Notation" section): int/bytes, cbytes,
 * cbytes_ext, xbytes, cpoint, cpoint_ext, has_even_y, plus argument validation helpers used at
 * the API boundary.
 */
import { secp256k1 } from '@noble/curves/secp256k1.js';
import type { WeierstrassPoint } from '@noble/curves/abstract/weierstrass.js';
import { normalizeZ } from '@noble/curves/abstract/curve.js';
import { bytesToNumberBE, numberToBytesBE } from '@noble/curves/utils.js';
import { InvalidInputError } from './errors.js';
import { P as FIELD_P, fmul, fsqr, fsqrt } from './field.js';

export type Point = WeierstrassPoint<bigint>;
export const Point = secp256k1.Point;

/** The curve order n. */
export const N: bigint = Point.Fn.ORDER;

/** int(x) for a byte array, most significant byte first. */
export function toInt(bytes: Uint8Array): bigint {
  return bytesToNumberBE(bytes);
}

/** bytes(32, x). */
export function bytes32(x: bigint): Uint8Array {
  return numberToBytesBE(x, 32);
}

/** x mod n, always non-negative. */
export function modN(x: bigint): bigint {
  const r = x % N;
  return r < 0n ? r + N : r;
}

/** Affine coordinates of a non-infinite point (one field inversion unless Z = 1). */
function affine(P: Point): { x: bigint; y: bigint } {
  return P.toAffine();
}

/** has_even_y(P) for a non-infinite point. */
export function hasEvenY(P: Point): boolean {
  return (affine(P).y & 1n) === 0n;
}

/** xbytes(P): the 32-byte x coordinate. */
export function xbytes(P: Point): Uint8Array {
  return bytes32(affine(P).x);
}

/** cbytes(P): the 33-byte compressed encoding. */
export function cbytes(P: Point): Uint8Array {
  const { x, y } = affine(P);
  const out = new Uint8Array(33);
  out[0] = (y & 1n) === 0n ? 2 : 3;
  out.set(bytes32(x), 1);
  return out;
}

/** cbytes_ext(P): like cbytes, but infinity is 33 zero bytes. */
export function cbytesExt(P: Point): Uint8Array {
  return P.is0() ? new Uint8Array(33) : cbytes(P);
}

/**
 * cpoint(x): decode a 33-byte compressed point, or return null when the BIP says "fail"
 * (wrong length, prefix not 2 or 3, x >= p, or x not on the curve).
 */
export function cpoint(bytes: Uint8Array): Point | null {
  if (bytes.length !== 33 || (bytes[0] !== 2 && bytes[0] !== 3)) return null;
  const x = toInt(bytes.subarray(1));
  if (x >= FIELD_P) return null;
  let c = fmul(fsqr(x), x) + 7n;
  if (c >= FIELD_P) c -= FIELD_P;
  const y = fsqrt(c); // lift_x: the root, if there is one
  if (y === null || y === 0n) return null;
  const wantOdd = bytes[0] === 3;
  return Point.fromAffine({ x, y: ((y & 1n) === 1n) === wantOdd ? y : FIELD_P - y });
}

/** The same points with Z = 1, using one shared inversion (infinity stays infinity). */
export function normalizePoints(points: Point[]): Point[] {
  return normalizeZ(Point, points);
}

/** cpoint_ext(x): cpoint, except 33 zero bytes decode to infinity. */
export function cpointExt(bytes: Uint8Array): Point | null {
  if (bytes.length === 33 && bytes.every((b) => b === 0)) return Point.ZERO;
  return cpoint(bytes);
}

/** Byte-wise equality (lengths must match). Not constant time: use for public data only. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Lexicographic comparison of byte arrays (as BIP327 KeySort uses). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const len = Math.min(a.length, b.length);
  for (let i = 0; i < len; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/**
 * A copy of `x` in a Uint8Array of its own. Not `x.slice()`: on a Node Buffer (a Uint8Array
 * subclass) slice() is a view of the caller's memory, not a copy.
 */
export function copyBytes(x: Uint8Array, start = 0, end = x.length): Uint8Array {
  return new Uint8Array(x.subarray(start, end));
}

/** Concatenate byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Lower-case hex of public bytes (used for cache keys, never for secrets). */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** bytes(len, x) for small non-negative integers (lengths prefixes). */
export function uintBytes(x: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let v = BigInt(x);
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Argument validation at the API boundary. Messages name the argument and the expected length
// and never include the value itself.

function describe(value: unknown): string {
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (value === null) return 'null';
  return typeof value;
}

/** Assert `value` is a Uint8Array (of exactly `len` bytes when given). */
export function checkBytes(value: unknown, name: string, len?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array) || (len !== undefined && value.length !== len)) {
    const want = len === undefined ? 'a Uint8Array' : `${len} bytes`;
    throw new InvalidInputError(`${name} must be ${want}, got ${describe(value)}`, name);
  }
}

/** Assert `value` is an array of at least `min` entries. */
export function checkArray(value: unknown, name: string, min: number): asserts value is readonly unknown[] {
  if (!Array.isArray(value)) throw new InvalidInputError(`${name} must be an array, got ${describe(value)}`, name);
  if (value.length < min) throw new InvalidInputError(`${name} must have at least ${min} entries, got ${value.length}`, name);
  if (value.length >= 2 ** 32) throw new InvalidInputError(`${name} must have fewer than 2^32 entries`, name);
}

/** Assert every entry of an array is a `len`-byte Uint8Array. */
export function checkByteList(value: unknown, name: string, len: number, min: number): asserts value is readonly Uint8Array[] {
  checkArray(value, name, min);
  value.forEach((v, i) => checkBytes(v, `${name}[${i}]`, len));
}
