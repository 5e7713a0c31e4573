// Checks on caller input: key labels and 32-byte secret scalars. Byte comparisons only; the
// curve arithmetic lives in src/musig2.
import { InvalidLabelError, InvalidSecretError } from './errors.js';

/**
 * The order n of the secp256k1 group (SEC 2, section 2.4.1), big-endian. A secret key must be
 * in [1, n-1].
 */
export const SECP256K1_ORDER = Uint8Array.from(
  Buffer.from('fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141', 'hex'),
);

/** Longest key label; the daemon refuses longer key ids before reading them further. */
export const MAX_LABEL_LENGTH = 64;
const LABEL_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
export const LABEL_RULE = 'use 1 to 64 characters from A-Z a-z 0-9 . _ : - , starting with a letter or digit';

/** Whether `label` is a label `keys create` and `keys import` accept (so a key id that can exist). */
export function isValidLabel(label: string): boolean {
  return label.length <= MAX_LABEL_LENGTH && LABEL_RE.test(label);
}

export function validateLabel(label: string): void {
  if (!isValidLabel(label)) throw new InvalidLabelError(LABEL_RULE);
}

/**
 * True when `sk` is 32 bytes encoding an integer in [1, n-1]. It visits every byte whatever
 * their values, so its running time does not depend on the secret.
 */
export function isValidSecretScalar(sk: Uint8Array): boolean {
  if (sk.length !== 32) return false;
  let nonZero = 0;
  let less = 0; // becomes 1 at the first byte where sk < n, if no earlier byte had sk > n
  let decided = 0;
  for (let i = 0; i < 32; i++) {
    const a = sk[i]!;
    const b = SECP256K1_ORDER[i]!;
    nonZero |= a;
    const lt = ((a - b) >>> 31) & 1;
    const gt = ((b - a) >>> 31) & 1;
    less |= lt & ~decided & 1;
    decided |= lt | gt;
  }
  return nonZero !== 0 && less === 1;
}

/** Throws InvalidSecretError unless `sk` is a valid secp256k1 secret key. */
export function checkSecretKey(sk: Uint8Array): void {
  if (sk.length !== 32) throw new InvalidSecretError(`must be 32 bytes, got ${sk.length}`);
  if (!isValidSecretScalar(sk)) throw new InvalidSecretError('must be an integer in [1, n-1] (it is 0 or not below the curve order n)');
}
