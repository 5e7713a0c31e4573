// A whole BIP373 session in process, on PSBT v0 and v2: a 3-party transaction with 5 inputs
// (key path with the aggregate as internal key; key path with a BIP328-derived internal key;
// rawtr; a script-path pk(musig()) leaf; and a plain single-key input the participants do not
// take part in), filled by the descriptor Updater. Two random signers and one deterministic
// final signer exchange minimal PSBTs, the Combiner merges them, the Finalizer aggregates.
// Every input of the final transaction is verified against its spent output with the sighash
// recomputed by bitcoinjs-lib.
import { describe, expect, it } from 'vitest';
import { schnorr } from '@noble/curves/secp256k1.js';
import { HDKey } from '@scure/bip32';
import { Transaction, p2tr } from '@scure/btc-signer';
import { sha256 } from '@noble/hashes/sha2.js';
import { Transaction as BjsTransaction } from 'bitcoinjs-lib';
import { deterministicSign, nonceAgg, nonceGen, partialSigVerify, sign } from '../../src/musig2/index.js';
import {
  allNonces, combinePsbts, decodePsbt, encodePsbt, finalizeMusigInputs, minimalPsbtWith, otherNonces, planSigning,
} from '../../src/psbt/index.js';
import type { MusigInputPlan, PsbtAddition } from '../../src/psbt/index.js';
import { deriveAt, parseDescriptor, updatePsbtFromDescriptor } from '../../src/descriptor/index.js';
import { hex, oracleSighash } from './helpers.js';

const seeds = ['alice', 'bob', 'carol'].map((n) => HDKey.fromMasterSeed(sha256(new TextEncoder().encode(`musig2-signer test ${n}`))));
const sks = seeds.map((s) => s.privateKey as Uint8Array);
const pks = seeds.map((s) => s.publicKey as Uint8Array);
const xpubs = seeds.map((s) => s.publicExtendedKey);
const hexKeys = pks.map((k) => hex(k)).join(',');
const OTHER_SK = sha256(new TextEncoder().encode('not a participant'));

const descriptors = [
  parseDescriptor(`tr(musig(${hexKeys}))`),
  parseDescriptor(`tr(musig(${xpubs.join(',')})/<0;1>/*)`),
  parseDescriptor(`rawtr(musig(${hexKeys}))`),
  parseDescriptor(`tr(50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0,pk(musig(${hexKeys})))`),
];
const positions = [{}, { branch: 0, index: 3 }, {}, {}];

function makePsbt(version: 0 | 2, sighashType: number): Uint8Array {
  const tx = new Transaction({ allowUnknownOutputs: true, PSBTVersion: version, lockTime: 0 });
  const outs = descriptors.map((d, i) => deriveAt(d, positions[i]));
  outs.forEach((o, i) => tx.addInput({ txid: sha256(Uint8Array.of(i)), index: i, sequence: 0xfffffffd, witnessUtxo: { script: o.script, amount: 100_000n + BigInt(i) } }));
  const other = p2tr(schnorr.getPublicKey(OTHER_SK));
  tx.addInput({ txid: sha256(Uint8Array.of(9)), index: 1, witnessUtxo: { script: other.script, amount: 77_000n }, tapInternalKey: other.tapInternalKey });
  tx.addOutput({ script: deriveAt(descriptors[1]!, { branch: 1, index: 0 }).script, amount: 300_000n }); // change
  tx.addOutput({ script: Uint8Array.of(0x00, 0x14, ...new Uint8Array(20).fill(3)), amount: 170_000n });
  descriptors.forEach((d) => updatePsbtFromDescriptor(tx, d, { maxIndex: 5 }));
  if (sighashType !== 0) for (let i = 0; i < 4; i++) tx.updateInput(i, { sighashType }, true);
  return tx.toPSBT(version);
}

function round1(psbt: Uint8Array, who: number, secnonces: Map<string, Uint8Array>): Uint8Array {
  const tx = decodePsbt(psbt);
  const plan = planSigning(tx, pks[who]!);
  const adds: PsbtAddition[] = plan.inputs.map((p) => {
    const { secnonce, pubnonce } = nonceGen({ sk: sks[who], pk: pks[who]!, aggpk: p.signingKey, msg: p.sighash });
    secnonces.set(planId(p), secnonce);
    return { index: p.index, plan: p, pubNonce: { participant: pks[who]!, nonce: pubnonce } };
  });
  return minimalPsbtWith(tx, adds);
}

const planId = (p: MusigInputPlan): string => `${p.index}/${hex(p.signingKey)}/${p.leafHash ? hex(p.leafHash) : ''}`;

