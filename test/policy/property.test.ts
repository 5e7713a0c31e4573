// Random policies and random transactions: evaluate() decides exactly as a small model of the
// rules, written here from the README's description and sharing no code with src/policy (it
// reads the policy document, not the parsed Policy; it knows which approvals are valid from
// how the test made them; it computes its own velocity windows).
import { createHash } from 'node:crypto';
import { schnorr } from '@noble/curves/secp256k1.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { evaluate, parsePolicy } from '../../src/policy/index.js';
import type { Decision, PsbtRequest } from '../../src/policy/index.js';
import { approver, TXID } from './helpers.js';

const SCRIPTS = ['5120' + 'a1'.repeat(32), '5120' + 'b2'.repeat(32), '0014' + 'c3'.repeat(20), '6a0101', '51'];
const APPROVERS = ['p0', 'p1', 'p2', 'p3'].map(approver);
const SIGHASH_BYTES: Record<string, number> = {
  DEFAULT: 0,
  ALL: 1,
  NONE: 2,
  SINGLE: 3,
  'ALL|ANYONECANPAY': 0x81,
  'NONE|ANYONECANPAY': 0x82,
  'SINGLE|ANYONECANPAY': 0x83,
};
const PERIODS = [7, 60, 3_600, 86_400];

interface RuleDoc {
  name: string;
  max_amount?: number;
  per_period?: { amount: number; period_seconds: number };
  destinations?: string[];
  max_fee?: { sats?: number; percent?: number };
  sighash_types?: string[];
  approvals?: { keys: string[]; min: number };
}

const subset = <T>(items: readonly T[], min: number) => fc.subarray([...items], { minLength: min });
const opt = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 2 });

const ruleArb = fc.record({
    max_amount: opt(fc.integer({ min: 0, max: 2_000 })),
    per_period: opt(fc.record({ amount: fc.integer({ min: 0, max: 3_000 }), period_seconds: fc.constantFrom(...PERIODS) })),
    destinations: opt(subset(SCRIPTS, 0)),
    max_fee: opt(
      fc.record({ sats: opt(fc.integer({ min: 0, max: 300 })), percentCents: opt(fc.integer({ min: 0, max: 10_000 })) }).filter((f) => f.sats !== undefined || f.percentCents !== undefined),
    ),
    sighash_types: opt(subset(Object.keys(SIGHASH_BYTES), 1)),
  approvals: opt(subset([0, 1, 2, 3], 1).chain((keys) => fc.record({ keys: fc.constant(keys), min: fc.integer({ min: 1, max: keys.length }) }))),
});
type GenRule = typeof ruleArb extends fc.Arbitrary<infer T> ? T : never;

function ruleDoc(g: GenRule, i: number): RuleDoc {
  const doc: RuleDoc = { name: `r${i}` };
  if (g.max_amount !== undefined) doc.max_amount = g.max_amount;
  if (g.per_period !== undefined) doc.per_period = g.per_period;
  if (g.destinations !== undefined) doc.destinations = g.destinations;
  if (g.max_fee !== undefined) {
    doc.max_fee = {};
    if (g.max_fee.sats !== undefined) doc.max_fee.sats = g.max_fee.sats;
    if (g.max_fee.percentCents !== undefined) doc.max_fee.percent = g.max_fee.percentCents / 100;
  }
  if (g.sighash_types !== undefined) doc.sighash_types = g.sighash_types;
  if (g.approvals !== undefined) doc.approvals = { keys: g.approvals.keys.map((k) => APPROVERS[k]!.hex), min: g.approvals.min };
  return doc;
}

