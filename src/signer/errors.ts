// Every failure that leaves the signing service is a SignerError with a gRPC-style code
// (DESIGN.md section 4). Errors from musig2, the keystore and the ledger are mapped here,
// in one place. Messages are composed here from public facts only: no secret, and no
// unknown error's text, ever reaches a caller.

import { InvalidContributionError, InvalidInputError, Musig2Error } from '../musig2/index.js';
import type { Contribution } from '../musig2/index.js';
import { KeystoreError } from '../keystore/index.js';
import {
  LedgerError,
  LedgerUnavailableError,
  NonceCollisionError,
  NonceNotRecordedError,
  NonceReuseError,
} from '../ledger/index.js';

export type SignerErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'FAILED_PRECONDITION'
  | 'UNAVAILABLE'
  | 'RESOURCE_EXHAUSTED'
  | 'PERMISSION_DENIED'
  | 'INTERNAL';

/** google.rpc.ErrorInfo, minus the domain the server adds. */
export interface ErrorInfo {
  readonly reason: string;
  readonly metadata: Record<string, string>;
}

export class SignerError extends Error {
  readonly code: SignerErrorCode;
  /** The request field at fault (proto field names, e.g. `pubkeys[1]`), when known. */
  readonly field?: string;
  readonly errorInfo?: ErrorInfo;

  constructor(
    code: SignerErrorCode,
    message: string,
    opts: { field?: string; errorInfo?: ErrorInfo; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SignerError';
    this.code = code;
    if (opts.field !== undefined) this.field = opts.field;
    if (opts.errorInfo !== undefined) this.errorInfo = opts.errorInfo;
  }
}

export function invalidArgument(field: string, message: string): SignerError {
  return new SignerError('INVALID_ARGUMENT', `${field}: ${message}`, { field });
}

/** The request field a BIP327 contribution came in, for messages and `field`. */
function contributionField(contrib: Contribution, signer: number | null): string {
  switch (contrib) {
    case 'pubkey':
      return `pubkeys[${signer ?? 0}]`;
    case 'pubnonce':
      return signer === null ? 'pubnonces' : `pubnonces[${signer}]`;
    case 'aggnonce':
      return 'aggnonce';
    case 'aggothernonce':
      return 'aggothernonce';
    case 'psig':
      return signer === null ? 'partial_sigs' : `partial_sigs[${signer}]`;
  }
}

/** musig2's argument names, mapped to the request's proto field names. */
function requestField(argument: string | undefined): string {
  if (argument === undefined) return 'request';
  return argument
    .replace(/^ctx\./, '')
    .replace(/^msg$/, 'message')
    .replace(/^extraIn$/, 'extra_in')
    .replace(/\.tweak$/, '');
}

/** musig2's message without its leading argument name, which the field prefix already gives. */
function withoutArgumentName(message: string, argument: string | undefined): string {
  if (argument === undefined || !message.startsWith(argument)) return message;
  const rest = message.slice(argument.length);
  if (rest.startsWith(': ')) return rest.slice(2);
  if (rest.startsWith(' ')) return rest.slice(1);
  return message;
}

/**
 * Map any error to a SignerError. `alreadyMapped` errors pass through. Ledger reuse and
 * collision errors are mapped here, but alarming on them is the service's job.
 */
export function toSignerError(err: unknown): SignerError {
  if (err instanceof SignerError) return err;

  if (err instanceof InvalidContributionError) {
    const field = contributionField(err.contrib, err.signer);
    const who = err.signer === null ? 'the nonce aggregator' : `signer ${err.signer}`;
    return new SignerError('INVALID_ARGUMENT', `${field}: invalid ${err.contrib} contributed by ${who}`, {
      field,
      errorInfo: {
        reason: 'INVALID_CONTRIBUTION',
        metadata: { signer: err.signer === null ? 'aggregator' : String(err.signer), contribution: err.contrib },
      },
    });
  }
  if (err instanceof InvalidInputError) {
    // The secret inputs are the service's own: a complaint about them is our fault, not the caller's.
    if (err.argument === 'sk' || err.argument === 'secnonce') {
      return new SignerError('INTERNAL', 'internal error in the signing arithmetic; nothing was released');
    }
    // musig2's messages name the argument and the expected length and never carry values.
    const field = /aggregate public key/.test(err.message) ? 'pubkeys' : requestField(err.argument);
    return new SignerError('INVALID_ARGUMENT', `${field}: ${withoutArgumentName(err.message, err.argument)}`, { field });
  }
  if (err instanceof Musig2Error) {
    return new SignerError('INTERNAL', 'the partial signature failed self-verification and was not released');
  }

  if (err instanceof KeystoreError) {
    switch (err.code) {
      case 'KEY_NOT_FOUND':
        return new SignerError('NOT_FOUND', 'key_id: no such key', { field: 'key_id' });
      case 'TOKEN_UNAVAILABLE':
      case 'TOKEN_NOT_FOUND':
      case 'MODULE_LOAD':
      case 'WRONG_PIN':
      case 'PIN_LOCKED':
      case 'PIN_MISSING':
      case 'CLOSED':
        return new SignerError('UNAVAILABLE', 'the key store is unavailable; nothing was signed');
      case 'BLOB_AUTH_FAILED':
        return new SignerError('INTERNAL', 'the key failed authentication in the key store');
      default:
        return new SignerError('INTERNAL', 'key store error');
    }
  }

  if (err instanceof LedgerUnavailableError) {
    return new SignerError('UNAVAILABLE', 'the nonce ledger is unavailable; nothing was signed');
  }
  if (err instanceof NonceReuseError) {
    return new SignerError('FAILED_PRECONDITION', 'this nonce is already used for a different signing context');
  }
  if (err instanceof NonceCollisionError) {
    return new SignerError('INTERNAL', 'nonce generation failed a uniqueness check; nothing was released');
  }
  if (err instanceof NonceNotRecordedError) {
    return new SignerError('FAILED_PRECONDITION', 'the session nonce is not in the ledger; start a new session');
  }
  if (err instanceof LedgerError) {
    return new SignerError('INTERNAL', 'the nonce ledger refused the write; nothing was signed');
  }
  return new SignerError('INTERNAL', 'internal error');
}
