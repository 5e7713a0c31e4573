// The signing policy enforced by the signing services, over a real SoftHSM2 token and real SQLite
// ledgers: change only when it re-derives from the key's wallet (a forged change claim is a
// payment), amounts, destinations, fees, approvals, sighash types, raw messages, keys the policy
// does not name, no nonce for a refused transaction, and velocity charged exactly once in the
// ledger (50 concurrent transactions against a budget for 10, a restart, an identical retry).
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Keystore } from '../../src/keystore/index.js';
import { openLedger, type NonceLedger } from '../../src/ledger/index.js';
import { parsePolicy, signApproval, type Policy } from '../../src/policy/index.js';
import { combinePsbts } from '../../src/psbt/index.js';
import { PolicyGate, PsbtSignerService, SignerService, type SignerError } from '../../src/signer/index.js';
import { approver, p2tr } from '../policy/helpers.js';
import * as musig2 from '../../src/musig2/index.js';
import { openTestKeystore, rand, signerError } from './helpers.js';
import { changeScript, walletDescriptor, walletTx, withOtherNonces } from './policy-fixture.js';
import type { Descriptor } from '../../src/descriptor/index.js';

let dir: string;
let keystore: Keystore;
let wallet: { text: string; desc: Descriptor };
let helper: PsbtSignerService;
let helperLedger: NonceLedger;
let seq = 0;
const OTHERS = ['other-a', 'other-b'];
const open: { close: () => Promise<void> }[] = [];
const PAYEE = p2tr(0x42);
const ELSEWHERE = p2tr(0x43);

beforeAll(async () => {
  ({ dir, keystore } = await openTestKeystore('policy-signer-'));
  const keys = await Promise.all(['ours', 'unnamed', ...OTHERS].map((l) => keystore.createKey(l)));
  wallet = walletDescriptor([keys[0]!.publicKey, keys[2]!.publicKey, keys[3]!.publicKey]);
  helperLedger = await openLedger(`sqlite:${join(dir, 'helper.db')}`);
  helper = new PsbtSignerService({ keystore, ledger: helperLedger });
});

afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

afterAll(async () => {
  await helper.close();
  await helperLedger.close();
  await keystore.close();
  rmSync(dir, { recursive: true, force: true });
});

function policyWith(rules: unknown[], key: Record<string, unknown> = {}): Policy {
  return parsePolicy(JSON.stringify({ version: 1, network: 'regtest', keys: { ours: { wallets: [wallet.text], rules, ...key } } }));
}

async function services(policy: Policy, ledgerPath = join(dir, `ledger-${++seq}.db`)) {
  const ledger = await openLedger(`sqlite:${ledgerPath}`);
  const gate = new PolicyGate(policy, { ledger });
  const psbt = new PsbtSignerService({ keystore, ledger, policy: gate });
  const raw = new SignerService({ keystore, ledger, policy: gate });
  open.push({ close: async () => (await psbt.close(), await raw.close(), await ledger.close()) });
  return { ledger, gate, psbt, raw };
}

/** 100 000 in, `sent` to PAYEE, the rest but a 1000-sat fee to change (re-derived, index 3). */
function tx(sent: bigint, opts: { fee?: bigint; to?: Uint8Array; forgeChange?: boolean; unclaimedChange?: boolean; inputs?: bigint[] } = {}) {
  const inputs = opts.inputs ?? [100_000n];
  const total = inputs.reduce((a, b) => a + b, 0n);
  const fee = opts.fee ?? 1_000n;
  const rest = total - sent - fee;
  const change = opts.forgeChange
    ? { script: ELSEWHERE, amount: rest, claimChangeAt: 3 }
    : { script: changeScript(wallet.desc, 3), amount: rest, noClaim: opts.unclaimedChange === true };
  return walletTx(wallet.desc, inputs, [{ script: opts.to ?? PAYEE, amount: sent }, change], `t${++seq}`);
}

const reasonOf = (e: SignerError) => ({ code: e.code, reason: e.errorInfo?.reason, rule: e.errorInfo?.metadata.rule });

