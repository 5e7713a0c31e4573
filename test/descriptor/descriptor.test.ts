// BIP390 musig() descriptors (valid and invalid vectors), BIP380 checksums, BIP328 synthetic
// xpubs and derivation, addresses per network, multipath branches, change matching, and the
// BIP373 Updater reproducing the BIP373 "receiving" vectors byte for byte.
import { describe, expect, it } from 'vitest';
import { HDKey } from '@scure/bip32';
import { Transaction } from '@scure/btc-signer';
import {
  BIP328_CHAINCODE, DescriptorError, addChecksum, deriveAddress, deriveAt, deriveFromAggregate, deriveMusig, descriptorChecksum,
  keyFingerprint, matchOutputScript, parseDescriptor, syntheticXpub, updatePsbtFromDescriptor,
} from '../../src/descriptor/index.js';
import { getPlainPk, getXonlyPk, keyAgg, keyAggAndTweak } from '../../src/musig2/index.js';
import { decodePsbt, encodePsbt } from '../../src/psbt/index.js';
import { readVectorJson } from '../vectors/load.js';
import { bip373, hex, unhex } from '../psbt/helpers.js';

interface Bip390 { valid: { descriptor: string; scripts: string[] }[]; invalid: { reason: string; descriptor: string }[] }
const D = readVectorJson<Bip390>('bip390/vectors.json');
const B328 = readVectorJson<{ aggregate_pubkey: string; keys: string[]; xpub: string }[]>('bip328/vectors.json');

describe('BIP390 vectors', () => {
  it('has 6 valid and 14 invalid', () => {
    expect(D.valid).toHaveLength(6);
    expect(D.invalid).toHaveLength(14);
  });

  it.each(D.valid.map((v, i) => [i, v] as const))('valid %i derives the listed scripts', (_i, v) => {
    const d = parseDescriptor(v.descriptor);
    v.scripts.forEach((s, index) => expect(hex(deriveAt(d, { index }).script)).toBe(s));
    // With its checksum too, and a wrong checksum is refused.
    const withSum = addChecksum(v.descriptor);
    expect(hex(deriveAt(parseDescriptor(withSum)).script)).toBe(v.scripts[0]);
    const wrong = withSum.slice(0, -1) + (withSum.endsWith('q') ? 'p' : 'q');
    expect(() => parseDescriptor(wrong)).toThrow(/checksum/);
  });

  it.each(D.invalid.map((v) => [v.reason, v] as const))('invalid: %s', (_r, v) => {
    expect(() => parseDescriptor(v.descriptor)).toThrow(DescriptorError);
  });

  it('KeySort: the order participants are written in does not matter', () => {
    const [a, b, c] = ['02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9', '03dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659', '023590a94e768f8e1815c2f24b4d80a8e3149316c3518ce7b7ad338368d038ca66'];
    const one = deriveAt(parseDescriptor(`tr(musig(${a},${b},${c}))`));
    const two = deriveAt(parseDescriptor(`tr(musig(${c},${a},${b}))`));
    expect(hex(two.script)).toBe(hex(one.script));
    expect(one.internalKey.musig!.participants.map((k) => hex(k))).toEqual([c, a, b].sort());
  });
});

describe('BIP380 checksum', () => {
  it('matches the BIP380 example', () => {
    expect(descriptorChecksum('raw(deadbeef)')).toBe('89f8spxm');
  });
  it('refuses characters outside the charset', () => {
    expect(descriptorChecksum('tr(é)')).toBeUndefined();
  });
});

