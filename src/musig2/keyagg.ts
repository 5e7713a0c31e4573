/**
 * BIP327 key generation and aggregation: IndividualPubkey, KeySort, KeyAgg (with the
 * second-key rule), ApplyTweak and the KeyAgg Context getters. Aggregations are cached in
 * bounded LRUs keyed by the exact key list (and tweak list), since signers and coordinators
 * reuse the same key set across many sessions.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import {
  N, checkArray, checkByteList, checkBytes, compareBytes, concat, copyBytes, equalBytes, modN, toHex, toInt,
} from './encoding.js';
import { hashKeyAggCoef, hashKeyAggList } from './hash.js';
import { InvalidContributionError, InvalidInputError } from './errors.js';
import type { Pt } from './backend.js';
import type { Engine } from './engine.js';

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
  readonly Q: Pt; // a point of the backend that made it
  readonly gacc: bigint; // 1 or n - 1
  readonly tacc: bigint; // in [0, n)
}

/** An aggregated (untweaked) key list with everything signing needs, cached per key list. */
export interface KeySet {
  readonly id: string;
  readonly pubkeys: readonly Uint8Array[];
  readonly pubkeysHex: readonly string[];
  readonly points: readonly Pt[];
  readonly coefs: readonly bigint[];
  readonly ctx: KeyAggContext;
}

