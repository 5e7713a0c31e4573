/**
 * Variable-time multi-scalar multiplication Σ k_i·P_i (+ k_G·G) for PUBLIC scalars and points
 * only: session nonces (b·R2), key aggregation (Σ a_i·P_i) and partial-signature verification.
 *
 * Why not noble's multiplyUnsafe: its complete projective formulas and per-operation point
 * objects cost about 1 ms for one fresh point here. This uses the cheaper Jacobian formulas for
 * a = 0 on plain bigints, with the GLV endomorphism (two 128-bit halves per scalar), wNAF
 * tables in affine coordinates (width 5, cached for public keys; width 8 for G; one shared
 * inversion per call), and one shared doubling chain (Strauss).
 * Results are handed back as noble points and checked against noble in
 * test/musig2/curve.test.ts. Never use this for secret scalars.
 */
import { Point } from './encoding.js';
import { P, finvBatch, fmul, fsqr, fsub, red } from './field.js';
import { LruCache } from './lru.js';

const N = Point.Fn.ORDER;

/** A mutable Jacobian point: x = X/Z², y = Y/Z³; Z = 0 is infinity. */
interface Jac {
  x: bigint;
  y: bigint;
  z: bigint;
}

/** In-place doubling (dbl-2009-l for a = 0, with D = 4·X·Y² and folded reductions). */
function dbl(p: Jac): void {
  if (p.z === 0n) return;
  const A = fsqr(p.x);
  const B = fsqr(p.y);
  const C = fsqr(B);
  const D = red((p.x * B) << 2n);
  const E = A * 3n; // < 3p: red() below accepts unreduced inputs up to ~2^700
  const F = red(E * E);
  let x3 = F - (D << 1n);
  while (x3 < 0n) x3 += P;
  // Y3 = E·(D − X3) − 8·C, with −8·C folded in as 8·(p − C).
  const y3 = red(E * fsub(D, x3) + ((P - C) << 3n));
  p.z = red((p.y * p.z) << 1n);
  p.x = x3;
  p.y = y3;
}

/** In-place mixed addition p += (qx, qy) with an affine q (add-1998-cmo-2 with Z2 = 1). */
function madd(p: Jac, qx: bigint, qy: bigint): void {
  if (p.z === 0n) {
    p.x = qx;
    p.y = qy;
    p.z = 1n;
    return;
  }
  const z1z1 = fsqr(p.z);
  const u2 = fmul(qx, z1z1);
  const s2 = fmul(qy, fmul(p.z, z1z1));
  const h = fsub(u2, p.x);
  const r = fsub(s2, p.y);
  if (h === 0n) {
    // Same x: either the same point (double it) or its negation (the sum is infinity).
    if (r === 0n) dbl(p);
    else p.z = 0n;
    return;
  }
  const hh = fsqr(h);
  const hhh = fmul(h, hh);
  const v = fmul(p.x, hh);
  let x3 = fsqr(r) - hhh - (v << 1n);
  while (x3 < 0n) x3 += P;
  // Y3 = r·(V − X3) − Y1·HHH, with the subtraction folded in as (p − Y1)·HHH.
  p.y = red(r * fsub(v, x3) + (P - p.y) * hhh);
  p.x = x3;
  p.z = fmul(p.z, h);
}

/** Affine tables: xs[j], ys[j] = (2j+1)·Q. */
interface Table {
  xs: bigint[];
  ys: bigint[];
}

/** Convert Jacobian points (none at infinity) to affine with one shared inversion. */
function normalize(points: Jac[]): Table {
  const inv = finvBatch(points.map((p) => p.z));
  const xs: bigint[] = [];
  const ys: bigint[] = [];
  points.forEach((p, i) => {
    const zi = inv[i] as bigint;
    const zi2 = fsqr(zi);
    xs.push(fmul(p.x, zi2));
    ys.push(fmul(p.y, fmul(zi2, zi)));
  });
  return { xs, ys };
}

/**
 * Odd multiples Q, 3Q, ..., (2^(w−1) − 1)·Q for several affine points, with one inversion in
 * all. D = 2Q = (X, Y, Z) is Jacobian; on the isomorphic curve (x, y) -> (x·Z², y·Z³), which
 * has the same a = 0 formulas, D is affine (X, Y) and Q is (x·Z², y·Z³), so the multiples can
 * be built with mixed additions; a point (X', Y', Z') there is (X', Y', Z'·Z) on our curve.
 */
