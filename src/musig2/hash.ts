/**
 * BIP340-style tagged hashes: hash_tag(x) = SHA256(SHA256(tag) || SHA256(tag) || x).
 * The two-block prefix is hashed once per tag and its state cloned per call.
 */
import { sha256 } from '@noble/hashes/sha2.js';

export type TaggedHash = (...parts: Uint8Array[]) => Uint8Array;

function taggedHash(tag: string): TaggedHash {
  const tagHash = sha256(new TextEncoder().encode(tag));
  const prefix = sha256.create().update(tagHash).update(tagHash);
  return (...parts) => {
    const h = prefix.clone();
    for (const p of parts) h.update(p);
    return h.digest(); // digest() also wipes the clone's internal buffers
  };
}

export const hashKeyAggList = taggedHash('KeyAgg list');
export const hashKeyAggCoef = taggedHash('KeyAgg coefficient');
export const hashAux = taggedHash('MuSig/aux');
export const hashNonce = taggedHash('MuSig/nonce');
export const hashDetNonce = taggedHash('MuSig/deterministic/nonce');
export const hashNonceCoef = taggedHash('MuSig/noncecoef');
export const hashChallenge = taggedHash('BIP0340/challenge');
