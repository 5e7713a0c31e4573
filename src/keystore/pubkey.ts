// The single call from the keystore into the curve arithmetic, which lives in src/musig2.
import { individualPubkey } from '../musig2/index.js';

/** The 33-byte compressed public key of a valid secret key. */
export function derivePublicKey(sk: Uint8Array): Uint8Array {
  return individualPubkey(sk);
}
