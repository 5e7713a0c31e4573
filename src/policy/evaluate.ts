// Policy evaluation: pure, over an already-computed summary of the transaction (this module
// parses no PSBT). Rules are tried in order and the first that matches allows; a rule matches
// when every constraint it sets holds, checked in this order (which fixes the reason reported
// for a rule that breaks several): sighash types, destinations, max_amount, max_fee,
// approvals, per_period.
import { bytesToHex } from '@noble/hashes/utils.js';
import { describeScript } from './address.js';
import { validApprovers } from './approval.js';
import type { Approval } from './approval.js';
import { PolicyRequestError } from './errors.js';
import type { Policy, Rule } from './file.js';
import { periodStart, velocityAllows } from './velocity.js';

/** Most approvals one request may carry: each may cost a signature verification (about 1 ms). */
export const MAX_APPROVALS = 64;

export type PolicyReason =
  | 'POLICY_NO_KEY'
  | 'POLICY_RAW_MESSAGE'
  | 'POLICY_NO_RULES'
  | 'POLICY_SIGHASH'
  | 'POLICY_DESTINATION'
  | 'POLICY_AMOUNT'
  | 'POLICY_FEE'
  | 'POLICY_APPROVALS'
  | 'POLICY_VELOCITY';

export interface TxOutput {
  readonly script: Uint8Array;
  readonly amount: bigint;
  /** Decided by the caller by re-deriving the script from a registered wallet's change branch. */
  readonly change: boolean;
}

export interface PsbtRequest {
  readonly kind: 'psbt';
  /** The unsigned transaction's id, in the byte order of its usual hex display. */
  readonly unsignedTxid: Uint8Array;
  readonly outputs: readonly TxOutput[];
  /** Sum of inputs minus sum of outputs, in sats. */
  readonly fee: bigint;
  /** The sighash type byte of every input this key signs (0x00 for SIGHASH_DEFAULT). */
  readonly sighashTypes: readonly number[];
  readonly approvals: readonly Approval[];
  /** Current time, Unix seconds: picks the velocity window. */
  readonly now: number;
  /** Sats already charged to a rule's window (undefined = nothing). Without it a velocity rule does not match. */
  readonly spentInPeriod?: (rule: string, periodStart: number, periodSeconds: number) => bigint | undefined;
}

export interface RawMessageRequest {
  readonly kind: 'raw_message';
}

export type PolicyRequest = PsbtRequest | RawMessageRequest;

/** What the ledger must check and charge, atomically with the signature, when a velocity rule allowed. */
export interface VelocityCharge {
  readonly rule: string;
  readonly periodStart: number;
  readonly periodSeconds: number;
  /** Sats to add to the window: the amount sent (may be 0). */
  readonly amount: bigint;
  /** The window's limit: charge only if velocityAllows(limit, spent, amount). */
  readonly limit: bigint;
  /** Charge a transaction once: a retry of the same txid must not charge again. */
  readonly txid: Uint8Array;
}

export interface RuleFailure {
  readonly rule: string;
  readonly reason: PolicyReason;
  readonly detail: string;
}

export type Decision =
  | {
      readonly allowed: true;
      /** The rule that matched; absent for an allowed raw message. */
      readonly rule?: string;
      /** Sum of the non-change outputs (PSBT requests). */
      readonly amountSent?: bigint;
      readonly charge?: VelocityCharge;
    }
  | {
      readonly allowed: false;
      readonly reason: PolicyReason;
      /** The rule the reason comes from: the first rule, when none matched. */
      readonly rule?: string;
      readonly detail: string;
      /** Why each rule failed, in rule order (empty when no rule was tried). */
      readonly failures: readonly RuleFailure[];
      readonly amountSent?: bigint;
    };

function checkRequest(r: PsbtRequest): void {
  const bad = (what: string): never => {
    throw new PolicyRequestError(`policy request: ${what}`);
  };
  if (!(r.unsignedTxid instanceof Uint8Array) || r.unsignedTxid.length !== 32) bad('unsignedTxid must be 32 bytes');
  if (!Array.isArray(r.outputs)) bad('outputs must be an array');
  r.outputs.forEach((o, i) => {
    if (!(o.script instanceof Uint8Array)) bad(`outputs[${i}].script must be bytes`);
    if (typeof o.amount !== 'bigint' || o.amount < 0n) bad(`outputs[${i}].amount must be a non-negative bigint`);
    if (typeof o.change !== 'boolean') bad(`outputs[${i}].change must be a boolean`);
  });
  if (typeof r.fee !== 'bigint' || r.fee < 0n) bad('fee must be a non-negative bigint');
  if (!Array.isArray(r.sighashTypes) || r.sighashTypes.some((t) => !Number.isInteger(t) || t < 0 || t > 255)) bad('sighashTypes must be bytes');
  if (!Array.isArray(r.approvals)) bad('approvals must be an array');
  if (r.approvals.length > MAX_APPROVALS) bad(`at most ${MAX_APPROVALS} approvals`);
  if (!Number.isSafeInteger(r.now) || r.now < 0) bad('now must be whole, non-negative Unix seconds');
}

const hexByte = (t: number): string => `0x${t.toString(16).padStart(2, '0')}`;

type RuleOutcome = { ok: true; charge?: VelocityCharge } | { ok: false; reason: PolicyReason; detail: string };