describe('what the policy sees', () => {
  it('change is excluded only when it re-derives; a forged change claim counts as a payment', async () => {
    const s = await services(policyWith([{ name: 'small', max_amount: 10_000 }]));
    // 5 000 sent, 94 000 re-derived change: allowed.
    const ok = tx(5_000n);
    const r = await s.psbt.psbtDeterministicSign({ keyId: 'ours', psbt: await withOtherNonces(helper, OTHERS, ok.psbt) });
    expect(r.inputs).toEqual([0]);
    // The same amounts, but the change output only claims (in its BIP373 fields) to be change.
    const forged = tx(5_000n, { forgeChange: true });
    const e = await signerError(s.psbt.psbtDeterministicSign({ keyId: 'ours', psbt: await withOtherNonces(helper, OTHERS, forged.psbt) }), 'PERMISSION_DENIED');
    expect(reasonOf(e)).toEqual({ code: 'PERMISSION_DENIED', reason: 'POLICY_AMOUNT', rule: 'small' });
    expect(e.errorInfo?.metadata.amount_sent).toBe('99000');
    expect(e.errorInfo?.metadata.fee).toBe('1000');
    expect(s.gate.refusals.get('POLICY_AMOUNT')).toBe(1);
    // A real change output whose PSBT fields claim nothing is not looked for: a payment too.
    const unclaimed = tx(5_000n, { unclaimedChange: true });
    const u = await signerError(s.psbt.psbtDeterministicSign({ keyId: 'ours', psbt: await withOtherNonces(helper, OTHERS, unclaimed.psbt) }), 'PERMISSION_DENIED');
    expect(u.errorInfo?.metadata.amount_sent).toBe('99000');
  });

  it('PsbtNonceGen makes no nonce for a refused transaction; PsbtSign judges again', async () => {
    const s = await services(policyWith([{ name: 'small', max_amount: 10_000 }]));
    const big = tx(50_000n);
    const e = await signerError(s.psbt.psbtNonceGen({ keyId: 'ours', psbt: big.psbt }), 'PERMISSION_DENIED');
    expect(e.errorInfo?.reason).toBe('POLICY_AMOUNT');
    expect(s.psbt.openNonces()).toBe(0);
    // An allowed one signs through both rounds; then a reload that forbids it refuses PsbtSign
    // and leaves the session open (its nonces unused), so the original policy can still sign.
    const small = tx(5_000n);
    const r1 = await s.psbt.psbtNonceGen({ keyId: 'ours', psbt: small.psbt });
    const all = await withOtherNonces(helper, OTHERS, combinePsbts([small.psbt, r1.psbt]));
    const before = s.gate.policy;
    s.gate.replace(policyWith([{ name: 'tiny', max_amount: 1_000 }]));
    const refused = await signerError(s.psbt.psbtSign({ sessionId: r1.sessionId, psbt: all }), 'PERMISSION_DENIED');
    expect(reasonOf(refused)).toMatchObject({ reason: 'POLICY_AMOUNT', rule: 'tiny' });
    expect(s.psbt.openNonces()).toBe(1);
    s.gate.replace(before);
    expect((await s.psbt.psbtSign({ sessionId: r1.sessionId, psbt: all })).inputs).toEqual([0]);
  });

  it('destinations, fee caps and keys the policy does not name', async () => {
    const s = await services(
      policyWith([
        { name: 'to-payee', destinations: [Buffer.from(PAYEE).toString('hex')], max_fee: { sats: 2_000, percent: 50 } },
      ]),
    );
    const sign = async (t: ReturnType<typeof tx>, keyId = 'ours') => s.psbt.psbtDeterministicSign({ keyId, psbt: await withOtherNonces(helper, OTHERS, t.psbt) });
    expect((await sign(tx(5_000n))).inputs).toEqual([0]);
    expect(reasonOf(await signerError(sign(tx(5_000n, { to: ELSEWHERE }))))).toMatchObject({ reason: 'POLICY_DESTINATION', rule: 'to-payee' });
    expect(reasonOf(await signerError(sign(tx(5_000n, { fee: 2_001n }))))).toMatchObject({ reason: 'POLICY_FEE' });
    // 50 % of 3 000 sent is 1 500: a 1 600 fee is over.
    expect(reasonOf(await signerError(sign(tx(3_000n, { fee: 1_600n }))))).toMatchObject({ reason: 'POLICY_FEE' });
    // A key the policy does not name signs nothing (fail closed); its own participation is checked first.
    const e = await signerError(s.psbt.psbtNonceGen({ keyId: 'other-a', psbt: tx(5_000n).psbt }), 'PERMISSION_DENIED');
    expect(e.errorInfo?.reason).toBe('POLICY_NO_KEY');
  });

  it('approvals: enough valid ones pass; too few, another transaction, another policy or an unknown key do not', async () => {
    const [a, b, c, stranger] = ['a', 'b', 'c', 'stranger'].map(approver);
    const policy = policyWith([{ name: 'two-of-three', approvals: { keys: [a!.hex, b!.hex, c!.hex], min: 2 } }]);
    const s = await services(policy);
    const t = tx(60_000n);
    const psbt = await withOtherNonces(helper, OTHERS, t.psbt);
    const sign = (approvals: { pubkey: Uint8Array; signature: Uint8Array }[]) => s.psbt.psbtDeterministicSign({ keyId: 'ours', psbt, approvals });
    const ok = (who: { secret: Uint8Array }) => signApproval(who.secret, t.txid, policy.hash);
    const denied = async (approvals: { pubkey: Uint8Array; signature: Uint8Array }[]) => (await signerError(sign(approvals), 'PERMISSION_DENIED')).errorInfo?.reason;
    expect(await denied([ok(a!)])).toBe('POLICY_APPROVALS');
    expect(await denied([ok(a!), ok(a!)])).toBe('POLICY_APPROVALS');
    expect(await denied([ok(a!), ok(stranger!)])).toBe('POLICY_APPROVALS');
    expect(await denied([ok(a!), signApproval(b!.secret, tx(60_000n).txid, policy.hash)])).toBe('POLICY_APPROVALS');
    expect(await denied([ok(a!), signApproval(b!.secret, t.txid, new Uint8Array(32))])).toBe('POLICY_APPROVALS');
    expect((await sign([ok(a!), ok(c!)])).inputs).toEqual([0]);
    await signerError(sign([{ pubkey: new Uint8Array(31), signature: new Uint8Array(64) }]), 'INVALID_ARGUMENT');
  });

  it('sighash types: SIGHASH_ALL is refused by a rule that allows only DEFAULT', async () => {
    const s = await services(policyWith([{ name: 'default-only', sighash_types: ['DEFAULT'] }]));
    const { Transaction } = await import('@scure/btc-signer');
    const t = tx(5_000n);
    const withAll = Transaction.fromPSBT(t.psbt, { allowUnknownOutputs: true });
    withAll.updateInput(0, { sighashType: 1 }, true);
    const e = await signerError(s.psbt.psbtNonceGen({ keyId: 'ours', psbt: withAll.toPSBT() }), 'PERMISSION_DENIED');
    expect(reasonOf(e)).toMatchObject({ reason: 'POLICY_SIGHASH', rule: 'default-only' });
    expect((await s.psbt.psbtNonceGen({ keyId: 'ours', psbt: t.psbt })).inputs).toEqual([0]);
  });
});

