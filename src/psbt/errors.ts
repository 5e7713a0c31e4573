/** Errors of src/psbt: one class, a machine-readable reason, and the input (and participant) at fault. */

export type PsbtErrorReason =
  | 'MALFORMED' // not a PSBT, or a field scure refuses
  | 'TOO_LARGE' // over PsbtLimits.maxPsbtBytes
  | 'TOO_MANY_INPUTS'
  | 'TOO_MANY_OUTPUTS'
  | 'NOT_TAPROOT' // the spent output is not a P2TR scriptPubKey
  | 'AGGREGATE_MISMATCH' // 0x1a key data is not KeyAgg of its listed participants
  | 'DERIVATION_MISMATCH' // BIP328 path + TapTweak do not reach the output key / leaf key
  | 'DUPLICATE_PARTICIPANT' // a key listed twice in a 0x1a list we would sign for
  | 'TOO_MANY_PARTICIPANTS' // a 0x1a list over MAX_PARTICIPANTS
  | 'MISSING_UTXO' // an input without witnessUtxo or nonWitnessUtxo
  | 'UNSUPPORTED_SIGHASH' // sighash type other than DEFAULT (0) or ALL (1)
  | 'NO_PARTICIPATION' // the key takes part in no input
  | 'BAD_NONCE' // 0x1b value of the wrong length or not two valid points
  | 'CONFLICTING_NONCE' // one participant with two different 0x1b values for one signing key
  | 'MISSING_NONCE'
  | 'BAD_PARTIAL_SIG' // 0x1c of the wrong length, or one that does not verify
  | 'CONFLICTING_PARTIAL_SIG'
  | 'INVALID_SIGNATURE' // the aggregate BIP340 signature does not verify
  | 'DIFFERENT_TRANSACTION' // PSBTs of different unsigned transactions
  | 'CONFLICT' // BIP174 Combiner: one key with two values
  | 'FINALIZE_FAILED';

/**
 * A refusal of a PSBT. The message names the input index (when there is one) and the reason;
 * it never carries secret material (there is none in this module) and never wraps a foreign
 * error class: the library's text is copied into the message instead.
 */
export class PsbtError extends Error {
  readonly reason: PsbtErrorReason;
  readonly inputIndex: number | undefined;
  /** Hex of the 33-byte participant key at fault, when one participant is to blame. */
  readonly participant: string | undefined;

  constructor(reason: PsbtErrorReason, detail: string, opts: { inputIndex?: number; participant?: string } = {}) {
    const where = opts.inputIndex === undefined ? '' : `input ${opts.inputIndex}: `;
    const who = opts.participant === undefined ? '' : ` (participant ${opts.participant})`;
    super(`${where}${reason}: ${detail}${who}`);
    this.name = 'PsbtError';
    this.reason = reason;
    this.inputIndex = opts.inputIndex;
    this.participant = opts.participant;
  }
}

/** The message of anything thrown, for copying into a PsbtError. */
export function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
