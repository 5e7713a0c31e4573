/**
 * The native backend: libsecp256k1 (Debian's libsecp256k1, 0.2.0 on bookworm) through the
 * project's own N-API addon in native/ (built by scripts/ensure-deps.mjs).
 *
 * - Secret scalars stay bytes: sk·G, k1·G, k2·G and t·G go through ec_pubkey_create (the
 *   blinded, constant-time ecmult_gen of a randomized context), and s = ±(k1' + b·k2') + f·d
 *   through ec_seckey_tweak_mul / _tweak_add / _negate. No secret scalar becomes a BigInt,
 *   except in the fallback below for an intermediate that is zero (probability about 2^-256).
 * - Public work uses the library's variable-time multiplications. A point is kept as the
 *   library's own 64-byte form plus its compressed encoding, so a cached key or nonce is
 *   decompressed once.
 * - Lengths are checked here before every call, and again in C.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { CurveBackend, Pt } from './backend.js';
import { N, bytes32, copyBytes, modN, toInt } from './encoding.js';
import { Musig2Error } from './errors.js';

/** The addon's functions (native/src/addon.c). Points are its 97-byte buffers. */
interface Addon {
  abiVersion: number;
  pubkeyCreate(sk: Uint8Array): Uint8Array | null;
  seckeyVerify(k: Uint8Array): boolean;
  parse(c: Uint8Array): Uint8Array | null;
  negate(p: Uint8Array): Uint8Array;
  mulAdd(points: Uint8Array[], scalars: Uint8Array[], g: Uint8Array | null): Uint8Array | null;
  nonces(h1: Uint8Array, h2: Uint8Array, k: Uint8Array): [Uint8Array, Uint8Array] | null;
  signScalar(k: Uint8Array, d: Uint8Array, b: Uint8Array, negate: boolean, f: Uint8Array, wantT: boolean): [Uint8Array, Uint8Array | null] | null;
}

const ABI_VERSION = 1;
const PT_BYTES = 97;
const MAX_TERMS = 64; // the addon's limit per mulAdd call

/** Where node-gyp puts the addon; the same relative path from src/musig2 and dist/musig2. */
export const ADDON_PATH = new URL('../../native/build/Release/musig2_secp256k1.node', import.meta.url);

let loaded: { addon: Addon } | { error: string } | undefined;

/** Loads the addon once per thread; the reason it could not be loaded otherwise. */
export function loadAddon(): { addon: Addon } | { error: string } {
  if (loaded === undefined) {
    try {
      const addon = createRequire(import.meta.url)(fileURLToPath(ADDON_PATH)) as Addon;
      loaded = addon.abiVersion === ABI_VERSION
        ? { addon }
        : { error: `the native addon is version ${String(addon.abiVersion)}, ${ABI_VERSION} is needed: rebuild it (node scripts/ensure-deps.mjs)` };
    } catch (err) {
      const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
      loaded = { error: `the native addon did not load (${why}); build it with node scripts/ensure-deps.mjs` };
    }
  }
  return loaded;
}

/** A point: the addon's 97 bytes (libsecp256k1's 64 || compressed 33), or null for infinity. */
class NativePoint implements Pt {
  declare readonly __musig2Point: 'native';
  constructor(readonly b: Uint8Array | null) {}
}

const INF = new NativePoint(null);
const wrap = (b: Uint8Array | null): NativePoint => (b === null ? INF : new NativePoint(b));

function bytesOf(p: Pt): Uint8Array {
  const b = (p as NativePoint).b;
  if (b === null) throw new Musig2Error('the point at infinity has no encoding');
  return b;
}

function need(x: Uint8Array, len: number, what: string): void {
  if (!(x instanceof Uint8Array) || x.length !== len) throw new Musig2Error(`native backend: ${what} must be ${len} bytes`);
}

/** A public scalar in [0, n) as 32 bytes. */
function scalar32(x: bigint): Uint8Array {
  if (x < 0n || x >= N) throw new Musig2Error('native backend: a public scalar must be in [0, n)');
  return bytes32(x);
}

const ONE = bytes32(1n);

