// Refusals: every inconsistent or malformed PSBT gets a PsbtError with the right reason and the
// input index, never a foreign error.
import { describe, expect, it } from 'vitest';
import { Transaction } from '@scure/btc-signer';
import { getPlainPk, keyAgg } from '../../src/musig2/index.js';
import {
  DEFAULT_PSBT_LIMITS, MAX_DERIVATION_DEPTH, MAX_PARTICIPANTS, allNonces, combinePsbts, decodePsbt, encodePsbt, minimalPsbtWith, otherNonces, planSigning,
} from '../../src/psbt/index.js';
import { bip373, catchError, hex, unhex } from './helpers.js';

const V = bip373();
const P = V.participants.map((p) => unhex(p.pubkey));
const vector = (c: string, variant: string): Transaction =>
  decodePsbt(unhex(V.valid.find((v) => v.case.includes(c) && v.variant === variant)!.hex));
const KEY_AGG = 'the internal key is a MuSig2 Aggregate Pubkey';
const DERIVED = 'the internal key is derived from';
const SCRIPT = 'a key in a script';

/** Replace a keyed field wholesale (scure refuses a changed value under an existing key). */
function replace(tx: Transaction, index: number, fields: Record<string, unknown>): void {
  const clear = Object.fromEntries(Object.keys(fields).map((k) => [k, undefined]));
  tx.updateInput(index, clear, true);
  tx.updateInput(index, fields, true);
}

