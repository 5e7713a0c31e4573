// evaluate(): every rule kind allows what it should and refuses what it should, with its
// reason code; first match wins; empty rules; raw messages; approvals; velocity.
import { createHash } from 'node:crypto';
import { schnorr } from '@noble/curves/secp256k1.js';
import { hexToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import {
  APPROVAL_TAG,
  approvalMessage,
  evaluate,
  periodStart,
  PolicyRequestError,
  signApproval,
  velocityAllows,
} from '../../src/policy/index.js';
import type { Decision, Policy } from '../../src/policy/index.js';
import { approver, hex, NOW, oneKey, p2tr, policyOf, psbt, TXID } from './helpers.js';

const PAY_A = p2tr(0xa1);
const PAY_B = p2tr(0xb2);
const CHANGE = p2tr(0xcc);
const pay = (script: Uint8Array, amount: bigint) => ({ script, amount, change: false });
const change = (script: Uint8Array, amount: bigint) => ({ script, amount, change: true });

function refusal(d: Decision): { reason: string; rule?: string } {
  expect(d.allowed).toBe(false);
  if (d.allowed) throw new Error('unreachable');
  return { reason: d.reason, ...(d.rule === undefined ? {} : { rule: d.rule }) };
}

describe('keys, raw messages and empty rules', () => {
  const p = policyOf({
    version: 1,
    network: 'regtest',
    keys: { locked: { rules: [] }, open: { rules: [], allow_raw_message: true }, tx: { rules: [{ name: 'any' }] } },
  });

  it('refuses a key the policy does not name', () => {
    expect(refusal(evaluate(p, 'other', psbt()))).toEqual({ reason: 'POLICY_NO_KEY' });
    expect(refusal(evaluate(p, 'other', { kind: 'raw_message' }))).toEqual({ reason: 'POLICY_NO_KEY' });
  });

  it('refuses raw messages unless the key allows them (off by default)', () => {
    expect(refusal(evaluate(p, 'locked', { kind: 'raw_message' }))).toEqual({ reason: 'POLICY_RAW_MESSAGE' });
    expect(refusal(evaluate(p, 'tx', { kind: 'raw_message' }))).toEqual({ reason: 'POLICY_RAW_MESSAGE' });
    expect(evaluate(p, 'open', { kind: 'raw_message' })).toEqual({ allowed: true });
  });

  it('signs no transaction with no rules, even where raw messages are allowed', () => {
    expect(refusal(evaluate(p, 'locked', psbt()))).toEqual({ reason: 'POLICY_NO_RULES' });
    expect(refusal(evaluate(p, 'open', psbt({ outputs: [pay(PAY_A, 1n)] })))).toEqual({ reason: 'POLICY_NO_RULES' });
  });

  it('a rule with no constraints allows any destination and amount (with the default sighash types)', () => {
    const d = evaluate(p, 'tx', psbt({ outputs: [pay(PAY_A, 5_000_000_000n), change(CHANGE, 1n)], fee: 99_999n, sighashTypes: [0, 1] }));
    expect(d).toEqual({ allowed: true, rule: 'any', amountSent: 5_000_000_000n });
  });
});

describe('max_amount', () => {
  const p = oneKey([{ name: 'small', max_amount: 100_000 }]);

  it('allows up to the cap and refuses a sat more', () => {
    expect(evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 60_000n), pay(PAY_B, 40_000n)] }))).toMatchObject({ allowed: true, rule: 'small', amountSent: 100_000n });
    const d = evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 60_000n), pay(PAY_B, 40_001n)] }));
    expect(refusal(d)).toEqual({ reason: 'POLICY_AMOUNT', rule: 'small' });
    expect(d).toMatchObject({ detail: 'sends 100001 sats, more than max_amount 100000', amountSent: 100_001n });
  });

  it('leaves change out of the amount sent, and counts an output the caller did not find to be change', () => {
    expect(evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 100_000n), change(CHANGE, 9_000_000n)] }))).toMatchObject({ allowed: true });
    // The same script, not re-derived from the wallet (a forged change claim): a payment.
    expect(refusal(evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 100_000n), pay(CHANGE, 9_000_000n)] })))).toEqual({ reason: 'POLICY_AMOUNT', rule: 'small' });
  });

  it('max_amount 0 allows only transactions that send nothing', () => {
    const zero = oneKey([{ name: 'consolidate', max_amount: 0 }]);
    expect(evaluate(zero, 'k', psbt({ outputs: [change(CHANGE, 5n)] })).allowed).toBe(true);
    expect(refusal(evaluate(zero, 'k', psbt({ outputs: [change(CHANGE, 5n), pay(PAY_A, 1n)] }))).reason).toBe('POLICY_AMOUNT');
  });
});

