// Loading the policy file: strict, with the bad field named; defaults; the policy hash.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadPolicy, parsePolicy, PolicyError, SIGHASH_TYPES } from '../../src/policy/index.js';
import { approver, hex, policyOf, WALLET_A, WALLET_B } from './helpers.js';

// Policy documents are untyped JSON that each case edits freely.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;

const A = approver('a').hex;
const B = approver('b').hex;

/** A valid document touching every field, to mutate. */
function full(): Doc {
  return {
    version: 1,
    network: 'bitcoin',
    comment: 'test',
    keys: {
      treasury: {
        comment: 'cold',
        wallets: [WALLET_A],
        allow_raw_message: false,
        rules: [
          {
            name: 'payroll',
            comment: 'monthly',
            max_amount: 100_000_000,
            per_period: { amount: 500_000_000, period_seconds: 86_400 },
            destinations: ['bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq', '6a0401020304'],
            max_fee: { sats: 100_000, percent: 2.5 },
            sighash_types: ['DEFAULT', 'ALL'],
            approvals: { keys: [A, B], min: 2 },
          },
          { name: 'small', max_amount: 10_000 },
        ],
      },
      hot: { rules: [], allow_raw_message: true },
    },
  };
}

function loadError(text: string): string {
  try {
    parsePolicy(text);
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return (err as Error).message;
  }
  throw new Error('the policy loaded, but it should not have');
}

function mutated(edit: (doc: Doc) => void): string {
  const doc = full();
  edit(doc);
  return JSON.stringify(doc);
}

const rule0 = (d: Doc): Doc => d.keys.treasury.rules[0];