type ApprovalKind = 'valid' | 'other-txid' | 'other-policy' | 'bit-flipped' | 'signed-by-another';
const caseArb = fc.record({
  rules: fc.array(ruleArb, { maxLength: 4 }),
  allowRaw: fc.option(fc.boolean(), { nil: undefined }),
  keyId: fc.constantFrom('k', 'k', 'k', 'k', 'missing'),
  raw: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
  outputs: fc.array(fc.record({ script: fc.integer({ min: 0, max: SCRIPTS.length - 1 }), amount: fc.integer({ min: 0, max: 1_500 }), change: fc.boolean() }), { maxLength: 4 }),
  fee: fc.integer({ min: 0, max: 300 }),
  sighash: fc.array(fc.constantFrom(...Object.values(SIGHASH_BYTES), 0, 0, 1), { maxLength: 3 }),
  approvals: fc.array(
    fc.record({ who: fc.integer({ min: 0, max: 3 }), kind: fc.constantFrom<ApprovalKind>('valid', 'valid', 'valid', 'other-txid', 'other-policy', 'bit-flipped', 'signed-by-another') }),
    { maxLength: 4 },
  ),
  now: fc.integer({ min: 0, max: 4_000_000_000 }),
  spent: fc.array(fc.integer({ min: 0, max: 3_000 }), { minLength: 4, maxLength: 4 }),
  ledger: fc.boolean(),
});
type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

// The model.

interface ModelDecision {
  allowed: boolean;
  reason?: string;
  rule?: string;
  charge?: { rule: string; periodStart: number; amount: bigint; limit: bigint };
  failures?: string[];
}

function modelRuleFailure(rule: RuleDoc, c: Case, sent: bigint, spentAt: (rule: string, start: number) => bigint): string | { charge?: ModelDecision['charge'] } {
  const allowedSighash = (rule.sighash_types ?? ['DEFAULT', 'ALL']).map((n) => SIGHASH_BYTES[n]);
  for (const t of c.sighash) if (!allowedSighash.includes(t)) return 'POLICY_SIGHASH';
  if (rule.destinations) {
    for (const o of c.outputs) if (!o.change && !rule.destinations.includes(SCRIPTS[o.script]!)) return 'POLICY_DESTINATION';
  }
  if (rule.max_amount !== undefined && sent > BigInt(rule.max_amount)) return 'POLICY_AMOUNT';
  if (rule.max_fee) {
    if (rule.max_fee.sats !== undefined && c.fee > rule.max_fee.sats) return 'POLICY_FEE';
    // fee <= percent% of sent, i.e. fee * 10000 <= (percent * 100) * sent; percent has two decimals.
    if (rule.max_fee.percent !== undefined && BigInt(c.fee) * 10_000n > BigInt(Math.round(rule.max_fee.percent * 100)) * sent) return 'POLICY_FEE';
  }
  if (rule.approvals) {
    const approvers = new Set<number>();
    for (const a of c.approvals) if (a.kind === 'valid' && rule.approvals.keys.includes(APPROVERS[a.who]!.hex)) approvers.add(a.who);
    if (approvers.size < rule.approvals.min) return 'POLICY_APPROVALS';
  }
  if (rule.per_period) {
    if (!c.ledger) return 'POLICY_VELOCITY';
    const start = Math.floor(c.now / rule.per_period.period_seconds) * rule.per_period.period_seconds;
    const limit = BigInt(rule.per_period.amount);
    if (spentAt(rule.name, start) + sent > limit) return 'POLICY_VELOCITY';
    return { charge: { rule: rule.name, periodStart: start, amount: sent, limit } };
  }
  return {};
}

function model(doc: { keys: Record<string, { rules: RuleDoc[]; allow_raw_message?: boolean }> }, c: Case, spentAt: (rule: string, start: number) => bigint): ModelDecision {
  const key = Object.hasOwn(doc.keys, c.keyId) ? doc.keys[c.keyId] : undefined;
  if (!key) return { allowed: false, reason: 'POLICY_NO_KEY' };
  if (c.raw) return key.allow_raw_message === true ? { allowed: true } : { allowed: false, reason: 'POLICY_RAW_MESSAGE' };
  if (key.rules.length === 0) return { allowed: false, reason: 'POLICY_NO_RULES' };
  let sent = 0n;
  for (const o of c.outputs) if (!o.change) sent += BigInt(o.amount);
  const failures: string[] = [];
  for (const rule of key.rules) {
    const r = modelRuleFailure(rule, c, sent, spentAt);
    if (typeof r !== 'string') return { allowed: true, rule: rule.name, ...(r.charge ? { charge: r.charge } : {}) };
    failures.push(`${rule.name}:${r}`);
  }
  return { allowed: false, reason: failures[0]!.split(':')[1], rule: key.rules[0]!.name, failures };
}

// What the daemon would do, reduced to the model's terms.