function oddMultiples(points: readonly { x: bigint; y: bigint }[], w: number): Table[] {
  const count = 1 << (w - 2);
  const flat: Jac[] = [];
  for (const q of points) {
    const d: Jac = { x: q.x, y: q.y, z: 1n };
    dbl(d);
    if (d.z === 0n) throw new Error('msm: unexpected point of order 2');
    const z2 = fsqr(d.z);
    const acc: Jac = { x: fmul(q.x, z2), y: fmul(q.y, fmul(z2, d.z)), z: 1n };
    flat.push({ x: acc.x, y: acc.y, z: d.z });
    for (let j = 1; j < count; j++) {
      madd(acc, d.x, d.y);
      if (acc.z === 0n) throw new Error('msm: unexpected infinity in table');
      flat.push({ x: acc.x, y: acc.y, z: fmul(acc.z, d.z) });
    }
  }
  const all = normalize(flat);
  return points.map((_, i) => ({
    xs: all.xs.slice(i * count, (i + 1) * count),
    ys: all.ys.slice(i * count, (i + 1) * count),
  }));
}

// GLV: λ·(x, y) = (β·x, y) on secp256k1, and a reduced basis of the lattice {(a, b): a + bλ ≡ 0}.
const BETA = 0x7ae96a2b657c07106e64479eac3434e99cf0497512f58995c1396c28719501een;
const LAMBDA = 0x5363ad4cc05c30e0a5261c028812645a122e22ea20816678df02967c1b23bd72n;
const A1 = 0x3086d221a7d46bcde86c90e49284eb15n;
const B1 = -0xe4437ed6010e88286f547fa90abfe4c3n;
const A2 = 0x114ca50f7a8e2f3f657c1108d9d44cfd8n;
const B2 = A1;
const HALF_BOUND = 1n << 129n;

/** Split k (0 <= k < n) into k1 + k2·λ ≡ k with |k1|, |k2| < 2^129, as magnitudes and signs. */
export function splitScalar(k: bigint): { k1: bigint; k1neg: boolean; k2: bigint; k2neg: boolean } {
  const c1 = (B2 * k + N / 2n) / N;
  const c2 = (-B1 * k + N / 2n) / N;
  const k1 = k - c1 * A1 - c2 * A2;
  const k2 = -c1 * B1 - c2 * B2;
  // Cheap guard against a wrong constant: the halves must recombine to k and be short.
  if ((((k1 + k2 * LAMBDA) % N) + N) % N !== k) throw new Error('msm: GLV split does not recombine');
  const m1 = k1 < 0n ? -k1 : k1;
  const m2 = k2 < 0n ? -k2 : k2;
  if (m1 >= HALF_BOUND || m2 >= HALF_BOUND) throw new Error('msm: GLV split too long');
  return { k1: m1, k1neg: k1 < 0n, k2: m2, k2neg: k2 < 0n };
}

/**
 * Width-w NAF digits of k >= 0, least significant first (the carry-based recoding of
 * libsecp256k1's ecmult_wnaf, run on a bit array so the loop avoids bigint operations).
 */
export function wnaf(k: bigint, w: number): Int32Array {
  const str = k.toString(2);
  const len = str.length;
  const bits = new Uint8Array(len + w);
  for (let i = 0; i < len; i++) bits[i] = str.charCodeAt(len - 1 - i) - 48;
  const out = new Int32Array(len + 1);
  let carry = 0;
  let bit = 0;
  while (bit < len) {
    if (bits[bit] === carry) {
      bit++;
      continue;
    }
    let word = carry;
    for (let j = 0; j < w; j++) word += (bits[bit + j] as number) << j;
    carry = (word >> (w - 1)) & 1;
    word -= carry << w;
    out[bit] = word;
    bit += w;
  }
  if (carry !== 0) out[bit] = carry;
  let top = out.length;
  while (top > 0 && out[top - 1] === 0) top--;
  return out.subarray(0, top);
}

/** One signed-digit walk over one affine table. */
interface Lane {
  digits: Int32Array;
  table: Table;
  neg: boolean;
}