describe('loading', () => {
  it('loads a document with every field, and fills the defaults', () => {
    const p = policyOf(full());
    expect(p.network).toBe('bitcoin');
    expect([...p.keys.keys()]).toEqual(['treasury', 'hot']);
    const t = p.keys.get('treasury')!;
    expect(t.allowRawMessage).toBe(false);
    expect(t.wallets).toEqual([WALLET_A]);
    expect(t.descriptors.map((d) => [d.type, d.branches, d.ranged])).toEqual([['tr', 2, true]]);
    const r = t.rules[0]!;
    expect(r.maxAmount).toBe(100_000_000n);
    expect(r.perPeriod).toEqual({ amount: 500_000_000n, periodSeconds: 86_400 });
    expect(r.destinations!.map((d) => hex(d.script))).toEqual(['0014e8df018c7e326cc253faac7e46cdc51e68542c42', '6a0401020304']);
    expect(r.maxFee).toEqual({ sats: 100_000n, basisPoints: 250n });
    expect([...r.sighashTypes]).toEqual([0x00, 0x01]);
    expect(r.approvals!.min).toBe(2);
    expect(r.approvals!.keys.map(hex)).toEqual([A, B]);
    expect(t.rules[1]!.sighashTypes).toEqual(new Set([SIGHASH_TYPES.DEFAULT, SIGHASH_TYPES.ALL]));
    expect(p.keys.get('hot')!.allowRawMessage).toBe(true);
    expect(p.keys.get('hot')!.wallets).toEqual([]);
    expect(p.needsLedger).toBe(true);
    expect(policyOf({ version: 1, network: 'bitcoin', keys: { k: { rules: [{ name: 'r', max_amount: 5 }] } } }).needsLedger).toBe(false);
  });

  it('allow_raw_message is false unless the file turns it on', () => {
    expect(policyOf({ version: 1, network: 'bitcoin', keys: { k: { rules: [] } } }).keys.get('k')!.allowRawMessage).toBe(false);
  });

  it('takes amounts up to 21 million BTC exactly', () => {
    const p = parsePolicy('{"version":1,"network":"bitcoin","keys":{"k":{"rules":[{"name":"r","max_amount":2100000000000000}]}}}');
    expect(p.keys.get('k')!.rules[0]!.maxAmount).toBe(2_100_000_000_000_000n);
  });

  // Each case: what to change, and the message the loader must give (path first).
  const refused: [string, string | ((d: Doc) => void), RegExp][] = [
    ['unknown top-level field', (d) => (d.extra = 1), /^extra: unknown field$/],
    ['unknown key field', (d) => (d.keys.treasury.rulez = []), /^keys\["treasury"\]\.rulez: unknown field$/],
    ['misspelt rule field', (d) => (d.keys.treasury.rules[1].max_amont = 1), /^keys\["treasury"\]\.rules\[1\]\.max_amont: unknown field$/],
    ['unknown per_period field', (d) => (rule0(d).per_period.period = 1), /^keys\["treasury"\]\.rules\[0\]\.per_period\.period: unknown field$/],
    ['unknown max_fee field', (d) => (rule0(d).max_fee.pct = 1), /max_fee\.pct: unknown field$/],
    ['unknown approvals field', (d) => (rule0(d).approvals.m = 1), /approvals\.m: unknown field$/],
    ['missing version', (d) => delete d.version, /^version: required field is missing$/],
    ['missing network', (d) => delete d.network, /^network: required field is missing$/],
    ['missing keys', (d) => delete d.keys, /^keys: required field is missing$/],
    ['missing rules', (d) => delete d.keys.hot.rules, /^keys\["hot"\]\.rules: required field is missing$/],
    ['missing rule name', (d) => delete rule0(d).name, /rules\[0\]\.name: required field is missing$/],
    ['missing period_seconds', (d) => delete rule0(d).per_period.period_seconds, /per_period\.period_seconds: required field is missing$/],
    ['missing approvals.min', (d) => delete rule0(d).approvals.min, /approvals\.min: required field is missing$/],
    ['version 2', (d) => (d.version = 2), /^version: must be 1, not 2$/],
    ['version as a string', (d) => (d.version = '1'), /^version: must be 1, not a string$/],
    ['unknown network', (d) => (d.network = 'mainnet'), /^network: must be one of bitcoin, testnet, signet, regtest, not "mainnet"$/],
    ['keys as an array', (d) => (d.keys = []), /^keys: must be an object, not an array$/],
    ['a key as a string', (d) => (d.keys.hot = 'x'), /^keys\["hot"\]: must be an object, not a string$/],
    ['rules as an object', (d) => (d.keys.hot.rules = {}), /^keys\["hot"\]\.rules: must be an array, not an object$/],
    ['allow_raw_message as a string', (d) => (d.keys.hot.allow_raw_message = 'yes'), /allow_raw_message: must be true or false, not a string$/],
    ['bad key id', (d) => (d.keys['bad key'] = { rules: [] }), /^keys\["bad key"\]: a key id must be/],
    ['bad rule name', (d) => (rule0(d).name = 'has space'), /rules\[0\]\.name: rule name "has space" must be/],
    ['repeated rule name', (d) => (d.keys.treasury.rules[1].name = 'payroll'), /^keys\["treasury"\]\.rules\[1\]\.name: "payroll" is already the name of rules\[0\]$/],
    ['amount as a string', (d) => (rule0(d).max_amount = '100'), /max_amount: must be a whole number of sats .*, not a string$/],
    ['negative amount', (d) => (rule0(d).max_amount = -1), /max_amount: .* not -1$/],
    ['fractional amount', (d) => (rule0(d).max_amount = 1.5), /max_amount: .* not 1\.5$/],
    ['more than 21 million BTC', (d) => (rule0(d).max_amount = 2_100_000_000_000_001), /max_amount: .* not 2100000000000001$/],
    ['period of 0 seconds', (d) => (rule0(d).per_period.period_seconds = 0), /period_seconds: must be a whole number of seconds from 1 to 315360000/],
    ['percent over 100', (d) => (rule0(d).max_fee.percent = 100.01), /max_fee\.percent: must be a percentage .* not 100\.01$/],
    ['percent with 3 decimals', (d) => (rule0(d).max_fee.percent = 1.234), /max_fee\.percent: .* not 1\.234$/],
    ['empty max_fee', (d) => (rule0(d).max_fee = {}), /max_fee: needs 'sats', 'percent' or both$/],
    ['unknown sighash type', (d) => (rule0(d).sighash_types = ['ALL', 'ANY']), /sighash_types\[1\]: unknown sighash type "ANY"/],
    ['repeated sighash type', (d) => (rule0(d).sighash_types = ['ALL', 'ALL']), /sighash_types\[1\]: repeats item 0$/],
    ['no sighash type', (d) => (rule0(d).sighash_types = []), /sighash_types: must have at least 1 item$/],
    ['bad destination', (d) => rule0(d).destinations.push('not-an-address'), /destinations\[2\]: "not-an-address" is neither a bitcoin address nor a hex scriptPubKey$/],
    ['odd-length hex script', (d) => rule0(d).destinations.push('abc'), /destinations\[2\]: "abc" is neither/],
    [
      'testnet address in a bitcoin policy',
      (d) => rule0(d).destinations.push('tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7'),
      /destinations\[2\]: ".*" is a testnet\/signet address, but the policy's network is bitcoin$/,
    ],
    ['an address and its script both listed', (d) => rule0(d).destinations.push('0014E8DF018C7E326CC253FAAC7E46CDC51E68542C42'), /destinations\[2\]: repeats item 0$/],
    ['approver key too short', (d) => (rule0(d).approvals.keys[0] = 'abcd'), /approvals\.keys\[0\]: must be an x-only public key: 64 hex digits$/],
    ['approver key off the curve', (d) => (rule0(d).approvals.keys[0] = '00'.repeat(32)), /approvals\.keys\[0\]: is not the x coordinate of a point on secp256k1$/],
    ['repeated approver (other case)', (d) => (rule0(d).approvals.keys[1] = A.toUpperCase()), /approvals\.keys\[1\]: repeats item 0$/],
    ['approvals.min of 0', (d) => (rule0(d).approvals.min = 0), /approvals\.min: must be a whole number of approvals \(at most the number of keys\) from 1 to 2, in plain digits, not 0$/],
    ['approvals.min above the keys', (d) => (rule0(d).approvals.min = 3), /approvals\.min: .* not 3$/],
    ['no approver keys', (d) => (rule0(d).approvals.keys = []), /approvals\.keys: must have at least 1 item$/],
    ['a wallet that is not musig()', (d) => (d.keys.treasury.wallets = ['wpkh(xpub/0/*)']), /wallets\[0\]: must be a BIP390 descriptor/],
    ['a repeated wallet', (d) => d.keys.treasury.wallets.push(d.keys.treasury.wallets[0]), /wallets\[1\]: repeats item 0$/],
    ['a wallet that does not parse', (d) => (d.keys.treasury.wallets = ['tr(musig(xpubA,xpubB)/<0;1>/*)']), /^keys\["treasury"\]\.wallets\[0\]: bad extended key/],
    ['a wallet with a wrong checksum', (d) => (d.keys.treasury.wallets = [WALLET_B.replace('#qnka3q97', '#qnka3q98')]), /wallets\[0\]: bad checksum 'qnka3q98', expected 'qnka3q97'$/],
    ['a comment that is not a string', (d) => (rule0(d).comment = 5), /rules\[0\]\.comment: must be a string, not a number$/],
  ];
  it.each(refused)('refuses %s, naming it', (_what, edit, message) => {
    const text = typeof edit === 'string' ? edit : mutated(edit);
    expect(loadError(text)).toMatch(message);
  });

  // What JSON.parse would let through.
  it.each([
    ['a duplicate member name', '{"version":1,"network":"bitcoin","network":"testnet","keys":{}}', /^network: duplicate field \(at line 1 column 34\)$/],
    ['a duplicate key id', '{"version":1,"network":"bitcoin","keys":{"k":{"rules":[]},"k":{"rules":[]}}}', /^keys\["k"\]: duplicate field/],
    [
      'an integer JSON.parse would round',
      '{"version":1,"network":"bitcoin","keys":{"k":{"rules":[{"name":"r","max_amount":9007199254740993}]}}}',
      /max_amount: .* not 9007199254740993$/,
    ],
    ['an exponent', '{"version":1,"network":"bitcoin","keys":{"k":{"rules":[{"name":"r","max_amount":1e5}]}}}', /max_amount: .* in plain digits, not 1e5$/],
    ['100.0 for an integer', '{"version":1,"network":"bitcoin","keys":{"k":{"rules":[{"name":"r","max_amount":100.0}]}}}', /not 100\.0$/],
    ['a trailing comma in an array', '{"version":1,"network":"bitcoin","keys":{"k":{"rules":[],"wallets":["tr(musig(a))",]}}}', /column 84: a trailing comma$/],
    ['a trailing comma', '{"version":1,"network":"bitcoin","keys":{},}', /^not valid JSON at line 1 column 44: a trailing comma$/],
    ['a comment', '{"version":1, // one\n"network":"bitcoin","keys":{}}', /^not valid JSON at line 1 column 15: expected a member name in double quotes$/],
    ['text after the document', '{"version":1,"network":"bitcoin","keys":{}} x', /unexpected text after the end/],
    ['a raw control character in a string', '{"version":1,"network":"bitcoin","comment":"a\tb","keys":{}}', /not valid JSON .* bad string/],
    ['an empty file', '', /not valid JSON at line 1 column 1: unexpected end of input/],
    ['a document that is not an object', '[1]', /^\(top level\): must be an object, not an array$/],
  ])('refuses %s', (_what, text, message) => {
    expect(loadError(text)).toMatch(message);
  });

  it('runs the descriptor check it is given, naming the wallet', () => {
    const checkWallet = (d: string): void => {
      if (d.includes('xpub68NZ')) throw new Error('bad key xpub68NZ');
    };
    expect(() => parsePolicy(JSON.stringify(full()), { checkWallet })).toThrow(/^keys\["treasury"\]\.wallets\[0\]: bad key xpub68NZ$/);
  });

  it('loadPolicy names the file, and refuses unreadable, non-UTF-8 and oversized files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'policy-'));
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify(full(), null, 2));
    expect((await loadPolicy(good)).hashHex).toBe(policyOf(full()).hashHex);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, mutated((d) => (d.keys.treasury.rules[1].max_amont = 1)));
    await expect(loadPolicy(bad)).rejects.toThrow(`${bad}: keys["treasury"].rules[1].max_amont: unknown field`);
    await expect(loadPolicy(join(dir, 'missing.json'))).rejects.toThrow(/cannot read .*missing\.json: ENOENT/);
    const latin1 = join(dir, 'latin1.json');
    writeFileSync(latin1, Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x7d]));
    await expect(loadPolicy(latin1)).rejects.toThrow(/not valid UTF-8/);
    const big = join(dir, 'big.json');
    writeFileSync(big, `{"comment":"${'x'.repeat(1 << 20)}"}`);
    await expect(loadPolicy(big)).rejects.toThrow(/larger than 1048576 bytes/);
  });
});

