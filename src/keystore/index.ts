// Key custody behind PKCS#11: signing keys sealed under a KEK that never leaves the token.
export { Keystore } from './keystore.js';
export type { KeyInfo, KeystoreOptions } from './keystore.js';
export type { KeystoreStats } from './session-pool.js';
export {
  BlobAuthenticationError,
  DuplicateLabelError,
  InvalidLabelError,
  InvalidSecretError,
  KeyNotFoundError,
  KeystoreError,
  ModuleLoadError,
  PinLockedError,
  PinMissingError,
  TokenNotFoundError,
  TokenUnavailableError,
  WrongPinError,
} from './errors.js';
export type { KeystoreErrorCode } from './errors.js';
export { DEFAULT_KEK_LABEL } from './kek.js';
export { DEFAULT_AUDIT_KEY_LABEL } from './audit-key.js';
export { KEY_OBJECT_APPLICATION } from './blob.js';
export { SECP256K1_ORDER, isValidSecretScalar, isValidLabel, LABEL_RULE, MAX_LABEL_LENGTH } from './validation.js';
export { findSoftHsmModule, initSoftHsmToken, provisionSoftHsmToken, SOFTHSM_MODULE_CANDIDATES } from './softhsm.js';
export type { SoftHsmToken, SoftHsmTokenSpec } from './softhsm.js';
