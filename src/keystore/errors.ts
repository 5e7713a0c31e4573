// Typed keystore errors. Each names its cause in plain words and carries a stable code the
// daemon maps to gRPC statuses. None of them ever carries secret bytes or the PIN.

export type KeystoreErrorCode =
  | 'WRONG_PIN'
  | 'PIN_LOCKED'
  | 'PIN_MISSING'
  | 'PIN_CONFLICT'
  | 'PIN_FILE'
  | 'MODULE_LOAD'
  | 'TOKEN_NOT_FOUND'
  | 'TOKEN_AMBIGUOUS'
  | 'TOKEN_UNAVAILABLE'
  | 'KEY_NOT_FOUND'
  | 'BLOB_AUTH_FAILED'
  | 'BLOB_MALFORMED'
  | 'DUPLICATE_LABEL'
  | 'INVALID_LABEL'
  | 'INVALID_SECRET'
  | 'KEK_MISSING'
  | 'KEK_POLICY'
  | 'AUDIT_KEY_MISSING'
  | 'AUDIT_KEY_POLICY'
  | 'CLOSED'
  | 'PKCS11';

export class KeystoreError extends Error {
  constructor(
    readonly code: KeystoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'KeystoreError';
  }
}

export class WrongPinError extends KeystoreError {
  constructor(tokenLabel: string, options?: { cause?: unknown }) {
    super('WRONG_PIN', `wrong PIN for token "${tokenLabel}"`, options);
    this.name = 'WrongPinError';
  }
}

export class PinLockedError extends KeystoreError {
  constructor(tokenLabel: string, options?: { cause?: unknown }) {
    super('PIN_LOCKED', `the user PIN of token "${tokenLabel}" is locked; the security officer must reset it`, options);
    this.name = 'PinLockedError';
  }
}

export class PinMissingError extends KeystoreError {
  constructor(detail = 'no PIN given: set a PIN or a PIN file') {
    super('PIN_MISSING', detail);
    this.name = 'PinMissingError';
  }
}

export class ModuleLoadError extends KeystoreError {
  constructor(modulePath: string, reason: string, options?: { cause?: unknown }) {
    super('MODULE_LOAD', `cannot load PKCS#11 module ${modulePath}: ${reason}`, options);
    this.name = 'ModuleLoadError';
  }
}

export class TokenNotFoundError extends KeystoreError {
  constructor(tokenLabel: string, available: readonly string[]) {
    const seen = available.length > 0 ? available.map((l) => `"${l}"`).join(', ') : 'none';
    super('TOKEN_NOT_FOUND', `no token labelled "${tokenLabel}" (tokens present: ${seen})`);
    this.name = 'TokenNotFoundError';
  }
}

/** The token, or our sessions on it, went away and could not be re-established. */
export class TokenUnavailableError extends KeystoreError {
  constructor(tokenLabel: string, reason: string, options?: { cause?: unknown }) {
    super('TOKEN_UNAVAILABLE', `token "${tokenLabel}" is unavailable: ${reason}`, options);
    this.name = 'TokenUnavailableError';
  }
}

export class KeyNotFoundError extends KeystoreError {
  constructor(label: string) {
    super('KEY_NOT_FOUND', `no key labelled "${label}" on the token`);
    this.name = 'KeyNotFoundError';
  }
}

export class BlobAuthenticationError extends KeystoreError {
  constructor(label: string, options?: { cause?: unknown }) {
    super(
      'BLOB_AUTH_FAILED',
      `key blob failed authentication for "${label}" (tampered, moved from another label, or sealed under another KEK)`,
      options,
    );
    this.name = 'BlobAuthenticationError';
  }
}

export class DuplicateLabelError extends KeystoreError {
  constructor(label: string) {
    super('DUPLICATE_LABEL', `a key labelled "${label}" already exists on the token`);
    this.name = 'DuplicateLabelError';
  }
}

export class InvalidSecretError extends KeystoreError {
  constructor(reason: string) {
    super('INVALID_SECRET', `invalid secret key: ${reason}`);
    this.name = 'InvalidSecretError';
  }
}

export class InvalidLabelError extends KeystoreError {
  constructor(reason: string) {
    super('INVALID_LABEL', `invalid key label: ${reason}`);
    this.name = 'InvalidLabelError';
  }
}
