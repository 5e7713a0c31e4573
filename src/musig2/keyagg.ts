/**
 * BIP327 key generation and aggregation: IndividualPubkey, KeySort, KeyAgg (with the
 * second-key rule), ApplyTweak and the KeyAgg Context getters. Aggregations are cached in
 * bounded LRUs keyed by the exact key list (and tweak list), since signers and coordinators
 * reuse the same key set across many sessions.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import {
  N, Point, cbytes, checkArray, checkByteList, checkBytes, compareBytes, concat, copyBytes, cpoint,
  equalBytes, hasEvenY, modN, toHex, toInt, xbytes,
} from './encoding.js';
import { hashKeyAggCoef, hashKeyAggList } from './hash.js';
import { mulBasePublic, mulBaseSecret, msmPublic } from './curve.js';
import { InvalidContributionError, InvalidInputError } from './errors.js';
import { LruCache } from './lru.js';

/** A tweak to apply to the aggregate key: plain (BIP32-style) or x-only (BIP341-style). */
export interface Tweak {
  readonly tweak: Uint8Array; // 32 bytes
  readonly xonly: boolean;
}

/**
 * The BIP327 KeyAgg Context (Q, gacc, tacc). Treat it as opaque: read it only through
 * getXonlyPk / getPlainPk.
 */
export interface KeyAggContext {
  readonly Q: Point;
  readonly gacc: bigint; // 1 or n - 1
  readonly tacc: bigint; // in [0, n)
}

/** An aggregated (untweaked) key list with everything signing needs, cached per key list. */
export interface KeySet {
  readonly id: string;
  readonly pubkeys: readonly Uint8Array[];
  readonly pubkeysHex: readonly string[];
  readonly points: readonly Point[];
  readonly coefs: readonly bigint[];
  readonly ctx: KeyAggContext;
}

// Bounded by entries and by keys held, so a flood of huge key lists cannot exhaust memory.
export const MAX_CACHED_KEYS = 32768;
const keysets = new LruCache<string, KeySet>(256, MAX_CACHED_KEYS, (ks) => ks.pubkeys.length);
const tweaked = new LruCache<string, KeyAggContext>(256);

/** IndividualPubkey(sk): the 33-byte compressed public key. Fails unless 0 < int(sk) < n. */
export function individualPubkey(sk: Uint8Array): Uint8Array {
  checkBytes(sk, 'sk', 32);
  const d = toInt(sk);
  if (d === 0n || d >= N) throw new InvalidInputError('sk is out of range (must be 0 < sk < n)', 'sk');
  return cbytes(mulBaseSecret(d));
}

/** KeySort: the keys in lexicographic order (a new array; inputs are not modified). */
export function keySort(pubkeys: readonly Uint8Array[]): Uint8Array[] {
  checkByteList(pubkeys, 'pubkeys', 33, 1);
  return pubkeys.map((pk) => copyBytes(pk)).sort(compareBytes);
}

/** GetSecondKey: the first key different from the first, or 33 zero bytes. */
function getSecondKey(pubkeys: readonly Uint8Array[]): Uint8Array {
  const first = pubkeys[0] as Uint8Array;
  for (const pk of pubkeys) if (!equalBytes(pk, first)) return pk;
  return new Uint8Array(33);
}

/** Aggregate a validated key list (uncached). */
function aggregate(id: string, pubkeys: readonly Uint8Array[]): KeySet {
  const copies = pubkeys.map((pk) => copyBytes(pk));
  const L = hashKeyAggList(...copies);
  const pk2 = getSecondKey(copies);
  const points: Point[] = [];
  const coefs: bigint[] = [];
  const memo = new Map<string, bigint>(); // duplicate keys share one coefficient
  const hexes = copies.map(toHex);
  copies.forEach((pk, i) => {
    const P = cpoint(pk);
    if (P === null) throw new InvalidContributionError(i, 'pubkey', 'not a valid compressed point');
    points.push(P);
    const hex = hexes[i] as string;
    let a = memo.get(hex);
    if (a === undefined) {
      a = equalBytes(pk, pk2) ? 1n : modN(toInt(hashKeyAggCoef(L, pk)));
      memo.set(hex, a);
    }
    coefs.push(a);
  });
  const Qraw = msmPublic(points, coefs, 0n, hexes);
  if (Qraw.is0()) throw new InvalidInputError('the aggregate public key is infinity');
  const Q = Point.fromAffine(Qraw.toAffine()); // Z = 1: later encodings need no inversion
  const ctx: KeyAggContext = Object.freeze({ Q, gacc: 1n, tacc: 0n });
  return Object.freeze({ id, pubkeys: Object.freeze(copies), pubkeysHex: Object.freeze(hexes), points: Object.freeze(points), coefs: Object.freeze(coefs), ctx });
}

/** The cached aggregation of a key list (validating lengths first). */
export function getKeySet(pubkeys: readonly Uint8Array[]): KeySet {
  checkByteList(pubkeys, 'pubkeys', 33, 1);
  // Keyed by a hash of the list; a hit is still compared byte for byte before it is used.
  const id = toHex(sha256(concat(...pubkeys)));
  let ks = keysets.get(id);
  if (ks === undefined || ks.pubkeys.length !== pubkeys.length || !ks.pubkeys.every((pk, i) => equalBytes(pk, pubkeys[i] as Uint8Array))) {
    ks = aggregate(id, pubkeys);
    keysets.set(id, ks);
  }
  return ks;
}