describe('destinations', () => {
  // BIP173's regtest P2WPKH example and a hex P2TR script.
  const ADDRESS = 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080';
  const ADDRESS_SCRIPT = hexToBytes('0014751e76e8199196d454941c45d1b3a323f1433bd6');
  const p = oneKey([{ name: 'whitelist', destinations: [ADDRESS, hex(PAY_A)] }]);

  it('allows outputs to listed addresses and scripts, and change anywhere', () => {
    const d = evaluate(p, 'k', psbt({ outputs: [pay(ADDRESS_SCRIPT, 10n), pay(PAY_A, 20n), change(CHANGE, 30n)] }));
    expect(d).toMatchObject({ allowed: true, rule: 'whitelist', amountSent: 30n });
  });

  it('refuses an output to anywhere else, naming it as an address', () => {
    const d = evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 20n), pay(PAY_B, 1n)] }));
    expect(refusal(d)).toEqual({ reason: 'POLICY_DESTINATION', rule: 'whitelist' });
    // PAY_B's key is not on the curve, so it has no address: shown as hex.
    expect(d).toMatchObject({ detail: `output 1 pays ${hex(PAY_B)}, not an allowed destination` });
    const real = hexToBytes(`5120${approver('x').hex}`);
    const e = evaluate(p, 'k', psbt({ outputs: [pay(real, 1n)] }));
    expect(e).toMatchObject({ detail: expect.stringMatching(/^output 0 pays bcrt1p[02-9ac-hj-np-z]{58}, not an allowed destination$/) });
  });

  it('counts a forged change output as a payment to its script', () => {
    expect(refusal(evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 20n), pay(CHANGE, 30n)] }))).reason).toBe('POLICY_DESTINATION');
  });

  it('an empty list allows change only', () => {
    const none = oneKey([{ name: 'sweep-to-self', destinations: [] }]);
    expect(evaluate(none, 'k', psbt({ outputs: [change(CHANGE, 30n)] })).allowed).toBe(true);
    expect(refusal(evaluate(none, 'k', psbt({ outputs: [change(CHANGE, 30n), pay(PAY_A, 0n)] }))).reason).toBe('POLICY_DESTINATION');
  });
});

describe('max_fee', () => {
  it('caps the fee in sats, inclusively', () => {
    const p = oneKey([{ name: 'fee', max_fee: { sats: 5_000 } }]);
    expect(evaluate(p, 'k', psbt({ fee: 5_000n })).allowed).toBe(true);
    expect(refusal(evaluate(p, 'k', psbt({ fee: 5_001n })))).toEqual({ reason: 'POLICY_FEE', rule: 'fee' });
  });

  it('caps the fee as a percentage of the amount sent, exactly', () => {
    const p = oneKey([{ name: 'pct', max_fee: { percent: 10 } }]);
    const sent = [pay(PAY_A, 1_000_000n), change(CHANGE, 50_000_000n)];
    expect(evaluate(p, 'k', psbt({ outputs: sent, fee: 100_000n })).allowed).toBe(true);
    const d = evaluate(p, 'k', psbt({ outputs: sent, fee: 100_001n }));
    expect(refusal(d)).toEqual({ reason: 'POLICY_FEE', rule: 'pct' });
    expect(d).toMatchObject({ detail: 'fee 100001 sats is more than max_fee.percent 10% of the 1000000 sats sent' });

    const fine = oneKey([{ name: 'pct', max_fee: { percent: 0.07 } }]);
    expect(evaluate(fine, 'k', psbt({ outputs: [pay(PAY_A, 1_000_000n)], fee: 700n })).allowed).toBe(true);
    expect(evaluate(fine, 'k', psbt({ outputs: [pay(PAY_A, 1_000_000n)], fee: 701n })).allowed).toBe(false);
  });

  it('with nothing sent, a percentage cap allows only a zero fee', () => {
    const p = oneKey([{ name: 'pct', max_fee: { percent: 50 } }]);
    expect(evaluate(p, 'k', psbt({ outputs: [change(CHANGE, 10n)], fee: 0n })).allowed).toBe(true);
    expect(refusal(evaluate(p, 'k', psbt({ outputs: [change(CHANGE, 10n)], fee: 1n }))).reason).toBe('POLICY_FEE');
  });

  it('with both caps, both must hold', () => {
    const p = oneKey([{ name: 'both', max_fee: { sats: 1_000, percent: 1 } }]);
    expect(evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 50_000n)], fee: 500n })).allowed).toBe(true);
    expect(evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 50_000n)], fee: 501n })).allowed).toBe(false); // over 1%
    expect(evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 500_000n)], fee: 1_001n })).allowed).toBe(false); // over 1000 sats
  });
});

