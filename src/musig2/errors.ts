/**
 * Error classes for the MuSig2 core. Messages name the offending argument but never carry
 * secret bytes (keys, nonces), so they are safe to log and to return to callers.
 */

/** Base class of every error thrown by `src/musig2`. */
export class Musig2Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The kinds of contribution BIP327 can blame a participant for. */
export type Contribution = 'pubkey' | 'pubnonce' | 'aggnonce' | 'aggothernonce' | 'psig';

/**
 * BIP327 InvalidContributionError: a participant sent something that cannot be decoded or is
 * out of range. `signer` is the 0-based index into the list the caller passed, or null for the
 * nonce aggregator (a bad `aggnonce` or `aggothernonce`).
 */
export class InvalidContributionError extends Musig2Error {
  readonly signer: number | null;
  readonly contrib: Contribution;

  constructor(signer: number | null, contrib: Contribution, detail?: string) {
    const who = signer === null ? 'the nonce aggregator' : `signer ${signer}`;
    super(`invalid ${contrib} from ${who}${detail === undefined ? '' : `: ${detail}`}`);
    this.signer = signer;
    this.contrib = contrib;
  }
}

/**
 * BIP327 ValueError-class failures: wrong lengths, out-of-range scalars, a tweak that gives
 * infinity, a used (wiped) secnonce, the signer's key missing from the key list, and so on.
 * `argument` names the offending argument when there is a single one.
 */
export class InvalidInputError extends Musig2Error {
  readonly argument: string | undefined;

  constructor(message: string, argument?: string) {
    super(message);
    this.argument = argument;
  }
}
