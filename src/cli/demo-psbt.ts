// The demo transaction `npm start` prints a `psbt sign` command for: a PSBT spending a made-up
// output of tr(musig(demo keys)) to a payee, with the change back to the same wallet, and the
// BIP373 fields filled by the Updater from the descriptor. (BIP390 allows derivation below
// musig() only when every participant is an xpub; the demo keys are plain keys.)
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { addChecksum, deriveAt, parseDescriptor, updatePsbtFromDescriptor } from '../descriptor/index.js';
import { encodePsbt, Transaction } from '../psbt/index.js';

export interface DemoPsbt {
  /** The wallet's descriptor, with its checksum. */
  descriptor: string;
  psbt: Uint8Array;
}

const SPENT_SATS = 100_000n;
const PAY_SATS = 60_000n;
const FEE_SATS = 1_000n;

export function demoPsbt(pubkeys: readonly Uint8Array[]): DemoPsbt {
  const keys = pubkeys.map((pk) => Buffer.from(pk).toString('hex')).join(',');
  const descriptor = addChecksum(`tr(musig(${keys}))`);
  const desc = parseDescriptor(descriptor);
  const receive = deriveAt(desc);
  const change = receive;
  const tx = new Transaction({ allowUnknownOutputs: true });
  // A made-up prevout: the demo spends nothing real.
  tx.addInput({ txid: sha256(new TextEncoder().encode('musig2-signer demo prevout')), index: 0, witnessUtxo: { script: receive.script, amount: SPENT_SATS } });
  // Pay to a key-path output of an arbitrary key, and the rest back to change.
  const payee = secp256k1.getPublicKey(sha256(new TextEncoder().encode('musig2-signer demo payee')), true).subarray(1);
  tx.addOutput({ script: Uint8Array.from([0x51, 0x20, ...payee]), amount: PAY_SATS });
  tx.addOutput({ script: change.script, amount: SPENT_SATS - PAY_SATS - FEE_SATS });
  updatePsbtFromDescriptor(tx, desc, { maxIndex: 0 });
  return { descriptor, psbt: encodePsbt(tx) };
}
