// The signing-context digest the ledger stores per used nonce on the random path (DESIGN.md
// section 3). Two requests get the same digest exactly when they would sign the same thing
// with the same key, so "same digest" means "a retry" and "other digest" means "a nonce-reuse
// attempt". DeterministicSign rows use deterministicDigest() (below); the audit log still
// records contextDigest() for both paths, as a fingerprint of the request.
//
// digest = SHA256(SHA256(TAG) || SHA256(TAG) || data), TAG = "musig2-signer/context/v1", where
// data is this canonical, length-prefixed encoding (all integers big-endian):
//
//   u8   path                 1 = random (Sign), 2 = deterministic (DeterministicSign)
//   u32  len(key_id) || key_id (UTF-8)
//   u32  len(nonce)  || nonce   aggnonce (random) or aggothernonce (deterministic), 66 bytes
//   u32  n_pubkeys, then per key:   u32 len || key     (33 bytes each, in request order)
//   u32  n_tweaks,  then per tweak: u8 xonly (1 or 0) || u32 len || tweak (32 bytes)
//   u64  len(message) || message
//
// Every variable part is length-prefixed, so no two different contexts encode alike.

import { sha256 } from '@noble/hashes/sha2.js';
import type { Tweak } from '../musig2/index.js';

export type SigningPath = 'random' | 'deterministic';

export interface SigningContext {
  readonly path: SigningPath;
  readonly keyId: string;
  /** aggnonce on the random path, aggothernonce on the deterministic path. */
  readonly nonce: Uint8Array;
  readonly pubkeys: readonly Uint8Array[];
  readonly tweaks: readonly Tweak[];
  readonly message: Uint8Array;
}

const UTF8 = new TextEncoder();
const CONTEXT_TAG_HASH = sha256(UTF8.encode('musig2-signer/context/v1'));
const BINDING_TAG_HASH = sha256(UTF8.encode('musig2-signer/binding/v1'));
const DETERMINISTIC_TAG_HASH = sha256(UTF8.encode('musig2-signer/deterministic/v2'));

export function contextDigest(ctx: SigningContext): Uint8Array {
  const h = sha256.create().update(CONTEXT_TAG_HASH).update(CONTEXT_TAG_HASH);
  writeContext(h, ctx.path === 'random' ? 1 : 2, ctx.keyId, ctx.nonce, ctx.pubkeys, ctx.tweaks);
  writeMessage(h, ctx.message);
  return h.digest();
}

type Hasher = ReturnType<typeof sha256.create>;

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v);
  return b;
}

function writeContext(
  h: Hasher,
  path: number,
  keyId: string,
  nonce: Uint8Array,
  pubkeys: readonly Uint8Array[],
  tweaks: readonly Tweak[],
): void {
  const lp = (b: Uint8Array) => h.update(u32(b.length)).update(b);
  h.update(Uint8Array.of(path));
  lp(UTF8.encode(keyId));
  lp(nonce);
  h.update(u32(pubkeys.length));
  for (const pk of pubkeys) lp(pk);
  h.update(u32(tweaks.length));
  for (const tw of tweaks) {
    h.update(Uint8Array.of(tw.xonly ? 1 : 0));
    lp(tw.tweak);
  }
}

function writeMessage(h: Hasher, message: Uint8Array): void {
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(message.length));
  h.update(len).update(message);
}

/**
 * What a NonceGen session is bound to: key, key list and tweaks (and the message, when
 * NonceGen was given one). Sessions keep this 32-byte hash instead of the lists themselves,
 * so an open session costs a few hundred bytes whatever the size of its key list. Same
 * encoding as above under its own tag, with path 0 and an empty nonce; the message part is
 * u8 0 when absent, or u8 1 || u64 len || message.
 */
export function bindingDigest(
  keyId: string,
  pubkeys: readonly Uint8Array[],
  tweaks: readonly Tweak[],
  message: Uint8Array | undefined,
): Uint8Array {
  const h = sha256.create().update(BINDING_TAG_HASH).update(BINDING_TAG_HASH);
  writeContext(h, 0, keyId, new Uint8Array(0), pubkeys, tweaks);
  if (message === undefined) {
    h.update(Uint8Array.of(0));
  } else {
    h.update(Uint8Array.of(1));
    writeMessage(h, message);
  }
  return h.digest();
}

/**
 * The ledger digest of a DeterministicSign row (v2): SHA256(TAG || TAG || pubnonce || psig),
 * TAG = "musig2-signer/deterministic/v2". The pubnonce fixes the secret nonce (BIP327 derives
 * it from sk, aggothernonce, the tweaked aggregate key, the message and rand), so one nonce
 * gives one partial signature per signing context, and two requests leak nothing as long as
 * they release the same psig. So the digest binds what is released, not how the request was
 * written: tweaks [5, 7] and [12], or one key under two labels, give the same pubnonce and
 * psig, hence the same digest (a replay, answered); a different psig from one nonce gives
 * another digest (refused and alarmed). Rows from earlier versions hold contextDigest(); the
 * service compares their stored psig instead.
 */
export function deterministicDigest(pubnonce: Uint8Array, psig: Uint8Array): Uint8Array {
  return sha256.create().update(DETERMINISTIC_TAG_HASH).update(DETERMINISTIC_TAG_HASH).update(pubnonce).update(psig).digest();
}
