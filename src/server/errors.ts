// One mapping from every error the handlers can see to a gRPC status, shared by both services
// (the core's errors go through the signer's toSignerError first, so both name fields alike).
// BIP327 InvalidContributionErrors also get a google.rpc.ErrorInfo in the rich-error trailer so
// a coordinator can name the culprit. Anything unexpected becomes INTERNAL with a generic
// message: internal details stay in the log.
import { Metadata, status as Status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import type { ErrorInfo } from '../protocol/rich-status.js';
import { encodeStatus, STATUS_DETAILS_KEY } from '../protocol/rich-status.js';
import { PACKAGE } from '../protocol/contract.js';
import { InvalidContributionError, InvalidInputError, Musig2Error } from '../musig2/errors.js';
import { SignerError, toSignerError } from '../signer/index.js';
import { InvalidRequestError } from './validate.js';

export const INVALID_CONTRIBUTION = 'INVALID_CONTRIBUTION';
export const ERROR_DOMAIN = PACKAGE;

const SIGNER_CODES: Record<SignerError['code'], Status> = {
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  NOT_FOUND: Status.NOT_FOUND,
  FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
  UNAVAILABLE: Status.UNAVAILABLE,
  RESOURCE_EXHAUSTED: Status.RESOURCE_EXHAUSTED,
  PERMISSION_DENIED: Status.PERMISSION_DENIED,
  INTERNAL: Status.INTERNAL,
};

/** A status the handlers return on purpose (as opposed to an unexpected exception). */
export interface MappedStatus {
  code: Status;
  message: string;
  errorInfo?: ErrorInfo;
}

/** Maps a known error to a status, or returns undefined for an unexpected one. */
export function mapKnownError(err: unknown): MappedStatus | undefined {
  if (err instanceof InvalidRequestError) return { code: Status.INVALID_ARGUMENT, message: err.message };
  // Core verdicts on the input get the signer's mapping: proto field names, and the ErrorInfo
  // naming the culprit for an InvalidContributionError.
  const mapped = err instanceof InvalidContributionError || err instanceof InvalidInputError ? toSignerError(err) : err;
  if (mapped instanceof SignerError) {
    return {
      code: SIGNER_CODES[mapped.code] ?? Status.INTERNAL,
      message: mapped.message,
      ...(mapped.errorInfo ? { errorInfo: { reason: mapped.errorInfo.reason, domain: ERROR_DOMAIN, metadata: { ...mapped.errorInfo.metadata } } } : {}),
    };
  }
  // Any other core error is still a verdict on the input, never a server fault.
  if (mapped instanceof Musig2Error) return { code: Status.INVALID_ARGUMENT, message: mapped.message };
  return undefined;
}

export const INTERNAL_MESSAGE = 'internal error';

/**
 * Longest status message sent: it travels in an HTTP/2 trailer, and a huge one (a message
 * quoting a caller's oversized field) stalls the whole server while it is encoded and sent.
 */
export const MAX_STATUS_MESSAGE_CHARS = 1024;

function capMessage(message: string): string {
  return message.length <= MAX_STATUS_MESSAGE_CHARS ? message : `${message.slice(0, MAX_STATUS_MESSAGE_CHARS - 13)}… (truncated)`;
}

/** The ServiceError grpc-js sends, with the rich-error trailer when there is an ErrorInfo. */
export function toServiceError(mapped: MappedStatus): Partial<ServiceError> {
  const metadata = new Metadata();
  const message = capMessage(mapped.message);
  if (mapped.errorInfo) {
    const details = encodeStatus({ code: mapped.code, message, errorInfos: [mapped.errorInfo] });
    metadata.set(STATUS_DETAILS_KEY, Buffer.from(details));
  }
  return { code: mapped.code, details: message, metadata };
}