describe('raw-message RPCs', () => {
  it('are refused for a key whose policy does not allow them, and for keys it does not name', async () => {
    const s = await services(policyWith([]));
    const pubkeys = (await Promise.all(['ours', ...OTHERS].map((l) => keystore.getKey(l)))).map((k) => k.publicKey);
    const e = await signerError(s.raw.nonceGen({ keyId: 'ours', pubkeys, tweaks: [], extraIn: new Uint8Array(0) }), 'PERMISSION_DENIED');
    expect(e.errorInfo?.reason).toBe('POLICY_RAW_MESSAGE');
    const d = await signerError(
      s.raw.deterministicSign({ keyId: 'ours', aggothernonce: new Uint8Array(66), pubkeys, tweaks: [], message: new Uint8Array(32) }),
      'PERMISSION_DENIED',
    );
    expect(d.errorInfo?.reason).toBe('POLICY_RAW_MESSAGE');
    expect((await signerError(s.raw.nonceGen({ keyId: 'unnamed', pubkeys, tweaks: [], extraIn: new Uint8Array(0) }))).errorInfo?.reason).toBe('POLICY_NO_KEY');
    // allow_raw_message: true lets them through.
    const open2 = await services(policyWith([], { allow_raw_message: true }));
    const ng = await open2.raw.nonceGen({ keyId: 'ours', pubkeys, tweaks: [], extraIn: new Uint8Array(0) });
    expect(ng.pubnonce).toHaveLength(66);
    // Sign is judged too: after a reload that forbids raw messages it is refused and the session
    // stays open; back under the permissive policy it signs.
    const others = [1, 2].map(() => musig2.nonceGen({ sk: rand(32), pk: pubkeys[1]!, extraIn: rand(32) }).pubnonce);
    const signReq = { sessionId: ng.sessionId, aggnonce: musig2.nonceAgg([ng.pubnonce, ...others]), pubkeys, tweaks: [], message: rand(32) };
    const permissive = open2.gate.policy;
    open2.gate.replace(policyWith([]));
    expect((await signerError(open2.raw.sign(signReq), 'PERMISSION_DENIED')).errorInfo?.reason).toBe('POLICY_RAW_MESSAGE');
    open2.gate.replace(permissive);
    expect((await open2.raw.sign(signReq)).partialSig).toHaveLength(32);
  });
});