describe('sighash_types', () => {
  it('defaults to DEFAULT and ALL, refusing the types that let outputs change after signing', () => {
    const p = oneKey([{ name: 'plain' }]);
    expect(evaluate(p, 'k', psbt({ sighashTypes: [0x00, 0x01, 0x00] })).allowed).toBe(true);
    for (const t of [0x02, 0x03, 0x81, 0x82, 0x83]) {
      const d = evaluate(p, 'k', psbt({ sighashTypes: [0x00, t] }));
      expect(refusal(d)).toEqual({ reason: 'POLICY_SIGHASH', rule: 'plain' });
      expect(d).toMatchObject({ detail: `sighash type 0x${t.toString(16).padStart(2, '0')} is not allowed` });
    }
  });

  it('allows exactly the listed types', () => {
    const p = oneKey([{ name: 'acp', sighash_types: ['ALL', 'SINGLE|ANYONECANPAY'] }]);
    expect(evaluate(p, 'k', psbt({ sighashTypes: [0x01, 0x83] })).allowed).toBe(true);
    expect(refusal(evaluate(p, 'k', psbt({ sighashTypes: [0x00] }))).reason).toBe('POLICY_SIGHASH');
  });
});

describe('approvals', () => {
  const a = approver('a');
  const b = approver('b');
  const c = approver('c');
  const stranger = approver('stranger');
  const p = oneKey([{ name: 'cold', approvals: { keys: [a.hex, b.hex, c.hex], min: 2 } }]);
  const other: Policy = oneKey([{ name: 'cold', approvals: { keys: [a.hex, b.hex, c.hex], min: 1 } }]);
  const OTHER_TXID = hexToBytes('22'.repeat(32));
  const sign = (who: { secret: Uint8Array }, txid = TXID, policy = p) => signApproval(who.secret, txid, policy.hash);
  const decide = (approvals: ReturnType<typeof sign>[]) => evaluate(p, 'k', psbt({ approvals }));

  it('passes with enough valid approvals', () => {
    expect(decide([sign(a), sign(c)])).toMatchObject({ allowed: true, rule: 'cold' });
    expect(decide([sign(stranger), sign(a), sign(b), sign(c)])).toMatchObject({ allowed: true });
  });

  it('fails with too few', () => {
    const d = decide([sign(b)]);
    expect(refusal(d)).toEqual({ reason: 'POLICY_APPROVALS', rule: 'cold' });
    expect(d).toMatchObject({ detail: '1 valid approval for this transaction and policy, 2 needed' });
    expect(refusal(decide([])).reason).toBe('POLICY_APPROVALS');
  });

  it('does not count an approval of another transaction', () => {
    expect(refusal(decide([sign(a), sign(b, OTHER_TXID)])).reason).toBe('POLICY_APPROVALS');
  });

  it('does not count an approval made under another policy hash', () => {
    expect(other.hashHex).not.toBe(p.hashHex);
    expect(refusal(decide([sign(a), sign(b, TXID, other)])).reason).toBe('POLICY_APPROVALS');
  });

  it('counts one approver once, however many times it signs', () => {
    const again = { pubkey: a.xonly, signature: schnorr.sign(approvalMessage(TXID, p.hash), a.secret, new Uint8Array(32).fill(9)) };
    expect(hex(again.signature)).not.toBe(hex(sign(a).signature));
    expect(refusal(decide([sign(a), sign(a), again])).reason).toBe('POLICY_APPROVALS');
  });

  it('does not count a key outside the set, a signature under another key, or malformed bytes', () => {
    expect(refusal(decide([sign(a), sign(stranger)])).reason).toBe('POLICY_APPROVALS');
    const claimed = { pubkey: b.xonly, signature: sign(a).signature };
    expect(refusal(decide([sign(a), claimed])).reason).toBe('POLICY_APPROVALS');
    const flipped = sign(b);
    flipped.signature[63] ^= 1;
    expect(refusal(decide([sign(a), flipped])).reason).toBe('POLICY_APPROVALS');
    const short = { pubkey: b.xonly, signature: sign(b).signature.subarray(0, 63) };
    const junk = { pubkey: new Uint8Array(32), signature: new Uint8Array(64) };
    expect(refusal(decide([sign(a), short, junk])).reason).toBe('POLICY_APPROVALS');
  });

  it("counts for a rule only that rule's approvers", () => {
    const two = oneKey([
      { name: 'by-a', approvals: { keys: [a.hex], min: 1 } },
      { name: 'by-b', approvals: { keys: [b.hex], min: 1 } },
    ]);
    const byB = signApproval(b.secret, TXID, two.hash);
    const d = evaluate(two, 'k', psbt({ approvals: [byB] }));
    expect(d).toMatchObject({ allowed: true, rule: 'by-b' });
    expect(refusal(evaluate(two, 'k', psbt({ approvals: [signApproval(c.secret, TXID, two.hash)] })))).toEqual({ reason: 'POLICY_APPROVALS', rule: 'by-a' });
  });

  it('the approval message is the BIP340 tagged hash of txid || policy hash', () => {
    const tag = createHash('sha256').update(APPROVAL_TAG).digest();
    const expected = createHash('sha256').update(tag).update(tag).update(TXID).update(p.hash).digest('hex');
    expect(APPROVAL_TAG).toBe('musig2-signer/approval');
    expect(hex(approvalMessage(TXID, p.hash))).toBe(expected);
    const s = sign(a);
    expect(hex(s.pubkey)).toBe(a.hex);
    expect(schnorr.verify(s.signature, hexToBytes(expected), a.xonly)).toBe(true);
    expect(() => approvalMessage(TXID.subarray(1), p.hash)).toThrow(/txid must be 32 bytes/);
  });
});

