// The README's worked examples (docs/policy.example.json) decide as the README says, and the
// hash the README prints is the file's.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hexToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { evaluate, loadPolicy, signApproval } from '../../src/policy/index.js';
import type { Policy } from '../../src/policy/index.js';
import { p2tr, psbt, TXID } from './helpers.js';

const ROOT = join(import.meta.dirname, '../..');
const EXCHANGE = hexToBytes('0014e8df018c7e326cc253faac7e46cdc51e68542c42'); // bc1qar0s…5mdq
const ELSEWHERE = p2tr(0x77);
const BTC = 100_000_000n;
const pay = (script: Uint8Array, amount: bigint) => ({ script, amount, change: false });
const reason = (d: ReturnType<typeof evaluate>) => (d.allowed ? `allowed:${d.rule}` : d.reason);

describe('docs/policy.example.json', async () => {
  const policy: Policy = await loadPolicy(join(ROOT, 'docs/policy.example.json'));

  it('has the hash the README prints', () => {
    expect(readFileSync(join(ROOT, 'README.md'), 'utf8')).toContain(`(policy hash\n\`${policy.hashHex}\`)`);
  });

  it('treasury-1: whitelist, 5 BTC per transaction, 20 BTC per UTC day', () => {
    const spent = new Map<number, bigint>();
    const send = (script: Uint8Array, amount: bigint, fee = 10_000n) =>
      evaluate(policy, 'treasury-1', psbt({ outputs: [pay(script, amount)], fee, spentInPeriod: (_r, start) => spent.get(start) }));
    expect(reason(send(EXCHANGE, 6n * BTC))).toBe('POLICY_AMOUNT');
    expect(reason(send(ELSEWHERE, BTC))).toBe('POLICY_DESTINATION');
    expect(reason(send(EXCHANGE, BTC, 1_000_001n))).toBe('POLICY_FEE');
    for (let i = 0; i < 4; i++) {
      const d = send(EXCHANGE, 5n * BTC);
      expect(reason(d)).toBe('allowed:exchange-deposits');
      if (!d.allowed || !d.charge) throw new Error('expected a charge');
      spent.set(d.charge.periodStart, (spent.get(d.charge.periodStart) ?? 0n) + d.charge.amount);
    }
    expect(reason(send(EXCHANGE, 5n * BTC))).toBe('POLICY_VELOCITY');
  });

  it('hot-1: 0.01 BTC anywhere, fee capped', () => {
    const send = (amount: bigint, fee: bigint) => reason(evaluate(policy, 'hot-1', psbt({ outputs: [pay(ELSEWHERE, amount)], fee })));
    expect(send(1_000_000n, 20_000n)).toBe('allowed:small-payments');
    expect(send(1_000_001n, 1_000n)).toBe('POLICY_AMOUNT');
    expect(send(1_000_000n, 20_001n)).toBe('POLICY_FEE');
    expect(send(100_000n, 5_001n)).toBe('POLICY_FEE'); // over 5%
  });

  it('cold-1: two of three officers', () => {
    // The officers' keys in the example are BIP340 test-vector keys; these are their secrets.
    const officer = (n: number) => hexToBytes(n.toString(16).padStart(64, '0'));
    const secrets = [officer(3), hexToBytes('b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfef'), hexToBytes('c90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74020bbea63b14e5c9')];
    const approve = (i: number, txid = TXID) => signApproval(secrets[i]!, txid, policy.hash);
    const send = (approvals: ReturnType<typeof approve>[]) => reason(evaluate(policy, 'cold-1', psbt({ outputs: [pay(ELSEWHERE, 50n * BTC)], approvals })));
    expect(send([approve(0), approve(2)])).toBe('allowed:two-officers');
    expect(send([approve(1)])).toBe('POLICY_APPROVALS');
    expect(send([approve(0), approve(1, hexToBytes('ab'.repeat(32)))])).toBe('POLICY_APPROVALS');
  });

  it('no key allows raw messages', () => {
    for (const key of ['treasury-1', 'hot-1', 'cold-1']) expect(reason(evaluate(policy, key, { kind: 'raw_message' }))).toBe('POLICY_RAW_MESSAGE');
  });
});
