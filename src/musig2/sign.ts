/**
 * BIP327 session values, Sign, DeterministicSign, PartialSigVerify and PartialSigAgg.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import {
  N, bytes32, checkByteList, checkBytes, concat, copyBytes, equalBytes, modN, toHex, toInt, uintBytes,
} from './encoding.js';
import { hashAux, hashChallenge, hashDetNonce, hashNonceCoef } from './hash.js';
import { InvalidContributionError, InvalidInputError, Musig2Error } from './errors.js';
import { checkTweaks, keyAggAndTweakSet, keyCoef } from './keyagg.js';
import type { KeyAggContext, KeySet, Tweak } from './keyagg.js';
import { aggregateNoncePoints, decodeExt, decodePubnonces, encodePubnonce, noncePoints } from './nonce.js';
import type { Pt } from './backend.js';
import type { Engine } from './engine.js';

/** The BIP327 Session Context. */
export interface SessionContext {
  readonly aggnonce: Uint8Array; // 66 bytes
  readonly pubkeys: readonly Uint8Array[]; // 33-byte compressed, in signing order
  readonly tweaks: readonly Tweak[];
  readonly msg: Uint8Array; // any length
}

/** The output of GetSessionValues, plus the parities and encodings derived from it. */
export interface SessionValues {
  readonly keyset: KeySet;
  readonly kctx: KeyAggContext;
  readonly Qeven: boolean;
  readonly Qx: Uint8Array;
  readonly b: bigint;
  readonly R: Pt;
  readonly Reven: boolean;
  readonly Rx: Uint8Array;
  readonly e: bigint;
}

function checkSessionContext(ctx: unknown, name = 'ctx'): asserts ctx is SessionContext {
  if (typeof ctx !== 'object' || ctx === null) throw new InvalidInputError(`${name} must be a SessionContext`, name);
  const c = ctx as Record<string, unknown>;
  checkBytes(c.aggnonce, `${name}.aggnonce`, 66);
  checkByteList(c.pubkeys, `${name}.pubkeys`, 33, 1);
  checkTweaks(c.tweaks, `${name}.tweaks`);
  checkBytes(c.msg, `${name}.msg`);
}

/**
 * GetSessionValues. `aggPoints` may carry the already-decoded aggregate nonce (when we built
 * aggnonce ourselves); otherwise aggnonce is decoded and the aggregator blamed if that fails.
 */
function sessionValues(
  E: Engine, aggnonce: Uint8Array, pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[], msg: Uint8Array,
  aggPoints?: { R1: Pt; R2: Pt },
): SessionValues {
  const C = E.curve;
  const { keyset, ctx: kctx } = keyAggAndTweakSet(E, pubkeys, tweaks);
  const Qx = C.xbytes(kctx.Q);
  const b = modN(toInt(hashNonceCoef(aggnonce, Qx, msg)));
  let R1: Pt | null;
  let R2: Pt | null;
  if (aggPoints !== undefined) {
    ({ R1, R2 } = aggPoints);
  } else {
    R1 = decodeExt(E, aggnonce.subarray(0, 33));
    R2 = decodeExt(E, aggnonce.subarray(33, 66));
    if (R1 === null || R2 === null) throw new InvalidContributionError(null, 'aggnonce', 'not a valid pair of points');
  }
  const Rp = C.add(R1, C.mulAdd([R2], [b], 0n));
  const R = C.isInf(Rp) ? C.G : (C.normalize([Rp])[0] as Pt); // normalized for xbytes and parity
  const Rx = C.xbytes(R);
  const e = modN(toInt(hashChallenge(Rx, Qx, msg)));
  return { keyset, kctx, Qeven: C.hasEvenY(kctx.Q), Qx, b, R, Reven: C.hasEvenY(R), Rx, e };
}

