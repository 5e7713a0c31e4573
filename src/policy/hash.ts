// The policy hash: SHA-256 over the canonical text of the normalized policy.
//
// Normalized: the document as loaded, with every default written out (a key's `wallets` [] and
// `allow_raw_message` false; a rule's `sighash_types` ["DEFAULT","ALL"]), hex (scripts,
// approver keys) in lowercase, a percentage as its shortest decimal (10.50 -> 10.5), and
// optional constraints a rule does not set left out. Canonical text: JSON with object members
// sorted by name (code-unit order, as RFC 8785), arrays in file order, no whitespace, strings
// and numbers as JSON.stringify writes them. For the values a policy can hold this is RFC 8785
// (JCS); for ASCII content it is also what `jq -cS .` prints for the normalized document.
import { sha256 } from '@noble/hashes/sha2.js';

export type CanonicalValue = string | number | boolean | CanonicalValue[] | { [name: string]: CanonicalValue };

export function canonicalJson(value: CanonicalValue): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const names = Object.keys(value).sort();
    return `{${names.map((n) => `${JSON.stringify(n)}:${canonicalJson(value[n]!)}`).join(',')}}`;
  }
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('canonical JSON has no non-finite numbers');
  return JSON.stringify(value);
}

/** SHA-256 of the canonical text's UTF-8 bytes. */
export function hashCanonical(canonical: string): Uint8Array {
  return sha256(new TextEncoder().encode(canonical));
}