describe('velocity, durable and exact', () => {
  const budget = () => policyWith([{ name: 'daily', per_period: { amount: 100_000, period_seconds: 86_400 } }]);

  it('50 concurrent transactions of 10 000 against a daily 100 000: exactly 10 signed; a restart keeps the spent budget; a retry is not charged twice', async () => {
    const ledgerPath = join(dir, `velocity-${++seq}.db`);
    const s = await services(budget(), ledgerPath);
    const txs = await Promise.all(Array.from({ length: 50 }, async () => withOtherNonces(helper, OTHERS, tx(10_000n).psbt)));
    const results = await Promise.allSettled(txs.map((psbt) => s.psbt.psbtDeterministicSign({ keyId: 'ours', psbt })));
    const signed = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    expect(signed).toHaveLength(10);
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as SignerError).errorInfo?.reason).toBe('POLICY_VELOCITY');
    }
    const start = Math.floor(Date.now() / 1000 / 86_400) * 86_400;
    expect(await s.ledger.spentInPeriod('ours', 'daily', start)).toBe(100_000n);
    // An identical retry of a signed transaction: the same answer, nothing charged.
    const again = await s.psbt.psbtDeterministicSign({ keyId: 'ours', psbt: txs[signed[0]!]! });
    expect(again.inputs).toEqual([0]);
    expect(await s.ledger.spentInPeriod('ours', 'daily', start)).toBe(100_000n);
    // Restart: a new service on the same ledger file still sees the budget spent.
    await open.pop()!.close();
    const restarted = await services(budget(), ledgerPath);
    const e = await signerError(restarted.psbt.psbtDeterministicSign({ keyId: 'ours', psbt: await withOtherNonces(helper, OTHERS, tx(1n).psbt) }), 'PERMISSION_DENIED');
    expect(e.errorInfo?.reason).toBe('POLICY_VELOCITY');
    // Change is not charged: a transaction sending 0 (all change) still passes.
    expect((await restarted.psbt.psbtDeterministicSign({ keyId: 'ours', psbt: await withOtherNonces(helper, OTHERS, tx(0n).psbt) })).inputs).toEqual([0]);
  }, 120_000);

  it('PsbtSign charges with the used-marking; a refused charge signs nothing and marks nothing', async () => {
    const s = await services(policyWith([{ name: 'daily', per_period: { amount: 15_000, period_seconds: 86_400 } }]));
    const round = async (sent: bigint) => {
      const t = tx(sent);
      const r1 = await s.psbt.psbtNonceGen({ keyId: 'ours', psbt: t.psbt });
      return { r1, all: await withOtherNonces(helper, OTHERS, combinePsbts([t.psbt, r1.psbt])) };
    };
    const a = await round(10_000n);
    const b = await round(10_000n); // both pass round 1: nothing is spent yet
    const signedA = await s.psbt.psbtSign({ sessionId: a.r1.sessionId, psbt: a.all });
    expect(signedA.inputs).toEqual([0]);
    // What the audit record gets: the rule, the amounts, and the charge (made at PsbtSign, not round 1).
    expect(signedA.policy).toMatchObject({ rule: 'daily', amount_sent: '10000', fee: '1000' });
    expect(signedA.policy?.velocity_charge).toMatch(/^10000\/15000@\d+$/);
    expect(a.r1.policy?.velocity_charge).toBeUndefined();
    const e = await signerError(s.psbt.psbtSign({ sessionId: b.r1.sessionId, psbt: b.all }), 'PERMISSION_DENIED');
    expect(e.errorInfo?.reason).toBe('POLICY_VELOCITY');
    const row = await s.ledger.findBySession(b.r1.sessionId);
    expect(row?.usedAtMs).toBeNull();
    // The identical retry of the signed one replays and charges nothing more.
    await s.psbt.psbtSign({ sessionId: a.r1.sessionId, psbt: a.all });
    const start = Math.floor(Date.now() / 1000 / 86_400) * 86_400;
    expect(await s.ledger.spentInPeriod('ours', 'daily', start)).toBe(10_000n);
  });
});