/** IndividualPubkey(sk): the 33-byte compressed public key. Fails unless 0 < int(sk) < n. */
export function individualPubkey(E: Engine, sk: Uint8Array): Uint8Array {
  checkBytes(sk, 'sk', 32);
  const P = E.curve.pubkeyOf(sk);
  if (P === null) throw new InvalidInputError('sk is out of range (must be 0 < sk < n)', 'sk');
  return E.curve.encode(P);
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
function aggregate(E: Engine, id: string, pubkeys: readonly Uint8Array[]): KeySet {
  const C = E.curve;
  const copies = pubkeys.map((pk) => copyBytes(pk));
  const L = hashKeyAggList(...copies);
  const pk2 = getSecondKey(copies);
  const points: Pt[] = [];
  const coefs: bigint[] = [];
  const memo = new Map<string, bigint>(); // duplicate keys share one coefficient
  const hexes = copies.map(toHex);
  copies.forEach((pk, i) => {
    const P = C.decode(pk);
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
  const Qraw = C.mulAdd(points, coefs, 0n, hexes);
  if (C.isInf(Qraw)) throw new InvalidInputError('the aggregate public key is infinity');
  const [Q] = C.normalize([Qraw]) as [Pt]; // later encodings need no inversion
  const ctx: KeyAggContext = Object.freeze({ Q, gacc: 1n, tacc: 0n });
  return Object.freeze({ id, pubkeys: Object.freeze(copies), pubkeysHex: Object.freeze(hexes), points: Object.freeze(points), coefs: Object.freeze(coefs), ctx });
}

/** The cached aggregation of a key list (validating lengths first). */
export function getKeySet(E: Engine, pubkeys: readonly Uint8Array[]): KeySet {
  checkByteList(pubkeys, 'pubkeys', 33, 1);
  // Keyed by a hash of the list; a hit is still compared byte for byte before it is used.
  const id = toHex(sha256(concat(...pubkeys)));
  let ks = E.keysets.get(id);
  if (ks === undefined || ks.pubkeys.length !== pubkeys.length || !ks.pubkeys.every((pk, i) => equalBytes(pk, pubkeys[i] as Uint8Array))) {
    ks = aggregate(E, id, pubkeys);
    E.keysets.set(id, ks);
  }
  return ks;
}

/** KeyAgg(pk_1..u): the KeyAgg Context of the key list, in the order given. */
export function keyAgg(E: Engine, pubkeys: readonly Uint8Array[]): KeyAggContext {
  return getKeySet(E, pubkeys).ctx;
}

function checkTweak(tweak: unknown, xonly: unknown, name: string): bigint {
  checkBytes(tweak, name, 32);
  if (typeof xonly !== 'boolean') throw new InvalidInputError(`${name}: xonly must be a boolean`, name);
  const t = toInt(tweak);
  if (t >= N) throw new InvalidInputError(`${name}: The tweak must be less than n.`, name);
  return t;
}

/** Reject anything that is not a well-formed KeyAgg Context (callers may build their own). */
function checkContext(E: Engine, ctx: unknown): asserts ctx is KeyAggContext {
  const c = ctx as Partial<KeyAggContext> | null;
  const ok = typeof c === 'object' && c !== null && E.curve.isPoint(c.Q) && !E.curve.isInf(c.Q)
    && (c.gacc === 1n || c.gacc === N - 1n) && typeof c.tacc === 'bigint' && c.tacc >= 0n && c.tacc < N;
  if (!ok) throw new InvalidInputError('ctx must be a KeyAggContext (from keyAgg, applyTweak or keyAggAndTweak)', 'ctx');
}

/** ApplyTweak(keyagg_ctx, tweak, is_xonly_t). */
export function applyTweak(E: Engine, ctx: KeyAggContext, tweak: Uint8Array, isXonly: boolean): KeyAggContext {
  checkContext(E, ctx);
  return tweakWith(E, ctx, checkTweak(tweak, isXonly, 'tweak'), isXonly, 'tweak');
}

function tweakWith(E: Engine, ctx: KeyAggContext, t: bigint, isXonly: boolean, name: string): KeyAggContext {
  const C = E.curve;
  const negate = isXonly && !C.hasEvenY(ctx.Q);
  const gQ = negate ? C.negate(ctx.Q) : ctx.Q;
  const Qraw = C.mulAdd([gQ], [1n], t);
  if (C.isInf(Qraw)) throw new InvalidInputError(`${name}: The result of tweaking cannot be infinity.`, name);
  const [Q] = C.normalize([Qraw]) as [Pt];
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
export function keyAggAndTweakSet(E: Engine, pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[]): { keyset: KeySet; ctx: KeyAggContext; id: string } {
  const keyset = getKeySet(E, pubkeys);
  checkTweaks(tweaks);
  if (tweaks.length === 0) return { keyset, ctx: keyset.ctx, id: keyset.id };
  const id = keyset.id + tweaks.map((tw) => (tw.xonly ? '|x' : '|p') + toHex(tw.tweak)).join('');
  let ctx = E.tweaked.get(id);
  if (ctx === undefined) {
    ctx = keyset.ctx;
    for (const [i, tw] of tweaks.entries()) ctx = tweakWith(E, ctx, checkTweak(tw.tweak, tw.xonly, `tweaks[${i}]`), tw.xonly, `tweaks[${i}]`);
    E.tweaked.set(id, ctx);
  }
  return { keyset, ctx, id };
}

/** KeyAgg then ApplyTweak for each tweak, cached. */
export function keyAggAndTweak(E: Engine, pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[]): KeyAggContext {
  return keyAggAndTweakSet(E, pubkeys, tweaks).ctx;
}

/** GetXonlyPubkey: xbytes(Q), 32 bytes. */
export function getXonlyPk(E: Engine, ctx: KeyAggContext): Uint8Array {
  checkContext(E, ctx);
  return E.curve.xbytes(ctx.Q);
}

/** GetPlainPubkey: cbytes(Q), 33 bytes. */
export function getPlainPk(E: Engine, ctx: KeyAggContext): Uint8Array {
  checkContext(E, ctx);
  return E.curve.encode(ctx.Q);
}

/** The key aggregation coefficient of `pk` in the key set, or null if pk is not in the list. */
export function keyCoef(keyset: KeySet, pk: Uint8Array): { index: number; coef: bigint } | null {
  const index = keyset.pubkeys.findIndex((k) => equalBytes(k, pk));
  return index < 0 ? null : { index, coef: keyset.coefs[index] as bigint };
}

