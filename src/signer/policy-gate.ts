// The signing policy in the signer layer: turns a PSBT and its SigningPlan into the policy's
// PsbtRequest, runs src/policy's evaluate, and turns a refusal into PERMISSION_DENIED with a
// google.rpc.ErrorInfo (reason POLICY_*, metadata rule and the amounts). The policy itself
// is swappable (SIGHUP reload); each call reads it once, so one call sees one policy.
//
// Change is decided here and only here: an output is change when its scriptPubKey re-derives
// from the change branch (branch 1) of one of the key's registered wallets at the index its
// PSBT fields claim (PSBT_OUT_TAP_BIP32_DERIVATION, path .../1/i). The claim only says where to
// look: an output that claims to be change but does not re-derive, or claims nothing, counts as
// a payment. (Looking at the claimed index costs one derivation; searching every index up to a
// gap limit would cost about 1 ms per index per wallet on the event loop.)
import { bytesToHex } from '@noble/hashes/utils.js';
import { deriveAt } from '../descriptor/index.js';
import type { Descriptor } from '../descriptor/index.js';
import type { NonceLedger, VelocityChargeEntry } from '../ledger/index.js';
import { describeScript, evaluate, MAX_APPROVALS, periodStart } from '../policy/index.js';
import type { Approval, Decision, KeyPolicy, Policy, PolicyReason, PsbtRequest, TxOutput } from '../policy/index.js';
import type { SigningPlan, Transaction } from '../psbt/index.js';
import { SignerError } from './errors.js';

/** Change is branch 1 of a `<0;1>` multipath descriptor (BIP389). */
const CHANGE_BRANCH = 1;
/** Most claimed positions tried per output: a PSBT cannot make the daemon derive without bound. */
const MAX_CLAIMS_PER_OUTPUT = 4;

/** The summary the policy judges, with what the audit record and the error name. */
export interface PsbtSummary {
  readonly request: Omit<PsbtRequest, 'spentInPeriod' | 'now' | 'approvals'>;
  /** Sum of the non-change outputs. */
  readonly amountSent: bigint;
}

/** The change indices an output's BIP32 derivations claim (paths ending in /1/i). */
function claimedChangeIndices(tx: Transaction, i: number): number[] {
  const out = new Set<number>();
  for (const [, d] of tx.getOutput(i).tapBip32Derivation ?? []) {
    const path = d.der.path;
    if (path.length >= 2 && path[path.length - 2] === CHANGE_BRANCH) out.add(path[path.length - 1]!);
    if (out.size >= MAX_CLAIMS_PER_OUTPUT) break;
  }
  return [...out];
}

function isChange(descriptors: readonly Descriptor[], script: Uint8Array, claimed: readonly number[]): boolean {
  const want = bytesToHex(script);
  return descriptors.some(
    (d) =>
      d.branches > CHANGE_BRANCH &&
      claimed.some((index) => {
        try {
          return bytesToHex(deriveAt(d, { branch: CHANGE_BRANCH, index }).script) === want;
        } catch {
          return false; // an index the descriptor cannot derive (hardened, out of range)
        }
      }),
  );
}

function prevoutAmount(tx: Transaction, i: number): bigint {
  const input = tx.getInput(i);
  if (input.witnessUtxo) return input.witnessUtxo.amount;
  const out = input.index === undefined ? undefined : input.nonWitnessUtxo?.outputs[input.index];
  if (out === undefined) {
    throw new SignerError('INVALID_ARGUMENT', `psbt input ${i}: neither witnessUtxo nor nonWitnessUtxo is present; the fee cannot be known`, {
      field: 'psbt',
      errorInfo: { reason: 'MISSING_UTXO', metadata: { input: String(i) } },
    });
  }
  return out.amount;
}

/**
 * The policy's view of a transaction: every output with its amount and whether it is change
 * (re-derived from the key's wallets), the fee (inputs minus outputs), the sighash type of every
 * input this key signs, and the unsigned txid in display byte order.
 */
