// Randomness from two independent sources, so that neither alone has to be trusted: the
// token's C_GenerateRandom and the operating system's CSPRNG, hashed together.
import { shake256 } from '@noble/hashes/sha3.js';

const DOMAIN = new TextEncoder().encode('musig2-signer/random/v1');
export const MAX_RANDOM_BYTES = 1 << 16;

/**
 * SHAKE256(domain | n | token | os) truncated to n bytes. The output is unpredictable as
 * long as either input is. The inputs are wiped.
 */
export function mixEntropy(token: Uint8Array, os: Uint8Array, n: number): Uint8Array {
  const lengths = new Uint8Array(8);
  const view = new DataView(lengths.buffer);
  view.setUint32(0, n);
  view.setUint32(4, token.length);
  try {
    return shake256.create({ dkLen: n }).update(DOMAIN).update(lengths).update(token).update(os).digest();
  } finally {
    token.fill(0);
    os.fill(0);
  }
}
