// The signing service, independent of gRPC: sessions, policy and ledger ordering over
// src/musig2, src/keystore and src/ledger.

export { SignerService, DEFAULT_SESSION_TTL_MS, DEFAULT_MAX_SESSIONS } from './service.js';
export type {
  AlarmKind,
  DeterministicSignRequest,
  DeterministicSignResult,
  NonceGenRequest,
  NonceGenResult,
  SignRequest,
  SignResult,
  SignerCounters,
  SignerKeystore,
  SignerServiceOptions,
} from './service.js';
export { ComputePool, DEFAULT_DEPTH, DEFAULT_MAX_COMPUTE_PER_CLIENT, DEFAULT_MAX_COMPUTE_QUEUE, MAX_WORKERS, defaultPoolSize } from './compute-pool.js';
export type { Compute, ComputeOp, ComputePoolOptions, ComputePublicOp, ComputeTestHooks, PublicCompute } from './compute-pool.js';
export { SignerError, toSignerError } from './errors.js';
export type { ErrorInfo, SignerErrorCode } from './errors.js';
export { DEFAULT_LIMITS, MAX_KEY_ID_LENGTH, SESSION_ID_BYTES, checkKeyId, checkSessionId } from './validate.js';
export type { RequestLimits } from './validate.js';
export { contextDigest, bindingDigest, deterministicDigest } from './digest.js';
export type { SigningContext, SigningPath } from './digest.js';
export { PsbtSignerService, ledgerSessionId } from './psbt-service.js';
export type {
  PsbtDeterministicSignRequest,
  PsbtDeterministicSignResult,
  PsbtNonceGenRequest,
  PsbtNonceGenResult,
  PsbtServiceOptions,
  PsbtSignRequest,
  PsbtSignResult,
} from './psbt-service.js';
export { PolicyGate, policyRefusal, summarizePsbt } from './policy-gate.js';
export type { PolicyGateOptions, PsbtAllowed, PsbtSummary } from './policy-gate.js';