export function summarizePsbt(key: KeyPolicy | undefined, tx: Transaction, plan: SigningPlan): PsbtSummary {
  const descriptors = key?.descriptors ?? [];
  const outputs: TxOutput[] = [];
  let totalOut = 0n;
  for (let i = 0; i < tx.outputsLength; i++) {
    const o = tx.getOutput(i);
    const script = o.script ?? new Uint8Array(0);
    const amount = o.amount ?? 0n;
    totalOut += amount;
    outputs.push({ script, amount, change: descriptors.length > 0 && isChange(descriptors, script, claimedChangeIndices(tx, i)) });
  }
  let totalIn = 0n;
  for (let i = 0; i < tx.inputsLength; i++) totalIn += prevoutAmount(tx, i);
  if (totalIn < totalOut) {
    throw new SignerError('INVALID_ARGUMENT', `psbt: the outputs (${totalOut} sats) exceed the inputs (${totalIn} sats)`, {
      field: 'psbt',
      errorInfo: { reason: 'NEGATIVE_FEE', metadata: {} },
    });
  }
  const unsignedTxid = Uint8Array.from(plan.unsignedTxid).reverse();
  const amountSent = outputs.reduce((sum, o) => (o.change ? sum : sum + o.amount), 0n);
  return {
    request: { kind: 'psbt', unsignedTxid, outputs, fee: totalIn - totalOut, sighashTypes: plan.inputs.map((p) => p.sighashType) },
    amountSent,
  };
}

/** What a refusal or an allowed transaction tells the audit log: public facts about the caller's own transaction. */
export function policyAuditFields(policy: Policy, summary: PsbtSummary | undefined, decision: Decision): Record<string, string> {
  const f: Record<string, string> = { policy_hash: policy.hashHex };
  if (decision.rule !== undefined) f.rule = decision.rule;
  if (summary) {
    f.txid = bytesToHex(summary.request.unsignedTxid);
    f.amount_sent = summary.amountSent.toString();
    f.fee = summary.request.fee.toString();
    f.destinations = summary.request.outputs
      .filter((o) => !o.change)
      .map((o) => `${describeScript(o.script, policy.network)}=${o.amount}`)
      .join(',');
    f.change = summary.request.outputs
      .filter((o) => o.change)
      .map((o) => String(o.amount))
      .join(',');
  }
  return f;
}

/** What the audit record of an allowed transaction says: the rule, the amounts, and the velocity charge made (`charged`). */
export function allowedAuditFields(a: PsbtAllowed, charged: boolean): Record<string, string> {
  const f = policyAuditFields(a.policy, a.summary, { allowed: true, rule: a.rule });
  delete f.policy_hash; // every record has it already
  if (a.charge && charged) f.velocity_charge = `${a.charge.amount}/${a.charge.limit}@${a.charge.periodStart}`;
  return f;
}

/** A policy refusal: PERMISSION_DENIED, ErrorInfo reason POLICY_* with the rule and the amounts. */
export function policyRefusal(policy: Policy, decision: Extract<Decision, { allowed: false }>, summary?: PsbtSummary): SignerError {
  return new SignerError('PERMISSION_DENIED', `policy: ${decision.detail}`, {
    errorInfo: { reason: decision.reason, metadata: policyAuditFields(policy, summary, decision) },
  });
}

export interface PolicyGateOptions {
  /** Spent amounts of velocity windows; without it a velocity rule never matches. */
  ledger?: Pick<NonceLedger, 'spentInPeriod'>;
  /** Unix milliseconds. Default Date.now. */
  now?: () => number;
}

/** An allowed PSBT: the decision, and the velocity charge the ledger must make with the signature. */
export interface PsbtAllowed {
  readonly policy: Policy;
  readonly rule: string;
  readonly charge?: VelocityChargeEntry;
  readonly summary: PsbtSummary;
}

export class PolicyGate {
  private current: Policy;
  /** Refusals by reason, for metrics. */
  readonly refusals = new Map<PolicyReason, number>();
  private readonly ledger: PolicyGateOptions['ledger'];
  private readonly now: () => number;