describe('planSigning refusals', () => {
  it('a 0x1a aggregate that is not KeyAgg of its participants', () => {
    const tx = vector(KEY_AGG, 'With participant pubkeys only');
    const wrong = getPlainPk(keyAgg([P[0]!, P[1]!]));
    replace(tx, 0, { musig2ParticipantPubkeys: [[wrong, P]] });
    const err = catchError(() => planSigning(tx, P[0]!));
    expect(err.reason).toBe('AGGREGATE_MISMATCH');
    expect(err.inputIndex).toBe(0);
    expect(err.message).toMatch(/^input 0: AGGREGATE_MISMATCH/);
  });

  it('participants listed in another order than the aggregate was made with', () => {
    const tx = vector(KEY_AGG, 'With participant pubkeys only');
    replace(tx, 0, { musig2ParticipantPubkeys: [[unhex(V.aggregate), [P[1]!, P[0]!, P[2]!]]] });
    expect(catchError(() => planSigning(tx, P[0]!)).reason).toBe('AGGREGATE_MISMATCH');
  });

  it('a BIP328 derivation that does not reach the internal key', () => {
    const tx = vector(DERIVED, 'With participant pubkeys only');
    const der = tx.getInput(0).tapBip32Derivation!.map(([k, v]) => [k, v.der.path.length ? { ...v, der: { ...v.der, path: [1, 3] } } : v]);
    replace(tx, 0, { tapBip32Derivation: der });
    const err = catchError(() => planSigning(tx, P[0]!));
    expect(err.reason).toBe('DERIVATION_MISMATCH');
    expect(err.message).toContain('m/1/3');
  });

  it('a merkle root that makes the TapTweak miss the output key', () => {
    const tx = vector(KEY_AGG, 'With participant pubkeys only');
    tx.updateInput(0, { tapMerkleRoot: new Uint8Array(32).fill(1) }, true);
    const err = catchError(() => planSigning(tx, P[0]!));
    expect(err.reason).toBe('DERIVATION_MISMATCH');
    expect(err.message).toContain('not the output key');
  });

  it('a script-path control block that does not commit to the output key', () => {
    const tx = vector(SCRIPT, 'With participant pubkeys only');
    const leaves = tx.getInput(0).tapLeafScript!.map(([cb, s]) => [{ ...cb, version: cb.version ^ 1 }, s]);
    replace(tx, 0, { tapLeafScript: leaves });
    expect(catchError(() => planSigning(tx, P[0]!)).reason).toBe('DERIVATION_MISMATCH');
  });

  it('an aggregate that reaches nothing in the input', () => {
    const tx = vector(KEY_AGG, 'With participant pubkeys only');
    tx.updateInput(0, { tapInternalKey: new Uint8Array(32).fill(2), tapBip32Derivation: undefined }, true);
    const err = catchError(() => planSigning(tx, P[0]!));
    expect(err.reason).toBe('DERIVATION_MISMATCH');
    expect(err.message).toContain('reaches neither');
  });

  it('a missing witnessUtxo, on our input or on any other input', () => {
    const tx = vector(KEY_AGG, 'With participant pubkeys only');
    tx.updateInput(0, { witnessUtxo: undefined }, true);
    const err = catchError(() => planSigning(tx, P[0]!));
    expect(err.reason).toBe('MISSING_UTXO');
    expect(err.inputIndex).toBe(0);

    const two = vector(KEY_AGG, 'With participant pubkeys only');
    two.addInput({ txid: new Uint8Array(32).fill(5), index: 0 }, true);
    const err2 = catchError(() => planSigning(decodePsbt(encodePsbt(two)), P[0]!));
    expect(err2.reason).toBe('MISSING_UTXO');
    expect(err2.inputIndex).toBe(1);
  });

  it.each([2, 3, 0x81, 0x83])('sighash type %i is refused', (type) => {
    const tx = vector(KEY_AGG, 'With participant pubkeys only');
    tx.updateInput(0, { sighashType: type }, true);
    const err = catchError(() => planSigning(tx, P[0]!));
    expect(err.reason).toBe('UNSUPPORTED_SIGHASH');
    expect(err.inputIndex).toBe(0);
  });

  it('SIGHASH_ALL (1) is signed and changes the sighash', () => {
    const tx = vector(KEY_AGG, 'With participant pubkeys only');
    const before = planSigning(tx, P[0]!).inputs[0]!.sighash;
    tx.updateInput(0, { sighashType: 1 }, true);
    const p = planSigning(tx, P[0]!).inputs[0]!;
    expect(p.sighashType).toBe(1);
    expect(hex(p.sighash)).not.toBe(hex(before));
  });

  it('a key that takes part in nothing', () => {
    const tx = vector(KEY_AGG, 'With participant pubkeys only');
    const stranger = unhex('03' + hex(P[0]!).slice(2));
    expect(catchError(() => planSigning(tx, stranger)).reason).toBe('NO_PARTICIPATION');
    expect(catchError(() => planSigning(tx, new Uint8Array(32))).reason).toBe('MALFORMED');
  });

  it('our key listed twice in the participants', () => {
    const tx = vector(KEY_AGG, 'With participant pubkeys only');
    const list = [P[0]!, P[0]!, P[1]!];
    replace(tx, 0, { musig2ParticipantPubkeys: [[getPlainPk(keyAgg(list)), list]] });
    expect(catchError(() => planSigning(tx, P[0]!)).reason).toBe('DUPLICATE_PARTICIPANT');
  });

  it('work caps: a 0x1a list over MAX_PARTICIPANTS, a derivation path over MAX_DERIVATION_DEPTH', () => {
    const tx = vector(KEY_AGG, 'With participant pubkeys only');
    const huge = [P[0]!, ...Array.from({ length: MAX_PARTICIPANTS }, (_, i) => P[1 + (i % 2)]!)];
    replace(tx, 0, { musig2ParticipantPubkeys: [[unhex(V.aggregate), huge]] });
    expect(catchError(() => planSigning(tx, P[0]!)).reason).toBe('TOO_MANY_PARTICIPANTS');

    const deep = vector(DERIVED, 'With participant pubkeys only');
    const der = deep.getInput(0).tapBip32Derivation!.map(([k, v]) => [k, v.der.path.length ? { ...v, der: { ...v.der, path: Array(MAX_DERIVATION_DEPTH + 1).fill(1) } } : v]);
    replace(deep, 0, { tapBip32Derivation: der });
    const err = catchError(() => planSigning(deep, P[0]!));
    expect(err.reason).toBe('DERIVATION_MISMATCH');
    expect(err.message).toContain(`${MAX_DERIVATION_DEPTH + 1} steps`);
  });

  it('a spent output that is not P2TR', () => {
    const tx = vector(KEY_AGG, 'With participant pubkeys only');
    const amount = tx.getInput(0).witnessUtxo!.amount;
    replace(tx, 0, { witnessUtxo: { script: unhex('0014' + '11'.repeat(20)), amount } });
    expect(catchError(() => planSigning(tx, P[0]!)).reason).toBe('NOT_TAPROOT');
  });
});

