// docs/policy.schema.json and the loader agree: ajv (an independent JSON Schema validator)
// and parsePolicy accept the same valid files and refuse the same invalid ones, apart from
// the checks the schema's description lists as beyond a schema, which only the loader makes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/policy/index.js';
import { approver, WALLET_A, WALLET_B } from './helpers.js';

const schema = JSON.parse(readFileSync(join(import.meta.dirname, '../../docs/policy.schema.json'), 'utf8')) as object;
// multipleOfPrecision: 0.07 is not an exact binary multiple of 0.01.
const validate = new Ajv2020({ strict: true, allErrors: true, multipleOfPrecision: 9 }).compile(schema);

const A = approver('a').hex;
const B = approver('b').hex;

function doc(rule: Record<string, unknown> = {}, key: Record<string, unknown> = {}, top: Record<string, unknown> = {}): string {
  return JSON.stringify({ version: 1, network: 'bitcoin', keys: { k: { rules: [{ name: 'r', ...rule }], ...key } }, ...top });
}

function loads(text: string): boolean {
  try {
    parsePolicy(text);
    return true;
  } catch {
    return false;
  }
}

const valid: [string, string][] = [
  ['the smallest', '{"version":1,"network":"regtest","keys":{}}'],
  ['no rules', doc(undefined, { rules: [] })],
  ['a bare rule', doc()],
  [
    'every field',
    doc(
      {
        comment: 'c',
        max_amount: 2_100_000_000_000_000,
        per_period: { amount: 0, period_seconds: 315_360_000 },
        destinations: ['bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq', '6a00', '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa'],
        max_fee: { sats: 0, percent: 0.07 },
        sighash_types: ['DEFAULT', 'ALL', 'NONE', 'SINGLE', 'ALL|ANYONECANPAY', 'NONE|ANYONECANPAY', 'SINGLE|ANYONECANPAY'],
        approvals: { keys: [A, B.toUpperCase()], min: 2 },
      },
      { wallets: [WALLET_A, WALLET_B], allow_raw_message: true, comment: 'k' },
      { comment: 'top' },
    ),
  ],
  ['empty destinations', doc({ destinations: [] })],
  ['percent 100', doc({ max_fee: { percent: 100 } })],
  ['sats only', doc({ max_fee: { sats: 5 } })],
  ['many keys', JSON.stringify({ version: 1, network: 'signet', keys: { a: { rules: [] }, 'b.c:d-e_f': { rules: [] } } })],
];

