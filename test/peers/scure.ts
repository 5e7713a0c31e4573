// @scure/btc-signer 2.4.1's musig2 module behind the common peer shape. It takes every BIP327
// input directly (rand' included) and returns secnonces, so no adapter logic is needed beyond
// splitting our tweak objects into its two parallel arrays.
import * as scure from '@scure/btc-signer/musig2.js';
import type { MusigPeer, PeerTweak } from './types.js';

const split = (tweaks: readonly PeerTweak[]): [Uint8Array[], boolean[]] => [
  tweaks.map((t) => t.tweak),
  tweaks.map((t) => t.xonly),
];

/** A scure Session; it redoes key aggregation in its constructor. */
export function scureSession(
  aggnonce: Uint8Array,
  pubkeys: Uint8Array[],
  tweaks: readonly PeerTweak[],
  msg: Uint8Array,
): scure.Session {
  const [t, x] = split(tweaks);
  return new scure.Session(aggnonce, pubkeys, msg, t, x);
}

export const scurePeer: MusigPeer = {
  name: 'scure',
  individualPubkey: (sk) => scure.IndividualPubkey(sk),
  keySort: (pubkeys) => scure.sortKeys(pubkeys),
  keyAgg: (pubkeys, tweaks) => {
    const ctx = scure.keyAggregate(pubkeys, ...split(tweaks));
    return { xonly: scure.keyAggExport(ctx), plain: ctx.aggPublicKey.toBytes(true) };
  },
  nonceGen: (input) => {
    const n = scure.nonceGen(input.pk, input.sk, input.aggpk, input.msg, input.extraIn, input.rand);
    return { pubnonce: n.public, secnonce: n.secret };
  },
  nonceAgg: (pubnonces) => scure.nonceAggregate(pubnonces),
  session: (aggnonce, pubkeys, tweaks, msg) => {
    const session = scureSession(aggnonce, pubkeys, tweaks, msg);
    return {
      sign: (secnonce, _pubnonce, sk) => session.sign(secnonce, sk),
      partialSigVerify: (psig, pubnonces, i) => session.partialSigVerify(psig, pubnonces, i),
      partialSigAgg: (psigs) => session.partialSigAgg(psigs),
    };
  },
  deterministicSign: (sk, aggothernonce, pubkeys, tweaks, msg, rand) => {
    const [t, x] = split(tweaks);
    const r = scure.deterministicSign(sk, aggothernonce, pubkeys, msg, t, x, rand);
    return { pubnonce: r.publicNonce, psig: r.partialSig };
  },
  partialSigVerify: (psig, pubnonces, pubkeys, tweaks, msg, i) =>
    scureSession(scure.nonceAggregate(pubnonces), pubkeys, tweaks, msg).partialSigVerify(psig, pubnonces, i),
};
