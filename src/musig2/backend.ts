/**
 * The seam between the BIP327 algorithms (keyagg.ts, nonce.ts, sign.ts) and the curve
 * arithmetic under them. Two backends implement it: noble (@noble/curves plus msm.ts, pure
 * JavaScript, the portable fallback) and native (libsecp256k1 through the project's addon in
 * native/). The algorithms hash, validate and compute public scalars in JavaScript; every
 * point operation and every operation on a secret scalar goes through a backend.
 *
 * Secret scalars cross this seam only as bytes (the caller's buffers); what a backend does
 * with them is its own constant-time story (see each backend).
 */

/** The backends. */
export type BackendName = 'noble' | 'native';

/** A point of one backend, opaque to everyone else (infinity included: see isInf). */
export interface Pt {
  readonly __musig2Point: BackendName;
}

export interface CurveBackend {
  readonly name: BackendName;
  /** The point at infinity. */
  readonly INF: Pt;
  /** The generator G. */
  readonly G: Pt;
  /** Whether x is a point of this backend (points never cross backends). */
  isPoint(x: unknown): x is Pt;
  isInf(p: Pt): boolean;

  // ---- public points (variable time) -------------------------------------------------------
  /** cpoint: a 33-byte compressed point, or null if it is not one. */
  decode(c: Uint8Array): Pt | null;
  /** cbytes: a fresh 33-byte compressed encoding of a point that is not infinity. */
  encode(p: Pt): Uint8Array;
  /** has_even_y of a point that is not infinity. */
  hasEvenY(p: Pt): boolean;
  /** xbytes: a fresh 32-byte x coordinate of a point that is not infinity. */
  xbytes(p: Pt): Uint8Array;
  negate(p: Pt): Pt;
  add(a: Pt, b: Pt): Pt;
  equals(a: Pt, b: Pt): boolean;
  /**
   * Σ scalars[i]·points[i] + g·G for public scalars in [0, n). `ids[i]` names a recurring
   * point (a public key) a backend may keep a table for.
   */
  mulAdd(points: readonly Pt[], scalars: readonly bigint[], g: bigint, ids?: readonly (string | undefined)[]): Pt;
  /** The same points in the form that is cheapest to encode (noble: Z = 1, one inversion). */
  normalize(points: Pt[]): Pt[];

  // ---- secret scalars (constant time) ------------------------------------------------------
  /** Whether 32 secret bytes are a scalar in [1, n). */
  isValidSecret(k: Uint8Array): boolean;
  /** sk·G, or null unless sk is in [1, n). */
  pubkeyOf(sk: Uint8Array): Pt | null;
  /**
   * NonceGen's last step: writes k1 = int(h1) mod n and k2 = int(h2) mod n into k[0..64) and
   * returns [k1·G, k2·G]; null (k left for the caller to wipe) if either is zero.
   */
  noncePair(h1: Uint8Array, h2: Uint8Array, k: Uint8Array): [Pt, Pt] | null;
  /**
   * The partial signature: with t = k1' + b·k2' (k = k1'||k2', both in [1, n)),
   * s = (negate ? −t : t) + f·d mod n as 32 bytes, and T = t·G when wantT (else null).
   * d is in [1, n); b and f are public.
   */
  signScalar(k: Uint8Array, d: Uint8Array, b: bigint, negate: boolean, f: bigint, wantT: boolean): { s: Uint8Array; T: Pt | null };
}
