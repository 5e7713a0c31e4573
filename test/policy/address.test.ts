// Destinations: addresses decode to the scriptPubKeys the BIPs give (vectors from BIP173
// https://github.com/bitcoin/bips/blob/master/bip-0173.mediawiki and BIP350
// https://github.com/bitcoin/bips/blob/master/bip-0350.mediawiki), per network; hex is a script.
import { bytesToHex } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { describeScript, destinationScript } from '../../src/policy/index.js';
import type { PolicyNetwork } from '../../src/policy/index.js';

const decoded = (text: string, network: PolicyNetwork): string => {
  const d = destinationScript(text, network);
  if (typeof d === 'string') throw new Error(d);
  return `${d.address ? 'address' : 'script'} ${bytesToHex(d.script)}`;
};

describe('destination entries', () => {
  it.each([
    ['BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4', 'bitcoin', '0014751e76e8199196d454941c45d1b3a323f1433bd6'],
    ['tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7', 'testnet', '00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262'],
    ['tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy', 'signet', '0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433'],
    ['tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c', 'testnet', '5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433'],
    ['bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0', 'bitcoin', '512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798'],
    ['bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080', 'regtest', '0014751e76e8199196d454941c45d1b3a323f1433bd6'],
    // The genesis coinbase's address (P2PKH, base58).
    ['1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa', 'bitcoin', '76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac'],
  ] as const)('%s on %s is its scriptPubKey', (text, network, script) => {
    expect(decoded(text, network)).toBe(`address ${script}`);
  });

  it('takes hex as a script, in either case', () => {
    expect(decoded('6A0401020304', 'bitcoin')).toBe('script 6a0401020304');
    expect(decoded('51024e73', 'regtest')).toBe('script 51024e73');
  });

  it.each([
    // BIP350 invalid: v1 with the bech32 checksum, v0 with bech32m, mixed case.
    ['bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd', 'bitcoin', /neither a bitcoin address nor a hex scriptPubKey/],
    ['bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh', 'bitcoin', /neither/],
    ['bc1qW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4', 'bitcoin', /neither/],
    // Valid addresses of future witness versions: not decoded; write their script in hex.
    ['BC1SW50QGDZ25J', 'bitcoin', /neither/],
    ['bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs', 'bitcoin', /neither/],
    // Another network's addresses are named as such.
    ['bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080', 'bitcoin', /^a regtest address, but the policy's network is bitcoin$/],
    ['1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa', 'regtest', /^a bitcoin address, but the policy's network is regtest$/],
    ['bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0', 'signet', /^a bitcoin address, but the policy's network is signet$/],
    [`6a${'00'.repeat(10_000)}`, 'bitcoin', /^a script longer than 10000 bytes$/],
  ] as const)('refuses %s on %s', (text, network, message) => {
    const d = destinationScript(text, network);
    expect(typeof d).toBe('string');
    expect(d).toMatch(message);
  });

  it('describes a script by its address, or in hex when it has none', () => {
    const script = Uint8Array.from(Buffer.from('512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798', 'hex'));
    expect(describeScript(script, 'bitcoin')).toBe('bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0');
    expect(describeScript(Uint8Array.from([0x6a, 0x00]), 'bitcoin')).toBe('6a00');
  });
});
