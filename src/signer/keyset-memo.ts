// Key lists (with their tweaks) that key aggregation has already accepted, by digest, with the
// x-only aggregate key they gave. NonceGen and DeterministicSign aggregate a list on a worker
// before the key is opened, so no key is opened for a list that does not aggregate; a list
// accepted before skips that extra worker round trip (a hand-off per signature otherwise).
// Aggregation is a pure function of the list and tweaks, so a remembered answer stays right.
import { createHash } from 'node:crypto';
import { LruCache } from '../musig2/lru.js';
import type { Tweak } from '../musig2/index.js';

/** Key lists remembered (about 100 bytes each). */
export const ACCEPTED_KEY_SETS = 4096;

export class AcceptedKeySets {
  private readonly lru: LruCache<string, Uint8Array>;

  constructor(capacity = ACCEPTED_KEY_SETS) {
    this.lru = new LruCache(capacity);
  }

  /** The x-only aggregate key of an accepted list (a copy), or undefined if not seen. */
  lookup(pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[]): Uint8Array | undefined {
    return this.lru.get(keySetDigest(pubkeys, tweaks))?.slice();
  }

  remember(pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[], xonlyAggpk: Uint8Array): void {
    this.lru.set(keySetDigest(pubkeys, tweaks), xonlyAggpk.slice());
  }
}

/** SHA-256 of a length-prefixed encoding: no two different lists encode alike. */
function keySetDigest(pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[]): string {
  const h = createHash('sha256');
  const u32 = Buffer.alloc(4);
  const put = (n: number) => {
    u32.writeUInt32BE(n);
    h.update(u32);
  };
  put(pubkeys.length);
  for (const k of pubkeys) {
    put(k.length);
    h.update(k);
  }
  put(tweaks.length);
  for (const t of tweaks) {
    h.update(t.xonly ? '\x01' : '\x00');
    put(t.tweak.length);
    h.update(t.tweak);
  }
  return h.digest('hex');
}