describe('nonces', () => {
  it('a participant with two different nonces for one signing key', () => {
    const tx = vector(KEY_AGG, 'With all pubnonces');
    const plan = planSigning(tx, P[0]!).inputs[0]!;
    const entries = tx.getInput(0).musig2PubNonce!;
    const [key, nonce] = entries.find(([k]) => hex(k.participantPubkey) === hex(P[1]!))!;
    // Same participant, same signing key x, other prefix: a second, different nonce.
    const flipped = key.aggregatePubkey.slice();
    flipped[0] ^= 1;
    const other = entries.find(([k]) => hex(k.participantPubkey) === hex(P[2]!))![1];
    tx.updateInput(0, { musig2PubNonce: [[{ ...key, aggregatePubkey: flipped }, other]] }, true);
    expect(hex(nonce)).not.toBe(hex(other));
    const err = catchError(() => allNonces(tx, plan));
    expect(err.reason).toBe('CONFLICTING_NONCE');
    expect(err.participant).toBe(hex(P[1]!));
    expect(catchError(() => otherNonces(tx, plan, P[0]!)).reason).toBe('CONFLICTING_NONCE');
  });

  it('a nonce that is not two valid points', () => {
    const tx = vector(KEY_AGG, 'With all pubnonces');
    const plan = planSigning(tx, P[0]!).inputs[0]!;
    const entries = tx.getInput(0).musig2PubNonce!;
    const bad = new Uint8Array(66).fill(0xff);
    bad[0] = 2;
    bad[33] = 3;
    replace(tx, 0, { musig2PubNonce: entries.map(([k, n]) => [k, hex(k.participantPubkey) === hex(P[2]!) ? bad : n]) });
    const err = catchError(() => allNonces(tx, plan));
    expect(err.reason).toBe('BAD_NONCE');
    expect(err.participant).toBe(hex(P[2]!));
  });

  it('a nonce of the wrong length is refused when read (BIP373 invalid vector) and when written', () => {
    const v = V.invalid.find((x) => x.case === 'PSBT with invalid public nonce valuedata length')!;
    expect(catchError(() => decodePsbt(unhex(v.hex))).reason).toBe('MALFORMED');
    const tx = vector(KEY_AGG, 'With participant pubkeys only');
    const plan = planSigning(tx, P[0]!).inputs[0]!;
    const err = catchError(() => minimalPsbtWith(tx, [{ index: 0, plan, pubNonce: { participant: P[0]!, nonce: new Uint8Array(65) } }]));
    expect(err.reason).toBe('MALFORMED');
    expect(err.inputIndex).toBe(0);
  });

  it('combining two different nonces of one participant is refused', () => {
    const tx = vector(KEY_AGG, 'With participant pubkeys only');
    const plan = planSigning(tx, P[0]!).inputs[0]!;
    const n1 = vector(KEY_AGG, 'With all pubnonces').getInput(0).musig2PubNonce![0]![1];
    const n2 = vector(KEY_AGG, 'With all pubnonces').getInput(0).musig2PubNonce![1]![1];
    const a = minimalPsbtWith(tx, [{ index: 0, plan, pubNonce: { participant: P[0]!, nonce: n1 } }]);
    const b = minimalPsbtWith(tx, [{ index: 0, plan, pubNonce: { participant: P[0]!, nonce: n2 } }]);
    const err = catchError(() => combinePsbts([a, b]));
    expect(err.reason).toBe('CONFLICTING_NONCE');
    expect(err.inputIndex).toBe(0);
    // The same value twice is fine.
    expect(() => combinePsbts([a, a, encodePsbt(tx)])).not.toThrow();
  });
});

describe('limits and combining', () => {
  const psbt = unhex(V.valid[0]!.hex);

  it('oversize PSBTs, too many inputs or outputs', () => {
    expect(catchError(() => decodePsbt(psbt, { ...DEFAULT_PSBT_LIMITS, maxPsbtBytes: psbt.length - 1 })).reason).toBe('TOO_LARGE');
    expect(catchError(() => decodePsbt(psbt, { ...DEFAULT_PSBT_LIMITS, maxInputs: 0 })).reason).toBe('TOO_MANY_INPUTS');
    expect(catchError(() => decodePsbt(psbt, { ...DEFAULT_PSBT_LIMITS, maxOutputs: 0 })).reason).toBe('TOO_MANY_OUTPUTS');
    expect(decodePsbt(psbt, { maxPsbtBytes: psbt.length, maxInputs: 1, maxOutputs: 1 }).inputsLength).toBe(1);
    expect(catchError(() => decodePsbt(new Uint8Array(DEFAULT_PSBT_LIMITS.maxPsbtBytes + 1))).reason).toBe('TOO_LARGE');
  });

  it('an input count over the cap is refused before the body is parsed', () => {
    // Magic, then a global unsigned tx claiming 100000 inputs, then nothing: the full parse
    // would fail as MALFORMED; the cap answers first.
    const tx = Uint8Array.of(2, 0, 0, 0, 0xfe, 0xa0, 0x86, 0x01, 0x00);
    const bytes = Uint8Array.of(0x70, 0x73, 0x62, 0x74, 0xff, 1, 0, tx.length, ...tx);
    expect(catchError(() => decodePsbt(bytes)).reason).toBe('TOO_MANY_INPUTS');
  });

  it('garbage and wrong types are MALFORMED', () => {
    expect(catchError(() => decodePsbt(new Uint8Array([1, 2, 3]))).reason).toBe('MALFORMED');
    expect(catchError(() => decodePsbt(psbt.subarray(0, psbt.length - 3))).reason).toBe('MALFORMED');
    expect(catchError(() => decodePsbt('cHNidP8=' as unknown as Uint8Array)).reason).toBe('MALFORMED');
  });

  it('PSBTs of different transactions are not combined', () => {
    const other = unhex(V.valid[3]!.hex);
    expect(catchError(() => combinePsbts([psbt, other])).reason).toBe('DIFFERENT_TRANSACTION');
    expect(catchError(() => combinePsbts([])).reason).toBe('MALFORMED');
  });

  it('unknown and proprietary fields survive decode, combine and encode', () => {
    const tx = decodePsbt(psbt);
    tx.updateInput(0, { unknown: [[{ type: 0xee, key: Uint8Array.of(1, 2) }, Uint8Array.of(9, 9)]] } as never, true);
    const withUnknown = encodePsbt(tx);
    expect(hex(encodePsbt(decodePsbt(withUnknown)))).toBe(hex(withUnknown));
    expect(hex(combinePsbts([withUnknown, psbt]))).toContain('ee0102');
  });
});