describe('BIP328', () => {
  it.each(B328.map((v, i) => [i, v] as const))('vector %i: aggregate and synthetic xpub', (_i, v) => {
    const keys = v.keys.map((k) => unhex(k.toLowerCase()));
    expect(hex(getPlainPk(keyAgg(keys)))).toBe(v.aggregate_pubkey);
    expect(syntheticXpub(unhex(v.aggregate_pubkey))).toBe(v.xpub);
  });

  it('the plain tweaks of a path reach the child key that @scure/bip32 derives from the synthetic xpub', () => {
    const v = B328[1]!;
    const keys = v.keys.map((k) => unhex(k.toLowerCase()));
    const path = [0, 7, 123456];
    const d = deriveFromAggregate(unhex(v.aggregate_pubkey), path);
    const child = HDKey.fromExtendedKey(v.xpub).derive('m/0/7/123456');
    expect(hex(d.publicKey)).toBe(hex(child.publicKey!));
    expect(hex(getPlainPk(keyAggAndTweak(keys, d.tweaks)))).toBe(hex(child.publicKey!));
    expect(d.tweaks.every((t) => !t.xonly)).toBe(true);
    // The src/musig2 route that signing plans use gives the same key and tweaks.
    const viaMusig = deriveMusig(keys, path);
    expect(hex(viaMusig.publicKey)).toBe(hex(d.publicKey));
    expect(viaMusig.tweaks.map((t) => hex(t.tweak))).toEqual(d.tweaks.map((t) => hex(t.tweak)));
    expect(hex(viaMusig.chainCode)).toBe(hex(child.chainCode!));
    expect(hex(BIP328_CHAINCODE)).toBe('868087ca02a6f974c4598924c36b57762d32cb45717167e300622c7167e38965');
  });

  it('refuses hardened steps', () => {
    expect(() => deriveFromAggregate(unhex(B328[0]!.aggregate_pubkey), [0x80000000])).toThrow(/hardened/);
  });
});

const XPUB_A = 'xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL';
const XPUB_B = 'xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y';
const WALLET = `tr(musig(${XPUB_A},${XPUB_B})/<0;1>/*)`;

describe('wallet descriptors', () => {
  it('<0;1>/* gives receive (branch 0) and change (branch 1) addresses that match /0/* and /1/*', () => {
    const d = parseDescriptor(WALLET);
    expect(d.branches).toBe(2);
    expect(d.ranged).toBe(true);
    const recv = parseDescriptor(`tr(musig(${XPUB_A},${XPUB_B})/0/*)`);
    const change = parseDescriptor(`tr(musig(${XPUB_A},${XPUB_B})/1/*)`);
    for (const index of [0, 5]) {
      expect(deriveAddress(d, { branch: 0, index })).toBe(deriveAddress(recv, { index }));
      expect(deriveAddress(d, { branch: 1, index })).toBe(deriveAddress(change, { index }));
    }
    expect(() => deriveAt(d, { branch: 2 })).toThrow(DescriptorError);
  });

  it('multipath participants without musig() derivation (BIP390 allows it)', () => {
    const d = parseDescriptor(`tr(musig(${XPUB_A}/<0;1>/*,${XPUB_B}/<0;1>/*))`);
    const change = parseDescriptor(`tr(musig(${XPUB_A}/1/*,${XPUB_B}/1/*))`);
    expect(deriveAddress(d, { branch: 1, index: 2 })).toBe(deriveAddress(change, { index: 2 }));
    expect(deriveAt(d, { branch: 1, index: 2 }).internalKey.musig!.path).toEqual([]);
  });

  it('a tree output: the Updater writes tapTree, and the leaf key derivations carry the leaf hash', () => {
    const d = parseDescriptor(`tr(${XPUB_A}/0/*,{pk(musig(${XPUB_A},${XPUB_B})/<0;1>/*),pk(${XPUB_B}/7)})`);
    const out = deriveAt(d, { branch: 1, index: 1 });
    expect(out.leaves).toHaveLength(2);
    const tx = new Transaction({ allowUnknownOutputs: true });
    tx.addInput({ txid: new Uint8Array(32).fill(1), index: 0, witnessUtxo: { script: out.script, amount: 10_000n } });
    tx.addOutput({ script: out.script, amount: 9_000n });
    const res = updatePsbtFromDescriptor(tx, d, { at: { branch: 1, index: 1 } });
    expect(res.inputs).toHaveLength(1);
    expect(res.outputs).toHaveLength(1);
    const psbt = decodePsbt(encodePsbt(tx));
    expect(psbt.getOutput(0).tapTree).toHaveLength(2);
    const musigLeaf = out.leaves[0]!;
    const entry = psbt.getInput(0).tapBip32Derivation!.find(([k]) => hex(k) === hex(musigLeaf.key.xonly))!;
    expect(entry[1].der.path).toEqual([1, 1]);
    expect(entry[1].hashes.map((h) => hex(h))).toEqual([hex(musigLeaf.leafHash)]);
    expect(psbt.getInput(0).tapLeafScript).toHaveLength(2);
  });

  it('addresses per network', () => {
    const d = parseDescriptor(WALLET);
    expect(deriveAddress(d, { index: 0 }, 'mainnet')).toMatch(/^bc1p/);
    expect(deriveAddress(d, { index: 0 }, 'testnet')).toMatch(/^tb1p/);
    expect(deriveAddress(d, { index: 0 }, 'regtest')).toMatch(/^bcrt1p/);
  });

  it('the derived key is KeyAgg of the sorted derived participants, tweaked along the BIP328 path', () => {
    const out = deriveAt(parseDescriptor(WALLET), { branch: 1, index: 3 });
    const m = out.internalKey.musig!;
    expect(m.path).toEqual([1, 3]);
    expect(hex(getXonlyPk(keyAggAndTweak(m.participants, [...m.tweaks, { tweak: out.tapTweak!, xonly: true }])))).toBe(hex(out.outputKey));
  });

  it('matchOutputScript finds the branch and index of a change script, and nothing for a foreign one', () => {
    const d = parseDescriptor(WALLET);
    const change = deriveAt(d, { branch: 1, index: 7 });
    expect(matchOutputScript(d, change.script, { maxIndex: 10 })).toEqual({ branch: 1, index: 7 });
    expect(matchOutputScript(d, change.script, { maxIndex: 10, branches: [0] })).toBeUndefined();
    expect(matchOutputScript(d, unhex('5120' + '11'.repeat(32)), { maxIndex: 3 })).toBeUndefined();
  });

  it('refuses other descriptors and malformed text', () => {
    for (const bad of ['wpkh(02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9)', 'tr(musig())', 'tr(02zz)', `tr(musig(${XPUB_A},${XPUB_B})/<0;1>/*`, `tr(${XPUB_A}/0h/*)`, 'tr(musig(f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9,03dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659))']) {
      expect(() => parseDescriptor(bad), bad).toThrow(DescriptorError);
    }
  });

  it('fingerprint helper is HASH160-based', () => {
    expect(keyFingerprint(unhex('030b58e337aa4d3852a8c29387c42408d8cfbe3a613a5e397e0a9f01a5fb7107d4'))).toBe(0x2680dd6e);
  });
});

