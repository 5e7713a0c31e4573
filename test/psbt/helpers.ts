/** Shared pieces of the PSBT tests: vectors, hex, and the bitcoinjs-lib sighash oracle. */
import { Transaction as BjsTransaction } from 'bitcoinjs-lib';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import type { Transaction } from '@scure/btc-signer';
import { PsbtError } from '../../src/psbt/index.js';
import { readVectorJson } from '../vectors/load.js';

export { bytesToHex as hex, hexToBytes as unhex };

export interface Bip373Vectors {
  aggregate: string;
  participants: { pubkey: string; wif: string; wifTestnet: string }[];
  valid: { case: string; variant?: string; hex: string; base64: string }[];
  invalid: { case: string; hex: string; base64: string }[];
}

export const bip373 = (): Bip373Vectors => readVectorJson<Bip373Vectors>('bip373/vectors.json');

/**
 * BIP341 sighash recomputed by bitcoinjs-lib, an implementation that shares no code with the
 * project (or with scure): from the PSBT's unsigned transaction and UTXOs.
 */
export function oracleSighash(tx: Transaction, index: number, hashType: number, leafHash?: Uint8Array): Uint8Array {
  const btx = BjsTransaction.fromBuffer(tx.unsignedTx);
  const scripts: Uint8Array[] = [];
  const values: bigint[] = [];
  for (let i = 0; i < tx.inputsLength; i++) {
    const inp = tx.getInput(i);
    const prev = inp.witnessUtxo ?? inp.nonWitnessUtxo?.outputs[inp.index as number];
    if (!prev) throw new Error(`oracle: input ${i} has no UTXO`);
    scripts.push(prev.script);
    values.push(prev.amount);
  }
  return btx.hashForWitnessV1(index, scripts, values, hashType, leafHash);
}

/** The PsbtError `fn` throws (fails the test if it throws nothing or something else). */
export function catchError(fn: () => unknown): PsbtError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PsbtError) return e;
    throw new Error(`expected a PsbtError, got ${String(e)}`);
  }
  throw new Error('expected a PsbtError, nothing was thrown');
}
