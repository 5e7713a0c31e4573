// The signing policy's own cost: evaluate() on typical requests, beside one MuSig2
// DeterministicSign (3 signers, noble, the core's signing cost) so the policy's share of a
// signature can be read off. Loading (parse + hash) of the README's example is shown too.
// evaluate() runs once per transaction; the per-input work of the integration (sighashes,
// re-deriving change) belongs to src/psbt and src/descriptor and is not measured here.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import { hexToBytes, randomBytes } from '@noble/hashes/utils.js';
import { benchTimeMs, compare, environment, fmtOps, markdownTable } from './harness.js';
import type { Contender } from './harness.js';
import { deterministicSign, individualPubkey, nonceGen } from '../src/musig2/index.js';
import { evaluate, parsePolicy, signApproval } from '../src/policy/index.js';
import type { PsbtRequest } from '../src/policy/index.js';

const here = import.meta.dirname;
const EXAMPLE = readFileSync(join(here, '../docs/policy.example.json'), 'utf8');
const policy = parsePolicy(EXAMPLE);
const TXID = hexToBytes('11'.repeat(32));
const EXCHANGE = hexToBytes('0014e8df018c7e326cc253faac7e46cdc51e68542c42');
const CHANGE = hexToBytes(`5120${'cc'.repeat(32)}`);
const base: PsbtRequest = { kind: 'psbt', unsignedTxid: TXID, outputs: [], fee: 10_000n, sighashTypes: [0, 0], approvals: [], now: 1_700_000_000 };

// BIP340 test-vector secrets behind the example's officer keys.
const officers = ['03'.padStart(64, '0'), 'b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfef'].map(hexToBytes);
const approvals = officers.map((sk) => signApproval(sk, TXID, policy.hash));

function evaluation(name: string, keyId: string, request: PsbtRequest, expectRule: string): Contender {
  const d = evaluate(policy, keyId, request);
  if (!d.allowed || d.rule !== expectRule) throw new Error(`bench set-up: ${name} was not allowed by ${expectRule}`);
  return { name, prepare: () => () => evaluate(policy, keyId, request) };
}

export async function benchPolicy(): Promise<void> {
  const timeMs = benchTimeMs(3_000);
  const sks = [0, 1, 2].map(() => secp256k1.utils.randomSecretKey());
  const pubkeys = sks.map((sk) => individualPubkey(sk));
  // Any valid pubnonce is a valid aggregate of the others' nonces for one signer's work.
  const aggothernonce = nonceGen({ sk: sks[1]!, pk: pubkeys[1]! }).pubnonce;
  const contenders: Contender[] = [
    evaluation(
      'treasury: whitelist + velocity + fee (1 payment, 1 change)',
      'treasury-1',
      { ...base, outputs: [{ script: EXCHANGE, amount: 100_000_000n, change: false }, { script: CHANGE, amount: 5_000_000n, change: true }], spentInPeriod: () => 300_000_000n },
      'exchange-deposits',
    ),
    evaluation('hot: amount + fee cap (1 payment, 1 change)', 'hot-1', { ...base, fee: 1_000n, outputs: [{ script: CHANGE, amount: 900_000n, change: false }, { script: CHANGE, amount: 5n, change: true }] }, 'small-payments'),
    evaluation('cold: 2 of 3 approvals (2 BIP340 verifications)', 'cold-1', { ...base, approvals, outputs: [{ script: EXCHANGE, amount: 1n, change: false }] }, 'two-officers'),
    { name: 'load the example policy (parse + hash)', prepare: () => () => parsePolicy(EXAMPLE) },
    {
      name: 'reference: MuSig2 DeterministicSign, 3 signers',
      prepare: (n) => {
        const msgs = Array.from({ length: n }, () => randomBytes(32));
        return (i) => deterministicSign(sks[0]!, aggothernonce, pubkeys, [], msgs[i]!);
      },
    },
    { name: 'reference: one BIP340 verify', prepare: () => () => schnorr.verify(approvals[0]!.signature, TXID, approvals[0]!.pubkey) },
  ];
  const result = compare(contenders, { timeMs });
  const sign = result.get('reference: MuSig2 DeterministicSign, 3 signers').opsPerSec;
  console.log('## Signing policy\n');
  console.log(`${await environment()}; ${timeMs} ms per row in 5 interleaved rounds, CPU time\n`);
  console.log(
    markdownTable(
      ['operation', 'ops/s', 'µs/op', '% of one DeterministicSign'],
      result.results.map((r) => [r.name, fmtOps(r.opsPerSec), (1e6 / r.opsPerSec).toFixed(1), `${((100 * sign) / r.opsPerSec).toFixed(2)}%`]),
    ),
  );
  console.log('');
}

// Run directly: `npx tsx bench/policy.ts`.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await benchPolicy();
