/**
 * One backend with the caches the algorithms keep over it. Cached values hold that backend's
 * points, so every backend has its own caches.
 */
import type { CurveBackend, Pt } from './backend.js';
import type { KeyAggContext, KeySet } from './keyagg.js';
import type { SessionValues } from './sign.js';
import { LruCache } from './lru.js';

// Bounded by entries and by keys held, so a flood of huge key lists cannot exhaust memory.
export const MAX_CACHED_KEYS = 32768;

export interface Engine {
  readonly curve: CurveBackend;
  /** Aggregated key lists, by a hash of the list. */
  readonly keysets: LruCache<string, KeySet>;
  /** Tweaked contexts, by key list and tweaks. */
  readonly tweaked: LruCache<string, KeyAggContext>;
  /** Decoded pubnonces, so a coordinator verifying every signer of a session decodes each once. */
  readonly nonces: LruCache<string, readonly [Pt, Pt]>;
  /** Session values for the public verify/aggregate paths only. */
  readonly sessions: LruCache<string, SessionValues>;
}

export function newEngine(curve: CurveBackend): Engine {
  return {
    curve,
    keysets: new LruCache<string, KeySet>(256, MAX_CACHED_KEYS, (ks) => ks.pubkeys.length),
    tweaked: new LruCache<string, KeyAggContext>(256),
    nonces: new LruCache<string, readonly [Pt, Pt]>(1024),
    sessions: new LruCache<string, SessionValues>(128, MAX_CACHED_KEYS, (sv) => sv.keyset.pubkeys.length),
  };
}