describe('minimal PSBTs', () => {
  it.each([0, 2] as const)('v%i: only the added records, the same unsigned tx, canonical bytes', (version) => {
    const src = vector(SCRIPT, 'With all partial signatures');
    const tx = decodePsbt(src.toPSBT(version));
    const plan = planSigning(tx, P[0]!).inputs[0]!;
    const nonce = tx.getInput(0).musig2PubNonce![0]![1];
    const psig = tx.getInput(0).musig2PartialSig![0]![1];
    const bytes = minimalPsbtWith(tx, [{ index: 0, plan, pubNonce: { participant: P[0]!, nonce }, partialSig: { participant: P[0]!, sig: psig } }]);
    const m = decodePsbt(bytes);
    expect(hex(m.unsignedTx)).toBe(hex(tx.unsignedTx));
    expect(hex(encodePsbt(m))).toBe(hex(bytes)); // what we write is what scure would write
    const input = m.getInput(0);
    expect(Object.keys(input).filter((k) => !['txid', 'index', 'sequence'].includes(k)).sort()).toEqual(['musig2PartialSig', 'musig2PubNonce']);
    expect(hex(input.musig2PubNonce![0]![0].aggregatePubkey)).toBe(hex(plan.keyDataKey));
    expect(hex(input.musig2PubNonce![0]![0].leafHash!)).toBe(hex(plan.leafHash!));
    // Every participant's nonce in one minimal PSBT: still canonical.
    const all = tx.getInput(0).musig2PubNonce!.map(([k, n]) => ({ index: 0, plan, pubNonce: { participant: k.participantPubkey, nonce: n } }));
    const many = minimalPsbtWith(tx, all);
    expect(hex(encodePsbt(decodePsbt(many)))).toBe(hex(many));
    expect(decodePsbt(many).getInput(0).musig2PubNonce).toHaveLength(3);
    // The vector itself combined with our minimal PSBT is unchanged (same values).
    expect(hex(combinePsbts([encodePsbt(tx), bytes]))).toBe(hex(encodePsbt(tx)));
  });
});

describe('UTXO forms', () => {
  it('a nonWitnessUtxo alone is enough, and gives the same sighash as a witnessUtxo', async () => {
    const { deriveAt, parseDescriptor, updatePsbtFromDescriptor } = await import('../../src/descriptor/index.js');
    const d = parseDescriptor(`tr(musig(${V.participants.map((p) => p.pubkey).join(',')}))`);
    const out = deriveAt(d);
    const prev = new Transaction({ allowUnknownOutputs: true });
    prev.addInput({ txid: new Uint8Array(32).fill(4), index: 0 });
    prev.addOutput({ script: unhex('0014' + '22'.repeat(20)), amount: 1_000n });
    prev.addOutput({ script: out.script, amount: 90_000n });
    const raw = prev.toBytes(true, false);
    const build = (form: 'witness' | 'nonWitness'): Transaction => {
      const tx = new Transaction({ allowUnknownOutputs: true });
      tx.addInput({ txid: unhex(prev.id), index: 1, ...(form === 'witness' ? { witnessUtxo: { script: out.script, amount: 90_000n } } : { nonWitnessUtxo: raw }) });
      tx.addOutput({ script: unhex('0014' + '33'.repeat(20)), amount: 80_000n });
      updatePsbtFromDescriptor(tx, d, { maxIndex: 0 });
      return decodePsbt(encodePsbt(tx));
    };
    const a = planSigning(build('witness'), P[0]!).inputs[0]!;
    const b = planSigning(build('nonWitness'), P[0]!).inputs[0]!;
    expect(hex(b.sighash)).toBe(hex(a.sighash));
    expect(hex(b.signingKey)).toBe(hex(out.outputKey));
  });
});