const invalidForBoth: [string, string][] = [
  ['an unknown top-level field', doc({}, {}, { extra: 1 })],
  ['an unknown key field', doc({}, { extra: 1 })],
  ['an unknown rule field', doc({ max_amont: 1 })],
  ['an unknown per_period field', doc({ per_period: { amount: 1, period_seconds: 1, x: 1 } })],
  ['an unknown max_fee field', doc({ max_fee: { sats: 1, x: 1 } })],
  ['an unknown approvals field', doc({ approvals: { keys: [A], min: 1, x: 1 } })],
  ['version 2', doc({}, {}, { version: 2 })],
  ['network mainnet', doc({}, {}, { network: 'mainnet' })],
  ['missing keys', '{"version":1,"network":"bitcoin"}'],
  ['missing rules', '{"version":1,"network":"bitcoin","keys":{"k":{}}}'],
  ['missing name', JSON.stringify({ version: 1, network: 'bitcoin', keys: { k: { rules: [{}] } } })],
  ['a bad key id', JSON.stringify({ version: 1, network: 'bitcoin', keys: { '-k': { rules: [] } } })],
  ['a bad rule name', doc({ name: 'a b' })],
  ['allow_raw_message a string', doc({}, { allow_raw_message: 'no' })],
  ['a negative amount', doc({ max_amount: -1 })],
  ['an amount over 21M BTC', doc({ max_amount: 2_100_000_000_000_001 })],
  ['an amount as a string', doc({ max_amount: '1' })],
  ['a fractional amount', doc({ max_amount: 0.5 })],
  ['period 0', doc({ per_period: { amount: 1, period_seconds: 0 } })],
  ['period too long', doc({ per_period: { amount: 1, period_seconds: 315_360_001 } })],
  ['per_period without amount', doc({ per_period: { period_seconds: 1 } })],
  ['empty max_fee', doc({ max_fee: {} })],
  ['percent over 100', doc({ max_fee: { percent: 100.5 } })],
  ['percent with 3 decimals', doc({ max_fee: { percent: 1.005 } })],
  ['an unknown sighash type', doc({ sighash_types: ['ANY'] })],
  ['no sighash types', doc({ sighash_types: [] })],
  ['a repeated sighash type', doc({ sighash_types: ['ALL', 'ALL'] })],
  ['a repeated destination', doc({ destinations: ['6a00', '6a00'] })],
  ['an empty destination', doc({ destinations: [''] })],
  ['a short approver key', doc({ approvals: { keys: ['ab'], min: 1 } })],
  ['no approver keys', doc({ approvals: { keys: [], min: 1 } })],
  ['approvals.min 0', doc({ approvals: { keys: [A], min: 0 } })],
  ['a repeated approver', doc({ approvals: { keys: [A, A], min: 1 } })],
  ['a non-musig wallet', doc({}, { wallets: ['wpkh(xpub/0/*)'] })],
  ['a wallet with a space', doc({}, { wallets: [WALLET_A.replace(',', ', ')] })],
  ['a repeated wallet', doc({}, { wallets: [WALLET_A, WALLET_A] })],
  ['a comment as a number', doc({ comment: 1 })],
];

// What a schema cannot say; the schema's description lists each of these.
const invalidForLoaderOnly: [string, string][] = [
  ['a duplicate member name', '{"version":1,"network":"bitcoin","network":"bitcoin","keys":{}}'],
  ['an exponent', doc().replace('"name":"r"', '"name":"r","max_amount":1e3')],
  ['100.0 for an integer', doc().replace('"name":"r"', '"name":"r","max_amount":100.0')],
  ['a destination that is not an address or hex', doc({ destinations: ['hello'] })],
  ['an address of another network', doc({ destinations: ['tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7'] })],
  ['an address and its own script', doc({ destinations: ['bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq', '0014e8df018c7e326cc253faac7e46cdc51e68542c42'] })],
  ['an approver key off the curve', doc({ approvals: { keys: ['00'.repeat(32)], min: 1 } })],
  ['an approver repeated in another case', doc({ approvals: { keys: [A, A.toUpperCase()], min: 1 } })],
  ['approvals.min above the keys', doc({ approvals: { keys: [A], min: 2 } })],
  ['a wallet that does not parse as a descriptor', doc({}, { wallets: ['tr(musig(a,b))'] })],
  ['a wallet with a wrong checksum', doc({}, { wallets: [WALLET_B.replace('#qnka3q97', '#qnka3q98')] })],
  ['two rules with one name', JSON.stringify({ version: 1, network: 'bitcoin', keys: { k: { rules: [{ name: 'r' }, { name: 'r' }] } } })],
];

describe('docs/policy.schema.json agrees with the loader', () => {
  it.each(valid)('both accept %s', (_what, text) => {
    expect(validate(JSON.parse(text)), JSON.stringify(validate.errors)).toBe(true);
    expect(loads(text)).toBe(true);
  });

  it.each(invalidForBoth)('both refuse %s', (_what, text) => {
    expect(validate(JSON.parse(text))).toBe(false);
    expect(loads(text)).toBe(false);
  });

  it.each(invalidForLoaderOnly)('the loader alone refuses %s (beyond a schema)', (_what, text) => {
    expect(validate(JSON.parse(text))).toBe(true);
    expect(loads(text)).toBe(false);
  });
});