/** The native backend over a loaded addon. */
export function nativeBackend(addon: Addon): CurveBackend {
  function mulAdd(points: readonly Pt[], scalars: readonly bigint[], g: bigint): Pt {
    if (points.length !== scalars.length) throw new Musig2Error('native backend: points and scalars differ in length');
    const ps: Uint8Array[] = [];
    const ss: Uint8Array[] = [];
    points.forEach((p, i) => {
      const k = scalars[i] as bigint;
      const b = (p as NativePoint).b;
      if (b === null || k === 0n) return;
      need(b, PT_BYTES, 'a point');
      ps.push(b);
      ss.push(k === 1n ? ONE : scalar32(k));
    });
    const gb = g === 0n ? null : scalar32(g);
    if (ps.length <= MAX_TERMS) return wrap(addon.mulAdd(ps, ss, gb));
    let acc: Pt = wrap(addon.mulAdd([], [], gb));
    for (let i = 0; i < ps.length; i += MAX_TERMS) {
      acc = backend.add(acc, wrap(addon.mulAdd(ps.slice(i, i + MAX_TERMS), ss.slice(i, i + MAX_TERMS), null)));
    }
    return acc;
  }

  const backend: CurveBackend = {
    name: 'native',
    INF,
    G: wrap(addon.pubkeyCreate(ONE)),
    isPoint: (x: unknown): x is Pt => x instanceof NativePoint,
    isInf: (p) => (p as NativePoint).b === null,
    decode: (c) => {
      if (!(c instanceof Uint8Array) || c.length !== 33) return null;
      const b = addon.parse(c);
      return b === null ? null : new NativePoint(b);
    },
    encode: (p) => copyBytes(bytesOf(p), 64, 97),
    hasEvenY: (p) => bytesOf(p)[64] === 2,
    xbytes: (p) => copyBytes(bytesOf(p), 65, 97),
    negate: (p) => {
      const b = (p as NativePoint).b;
      if (b === null) return INF;
      need(b, PT_BYTES, 'a point');
      return new NativePoint(addon.negate(b));
    },
    add: (a, b) => {
      if ((a as NativePoint).b === null) return b;
      if ((b as NativePoint).b === null) return a;
      return mulAdd([a, b], [1n, 1n], 0n);
    },
    equals: (a, b) => {
      const x = (a as NativePoint).b;
      const y = (b as NativePoint).b;
      if (x === null || y === null) return x === y;
      for (let i = 64; i < 97; i++) if (x[i] !== y[i]) return false;
      return true;
    },
    mulAdd: (points, scalars, g) => mulAdd(points, scalars, g),
    normalize: (points) => points,

    isValidSecret: (k) => {
      need(k, 32, 'a secret scalar');
      return addon.seckeyVerify(k);
    },
    pubkeyOf: (sk) => {
      need(sk, 32, 'sk');
      const b = addon.pubkeyCreate(sk);
      return b === null ? null : new NativePoint(b);
    },
    noncePair: (h1, h2, k) => {
      need(h1, 32, 'h1');
      need(h2, 32, 'h2');
      need(k, 64, 'k');
      const r = addon.nonces(h1, h2, k);
      return r === null ? null : [new NativePoint(r[0]), new NativePoint(r[1])];
    },
    signScalar: (k, d, b, negate, f, wantT) => {
      need(k, 64, 'k');
      need(d, 32, 'd');
      const r = addon.signScalar(k, d, scalar32(b), negate, scalar32(f), wantT);
      if (r !== null) return { s: r[0], T: r[1] === null ? null : new NativePoint(r[1]) };
      return signScalarFallback(k, d, b, negate, f, wantT);
    },
  };

  /**
   * libsecp256k1's scalar functions refuse a zero operand or result (b = 0, f = 0, t = 0 or
   * s = 0: probability about 2^-256 each with honest inputs). BIP327 defines those cases, so
   * they are computed here with BigInts, as the noble backend does.
   */
  function signScalarFallback(k: Uint8Array, d: Uint8Array, b: bigint, negate: boolean, f: bigint, wantT: boolean): { s: Uint8Array; T: Pt | null } {
    const t = modN(toInt(k.subarray(0, 32)) + b * toInt(k.subarray(32, 64)));
    const s = modN((negate ? N - t : t) + f * toInt(d));
    let T: Pt | null = null;
    if (wantT) {
      const tb = bytes32(t);
      try {
        T = t === 0n ? INF : wrap(addon.pubkeyCreate(tb));
      } finally {
        tb.fill(0);
      }
    }
    return { s: bytes32(s), T };
  }

  return backend;
}