function observed(d: Decision): ModelDecision {
  if (d.allowed) {
    const out: ModelDecision = { allowed: true };
    if (d.rule !== undefined) out.rule = d.rule;
    if (d.charge) {
      out.charge = { rule: d.charge.rule, periodStart: d.charge.periodStart, amount: d.charge.amount, limit: d.charge.limit };
    }
    return out;
  }
  const out: ModelDecision = { allowed: false, reason: d.reason };
  if (d.rule !== undefined) out.rule = d.rule;
  if (d.failures.length > 0) out.failures = d.failures.map((f) => `${f.rule}:${f.reason}`);
  return out;
}

const sha = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
const TAG = sha(new TextEncoder().encode('musig2-signer/approval'));
const OTHER_TXID = sha(new TextEncoder().encode('another transaction'));
const OTHER_POLICY = sha(new TextEncoder().encode('another policy'));

function makeApproval(a: Case['approvals'][number], policyHash: Uint8Array): { pubkey: Uint8Array; signature: Uint8Array } {
  const me = APPROVERS[a.who]!;
  const txid = a.kind === 'other-txid' ? OTHER_TXID : TXID;
  const hash = a.kind === 'other-policy' ? OTHER_POLICY : policyHash;
  const signer = a.kind === 'signed-by-another' ? APPROVERS[(a.who + 1) % APPROVERS.length]! : me;
  const signature = schnorr.sign(sha(TAG, TAG, txid, hash), signer.secret);
  if (a.kind === 'bit-flipped') signature[a.who * 7] ^= 0x10;
  return { pubkey: me.xonly, signature };
}

describe('evaluate agrees with a model of the rules', () => {
  it('on random policies and transactions', () => {
    const seen = new Map<string, number>();
    fc.assert(
      fc.property(caseArb, (c) => {
        const rules = c.rules.map(ruleDoc);
        const keyDoc: { rules: RuleDoc[]; allow_raw_message?: boolean } = { rules };
        if (c.allowRaw !== undefined) keyDoc.allow_raw_message = c.allowRaw;
        const doc = { version: 1, network: 'regtest', keys: { k: keyDoc } };
        const policy = parsePolicy(JSON.stringify(doc));

        // Spending recorded per rule, at the window the model computes.
        const table = new Map<string, bigint>();
        rules.forEach((r, i) => {
          if (r.per_period) {
            const start = Math.floor(c.now / r.per_period.period_seconds) * r.per_period.period_seconds;
            table.set(`${r.name}@${start}`, BigInt(c.spent[i]!));
          }
        });
        const spentAt = (rule: string, start: number): bigint => table.get(`${rule}@${start}`) ?? 0n;

        const request: PsbtRequest = {
          kind: 'psbt',
          unsignedTxid: TXID,
          outputs: c.outputs.map((o) => ({ script: Uint8Array.from(Buffer.from(SCRIPTS[o.script]!, 'hex')), amount: BigInt(o.amount), change: o.change })),
          fee: BigInt(c.fee),
          sighashTypes: c.sighash,
          approvals: c.approvals.map((a) => makeApproval(a, policy.hash)),
          now: c.now,
          ...(c.ledger ? { spentInPeriod: (rule: string, start: number) => table.get(`${rule}@${start}`) } : {}),
        };
        const decision = evaluate(policy, c.keyId, c.raw ? { kind: 'raw_message' } : request);
        const expected = model(doc, c, spentAt);
        expect(observed(decision)).toEqual(expected);
        const label = expected.allowed ? `allowed${expected.charge ? '+charge' : ''}` : expected.reason!;
        seen.set(label, (seen.get(label) ?? 0) + 1);
      }),
      { numRuns: 300 },
    );
    // The run reached every outcome, so the agreement is not vacuous.
    for (const outcome of [
      'allowed',
      'allowed+charge',
      'POLICY_NO_KEY',
      'POLICY_RAW_MESSAGE',
      'POLICY_NO_RULES',
      'POLICY_SIGHASH',
      'POLICY_DESTINATION',
      'POLICY_AMOUNT',
      'POLICY_FEE',
      'POLICY_APPROVALS',
      'POLICY_VELOCITY',
    ]) {
      expect(seen.get(outcome) ?? 0, `${outcome} in ${JSON.stringify([...seen])}`).toBeGreaterThan(0);
    }
  });
});