describe('the policy hash', () => {
  const base = full();
  const baseHash = policyOf(base).hashHex;

  it('is the SHA-256 of the canonical text, which is sorted, compact JSON of the normalized document', () => {
    const p = parsePolicy('{ "version": 1, "network": "regtest", "keys": { "k": { "rules": [ { "name": "r", "max_fee": { "percent": 10.50 } } ] } } }');
    expect(p.canonical).toBe(
      '{"keys":{"k":{"allow_raw_message":false,"rules":[{"max_fee":{"percent":10.5},"name":"r","sighash_types":["DEFAULT","ALL"]}],"wallets":[]}},"network":"regtest","version":1}',
    );
    expect(p.hashHex).toBe(createHash('sha256').update(p.canonical).digest('hex'));
    expect(hex(p.hash)).toBe(p.hashHex);
    // Pinned, so a change to the canonical form (which would orphan every approval) is seen.
    expect(p.hashHex).toBe('bdb57eba0eb985102ad838e61e283d4e9bcf3f40323599adf9ccc7980db524b4');
  });

  it('does not change with member order, whitespace, defaults written out, hex case or percent spelling', () => {
    const reordered = JSON.parse(JSON.stringify(base));
    // Rebuild every object with its members reversed.
    const reverse = (v: unknown): unknown =>
      Array.isArray(v) ? v.map(reverse) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reverse(x)])) : v;
    expect(parsePolicy(JSON.stringify(reverse(reordered), null, '\t')).hashHex).toBe(baseHash);
    expect(parsePolicy(JSON.stringify(base, null, 4).replace(/\n/g, '\r\n')).hashHex).toBe(baseHash);

    const explicit = full();
    explicit.keys.hot.wallets = [];
    explicit.keys.treasury.rules[1].sighash_types = ['DEFAULT', 'ALL'];
    expect(policyOf(explicit).hashHex).toBe(baseHash);

    const implicit = full();
    delete implicit.keys.treasury.allow_raw_message;
    delete rule0(implicit).sighash_types;
    expect(policyOf(implicit).hashHex).toBe(baseHash);

    const upper = full();
    rule0(upper).approvals.keys = [A.toUpperCase(), B];
    rule0(upper).destinations[1] = '6A0401020304';
    expect(policyOf(upper).hashHex).toBe(baseHash);

    const text = JSON.stringify(base).replace('"percent":2.5', '"percent":2.50');
    expect(text).toContain('2.50');
    expect(parsePolicy(text).hashHex).toBe(baseHash);
  });

  const changes: [string, (d: Doc) => void][] = [
    ['a key id', (d) => ((d.keys.cold = d.keys.hot), delete d.keys.hot)],
    ['a key added', (d) => (d.keys.other = { rules: [] })],
    ['allow_raw_message', (d) => (d.keys.hot.allow_raw_message = false)],
    ['a wallet', (d) => (d.keys.treasury.wallets = [WALLET_B])],
    ['rule order', (d) => d.keys.treasury.rules.reverse()],
    ['a rule name', (d) => (rule0(d).name = 'payroll2')],
    ['a rule removed', (d) => d.keys.treasury.rules.pop()],
    ['max_amount', (d) => (rule0(d).max_amount += 1)],
    ['max_amount removed', (d) => delete rule0(d).max_amount],
    ['per_period amount', (d) => (rule0(d).per_period.amount += 1)],
    ['period_seconds', (d) => (rule0(d).per_period.period_seconds = 86_401)],
    ['a destination', (d) => (rule0(d).destinations[1] = '6a0401020305')],
    ['destinations emptied', (d) => (rule0(d).destinations = [])],
    ['destinations removed', (d) => delete rule0(d).destinations],
    ['max_fee.sats', (d) => (rule0(d).max_fee.sats = 100_001)],
    ['max_fee.percent', (d) => (rule0(d).max_fee.percent = 2.51)],
    ['sighash_types', (d) => (rule0(d).sighash_types = ['ALL'])],
    ['an approver', (d) => (rule0(d).approvals.keys[1] = approver('c').hex)],
    ['approvals.min', (d) => (rule0(d).approvals.min = 1)],
    ['a comment', (d) => (d.comment = 'other')],
  ];
  it('changes when only the network changes', () => {
    const doc = { version: 1, network: 'bitcoin', keys: { k: { rules: [{ name: 'r', destinations: ['6a00'] }] } } };
    expect(policyOf(doc).hashHex).not.toBe(policyOf({ ...doc, network: 'testnet' }).hashHex);
  });

  it.each(changes)('changes when %s changes', (_what, edit) => {
    const doc = full();
    edit(doc);
    expect(policyOf(doc).hashHex).not.toBe(baseHash);
  });
});
