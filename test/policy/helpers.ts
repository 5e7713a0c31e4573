// Shared fixtures for the policy tests: policies built from plain objects, approver keys,
// scripts and a request builder.
import { schnorr } from '@noble/curves/secp256k1.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { parsePolicy } from '../../src/policy/index.js';
import type { Policy, PsbtRequest } from '../../src/policy/index.js';

export function policyOf(doc: unknown): Policy {
  return parsePolicy(JSON.stringify(doc));
}

/** A policy with one key `k` holding `rules` (and optional key fields). */
export function oneKey(rules: unknown[], key: Record<string, unknown> = {}, network = 'regtest'): Policy {
  return policyOf({ version: 1, network, keys: { k: { rules, ...key } } });
}

/** Deterministic approver key pairs (secret = SHA-256 of a label). */
export function approver(label: string): { secret: Uint8Array; xonly: Uint8Array; hex: string } {
  const secret = sha256(new TextEncoder().encode(`approver ${label}`));
  const xonly = schnorr.getPublicKey(secret);
  return { secret, xonly, hex: bytesToHex(xonly) };
}

/** A P2TR scriptPubKey with the given byte repeated as its output key (only compared, never spent). */
export function p2tr(fill: number): Uint8Array {
  return hexToBytes(`5120${fill.toString(16).padStart(2, '0').repeat(32)}`);
}

/** Two BIP390 wallets (keys from BIP390's examples); the second with its BIP380 checksum. */
export const WALLET_A =
  'tr(musig(xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL,xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y)/<0;1>/*)';
export const WALLET_B =
  'rawtr(musig(02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9,03dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659,023590a94e768f8e1815c2f24b4d80a8e3149316c3518ce7b7ad338368d038ca66))#qnka3q97';

export const hex = bytesToHex;
export const TXID = hexToBytes('11'.repeat(32));
export const NOW = 1_700_000_000; // 2023-11-14T22:13:20Z

export function psbt(over: Partial<PsbtRequest> = {}): PsbtRequest {
  return { kind: 'psbt', unsignedTxid: TXID, outputs: [], fee: 0n, sighashTypes: [0], approvals: [], now: NOW, ...over };
}
