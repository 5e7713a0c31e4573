// Signing policy: the file, its hash, approvals, velocity arithmetic and evaluation. Pure but
// for loadPolicy reading its file; no gRPC, no ledger.
export { NETWORKS, describeScript, destinationScript } from './address.js';
export type { PolicyNetwork } from './address.js';
export { APPROVAL_TAG, approvalMessage, signApproval, validApprovers } from './approval.js';
export type { Approval } from './approval.js';
export { PolicyError, PolicyRequestError } from './errors.js';
export { evaluate, MAX_APPROVALS } from './evaluate.js';
export type { Decision, PolicyReason, PolicyRequest, PsbtRequest, RawMessageRequest, RuleFailure, TxOutput, VelocityCharge } from './evaluate.js';
export {
  DEFAULT_SIGHASH_TYPES,
  MAX_MONEY,
  MAX_PERIOD_SECONDS,
  MAX_POLICY_BYTES,
  POLICY_VERSION,
  SIGHASH_TYPES,
  loadPolicy,
  parsePolicy,
} from './file.js';
export type { Destination, KeyPolicy, ParseOptions, Policy, Rule, SighashName } from './file.js';
export { canonicalJson, hashCanonical } from './hash.js';
export { periodStart, velocityAllows } from './velocity.js';
