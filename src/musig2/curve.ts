/**
 * Scalar multiplication strategies. Secret scalars (nonces, secret keys) only ever go through
 * noble's constant-time `multiply`; public scalars may use the faster variable-time paths.
 */
import { mulAddUnsafe } from '@noble/curves/abstract/curve.js';
import { Point } from './encoding.js';
import { LruCache } from './lru.js';

// Our own instances of G so that larger precomputation windows do not change noble's global
// BASE (shared with every other noble user in the process). Tables are built on first use.
const G_SECRET_WINDOW = 10;
const G_PUBLIC_WINDOW = 10;
const G_SECRET = Point.fromAffine(Point.BASE.toAffine()).precompute(G_SECRET_WINDOW);
const G_PUBLIC = Point.fromAffine(Point.BASE.toAffine()).precompute(G_PUBLIC_WINDOW);

/** k·G for a secret k in [1, n): constant time (noble's blinded fixed-window multiply). */
export function mulBaseSecret(k: bigint): Point {
  return G_SECRET.multiply(k);
}

/** s·G for a public s in [0, n): variable time. */
export function mulBasePublic(s: bigint): Point {
  return G_PUBLIC.multiplyUnsafe(s);
}

/** Σ scalars[i]·points[i] for public data: variable-time multi-scalar multiplication. */
export function msmPublic(points: Point[], scalars: bigint[]): Point {
  return mulAddUnsafe(Point, points, scalars);
}

// Public keys that recur (our own key in self-verification, a coordinator's signers) get a
// precomputed table once they have been used a few times. Both maps are bounded.
const TABLE_WINDOW = 6;
const TABLE_AFTER_USES = 3;
const useCounts = new LruCache<string, number>(1024);
const tables = new LruCache<string, Point>(64);

/** s·P for a public scalar s and a public key P identified by `id` (e.g. its hex). Variable time. */
export function mulPublicKey(id: string, P: Point, s: bigint): Point {
  let table = tables.get(id);
  if (table === undefined) {
    const uses = (useCounts.get(id) ?? 0) + 1;
    useCounts.set(id, uses);
    if (uses >= TABLE_AFTER_USES) {
      // A fresh instance: noble keys its tables by point identity, and P may be shared.
      table = Point.fromAffine(P.toAffine()).precompute(TABLE_WINDOW);
      tables.set(id, table);
    }
  }
  return (table ?? P).multiplyUnsafe(s);
}
