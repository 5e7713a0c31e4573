// BIP373 test vectors: the 14 valid PSBTs parse and re-serialise byte for byte, the 10 invalid
// ones are refused; for those carrying nonces and partial signatures, our own code recomputes the
// sighash (checked against bitcoinjs-lib) and the tweaks from the PSBT, verifies every partial
// signature and the aggregate, and finalizes.
import { describe, expect, it } from 'vitest';
import { schnorr } from '@noble/curves/secp256k1.js';
import { keyAggAndTweak, getXonlyPk, nonceAgg, partialSigAgg, partialSigVerify } from '../../src/musig2/index.js';
import {
  PsbtError, allNonces, decodePsbt, encodePsbt, finalizeMusigInputs, otherNonces, partialSigs, planAll, planSigning,
} from '../../src/psbt/index.js';
import { bip373, catchError, hex, oracleSighash, unhex } from './helpers.js';

const V = bip373();

describe('BIP373 vectors', () => {
  it('has the 14 valid and 10 invalid vectors', () => {
    expect(V.valid).toHaveLength(14);
    expect(V.invalid).toHaveLength(10);
  });

  it.each(V.valid.map((v, i) => [i, v] as const))('valid %i parses and re-serialises byte for byte', (_i, v) => {
    const tx = decodePsbt(unhex(v.hex));
    expect(hex(encodePsbt(tx))).toBe(v.hex);
    expect(Buffer.from(encodePsbt(decodePsbt(Buffer.from(v.base64, 'base64')))).toString('base64')).toBe(v.base64);
  });

  it.each(V.invalid.map((v, i) => [i, v] as const))('invalid %i is refused with a PsbtError', (_i, v) => {
    const err = catchError(() => decodePsbt(unhex(v.hex)));
    expect(err).toBeInstanceOf(PsbtError);
    expect(err.reason).toBe('MALFORMED');
  });

  const spends = V.valid.filter((v) => v.case.startsWith('Spend'));
  it.each(spends.map((v) => [`${v.case} / ${v.variant}`, v] as const))('%s: every participant plans the same signature', (_name, v) => {
    const tx = decodePsbt(unhex(v.hex));
    const plans = V.participants.map((p) => planSigning(tx, unhex(p.pubkey)));
    for (const plan of plans) {
      expect(plan.inputs).toHaveLength(1);
      const p = plan.inputs[0]!;
      expect(hex(p.aggregateKey)).toBe(V.aggregate);
      expect(p.participants.map((k) => hex(k))).toEqual(V.participants.map((q) => q.pubkey));
      // The tweaks reach the signing key, and the sighash agrees with bitcoinjs-lib.
      expect(hex(getXonlyPk(keyAggAndTweak(p.participants, p.tweaks)))).toBe(hex(p.signingKey));
      expect(hex(p.sighash)).toBe(hex(oracleSighash(tx, 0, p.sighashType, p.leafHash)));
      expect(hex(p.sighash)).toBe(hex(plans[0]!.inputs[0]!.sighash));
    }
    const nonces = allNonces(tx, plans[0]!.inputs[0]!);
    if (v.variant === 'With participant pubkeys only') expect(nonces).toBeUndefined();
    else {
      expect(nonces).toHaveLength(3);
      const others = otherNonces(tx, plans[0]!.inputs[0]!, unhex(V.participants[0]!.pubkey));
      expect([...others.keys()]).toEqual([V.participants[1]!.pubkey, V.participants[2]!.pubkey]);
    }
  });

  const signed = spends.filter((v) => v.variant === 'With all partial signatures');
  it.each(signed.map((v) => [v.case, v] as const))('%s: partial signatures and aggregate verify', (_name, v) => {
    const tx = decodePsbt(unhex(v.hex));
    const [plan] = planAll(tx);
    expect(plan).toBeDefined();
    const p = plan!;
    const nonces = allNonces(tx, p)!;
    const psigs = partialSigs(tx, p)!;
    expect(psigs).toHaveLength(3);
    psigs.forEach((s, i) => expect(partialSigVerify(s, nonces, p.participants, p.tweaks, p.sighash, i)).toBe(true));
    const sig = partialSigAgg(psigs, { aggnonce: nonceAgg(nonces), pubkeys: p.participants, tweaks: p.tweaks, msg: p.sighash });
    expect(schnorr.verify(sig, p.sighash, p.signingKey)).toBe(true);
    // Where the vector carries the final signature too, it is the one we aggregate.
    const input = tx.getInput(0);
    const theirs = p.leafHash === undefined ? input.tapKeySig : input.tapScriptSig?.[0]?.[1];
    if (theirs !== undefined) expect(hex(theirs)).toBe(hex(sig));

    const result = finalizeMusigInputs(tx);
    expect(result.finalized).toEqual([0]);
    expect(result.rawTx).toBeDefined();
    const final = decodePsbt(result.psbt).getInput(0);
    expect(final.finalScriptWitness?.some((w) => hex(w) === hex(sig))).toBe(true);
  });

  it('a tampered partial signature is blamed on its participant', () => {
    const v = signed[0]!;
    const tx = decodePsbt(unhex(v.hex));
    const entries = tx.getInput(0).musig2PartialSig!;
    const [key, sig] = entries[1]!;
    const bad = sig.slice();
    bad[31] ^= 1;
    tx.updateInput(0, { musig2PartialSig: undefined, tapKeySig: undefined, tapScriptSig: undefined }, true);
    tx.updateInput(0, { musig2PartialSig: entries.map(([k, s], i) => [k, i === 1 ? bad : s]) }, true);
    const err = catchError(() => finalizeMusigInputs(tx));
    expect(err).toBeInstanceOf(PsbtError);
    expect(err.reason).toBe('BAD_PARTIAL_SIG');
    expect(err.inputIndex).toBe(0);
    expect(err.participant).toBe(hex(key.participantPubkey));
    expect(err.message).toContain('input 0');
  });
});
