// Typed ledger errors. Messages carry only public data (pubnonces, codes): the ledger never
// sees a secret, and nothing here may ever quote one.

/** Base class: any failure the ledger reports. The signer treats every one as "do not sign". */
export class LedgerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LedgerError';
  }
}

/**
 * The database could not be read or written (I/O error, lock held elsewhere, disk full,
 * read-only file, connection closed). Fail closed: the caller must not sign.
 */
export class LedgerUnavailableError extends LedgerError {
  /** The driver's error code when there is one, e.g. SQLITE_BUSY or SQLITE_IOERR_WRITE. */
  readonly dbCode: string | undefined;
  constructor(message: string, dbCode?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LedgerUnavailableError';
    this.dbCode = dbCode;
  }
}

/** The pubnonce is already used for a different signing context: a nonce-reuse attempt. */
export class NonceReuseError extends LedgerError {
  readonly pubnonceHex: string;
  constructor(pubnonce: Uint8Array) {
    const hex = Buffer.from(pubnonce).toString('hex');
    super(`nonce ${hex.slice(0, 16)}… is already used for a different signing context`);
    this.name = 'NonceReuseError';
    this.pubnonceHex = hex;
  }
}

/** NonceGen produced a pubnonce the ledger already holds: the randomness source failed. */
export class NonceCollisionError extends LedgerError {
  readonly pubnonceHex: string;
  constructor(pubnonce: Uint8Array) {
    const hex = Buffer.from(pubnonce).toString('hex');
    super(`nonce ${hex.slice(0, 16)}… is already recorded: nonce generation repeated itself`);
    this.name = 'NonceCollisionError';
    this.pubnonceHex = hex;
  }
}

/** A used-marking or psig write named a pubnonce the ledger never recorded. */
export class NonceNotRecordedError extends LedgerError {
  readonly pubnonceHex: string;
  constructor(pubnonce: Uint8Array) {
    const hex = Buffer.from(pubnonce).toString('hex');
    super(`nonce ${hex.slice(0, 16)}… is not in the ledger`);
    this.name = 'NonceNotRecordedError';
    this.pubnonceHex = hex;
  }
}

/** A velocity charge would take its window past the limit: refused, nothing written. */
export class VelocityExceededError extends LedgerError {
  constructor(
    readonly rule: string,
    readonly periodStart: number,
  ) {
    super(`velocity rule '${rule}': the window from ${new Date(periodStart * 1000).toISOString()} has no room for this transaction`);
    this.name = 'VelocityExceededError';
  }
}
