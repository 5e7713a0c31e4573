// Approvals: BIP340 signatures by approver keys over a message that binds one unsigned
// transaction to one policy version, so an approval cannot be replayed for another
// transaction or carried over to a changed policy.
import { schnorr } from '@noble/curves/secp256k1.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

/** The BIP340 tag of the approval message. */
export const APPROVAL_TAG = 'musig2-signer/approval';
const TAG_HASH = sha256(new TextEncoder().encode(APPROVAL_TAG));

export interface Approval {
  /** The approver's x-only public key (32 bytes). */
  readonly pubkey: Uint8Array;
  /** BIP340 signature (64 bytes) over approvalMessage(txid, policyHash). */
  readonly signature: Uint8Array;
}

function check32(bytes: Uint8Array, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== 32) throw new TypeError(`${what} must be 32 bytes`);
}

/**
 * The 32-byte message an approver signs: the BIP340 tagged hash
 * SHA256(SHA256(tag) || SHA256(tag) || txid || policy_hash) with tag "musig2-signer/approval",
 * where txid is the unsigned transaction's id in the byte order of its usual hex display
 * (as `bitcoin-cli` and explorers print it) and policy_hash the 32-byte policy hash.
 */
export function approvalMessage(txid: Uint8Array, policyHash: Uint8Array): Uint8Array {
  check32(txid, 'txid');
  check32(policyHash, 'policy hash');
  return sha256.create().update(TAG_HASH).update(TAG_HASH).update(txid).update(policyHash).digest();
}

/** Makes an approval (for the SDK, the CLI and tests); the secret key is the caller's to wipe. */
export function signApproval(secretKey: Uint8Array, txid: Uint8Array, policyHash: Uint8Array): Approval {
  const message = approvalMessage(txid, policyHash);
  return { pubkey: schnorr.getPublicKey(secretKey), signature: schnorr.sign(message, secretKey) };
}

/**
 * The distinct keys of `approvers` with a valid signature among `approvals` over this txid and
 * policy hash. Keys outside `approvers`, bad signatures and repeats are not counted.
 */
export function validApprovers(
  approvals: readonly Approval[],
  approvers: readonly Uint8Array[],
  txid: Uint8Array,
  policyHash: Uint8Array,
): Set<string> {
  const wanted = new Set(approvers.map((k) => bytesToHex(k)));
  const valid = new Set<string>();
  const message = approvalMessage(txid, policyHash);
  for (const a of approvals) {
    if (!(a.pubkey instanceof Uint8Array) || !(a.signature instanceof Uint8Array)) continue;
    if (a.pubkey.length !== 32 || a.signature.length !== 64) continue;
    const key = bytesToHex(a.pubkey);
    if (!wanted.has(key) || valid.has(key)) continue;
    let ok = false;
    try {
      ok = schnorr.verify(a.signature, message, a.pubkey);
    } catch {
      ok = false;
    }
    if (ok) valid.add(key);
  }
  return valid;
}
