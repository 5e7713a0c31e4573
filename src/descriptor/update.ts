/**
 * BIP373 Updater from a descriptor: fill the MuSig2 participants (0x1a / output 0x08), the
 * PSBT_IN/OUT_TAP_BIP32_DERIVATION entries (aggregate-derived keys under the aggregate's
 * fingerprint, as BIP328 says; participants under their own origin), the internal key, the
 * merkle root and the leaf scripts, for the inputs and outputs the descriptor derives.
 */
import type { Transaction } from '@scure/btc-signer';
import { compareBytes, equalBytes } from '@scure/btc-signer/utils.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { keyFingerprint } from './bip328.js';
import { DescriptorError, deriveAt, matchOutputScript } from './descriptor.js';
import type { Descriptor, DerivePosition, DerivedKey, DerivedOutput } from './descriptor.js';

type Bip32Entry = [Uint8Array, { hashes: Uint8Array[]; der: { fingerprint: number; path: number[] } }];

/** tapBip32Derivation entries for every key of a derived output. */
function derivations(out: DerivedOutput): Bip32Entry[] {
  const entries = new Map<string, Bip32Entry>();
  const add = (xonly: Uint8Array, fingerprint: number, path: number[], leafHash?: Uint8Array): void => {
    const id = bytesToHex(xonly);
    let e = entries.get(id);
    if (e === undefined) {
      e = [xonly, { hashes: [], der: { fingerprint, path } }];
      entries.set(id, e);
    }
    if (leafHash && !e[1].hashes.some((h) => equalBytes(h, leafHash))) e[1].hashes.push(leafHash);
  };
  const addKey = (k: DerivedKey, leafHash?: Uint8Array): void => {
    if (k.musig) {
      add(k.xonly, keyFingerprint(k.musig.aggregate), k.musig.path, leafHash);
      k.musig.participants.forEach((p, i) => {
        const o = k.musig?.participantOrigins[i];
        add(p.subarray(1), o?.fingerprint ?? keyFingerprint(p), o?.path ?? [], leafHash);
      });
    } else if (k.origin) {
      add(k.xonly, k.origin.fingerprint, k.origin.path, leafHash);
    }
  };
  if (out.type === 'tr' || out.internalKey.musig) addKey(out.internalKey);
  for (const leaf of out.leaves) addKey(leaf.key, leaf.leafHash);
  for (const e of entries.values()) e[1].hashes.sort(compareBytes);
  return [...entries.values()];
}

function participantsOf(out: DerivedOutput): [Uint8Array, Uint8Array[]][] {
  const seen: [Uint8Array, Uint8Array[]][] = [];
  for (const k of [out.internalKey, ...out.leaves.map((l) => l.key)]) {
    if (k.musig && !seen.some(([a]) => equalBytes(a, k.musig?.aggregate as Uint8Array))) seen.push([k.musig.aggregate, k.musig.participants]);
  }
  return seen;
}

/** The PSBT input fields an Updater fills for an output the descriptor derived. */
export function inputFieldsFor(out: DerivedOutput): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  if (out.type === 'tr') fields.tapInternalKey = out.internalKey.xonly;
  if (out.merkleRoot) fields.tapMerkleRoot = out.merkleRoot;
  const der = derivations(out);
  if (der.length) fields.tapBip32Derivation = der;
  const parts = participantsOf(out);
  if (parts.length) fields.musig2ParticipantPubkeys = parts;
  if (out.leaves.length) fields.tapLeafScript = out.leaves.map((l) => [l.controlBlock, Uint8Array.of(...l.script, l.leafVersion)]);
  return fields;
}

/** The PSBT output fields an Updater fills for a change output the descriptor derived. */
export function outputFieldsFor(out: DerivedOutput): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  if (out.type === 'tr') fields.tapInternalKey = out.internalKey.xonly;
  if (out.leaves.length) fields.tapTree = out.leaves.map((l) => ({ depth: l.depth, version: l.leafVersion, script: l.script }));
  const der = derivations(out);
  if (der.length) fields.tapBip32Derivation = der;
  const parts = participantsOf(out);
  if (parts.length) fields.musig2ParticipantPubkeys = parts;
  return fields;
}

export interface UpdateResult {
  /** Inputs filled, with the position at which the descriptor derives their spent output. */
  inputs: { input: number; branch: number; index: number }[];
  /** Outputs filled (change), with their position. */
  outputs: { output: number; branch: number; index: number }[];
}

/**
 * BIP373 Updater: for every input whose spent output (witnessUtxo / nonWitnessUtxo) and every
 * output whose script the descriptor derives at some index ≤ maxIndex (default 1000), fill the
 * fields above. Mutates `tx`; returns what it filled. `at` restricts the search to one position.
 */
export function updatePsbtFromDescriptor(tx: Transaction, desc: Descriptor, opts: { maxIndex?: number; at?: DerivePosition } = {}): UpdateResult {
  const cache = new Map<string, { branch: number; index: number } | undefined>();
  const find = (script: Uint8Array): { branch: number; index: number } | undefined => {
    const id = bytesToHex(script);
    if (!cache.has(id)) {
      if (opts.at !== undefined) {
        const out = deriveAt(desc, opts.at);
        cache.set(id, equalBytes(out.script, script) ? { branch: out.branch, index: out.index } : undefined);
      } else {
        cache.set(id, matchOutputScript(desc, script, { maxIndex: opts.maxIndex ?? 1000 }));
      }
    }
    return cache.get(id);
  };
  const result: UpdateResult = { inputs: [], outputs: [] };
  for (let i = 0; i < tx.inputsLength; i++) {
    const input = tx.getInput(i);
    const prev = input.witnessUtxo ?? (input.nonWitnessUtxo && input.index !== undefined ? input.nonWitnessUtxo.outputs[input.index] : undefined);
    if (!prev) continue;
    const pos = find(prev.script);
    if (!pos) continue;
    try {
      tx.updateInput(i, inputFieldsFor(deriveAt(desc, pos)), true);
    } catch (e) {
      throw new DescriptorError(`input ${i}: cannot add the descriptor's fields: ${(e as Error).message}`);
    }
    result.inputs.push({ input: i, ...pos });
  }
  for (let o = 0; o < tx.outputsLength; o++) {
    const pos = find(tx.getOutput(o).script as Uint8Array);
    if (!pos) continue;
    try {
      tx.updateOutput(o, outputFieldsFor(deriveAt(desc, pos)), true);
    } catch (e) {
      throw new DescriptorError(`output ${o}: cannot add the descriptor's fields: ${(e as Error).message}`);
    }
    result.outputs.push({ output: o, ...pos });
  }
  return result;
}