/** KeyAgg(pk_1..u): the KeyAgg Context of the key list, in the order given. */
export function keyAgg(pubkeys: readonly Uint8Array[]): KeyAggContext {
  return getKeySet(pubkeys).ctx;
}

function checkTweak(tweak: unknown, xonly: unknown, name: string): bigint {
  checkBytes(tweak, name, 32);
  if (typeof xonly !== 'boolean') throw new InvalidInputError(`${name}: xonly must be a boolean`, name);
  const t = toInt(tweak);
  if (t >= N) throw new InvalidInputError(`${name}: The tweak must be less than n.`, name);
  return t;
}

/** Reject anything that is not a well-formed KeyAgg Context (callers may build their own). */
function checkContext(ctx: unknown): asserts ctx is KeyAggContext {
  const c = ctx as Partial<KeyAggContext> | null;
  const ok = typeof c === 'object' && c !== null && c.Q instanceof Point && !c.Q.is0()
    && (c.gacc === 1n || c.gacc === N - 1n) && typeof c.tacc === 'bigint' && c.tacc >= 0n && c.tacc < N;
  if (!ok) throw new InvalidInputError('ctx must be a KeyAggContext (from keyAgg, applyTweak or keyAggAndTweak)', 'ctx');
}

/** ApplyTweak(keyagg_ctx, tweak, is_xonly_t). */
export function applyTweak(ctx: KeyAggContext, tweak: Uint8Array, isXonly: boolean): KeyAggContext {
  checkContext(ctx);
  return tweakWith(ctx, checkTweak(tweak, isXonly, 'tweak'), isXonly, 'tweak');
}

function tweakWith(ctx: KeyAggContext, t: bigint, isXonly: boolean, name: string): KeyAggContext {
  const negate = isXonly && !hasEvenY(ctx.Q);
  const gQ = negate ? ctx.Q.negate() : ctx.Q;
  const Qraw = gQ.add(mulBasePublic(t));
  if (Qraw.is0()) throw new InvalidInputError(`${name}: The result of tweaking cannot be infinity.`, name);
  const Q = Point.fromAffine(Qraw.toAffine());
  const gacc = negate ? modN(-ctx.gacc) : ctx.gacc;
  const tacc = modN(t + (negate ? -ctx.tacc : ctx.tacc));
  return Object.freeze({ Q, gacc, tacc });
}

/** Validate a tweak list at the API boundary. */
export function checkTweaks(tweaks: unknown, name = 'tweaks'): asserts tweaks is readonly Tweak[] {
  checkArray(tweaks, name, 0);
  tweaks.forEach((tw, i) => {
    if (typeof tw !== 'object' || tw === null) throw new InvalidInputError(`${name}[${i}] must be a Tweak`, `${name}[${i}]`);
    const { tweak, xonly } = tw as { tweak: unknown; xonly: unknown };
    checkBytes(tweak, `${name}[${i}].tweak`, 32);
    if (typeof xonly !== 'boolean') throw new InvalidInputError(`${name}[${i}].xonly must be a boolean`, `${name}[${i}]`);
  });
}

/** KeyAgg followed by ApplyTweak for each tweak in order, with both steps cached. */
export function keyAggAndTweakSet(pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[]): { keyset: KeySet; ctx: KeyAggContext; id: string } {
  const keyset = getKeySet(pubkeys);
  checkTweaks(tweaks);
  if (tweaks.length === 0) return { keyset, ctx: keyset.ctx, id: keyset.id };
  const id = keyset.id + tweaks.map((tw) => (tw.xonly ? '|x' : '|p') + toHex(tw.tweak)).join('');
  let ctx = tweaked.get(id);
  if (ctx === undefined) {
    ctx = keyset.ctx;
    for (const [i, tw] of tweaks.entries()) ctx = tweakWith(ctx, checkTweak(tw.tweak, tw.xonly, `tweaks[${i}]`), tw.xonly, `tweaks[${i}]`);
    tweaked.set(id, ctx);
  }
  return { keyset, ctx, id };
}

/** KeyAgg then ApplyTweak for each tweak, cached. */
export function keyAggAndTweak(pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[]): KeyAggContext {
  return keyAggAndTweakSet(pubkeys, tweaks).ctx;
}

/** GetXonlyPubkey: xbytes(Q), 32 bytes. */
export function getXonlyPk(ctx: KeyAggContext): Uint8Array {
  checkContext(ctx);
  return xbytes(ctx.Q);
}

/** GetPlainPubkey: cbytes(Q), 33 bytes. */
export function getPlainPk(ctx: KeyAggContext): Uint8Array {
  checkContext(ctx);
  return cbytes(ctx.Q);
}

/** The key aggregation coefficient of `pk` in the key set, or null if pk is not in the list. */
export function keyCoef(keyset: KeySet, pk: Uint8Array): { index: number; coef: bigint } | null {
  const index = keyset.pubkeys.findIndex((k) => equalBytes(k, pk));
  return index < 0 ? null : { index, coef: keyset.coefs[index] as bigint };
}