function lanesFor(k: bigint, table: Table, endoTable: Table, w: number, lanes: Lane[]): void {
  const { k1, k1neg, k2, k2neg } = splitScalar(k);
  if (k1 !== 0n) lanes.push({ digits: wnaf(k1, w), table, neg: k1neg });
  if (k2 !== 0n) lanes.push({ digits: wnaf(k2, w), table: endoTable, neg: k2neg });
}

const endo = (t: Table): Table => ({ xs: t.xs.map((x) => fmul(x, BETA)), ys: t.ys });

const W_POINT = 5; // small tables are cheapest to build, and most points are used once
const W_BASE = 8;
const G_TABLE = oddMultiples([Point.BASE.toAffine()], W_BASE)[0] as Table;
const G_ENDO = endo(G_TABLE);

/** Tables of recurring points (public keys), keyed by the caller's id for the point. */
const keyTables = new LruCache<string, { table: Table; endoTable: Table }>(1024);

/** Jacobian result to a noble point: homogeneous (X·Z, Y, Z³) has the same affine x, y. */
function toPoint(p: Jac): Point {
  if (p.z === 0n) return Point.ZERO;
  return new Point(fmul(p.x, p.z), p.y, fmul(p.z, fsqr(p.z)));
}

/**
 * Σ scalars[i]·points[i] + gScalar·G, variable time. Scalars must be in [0, n). PUBLIC INPUTS
 * ONLY: running time and memory access depend on the scalars.
 *
 * `ids[i]`, when given, must identify points[i] uniquely (e.g. its compressed encoding in hex):
 * that point's table is then cached and reused by later calls with the same id.
 */
export function msmVartime(
  points: readonly Point[], scalars: readonly bigint[], gScalar = 0n, ids?: readonly (string | undefined)[],
): Point {
  if (points.length !== scalars.length) throw new Error('msm: points and scalars differ in length');
  for (const k of [...scalars, gScalar]) if (k < 0n || k >= N) throw new Error('msm: scalar out of range');
  const lanes: Lane[] = [];
  // Points without a cached table get one built here, all with one shared inversion.
  const build: { x: bigint; y: bigint }[] = [];
  const buildK: bigint[] = [];
  const buildId: (string | undefined)[] = [];
  points.forEach((pt, i) => {
    const k = scalars[i] as bigint;
    if (k === 0n || pt.is0()) return;
    const id = ids?.[i];
    const hit = id === undefined ? undefined : keyTables.get(id);
    if (hit !== undefined) {
      lanesFor(k, hit.table, hit.endoTable, W_POINT, lanes);
    } else {
      build.push(pt.toAffine());
      buildK.push(k);
      buildId.push(id);
    }
  });
  if (build.length > 0) {
    oddMultiples(build, W_POINT).forEach((table, i) => {
      const entry = { table, endoTable: endo(table) };
      const id = buildId[i];
      if (id !== undefined) keyTables.set(id, entry);
      lanesFor(buildK[i] as bigint, entry.table, entry.endoTable, W_POINT, lanes);
    });
  }
  if (gScalar !== 0n) lanesFor(gScalar, G_TABLE, G_ENDO, W_BASE, lanes);

  const acc: Jac = { x: 0n, y: 1n, z: 0n };
  let top = 0;
  for (const lane of lanes) top = Math.max(top, lane.digits.length);
  for (let i = top - 1; i >= 0; i--) {
    dbl(acc);
    for (const lane of lanes) {
      const d = lane.digits[i];
      if (d === undefined || d === 0) continue;
      const idx = (Math.abs(d) - 1) >> 1;
      const y = lane.table.ys[idx] as bigint;
      madd(acc, lane.table.xs[idx] as bigint, d < 0 !== lane.neg ? P - y : y);
    }
  }
  return toPoint(acc);
}

/** k·Q for one public point and public scalar, variable time. */
export function mulVartime(Q: Point, k: bigint): Point {
  return msmVartime([Q], [k]);
}

// The endomorphism constants must agree with each other; fail at load time if they do not.
if (!Point.BASE.multiplyUnsafe(LAMBDA).equals(Point.fromAffine({ x: fmul(Point.BASE.x, BETA), y: Point.BASE.y }))) {
  throw new Error('msm: inconsistent endomorphism constants');
}
