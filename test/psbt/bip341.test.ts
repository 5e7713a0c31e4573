// BIP341 wallet vectors: the key-path sighashes through taprootSighash (from a PSBT of the
// vector's transaction and UTXOs), each expected signature verifying against our sighash, and
// every scriptPubKey case through the descriptor module's buildTaproot.
import { describe, expect, it } from 'vitest';
import { schnorr } from '@noble/curves/secp256k1.js';
import { Transaction } from '@scure/btc-signer';
import { decodePsbt, taprootSighash } from '../../src/psbt/index.js';
import { buildTaproot } from '../../src/descriptor/index.js';
import type { ScriptTree } from '../../src/descriptor/index.js';
import { addressOf } from '../../src/descriptor/descriptor.js';
import { readVectorJson } from '../vectors/load.js';
import { hex, oracleSighash, unhex } from './helpers.js';

type JsonTree = null | { id: number; script: string; leafVersion: number } | JsonTree[];
interface Wallet {
  scriptPubKey: {
    given: { internalPubkey: string; scriptTree: JsonTree };
    intermediary: { leafHashes?: string[]; merkleRoot: string | null; tweak: string; tweakedPubkey: string };
    expected: { scriptPubKey: string; bip350Address: string; scriptPathControlBlocks?: string[] };
  }[];
  keyPathSpending: {
    given: { rawUnsignedTx: string; utxosSpent: { scriptPubKey: string; amountSats: number }[] };
    inputSpending: { given: { txinIndex: number; hashType: number }; intermediary: { sigHash: string }; expected: { witness: string[] } }[];
  }[];
}

const W = readVectorJson<Wallet>('bip341/wallet-test-vectors.json');

function toTree(t: JsonTree, ids: number[]): ScriptTree | undefined {
  if (t === null) return undefined;
  if (Array.isArray(t)) {
    if (t.length === 1) return toTree(t[0] as JsonTree, ids);
    return [toTree(t[0] as JsonTree, ids) as ScriptTree, toTree(t[1] as JsonTree, ids) as ScriptTree];
  }
  ids.push(t.id);
  return { script: unhex(t.script), leafVersion: t.leafVersion };
}

describe('BIP341 wallet vectors', () => {
  const spend = W.keyPathSpending[0]!;
  // A PSBT of the vector's transaction with every UTXO, as a coordinator would send it.
  const tx = Transaction.fromRaw(unhex(spend.given.rawUnsignedTx), { allowUnknownOutputs: true, allowUnknownInputs: true, disableScriptCheck: true });
  spend.given.utxosSpent.forEach((u, i) => tx.updateInput(i, { witnessUtxo: { script: unhex(u.scriptPubKey), amount: BigInt(u.amountSats) } }, true));
  const psbt = decodePsbt(tx.toPSBT());

  it.each(spend.inputSpending.map((c) => [c.given.txinIndex, c.given.hashType, c] as const))('key path input %i, hash type %i', (index, hashType, c) => {
    const sighash = taprootSighash(psbt, index, hashType);
    expect(hex(sighash)).toBe(c.intermediary.sigHash);
    expect(hex(oracleSighash(psbt, index, hashType))).toBe(c.intermediary.sigHash);
    const witnessSig = unhex(c.expected.witness[0]!).subarray(0, 64);
    const outputKey = unhex(spend.given.utxosSpent[index]!.scriptPubKey).subarray(2);
    expect(schnorr.verify(witnessSig, sighash, outputKey)).toBe(true);
  });

  it.each(W.scriptPubKey.map((c, i) => [i, c] as const))('scriptPubKey case %i', (_i, c) => {
    const ids: number[] = [];
    const out = buildTaproot(unhex(c.given.internalPubkey), toTree(c.given.scriptTree, ids));
    expect(out.merkleRoot === undefined ? null : hex(out.merkleRoot)).toBe(c.intermediary.merkleRoot);
    expect(hex(out.tapTweak)).toBe(c.intermediary.tweak);
    expect(hex(out.outputKey)).toBe(c.intermediary.tweakedPubkey);
    expect(hex(out.script)).toBe(c.expected.scriptPubKey);
    const address = addressOf({ type: 'tr', branch: 0, index: 0, internalKey: { xonly: unhex(c.given.internalPubkey) }, leaves: [], tapTweak: out.tapTweak, outputKey: out.outputKey, outputParity: out.outputParity, script: out.script }, 'mainnet');
    expect(address).toBe(c.expected.bip350Address);
    const byId = new Map(out.leaves.map((l, n) => [ids[n], l]));
    (c.intermediary.leafHashes ?? []).forEach((h, id) => expect(hex(byId.get(id)!.leafHash)).toBe(h));
    (c.expected.scriptPathControlBlocks ?? []).forEach((cb, id) => {
      const l = byId.get(id)!;
      const bytes = Uint8Array.of(l.controlBlock.version, ...l.controlBlock.internalKey, ...l.controlBlock.merklePath.flatMap((m) => [...m]));
      expect(hex(bytes)).toBe(cb);
    });
  });
});
