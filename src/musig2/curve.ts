/**
 * Scalar multiplication entry points. Secret scalars (nonces, secret keys) only ever go through
 * noble's constant-time `multiply`; public scalars use the variable-time paths.
 */
import { Point } from './encoding.js';
import { msmVartime } from './msm.js';

// Our own instances of G, so larger precomputation windows do not change noble's global BASE
// (shared with every other noble user in the process). Tables are built on first use.
const G_SECRET = Point.fromAffine(Point.BASE.toAffine()).precompute(10);
const G_PUBLIC = Point.fromAffine(Point.BASE.toAffine()).precompute(8);

/** k·G for a secret k in [1, n): constant time (noble's blinded fixed-window multiply). */
export function mulBaseSecret(k: bigint): Point {
  return G_SECRET.multiply(k);
}

/**
 * Build the G tables now (a few hundred ms) instead of on the first signature, e.g. at daemon
 * start-up, so the first request is not slow.
 */
export function warmUp(): void {
  G_SECRET.multiply(3n);
  G_PUBLIC.multiplyUnsafe(3n);
}

/** s·G for a public s in [0, n): variable time. */
export function mulBasePublic(s: bigint): Point {
  return G_PUBLIC.multiplyUnsafe(s);
}

/**
 * Σ scalars[i]·points[i] (+ gScalar·G) for public data only: variable time. `ids[i]` (the
 * point's compressed hex) marks a recurring point, such as a public key, whose table is cached.
 */
export function msmPublic(points: readonly Point[], scalars: readonly bigint[], gScalar = 0n, ids?: readonly (string | undefined)[]): Point {
  return msmVartime(points, scalars, gScalar, ids);
}
