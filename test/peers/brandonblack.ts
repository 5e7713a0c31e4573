// @brandonblack/musig 0.0.1-alpha.1 driven through a noble v2 crypto backend.
//
// The library takes its curve arithmetic as an injected `Crypto` object and its README targets
// noble v1, whose API is gone in v2. The adapter below maps each method onto the plain noble v2
// call a user would pick: constant-time `getPublicKey` (the library also uses it for secret
// nonces, so it cannot be variable-time), `multiplyUnsafe` for the methods the library itself
// names "Unsafe", and the library's own BigInt scalar helpers from `base_crypto`.
import { MuSigFactory } from '@brandonblack/musig';
import type { Crypto, MuSig, TypedTweak } from '@brandonblack/musig';
import * as base from '@brandonblack/musig/base_crypto';
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import { bytesToNumberBE } from '@noble/curves/utils.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes } from '@noble/hashes/utils.js';
import type { MusigPeer, PeerTweak } from './types.js';

const Point = secp256k1.Point;
type Point = InstanceType<typeof Point>;
const N = Point.Fn.ORDER;

// The library returns `null` for infinity and for invalid input; noble throws instead.
function toBytesOrNull(p: Point, compressed: boolean): Uint8Array | null {
  return p.is0() ? null : p.toBytes(compressed);
}

function tryPoint(fn: () => Point, compressed: boolean): Uint8Array | null {
  try {
    return toBytesOrNull(fn(), compressed);
  } catch {
    return null;
  }
}

// The library hands over raw 32-byte hashes (key-agg and nonce coefficients) without reducing
// them mod n, while noble v2 rejects scalars >= n; BIP327 says int(hash) mod n.
const scalarOf = (a: Uint8Array): bigint => bytesToNumberBE(a) % N;

export const nobleV2Crypto: Crypto = {
  pointAddTweak: (p, t, compressed) =>
    tryPoint(() => {
      const tweak = base.readScalar(t);
      const P = Point.fromBytes(p);
      return tweak === 0n ? P : P.add(Point.BASE.multiplyUnsafe(tweak));
    }, compressed),
  pointAdd: (a, b, compressed) => tryPoint(() => Point.fromBytes(a).add(Point.fromBytes(b)), compressed),
  pointMultiplyUnsafe: (p, a, compressed) =>
    tryPoint(() => Point.fromBytes(p).multiplyUnsafe(scalarOf(a)), compressed),
  pointMultiplyAndAddUnsafe: (p1, a, p2, compressed) =>
    tryPoint(() => Point.fromBytes(p1).multiplyUnsafe(scalarOf(a)).add(Point.fromBytes(p2)), compressed),
  pointNegate: base.pointNegate,
  pointCompress: (p, compressed = true) => Point.fromBytes(p).toBytes(compressed),
  scalarAdd: base.scalarAdd,
  scalarMultiply: base.scalarMultiply,
  scalarNegate: base.scalarNegate,
  scalarMod: base.scalarMod,
  isScalar: base.isScalar,
  isSecret: base.isSecret,
  isPoint: base.isPoint,
  isXOnlyPoint: base.isXOnlyPoint,
  liftX: (x) => {
    if (!base.isXOnlyPoint(x)) return null;
    return concatBytes(Uint8Array.of(2), x);
  },
  pointX: base.pointX,
  hasEvenY: base.hasEvenY,
  getPublicKey: (s, compressed) => {
    if (!base.isSecret(s)) return null;
    return secp256k1.getPublicKey(s, compressed);
  },
  taggedHash: (tag, ...messages) => schnorr.utils.taggedHash(tag, ...messages),
  sha256: (...messages) => sha256(concatBytes(...messages)),
};

export const brandonblack: MuSig = MuSigFactory(nobleV2Crypto);

const toTweaks = (tweaks: readonly PeerTweak[]): TypedTweak[] =>
  tweaks.map((t) => ({ tweak: t.tweak, xOnly: t.xonly }));

export const brandonblackPeer: MusigPeer = {
  name: 'brandonblack',
  individualPubkey: (sk) => secp256k1.getPublicKey(sk, true),
  keySort: (pubkeys) => brandonblack.keySort(pubkeys),
  keyAgg: (pubkeys, tweaks) => {
    const ctx = brandonblack.keyAgg(pubkeys, ...toTweaks(tweaks));
    return { xonly: brandonblack.getXOnlyPubkey(ctx), plain: brandonblack.getPlainPubkey(ctx) };
  },
  nonceGen: (input) => ({
    // sessionId is BIP327's rand'. It must always be passed: without it the ESM build calls
    // `require('crypto')` and throws. The secnonce stays in the library's WeakMap.
    pubnonce: brandonblack.nonceGen({
      sessionId: input.rand,
      secretKey: input.sk,
      publicKey: input.pk,
      xOnlyPublicKey: input.aggpk,
      msg: input.msg,
      extraInput: input.extraIn,
    }),
  }),
  nonceAgg: (pubnonces) => brandonblack.nonceAgg(pubnonces),
  session: (aggnonce, pubkeys, tweaks, msg) => {
    const session = brandonblack.startSigningSession(aggnonce, msg, pubkeys, ...toTweaks(tweaks));
    return {
      sign: (secnonce, pubnonce, sk) => {
        // The library finds the secnonce by the identity of the pubnonce object, so register it
        // under a fresh object; partialSign removes the entry again.
        const key = pubnonce.slice();
        brandonblack.addExternalNonce(key, secnonce);
        return brandonblack.partialSign({ secretKey: sk, publicNonce: key, sessionKey: session });
      },
      partialSigVerify: (psig, pubnonces, i) =>
        brandonblack.partialVerify({ sig: psig, publicKey: pubkeys[i]!, publicNonce: pubnonces[i]!, sessionKey: session }),
      partialSigAgg: (psigs) => brandonblack.signAgg(psigs, session),
    };
  },
  deterministicSign: (sk, aggothernonce, pubkeys, tweaks, msg, rand) => {
    const r = brandonblack.deterministicSign({
      secretKey: sk,
      aggOtherNonce: aggothernonce,
      publicKeys: pubkeys,
      tweaks: toTweaks(tweaks),
      msg,
      rand,
    });
    return { pubnonce: r.publicNonce, psig: r.sig };
  },
  partialSigVerify: (psig, pubnonces, pubkeys, tweaks, msg, i) => {
    const aggnonce = brandonblack.nonceAgg(pubnonces);
    const session = brandonblack.startSigningSession(aggnonce, msg, pubkeys, ...toTweaks(tweaks));
    return brandonblack.partialVerify({
      sig: psig,
      publicKey: pubkeys[i]!,
      publicNonce: pubnonces[i]!,
      sessionKey: session,
    });
  },
};