function finalSigner(psbt: Uint8Array, who: number): Uint8Array {
  const tx = decodePsbt(psbt);
  const plan = planSigning(tx, pks[who]!);
  const adds: PsbtAddition[] = plan.inputs.map((p) => {
    const others = otherNonces(tx, p, pks[who]!);
    expect(others.size).toBe(p.participants.length - 1);
    const { pubnonce, psig } = deterministicSign(sks[who]!, nonceAgg([...others.values()]), p.participants, p.tweaks, p.sighash);
    return { index: p.index, plan: p, pubNonce: { participant: pks[who]!, nonce: pubnonce }, partialSig: { participant: pks[who]!, sig: psig } };
  });
  return minimalPsbtWith(tx, adds);
}

function round2(psbt: Uint8Array, who: number, secnonces: Map<string, Uint8Array>): Uint8Array {
  const tx = decodePsbt(psbt);
  const plan = planSigning(tx, pks[who]!);
  const adds: PsbtAddition[] = plan.inputs.map((p) => {
    const nonces = allNonces(tx, p)!;
    expect(nonces).toBeDefined();
    const secnonce = secnonces.get(planId(p))!;
    const psig = sign(secnonce, sks[who]!, { aggnonce: nonceAgg(nonces), pubkeys: p.participants, tweaks: p.tweaks, msg: p.sighash });
    expect(partialSigVerify(psig, nonces, p.participants, p.tweaks, p.sighash, p.participants.findIndex((k) => hex(k) === hex(pks[who]!)))).toBe(true);
    return { index: p.index, plan: p, partialSig: { participant: pks[who]!, sig: psig } };
  });
  return minimalPsbtWith(tx, adds);
}

describe.each([[0, 0], [2, 0], [0, 1]] as const)('PSBT v%i session, sighash type %i', (version, sighashType) => {
  it('two random signers, one deterministic final signer, combine, finalize, verify every input', () => {
    const start = makePsbt(version, sighashType);
    const plan = planSigning(decodePsbt(start), pks[0]!);
    expect(plan.inputs.map((p) => [p.index, p.leafHash !== undefined])).toEqual([[0, false], [1, false], [2, false], [3, true]]);
    expect(plan.inputs[1]!.tweaks.filter((t) => !t.xonly)).toHaveLength(2); // BIP328 path 0/3
    expect(plan.inputs[2]!.tweaks).toHaveLength(0); // rawtr: the aggregate itself signs

    const secA = new Map<string, Uint8Array>();
    const secB = new Map<string, Uint8Array>();
    const r1 = combinePsbts([start, round1(start, 0, secA), round1(start, 1, secB)]);
    // Minimal answers hold only the fields they add: the same unsigned tx, no UTXOs.
    const minimal = decodePsbt(round1(start, 0, new Map()));
    expect(minimal.getInput(0).witnessUtxo).toBeUndefined();
    expect(minimal.getInput(0).musig2PubNonce).toHaveLength(1);

    const fromFinal = finalSigner(r1, 2);
    const r2 = combinePsbts([r1, fromFinal]);
    const signedA = round2(r2, 0, secA);
    const signedB = round2(r2, 1, secB);
    const all = decodePsbt(combinePsbts([r2, signedA, signedB]));

    // The input nobody here takes part in is signed by its own key.
    all.signIdx(OTHER_SK, 4);
    all.finalizeIdx(4);
    const result = finalizeMusigInputs(all);
    expect(result.finalized).toEqual([0, 1, 2, 3]);
    expect(result.rawTx).toBeDefined();

    // Independent check: every input's signature against its spent output, with bitcoinjs-lib.
    const final = decodePsbt(result.psbt);
    const btx = BjsTransaction.fromBuffer(result.rawTx!);
    expect(btx.ins).toHaveLength(5);
    for (let i = 0; i < 5; i++) {
      const spk = final.getInput(i).witnessUtxo!.script;
      const witness = btx.ins[i]!.witness;
      const type = i < 4 ? sighashType : 0;
      const sig = witness[0]!;
      expect(sig.length, `input ${i}`).toBe(type === 0 ? 64 : 65);
      if (type !== 0) expect(sig[64]).toBe(type);
      if (witness.length === 1) {
        expect(schnorr.verify(sig.subarray(0, 64), oracleSighash(final, i, type), spk.subarray(2)), `input ${i}`).toBe(true);
      } else {
        const leafHash = plan.inputs[3]!.leafHash!;
        expect(schnorr.verify(sig.subarray(0, 64), oracleSighash(final, i, type, leafHash), witness[1]!.subarray(1, 33)), `input ${i}`).toBe(true);
      }
    }
    expect(hex(encodePsbt(decodePsbt(result.psbt)))).toBe(hex(result.psbt));
  });
});