describe('BIP373 Updater from a descriptor', () => {
  const V = bip373();
  const keys = V.participants.map((p) => p.pubkey).join(',');

  it('reproduces the "receiving, internal key is the aggregate" vector byte for byte', () => {
    const v = V.valid.find((x) => x.case === 'Receiving a Taproot output where the internal key is a MuSig2 Aggregate Pubkey')!;
    const want = decodePsbt(unhex(v.hex));
    // Strip the fields the Updater adds to output 0, then let the descriptor fill them.
    const tx = decodePsbt(unhex(v.hex));
    tx.updateOutput(0, { tapInternalKey: undefined, tapBip32Derivation: undefined, musig2ParticipantPubkeys: undefined }, true);
    expect(hex(encodePsbt(tx))).not.toBe(v.hex);
    const res = updatePsbtFromDescriptor(tx, parseDescriptor(`tr(musig(${keys}))`));
    expect(res.outputs).toEqual([{ output: 0, branch: 0, index: 0 }]);
    expect(hex(encodePsbt(tx))).toBe(hex(encodePsbt(want)));
  });

  it('fills an input so that every participant can plan its signature', async () => {
    const { planSigning } = await import('../../src/psbt/index.js');
    const d = parseDescriptor(WALLET);
    const out = deriveAt(d, { branch: 0, index: 4 });
    const tx = new Transaction({ allowUnknownOutputs: true });
    tx.addInput({ txid: new Uint8Array(32).fill(7), index: 0, witnessUtxo: { script: out.script, amount: 50_000n } });
    tx.addOutput({ script: deriveAt(d, { branch: 1, index: 9 }).script, amount: 40_000n });
    const res = updatePsbtFromDescriptor(tx, d, { maxIndex: 10 });
    expect(res.inputs).toEqual([{ input: 0, branch: 0, index: 4 }]);
    expect(res.outputs).toEqual([{ output: 0, branch: 1, index: 9 }]);
    const psbt = decodePsbt(encodePsbt(tx));
    for (const p of out.internalKey.musig!.participants) {
      const plan = planSigning(psbt, p);
      expect(plan.inputs).toHaveLength(1);
      expect(hex(plan.inputs[0]!.signingKey)).toBe(hex(out.outputKey));
    }
    expect(psbt.getOutput(0).musig2ParticipantPubkeys).toHaveLength(1);
  });
});