  constructor(policy: Policy, opts: PolicyGateOptions = {}) {
    this.current = policy;
    this.ledger = opts.ledger;
    this.now = opts.now ?? Date.now;
  }

  get policy(): Policy {
    return this.current;
  }

  /** Replaces the policy (SIGHUP); calls already past their check keep the policy they read. */
  replace(policy: Policy): void {
    this.current = policy;
  }

  private refuse(policy: Policy, decision: Extract<Decision, { allowed: false }>, summary?: PsbtSummary): SignerError {
    this.refusals.set(decision.reason, (this.refusals.get(decision.reason) ?? 0) + 1);
    return policyRefusal(policy, decision, summary);
  }

  /** NonceGen, Sign and DeterministicSign on an opaque message: allowed only where the key's policy says so. */
  checkRawMessage(keyId: string): void {
    const policy = this.current;
    const decision = evaluate(policy, keyId, { kind: 'raw_message' });
    if (!decision.allowed) throw this.refuse(policy, decision);
  }

  /** Judges a transaction for `keyId`; throws the refusal, or returns the rule and the charge to make. */
  async checkPsbt(keyId: string, tx: Transaction, plan: SigningPlan, approvals: readonly Approval[]): Promise<PsbtAllowed> {
    const policy = this.current;
    const key = policy.keys.get(keyId);
    if (approvals.length > MAX_APPROVALS) {
      throw new SignerError('INVALID_ARGUMENT', `approvals: at most ${MAX_APPROVALS}, got ${approvals.length}`, { field: 'approvals' });
    }
    approvals.forEach((a, i) => {
      if (!(a.pubkey instanceof Uint8Array) || a.pubkey.length !== 32) throw new SignerError('INVALID_ARGUMENT', `approvals[${i}].pubkey: expected 32 bytes`, { field: `approvals[${i}].pubkey` });
      if (!(a.signature instanceof Uint8Array) || a.signature.length !== 64) {
        throw new SignerError('INVALID_ARGUMENT', `approvals[${i}].signature: expected 64 bytes`, { field: `approvals[${i}].signature` });
      }
    });
    const summary = summarizePsbt(key, tx, plan);
    const now = Math.floor(this.now() / 1000);
    // Velocity windows read before the (synchronous) evaluation; this transaction's own earlier
    // charge is left out, so an identical retry is judged as the first attempt was.
    const spent = new Map<string, bigint>();
    if (key && this.ledger) {
      const ledger = this.ledger;
      await Promise.all(
        key.rules
          .filter((r) => r.perPeriod !== undefined)
          .map(async (r) => {
            const start = periodStart(now, r.perPeriod!.periodSeconds);
            spent.set(`${r.name}@${start}`, await ledger.spentInPeriod(keyId, r.name, start, summary.request.unsignedTxid));
          }),
      );
    }
    const decision = evaluate(policy, keyId, {
      ...summary.request,
      approvals,
      now,
      ...(this.ledger ? { spentInPeriod: (rule: string, start: number) => spent.get(`${rule}@${start}`) ?? 0n } : {}),
    });
    if (!decision.allowed) throw this.refuse(policy, decision, summary);
    const c = decision.charge;
    return {
      policy,
      rule: decision.rule!,
      summary,
      ...(c ? { charge: { keyId, rule: c.rule, periodStart: c.periodStart, amount: c.amount, limit: c.limit, txid: c.txid } } : {}),
    };
  }

  /** A velocity charge the ledger refused (the window filled up meanwhile): counted and refused like any other. */
  velocityExhausted(allowed: PsbtAllowed): SignerError {
    const rule = allowed.rule;
    return this.refuse(
      allowed.policy,
      {
        allowed: false,
        reason: 'POLICY_VELOCITY',
        rule,
        detail: `sends ${allowed.summary.amountSent} sats; rule '${rule}' has no room left in this period`,
        failures: [],
        amountSent: allowed.summary.amountSent,
      },
      allowed.summary,
    );
  }
}
