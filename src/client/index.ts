// The coordinator SDK: typed clients for the Signer and Aggregator services and runSession,
// which drives a whole MuSig2 signing session across several signer daemons.
export { AggregatorClient, SignerClient } from './clients.js';
export type {
  CallOptions,
  ClientOptions,
  DeterministicSignParams,
  DeterministicSignResult,
  KeyAggResult,
  KeyInfo,
  NonceGenParams,
  NonceGenResult,
  PsbtFinalizeResult,
  PsbtNonceGenResult,
  PsbtSignResult,
  SignParams,
  SignResult,
  Tweak,
} from './clients.js';
export { ClientError, CulpritError, SessionError } from './errors.js';
export type { Contribution } from './errors.js';
export { runSession } from './session.js';
export type { RunSessionOptions, SessionEvent, SessionResult, SessionSigner } from './session.js';
export { runPsbtSession } from './psbt-session.js';
export type { PsbtParticipant, PsbtSessionEvent, PsbtSessionResult, PsbtSessionSigner, RunPsbtSessionOptions } from './psbt-session.js';
export type { ErrorInfo } from '../protocol/rich-status.js';