// Session values by (keys, tweaks, aggnonce, message), for the public verify/aggregate paths
// only: a coordinator verifies every signer of one session, then aggregates. Signing always
// computes its session values afresh.
function sessionValuesCached(
  E: Engine, aggnonce: Uint8Array, pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[], msg: Uint8Array,
  aggPoints?: { R1: Pt; R2: Pt },
): SessionValues {
  const { id } = keyAggAndTweakSet(E, pubkeys, tweaks); // first, so key and tweak errors come first
  const key = `${id}|${toHex(aggnonce)}|${toHex(sha256(msg))}`;
  let sv = E.sessions.get(key);
  if (sv === undefined) {
    sv = sessionValues(E, aggnonce, pubkeys, tweaks, msg, aggPoints);
    E.sessions.set(key, sv);
  }
  return sv;
}

/** e·a·g·gacc mod n: the factor of the signer's key in s (and in the verification equation). */
function keyFactor(sv: SessionValues, a: bigint): bigint {
  const g = sv.Qeven ? 1n : N - 1n;
  return modN(sv.e * a * g * sv.kctx.gacc);
}

/**
 * PartialSigVerifyInternal for one signer, given the signer's pubnonce points, key point P (and
 * its hex, to cache P's table) and key aggregation coefficient a. With Re = ±(R*1 + b·R*2)
 * (sign of has_even_y(R)) and g' = g·gacc, the BIP's check s·G == Re + e·a·g'·P is evaluated
 * as one multi-scalar product: s·G − e·a·g'·P ∓ b·R*2 == ±R*1. Public data only: variable time.
 */
function verifyInternal(E: Engine, s: bigint, Rs1: Pt, Rs2: Pt, P: Pt, pkHex: string, a: bigint, sv: SessionValues): boolean {
  if (s >= N) return false;
  const C = E.curve;
  const lhs = C.mulAdd([P, Rs2], [modN(-keyFactor(sv, a)), sv.Reven ? modN(-sv.b) : sv.b], s, [pkHex, undefined]);
  return C.equals(lhs, sv.Reven ? Rs1 : C.negate(Rs1));
}

/** The same check given the effective nonce Re* = R*1 + b·R*2 as one point. */
function verifyEffective(E: Engine, s: bigint, ReStar: Pt, P: Pt, pkHex: string, a: bigint, sv: SessionValues): boolean {
  if (s >= N) return false;
  const C = E.curve;
  const lhs = C.mulAdd([P], [modN(-keyFactor(sv, a))], s, [pkHex]);
  return C.equals(lhs, sv.Reven ? ReStar : C.negate(ReStar));
}

/**
 * The common core of Sign and DeterministicSign once the secnonce has been read (and wiped):
 * k range, sk range, pk match, coefficient, s, then self-verification. `k` is k1'||k2' (64
 * secret bytes); the scalar arithmetic on k and sk is the backend's (constant time on native).
 */