describe('per_period velocity', () => {
  const DAY = 86_400;
  const p = oneKey([{ name: 'daily', per_period: { amount: 1_000_000, period_seconds: DAY } }]);
  const start = NOW - (NOW % DAY);

  it('uses fixed windows aligned to the epoch', () => {
    expect(periodStart(NOW, DAY)).toBe(1_699_920_000); // 2023-11-14T00:00:00Z
    expect(new Date(periodStart(NOW, DAY) * 1000).toISOString()).toBe('2023-11-14T00:00:00.000Z');
    expect(periodStart(start, DAY)).toBe(start);
    expect(periodStart(start - 1, DAY)).toBe(start - DAY);
    expect(periodStart(7 * DAY + 5, 7 * DAY)).toBe(7 * DAY);
    expect(() => periodStart(-1, DAY)).toThrow(RangeError);
    expect(() => periodStart(NOW, 0)).toThrow(RangeError);
  });

  it('velocityAllows is spent + amount <= limit', () => {
    expect(velocityAllows(10n, 4n, 6n)).toBe(true);
    expect(velocityAllows(10n, 4n, 7n)).toBe(false);
    expect(velocityAllows(10n, 11n, 0n)).toBe(false);
    expect(velocityAllows(0n, 0n, 0n)).toBe(true);
    expect(velocityAllows(10n, -1n, 1n)).toBe(false);
  });

  it('allows within the budget and says what to charge', () => {
    const calls: unknown[][] = [];
    const d = evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 400_000n), change(CHANGE, 1n)], spentInPeriod: (...args) => (calls.push(args), 600_000n) }));
    expect(calls).toEqual([['daily', start, DAY]]);
    expect(d).toEqual({
      allowed: true,
      rule: 'daily',
      amountSent: 400_000n,
      charge: { rule: 'daily', periodStart: start, periodSeconds: DAY, amount: 400_000n, limit: 1_000_000n, txid: TXID },
    });
  });

  it('refuses past the budget', () => {
    const d = evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 400_001n)], spentInPeriod: () => 600_000n }));
    expect(refusal(d)).toEqual({ reason: 'POLICY_VELOCITY', rule: 'daily' });
    expect(d).toMatchObject({ detail: 'sends 400001 sats; 600000 of 1000000 already spent in the period from 2023-11-14T00:00:00.000Z' });
  });

  it('treats undefined as nothing spent, and refuses without a ledger to ask', () => {
    expect(evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 1_000_000n)], spentInPeriod: () => undefined })).allowed).toBe(true);
    const d = evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 1n)] }));
    expect(refusal(d).reason).toBe('POLICY_VELOCITY');
    expect(d).toMatchObject({ detail: 'velocity needs the ledger, and none was given' });
  });

  it('a rule without per_period charges nothing', () => {
    expect(evaluate(oneKey([{ name: 'r' }]), 'k', psbt({ outputs: [pay(PAY_A, 5n)] }))).not.toHaveProperty('charge');
  });
});

