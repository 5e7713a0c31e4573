/**
 * The noble backend: @noble/curves points, noble's constant-time multiply for secret scalars
 * (curve.ts) and the variable-time multi-scalar multiplication in msm.ts for public ones.
 * Secret scalars become JavaScript BigInts here, which are not constant time and cannot be
 * wiped (see the README): the native backend avoids that.
 */
import type { CurveBackend, Pt } from './backend.js';
import { N, Point, bytes32, cbytes, cpoint, hasEvenY, modN, normalizePoints, toInt, xbytes } from './encoding.js';
import { msmPublic, mulBaseSecret } from './curve.js';

const pt = (p: Point): Pt => p as unknown as Pt;
const P = (p: Pt): Point => p as unknown as Point;

function scalarOf(k: Uint8Array): bigint | null {
  const x = toInt(k);
  return x === 0n || x >= N ? null : x;
}

export const nobleBackend: CurveBackend = {
  name: 'noble',
  INF: pt(Point.ZERO),
  G: pt(Point.BASE),
  isPoint: (x: unknown): x is Pt => x instanceof Point,
  isInf: (p) => P(p).is0(),
  decode: (c) => {
    const p = cpoint(c);
    return p === null ? null : pt(p);
  },
  encode: (p) => cbytes(P(p)),
  hasEvenY: (p) => hasEvenY(P(p)),
  xbytes: (p) => xbytes(P(p)),
  negate: (p) => pt(P(p).negate()),
  add: (a, b) => pt(P(a).add(P(b))),
  equals: (a, b) => P(a).equals(P(b)),
  mulAdd: (points, scalars, g, ids) => pt(msmPublic(points.map(P), scalars, g, ids)),
  normalize: (points) => normalizePoints(points.map(P)).map(pt),

  isValidSecret: (k) => scalarOf(k) !== null,
  pubkeyOf: (sk) => {
    const d = scalarOf(sk);
    return d === null ? null : pt(mulBaseSecret(d));
  },
  noncePair: (h1, h2, k) => {
    const k1 = toInt(h1) % N;
    const k2 = toInt(h2) % N;
    if (k1 === 0n || k2 === 0n) return null;
    k.set(bytes32(k1), 0);
    k.set(bytes32(k2), 32);
    return [pt(mulBaseSecret(k1)), pt(mulBaseSecret(k2))];
  },
  signScalar: (k, d, b, negate, f, wantT) => {
    const k1p = toInt(k.subarray(0, 32));
    const k2p = toInt(k.subarray(32, 64));
    const t = modN(k1p + b * k2p);
    const s = modN((negate ? N - t : t) + f * toInt(d));
    const T = wantT ? pt(t === 0n ? Point.ZERO : mulBaseSecret(t)) : null;
    return { s: bytes32(s), T };
  },
};