function signCore(
  E: Engine, k: Uint8Array, secnoncePk: Uint8Array, sk: Uint8Array, sv: SessionValues,
  known?: { pair: readonly [Pt, Pt]; P: Pt; pk: Uint8Array },
): Uint8Array {
  const C = E.curve;
  if (!C.isValidSecret(k.subarray(0, 32))) throw new InvalidInputError('first secnonce value is out of range. A used secnonce is zeroed: never reuse one.', 'secnonce');
  if (!C.isValidSecret(k.subarray(32, 64))) throw new InvalidInputError('second secnonce value is out of range. A used secnonce is zeroed: never reuse one.', 'secnonce');
  const P = known?.P ?? C.pubkeyOf(sk);
  if (P === null) throw new InvalidInputError('sk is out of range (must be 0 < sk < n)', 'sk');
  const pk = known?.pk ?? C.encode(P);
  if (!equalBytes(pk, secnoncePk)) throw new InvalidInputError('the secnonce was generated for a different public key than sk', 'secnonce');
  const found = keyCoef(sv.keyset, pk);
  if (found === null) throw new InvalidInputError("The signer's pubkey must be included in the list of pubkeys.", 'pubkeys');
  const a = found.coef;
  // s = k1 + b·k2 + e·a·d with k_i = ±k_i' (the sign of has_even_y(R)) and d = g·gacc·d'.
  // Sign also gets T = (k1' + b·k2')·G, its effective nonce, for the check below.
  const { s: psig, T } = C.signScalar(k, sk, sv.b, !sv.Reven, keyFactor(sv, a), known === undefined);
  const s = toInt(psig);

  // Self-verification (BIP327 recommends it: it keeps a computation error from releasing a
  // psig that could leak the key). The session values b, R, e are reused from above.
  const Pk = sv.keyset.points[found.index] as Pt;
  const pkHex = sv.keyset.pubkeysHex[found.index] as string;
  let ok: boolean;
  if (known !== undefined) {
    // DeterministicSign: check against the very pubnonce points being released.
    ok = verifyInternal(E, s, known.pair[0], known.pair[1], Pk, pkHex, a, sv);
  } else {
    // Sign: the BIP recomputes pubnonce = k1'·G || k2'·G; its effective nonce
    // R*1 + b·R*2 is the same point as (k1' + b·k2')·G, computed in constant time.
    ok = verifyEffective(E, s, T ?? C.INF, Pk, pkHex, a, sv);
  }
  if (!ok) throw new Musig2Error('partial signature failed self-verification; not released');
  return psig;
}

/**
 * Sign(secnonce, sk, session_ctx). The secret nonce in secnonce[0..64) is zeroed before any
 * computation, so a second Sign with the same buffer fails (k == 0) instead of reusing it.
 */
export function sign(E: Engine, secnonce: Uint8Array, sk: Uint8Array, ctx: SessionContext): Uint8Array {
  if (!(secnonce instanceof Uint8Array)) throw new InvalidInputError('secnonce must be 97 bytes', 'secnonce');
  const kBytes = copyBytes(secnonce, 0, 64);
  secnonce.fill(0, 0, Math.min(64, secnonce.length));
  try {
    checkBytes(secnonce, 'secnonce', 97);
    checkBytes(sk, 'sk', 32);
    checkSessionContext(ctx);
    const sv = sessionValues(E, ctx.aggnonce, ctx.pubkeys, ctx.tweaks, ctx.msg);
    return signCore(E, kBytes, copyBytes(secnonce, 64, 97), sk, sv);
  } finally {
    kBytes.fill(0);
  }
}

/**
 * DeterministicSign (BIP327 1.0.4): the stateless signer, which must sign last. `rand`
 * undefined means absent; 32 zero bytes are a present value.
 */
export function deterministicSign(
  E: Engine, sk: Uint8Array, aggothernonce: Uint8Array, pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[],
  msg: Uint8Array, rand?: Uint8Array,
): { pubnonce: Uint8Array; psig: Uint8Array } {
  checkBytes(sk, 'sk', 32);
  checkBytes(aggothernonce, 'aggothernonce', 66);
  checkByteList(pubkeys, 'pubkeys', 33, 1);
  checkTweaks(tweaks);
  checkBytes(msg, 'msg');
  if (rand !== undefined) checkBytes(rand, 'rand', 32);

  const C = E.curve;
  const skp = rand === undefined ? copyBytes(sk) : hashAux(rand);
  if (rand !== undefined) for (let i = 0; i < 32; i++) skp[i] = (skp[i] as number) ^ (sk[i] as number);
  let h1: Uint8Array | undefined;
  let h2: Uint8Array | undefined;
  const k = new Uint8Array(64);
  try {
    const { ctx: kctx } = keyAggAndTweakSet(E, pubkeys, tweaks);
    const aggpk = C.xbytes(kctx.Q);
    const mlen = uintBytes(msg.length, 8);
    h1 = hashDetNonce(skp, aggothernonce, aggpk, mlen, msg, Uint8Array.of(0));
    h2 = hashDetNonce(skp, aggothernonce, aggpk, mlen, msg, Uint8Array.of(1));
    const pair = noncePoints(E, h1, h2, k, 'nonce derivation produced k = 0');
    const pubnonce = encodePubnonce(E, pair);
    const P = C.pubkeyOf(sk);
    if (P === null) throw new InvalidInputError('sk is out of range (must be 0 < sk < n)', 'sk');
    const pk = C.encode(P);
    // NonceAgg((pubnonce, aggothernonce)), blaming the aggregator for aggothernonce.
    const other = decodePubnonces(E, [aggothernonce], () => new InvalidContributionError(null, 'aggothernonce', 'not a valid pair of compressed points'));
    const agg = aggregateNoncePoints(E, [pair, other[0] as [Pt, Pt]]);
    const sv = sessionValues(E, agg.aggnonce, pubkeys, tweaks, msg, agg);
    const psig = signCore(E, k, pk, sk, sv, { pair, P, pk });
    return { pubnonce, psig };
  } finally {
    skp.fill(0);
    h1?.fill(0);
    h2?.fill(0);
    k.fill(0);
  }
}

