// Errors the coordinator SDK throws: a failed gRPC call (with the server's ErrorInfo, when it
// sent one), a signer blamed for a bad contribution, and any other session failure.
import { status as Status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import type { ErrorInfo } from '../protocol/rich-status.js';
import { decodeStatus, STATUS_DETAILS_KEY } from '../protocol/rich-status.js';

export type Contribution = 'pubkey' | 'pubnonce' | 'aggnonce' | 'aggothernonce' | 'psig';

/** A gRPC call failed. `errorInfo` is the first google.rpc.ErrorInfo of the rich-error trailer. */
export class ClientError extends Error {
  readonly code: Status;
  readonly codeName: string;
  /** The server's status message, as sent. */
  readonly details: string;
  readonly errorInfo: ErrorInfo | undefined;
  readonly method: string;

  constructor(method: string, code: Status, details: string, errorInfo?: ErrorInfo) {
    const codeName = Status[code] ?? String(code);
    super(`${method}: ${codeName}: ${details}`);
    this.name = 'ClientError';
    this.method = method;
    this.code = code;
    this.codeName = codeName;
    this.details = details;
    this.errorInfo = errorInfo;
  }

  static fromServiceError(method: string, err: Partial<ServiceError>): ClientError {
    let errorInfo: ErrorInfo | undefined;
    const raw = err.metadata?.get(STATUS_DETAILS_KEY)[0];
    if (raw instanceof Uint8Array) {
      try {
        errorInfo = decodeStatus(raw).errorInfos[0];
      } catch {
        // A malformed trailer must not hide the status itself.
      }
    }
    return new ClientError(method, err.code ?? Status.UNKNOWN, err.details ?? err.message ?? '', errorInfo);
  }

  /** The blamed signer and contribution, when the server reported INVALID_CONTRIBUTION. */
  get contribution(): { signer: number | 'aggregator'; contribution: Contribution } | undefined {
    const info = this.errorInfo;
    if (info?.reason !== 'INVALID_CONTRIBUTION') return undefined;
    const signer = info.metadata.signer === 'aggregator' ? 'aggregator' : Number(info.metadata.signer);
    if (signer !== 'aggregator' && !Number.isInteger(signer)) return undefined;
    return { signer, contribution: info.metadata.contribution as Contribution };
  }
}

/** A session failed because one signer's contribution is invalid: the culprit is named. */
export class CulpritError extends Error {
  constructor(
    /** 0-based index of the signer in the session's signer list. */
    readonly signerIndex: number,
    readonly contribution: Contribution,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`signer ${signerIndex} gave an invalid ${contribution}: ${detail}`, options);
    this.name = 'CulpritError';
  }
}

/** Any other session failure; `signerIndex` says which signer's call failed, when one did. */
export class SessionError extends Error {
  constructor(
    message: string,
    readonly signerIndex?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SessionError';
  }
}