/** The approvers of the key's rules who validly approved, verified once per evaluation and only when a rule asks. */
type ApproverSet = () => ReadonlySet<string>;

function checkRule(policy: Policy, rule: Rule, r: PsbtRequest, sent: bigint, approvedBy: ApproverSet): RuleOutcome {
  const no = (reason: PolicyReason, detail: string): RuleOutcome => ({ ok: false, reason, detail });

  const badSighash = r.sighashTypes.find((t) => !rule.sighashTypes.has(t));
  if (badSighash !== undefined) return no('POLICY_SIGHASH', `sighash type ${hexByte(badSighash)} is not allowed`);

  if (rule.destinations) {
    const allowed = new Set(rule.destinations.map((d) => bytesToHex(d.script)));
    const i = r.outputs.findIndex((o) => !o.change && !allowed.has(bytesToHex(o.script)));
    if (i >= 0) return no('POLICY_DESTINATION', `output ${i} pays ${describeScript(r.outputs[i]!.script, policy.network)}, not an allowed destination`);
  }

  if (rule.maxAmount !== undefined && sent > rule.maxAmount) {
    return no('POLICY_AMOUNT', `sends ${sent} sats, more than max_amount ${rule.maxAmount}`);
  }

  if (rule.maxFee) {
    const { sats, basisPoints } = rule.maxFee;
    if (sats !== undefined && r.fee > sats) return no('POLICY_FEE', `fee ${r.fee} sats is more than max_fee.sats ${sats}`);
    // fee / sent <= bp / 10000, in integers; with nothing sent only a zero fee passes.
    if (basisPoints !== undefined && r.fee * 10_000n > basisPoints * sent) {
      return no('POLICY_FEE', `fee ${r.fee} sats is more than max_fee.percent ${Number(basisPoints) / 100}% of the ${sent} sats sent`);
    }
  }

  if (rule.approvals) {
    const approved = approvedBy();
    const got = rule.approvals.keys.filter((k) => approved.has(bytesToHex(k))).length;
    if (got < rule.approvals.min) {
      return no('POLICY_APPROVALS', `${got} valid approval${got === 1 ? '' : 's'} for this transaction and policy, ${rule.approvals.min} needed`);
    }
  }

  if (rule.perPeriod) {
    const { amount: limit, periodSeconds } = rule.perPeriod;
    const start = periodStart(r.now, periodSeconds);
    if (!r.spentInPeriod) return no('POLICY_VELOCITY', 'velocity needs the ledger, and none was given');
    const spent = r.spentInPeriod(rule.name, start, periodSeconds) ?? 0n;
    if (typeof spent !== 'bigint' || spent < 0n) throw new PolicyRequestError('policy request: spentInPeriod must return a non-negative bigint');
    if (!velocityAllows(limit, spent, sent)) {
      return no('POLICY_VELOCITY', `sends ${sent} sats; ${spent} of ${limit} already spent in the period from ${new Date(start * 1000).toISOString()}`);
    }
    return { ok: true, charge: { rule: rule.name, periodStart: start, periodSeconds, amount: sent, limit, txid: r.unsignedTxid } };
  }
  return { ok: true };
}

/**
 * Decides whether `keyId` may sign `request` under `policy`. A key the policy does not name is
 * refused (POLICY_NO_KEY). When no rule matches, the decision reports the first rule's failure
 * (rules are usually written from the most common case down, and the first is the one an
 * operator expects to apply) and lists every rule's failure in `failures`.
 */
export function evaluate(policy: Policy, keyId: string, request: PolicyRequest): Decision {
  const key = policy.keys.get(keyId);
  if (!key) return { allowed: false, reason: 'POLICY_NO_KEY', detail: `the policy has no entry for key '${keyId}'`, failures: [] };

  if (request.kind === 'raw_message') {
    if (key.allowRawMessage) return { allowed: true };
    return { allowed: false, reason: 'POLICY_RAW_MESSAGE', detail: `key '${keyId}' signs transactions only: its policy does not allow raw messages`, failures: [] };
  }
  if (request.kind !== 'psbt') throw new PolicyRequestError('policy request: kind must be psbt or raw_message');

  checkRequest(request);
  const amountSent = request.outputs.reduce((sum, o) => (o.change ? sum : sum + o.amount), 0n);
  if (key.rules.length === 0) {
    return { allowed: false, reason: 'POLICY_NO_RULES', detail: `key '${keyId}' has no rules: it signs no transaction`, failures: [], amountSent };
  }
  let approved: ReadonlySet<string> | undefined;
  const approvedBy: ApproverSet = () => {
    // Only keys some rule names are verified, so unknown approvals cost nothing.
    approved ??= validApprovers(
      request.approvals,
      key.rules.flatMap((rule) => rule.approvals?.keys ?? []),
      request.unsignedTxid,
      policy.hash,
    );
    return approved;
  };
  const failures: RuleFailure[] = [];
  for (const rule of key.rules) {
    const outcome = checkRule(policy, rule, request, amountSent, approvedBy);
    if (outcome.ok) return { allowed: true, rule: rule.name, amountSent, ...(outcome.charge ? { charge: outcome.charge } : {}) };
    failures.push({ rule: rule.name, reason: outcome.reason, detail: outcome.detail });
  }
  const first = failures[0]!;
  return { allowed: false, reason: first.reason, rule: first.rule, detail: first.detail, failures, amountSent };
}
