// Wallet transactions for the signing-policy tests: a BIP390 wallet tr(musig(ours, a, b)/<0;1>/*),
// inputs spending its receive branch, outputs chosen by the test, the BIP373 fields filled by
// src/descriptor's Updater (which also marks re-derivable change), and the other two
// participants' nonces made by a second PsbtSignerService without a policy.
import { sha256 } from '@noble/hashes/sha2.js';
import { HDKey } from '@scure/bip32';
import { Transaction } from '@scure/btc-signer';
import { deriveAt, outputFieldsFor, parseDescriptor, updatePsbtFromDescriptor } from '../../src/descriptor/index.js';
import type { Descriptor } from '../../src/descriptor/index.js';
import { combinePsbts } from '../../src/psbt/index.js';
import type { PsbtSignerService } from '../../src/signer/index.js';

export interface WalletTx {
  psbt: Uint8Array;
  /** Unsigned txid in display order (what approvals sign). */
  txid: Uint8Array;
}

/** musig() with derivation after it takes xpubs: each key as an xpub with a fixed chain code, no steps. */
export function walletDescriptor(pubkeys: Uint8Array[]): { text: string; desc: Descriptor } {
  const xpub = (pk: Uint8Array) => new HDKey({ publicKey: pk, chainCode: sha256(pk) }).publicExtendedKey;
  const text = `tr(musig(${pubkeys.map(xpub).join(',')})/<0;1>/*)`;
  return { text, desc: parseDescriptor(text) };
}

export const changeScript = (desc: Descriptor, index: number): Uint8Array => deriveAt(desc, { branch: 1, index }).script;
export const receiveScript = (desc: Descriptor, index: number): Uint8Array => deriveAt(desc, { branch: 0, index }).script;

export interface OutputSpec {
  script: Uint8Array;
  amount: bigint;
  /** Give the output the BIP373 fields of this change position although its script is another: a forged change claim. */
  claimChangeAt?: number;
  /** Remove the BIP32 derivations the Updater added: a real change output that claims nothing. */
  noClaim?: boolean;
}

/** One-input-per-amount transaction spending the wallet's receive branch. */
export function walletTx(desc: Descriptor, inputs: bigint[], outputs: OutputSpec[], seed: string): WalletTx {
  const tx = new Transaction({ allowUnknownOutputs: true });
  inputs.forEach((amount, i) => {
    tx.addInput({
      txid: sha256(new TextEncoder().encode(`policy test ${seed} ${i}`)),
      index: 0,
      witnessUtxo: { script: receiveScript(desc, i), amount },
    });
  });
  for (const o of outputs) tx.addOutput({ script: o.script, amount: o.amount });
  updatePsbtFromDescriptor(tx, desc, { maxIndex: 20 });
  outputs.forEach((o, i) => {
    if (o.claimChangeAt !== undefined) tx.updateOutput(i, outputFieldsFor(deriveAt(desc, { branch: 1, index: o.claimChangeAt })), true);
    if (o.noClaim) tx.updateOutput(i, { tapBip32Derivation: undefined }, true);
  });
  const txid = sha256(sha256(tx.unsignedTx)).reverse();
  return { psbt: tx.toPSBT(), txid };
}

/** The PSBT with the other participants' round-1 nonces, ready for the final signer. */
export async function withOtherNonces(helper: PsbtSignerService, keyIds: string[], psbt: Uint8Array): Promise<Uint8Array> {
  const r1 = await Promise.all(keyIds.map((keyId) => helper.psbtNonceGen({ keyId, psbt })));
  return combinePsbts([psbt, ...r1.map((r) => r.psbt)]);
}
