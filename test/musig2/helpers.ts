/** Shared helpers for the MuSig2 tests: hex conversion and loading the official vectors. */
import { readVectorJson } from '../vectors/load.js';

export function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, 'hex'));
}

export function toHexUpper(b: Uint8Array): string {
  return Buffer.from(b).toString('hex').toUpperCase();
}

/** Read one BIP327 vector file (test/vectors/bip327/). */
export function loadVectors<T = unknown>(name: string): T {
  return readVectorJson<T>(`bip327/${name}`);
}

/**
 * Both curve backends, for describe.each. The native one must load (npm test builds it through
 * scripts/ensure-deps.mjs); if it does not, its tests fail with the reason instead of skipping.
 */
export const BACKENDS = ['noble', 'native'] as const;
