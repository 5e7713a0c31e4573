// Random wallet transactions under random policies: PolicyGate's decision on the PSBT equals a
// small model written here from the README (change is an output that re-derives from the
// wallet's change branch at the index its fields claim; anything else, forged or unclaimed,
// is a payment; fee = inputs - outputs; max_amount checked before max_fee). The model reads
// how the test built each output, not the PSBT.
import { secp256k1 } from '@noble/curves/secp256k1.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/policy/index.js';
import { decodePsbt, planSigning } from '../../src/psbt/index.js';
import { PolicyGate, SignerError } from '../../src/signer/index.js';
import { p2tr } from '../policy/helpers.js';
import { changeScript, walletDescriptor, walletTx } from './policy-fixture.js';
import type { OutputSpec } from './policy-fixture.js';

const keys = [1, 2, 3].map(() => secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true));
const wallet = walletDescriptor(keys);
const KINDS = ['pay', 'change', 'forged', 'unclaimed'] as const;
type Kind = (typeof KINDS)[number];

const output = fc.record({ kind: fc.constantFrom(...KINDS), amount: fc.bigInt({ min: 0n, max: 50_000n }), index: fc.integer({ min: 0, max: 9 }), fill: fc.integer({ min: 0x10, max: 0xff }) });

function spec(o: { kind: Kind; amount: bigint; index: number; fill: number }): OutputSpec {
  switch (o.kind) {
    case 'pay':
      return { script: p2tr(o.fill), amount: o.amount };
    case 'change':
      return { script: changeScript(wallet.desc, o.index), amount: o.amount };
    case 'forged':
      return { script: p2tr(o.fill), amount: o.amount, claimChangeAt: o.index };
    case 'unclaimed':
      return { script: changeScript(wallet.desc, o.index), amount: o.amount, noClaim: true };
  }
}

describe('PolicyGate against a model', () => {
  it('decides random transactions under random amount and fee caps as the model does', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(output, { minLength: 1, maxLength: 4 }),
        fc.bigInt({ min: 0n, max: 5_000n }),
        fc.bigInt({ min: 0n, max: 120_000n }),
        fc.bigInt({ min: 0n, max: 5_000n }),
        async (outs, fee, maxAmount, maxFee) => {
          const total = outs.reduce((a, o) => a + o.amount, 0n) + fee;
          const t = walletTx(wallet.desc, [total], outs.map(spec), `prop ${run++}`);
          const policy = parsePolicy(
            JSON.stringify({ version: 1, network: 'regtest', keys: { ours: { wallets: [wallet.text], rules: [{ name: 'r', max_amount: Number(maxAmount), max_fee: { sats: Number(maxFee) } }] } } }),
          );
          const tx = decodePsbt(t.psbt);
          const decision = await new PolicyGate(policy).checkPsbt('ours', tx, planSigning(tx, keys[0]!), []).then(
            (a) => ({ allowed: true as const, sent: a.summary.amountSent }),
            (e: unknown) => {
              if (!(e instanceof SignerError)) throw e;
              return { allowed: false as const, reason: e.errorInfo?.reason, sent: BigInt(e.errorInfo?.metadata.amount_sent ?? '-1') };
            },
          );
          const sent = outs.filter((o) => o.kind !== 'change').reduce((a, o) => a + o.amount, 0n);
          const model = sent > maxAmount ? 'POLICY_AMOUNT' : fee > maxFee ? 'POLICY_FEE' : 'allowed';
          expect(decision.sent).toBe(sent);
          expect(decision.allowed ? 'allowed' : decision.reason).toBe(model);
        },
      ),
      { numRuns: 60, seed: 20261202 },
    );
  }, 60_000);
});