describe('rule order', () => {
  const a = approver('a');
  const b = approver('b');
  const rules = [
    { name: 'small', max_amount: 10_000, max_fee: { sats: 1_000 } },
    { name: 'large', approvals: { keys: [a.hex, b.hex], min: 2 } },
  ];
  const p = oneKey(rules);

  it('the first rule that matches allows', () => {
    expect(evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 10_000n)] }))).toMatchObject({ allowed: true, rule: 'small' });
    const approvals = [signApproval(a.secret, TXID, p.hash), signApproval(b.secret, TXID, p.hash)];
    expect(evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 10_000n)], approvals }))).toMatchObject({ allowed: true, rule: 'small' });
    expect(evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 10_001n)], approvals }))).toMatchObject({ allowed: true, rule: 'large' });
    const reversed = oneKey([...rules].reverse());
    const approvalsR = [signApproval(a.secret, TXID, reversed.hash), signApproval(b.secret, TXID, reversed.hash)];
    expect(evaluate(reversed, 'k', psbt({ outputs: [pay(PAY_A, 1n)], approvals: approvalsR }))).toMatchObject({ allowed: true, rule: 'large' });
  });

  it('when none matches, reports the first rule and lists every failure', () => {
    const d = evaluate(p, 'k', psbt({ outputs: [pay(PAY_A, 10_001n)] }));
    expect(d).toEqual({
      allowed: false,
      reason: 'POLICY_AMOUNT',
      rule: 'small',
      detail: 'sends 10001 sats, more than max_amount 10000',
      amountSent: 10_001n,
      failures: [
        { rule: 'small', reason: 'POLICY_AMOUNT', detail: 'sends 10001 sats, more than max_amount 10000' },
        { rule: 'large', reason: 'POLICY_APPROVALS', detail: '0 valid approvals for this transaction and policy, 2 needed' },
      ],
    });
  });

  it('a rule that breaks several constraints reports them in the documented order', () => {
    const all = oneKey([
      {
        name: 'all',
        sighash_types: ['ALL'],
        destinations: [hex(PAY_A)],
        max_amount: 10,
        max_fee: { sats: 1 },
        approvals: { keys: [a.hex], min: 1 },
        per_period: { amount: 0, period_seconds: 60 },
      },
    ]);
    const base = { outputs: [pay(PAY_A, 10n)], fee: 1n, sighashTypes: [1], approvals: [signApproval(a.secret, TXID, all.hash)], spentInPeriod: () => 0n };
    const broken = { sighashTypes: [0], outputs: [pay(PAY_B, 11n)], fee: 2n, approvals: [] };
    const order = ['POLICY_SIGHASH', 'POLICY_DESTINATION', 'POLICY_AMOUNT', 'POLICY_FEE', 'POLICY_APPROVALS', 'POLICY_VELOCITY'];
    // Break all, then mend one at a time from the front: the reason walks down the order.
    let req = { ...base, ...broken };
    const seen: string[] = [];
    const mends = [{ sighashTypes: [1] }, { outputs: [pay(PAY_A, 11n)] }, { outputs: [pay(PAY_A, 10n)] }, { fee: 1n }, { approvals: base.approvals }];
    for (const mend of [{}, ...mends]) {
      req = { ...req, ...mend };
      const d = evaluate(all, 'k', psbt(req));
      seen.push(d.allowed ? 'allowed' : d.reason);
    }
    expect(seen).toEqual([...order.slice(0, 5), 'POLICY_VELOCITY']);
    expect(evaluate(all, 'k', psbt({ ...req, outputs: [pay(PAY_A, 0n)] })).allowed).toBe(true);
  });
});

describe('the request contract', () => {
  const p = oneKey([{ name: 'r' }]);
  it.each([
    ['a short txid', { unsignedTxid: new Uint8Array(31) }],
    ['a negative amount', { outputs: [pay(PAY_A, -1n)] }],
    ['a number amount', { outputs: [{ script: PAY_A, amount: 1 as unknown as bigint, change: false }] }],
    ['a negative fee', { fee: -1n }],
    ['a sighash type over 255', { sighashTypes: [256] }],
    ['a fractional time', { now: 1.5 }],
    ['more than MAX_APPROVALS approvals', { approvals: Array.from({ length: 65 }, () => ({ pubkey: new Uint8Array(32), signature: new Uint8Array(64) })) }],
  ])('throws PolicyRequestError for %s', (_what, over) => {
    expect(() => evaluate(p, 'k', psbt(over))).toThrow(PolicyRequestError);
  });
});