/**
 * PartialSigVerify(psig, pubnonce_1..u, pk_1..u, tweaks, m, i) with a 0-based signer index i.
 * Returns false for a wrong or out-of-range psig; throws InvalidContributionError for an
 * undecodable pubnonce or pubkey, and InvalidInputError for malformed arguments or tweaks.
 */
export function partialSigVerify(
  E: Engine, psig: Uint8Array, pubnonces: readonly Uint8Array[], pubkeys: readonly Uint8Array[],
  tweaks: readonly Tweak[], msg: Uint8Array, i: number,
): boolean {
  checkBytes(psig, 'psig', 32);
  checkByteList(pubnonces, 'pubnonces', 66, 1);
  checkByteList(pubkeys, 'pubkeys', 33, 1);
  if (pubnonces.length !== pubkeys.length) {
    throw new InvalidInputError(`pubnonces and pubkeys must have the same length (${pubnonces.length} != ${pubkeys.length})`, 'pubnonces');
  }
  checkTweaks(tweaks);
  checkBytes(msg, 'msg');
  if (!Number.isInteger(i) || i < 0 || i >= pubkeys.length) {
    throw new InvalidInputError(`i must be an integer in [0, ${pubkeys.length})`, 'i');
  }
  const decoded = decodePubnonces(E, pubnonces, (j) => new InvalidContributionError(j, 'pubnonce', 'not a valid pair of compressed points'));
  const agg = aggregateNoncePoints(E, decoded);
  const sv = sessionValuesCached(E, agg.aggnonce, pubkeys, tweaks, msg, agg);
  const [Rs1, Rs2] = decoded[i] as [Pt, Pt];
  const s = toInt(psig);
  const ks = sv.keyset;
  return verifyInternal(E, s, Rs1, Rs2, ks.points[i] as Pt, ks.pubkeysHex[i] as string, ks.coefs[i] as bigint, sv);
}

/** PartialSigAgg(psig_1..u, session_ctx): the 64-byte BIP340 signature. */
export function partialSigAgg(E: Engine, psigs: readonly Uint8Array[], ctx: SessionContext): Uint8Array {
  checkByteList(psigs, 'psigs', 32, 1);
  checkSessionContext(ctx);
  const sv = sessionValuesCached(E, ctx.aggnonce, ctx.pubkeys, ctx.tweaks, ctx.msg);
  let s = 0n;
  psigs.forEach((ps, i) => {
    const si = toInt(ps);
    if (si >= N) throw new InvalidContributionError(i, 'psig', 'out of range');
    s += si;
  });
  const g = sv.Qeven ? 1n : N - 1n;
  s = modN(s + sv.e * g * sv.kctx.tacc);
  return concat(sv.Rx, bytes32(s));
}
