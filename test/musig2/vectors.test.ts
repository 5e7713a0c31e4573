/**
 * Every case of the official BIP327 v1.0.4 vectors (30 valid, 26 error or verify-fail).
 * Error cases assert the error class, and for contributions the exact culprit and kind.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import { InvalidContributionError, InvalidInputError, musig2For } from '../../src/musig2/index.js';
import type { Tweak } from '../../src/musig2/index.js';
import { BACKENDS, hex, loadVectors, toHexUpper } from './helpers.js';

type ErrorSpec =
  | { type: 'invalid_contribution'; signer: number | null; contrib: string }
  | { type: 'value'; message: string };

const ran = new Map(BACKENDS.map((b) => [b, { valid: 0, error: 0 }]));
let validRan = 0;
let errorRan = 0;

/** Run fn, expect the vector's error, and count the case. */
function expectVectorError(fn: () => unknown, spec: ErrorSpec): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  if (spec.type === 'invalid_contribution') {
    expect(caught).toBeInstanceOf(InvalidContributionError);
    const e = caught as InvalidContributionError;
    expect(e.signer).toBe(spec.signer);
    expect(e.contrib).toBe(spec.contrib);
  } else {
    expect(caught).toBeInstanceOf(InvalidInputError);
    expect((caught as Error).message).toContain(spec.message);
  }
  errorRan++;
}

const pick = (list: string[], indices: number[]): Uint8Array[] => indices.map((i) => hex(list[i] as string));
const tweaksOf = (list: string[], indices: number[], xonly: boolean[]): Tweak[] =>
  indices.map((i, j) => ({ tweak: hex(list[i] as string), xonly: xonly[j] as boolean }));

describe.each(BACKENDS)('%s backend', (backend) => {
  const {
    deterministicSign, getXonlyPk, keyAgg, keyAggAndTweak, isValidAggnonce, keySort, nonceAgg, nonceGen, partialSigAgg,
    partialSigVerify, sign,
  } = musig2For(backend);
  // Counted per backend: vitest collects every describe before it runs any test.
  beforeEach(() => {
    validRan = 0;
    errorRan = 0;
  });
  afterEach(() => {
    const r = ran.get(backend)!;
    r.valid += validRan;
    r.error += errorRan;
  });

  describe('key_sort_vectors', () => {
    const v = loadVectors<{ pubkeys: string[]; sorted_pubkeys: string[] }>('key_sort_vectors.json');
    it('sorts the keys', () => {
      expect(keySort(v.pubkeys.map(hex)).map(toHexUpper)).toEqual(v.sorted_pubkeys);
      validRan++;
    });
  });

  describe('key_agg_vectors', () => {
    const v = loadVectors<{
      pubkeys: string[]; tweaks: string[];
      valid_test_cases: { key_indices: number[]; expected: string }[];
      error_test_cases: { key_indices: number[]; tweak_indices: number[]; is_xonly: boolean[]; error: ErrorSpec; comment: string }[];
    }>('key_agg_vectors.json');
    v.valid_test_cases.forEach((c, n) => {
      it(`valid ${n}`, () => {
        expect(toHexUpper(getXonlyPk(keyAgg(pick(v.pubkeys, c.key_indices))))).toBe(c.expected);
        validRan++;
      });
    });
    v.error_test_cases.forEach((c) => {
      it(`error: ${c.comment}`, () => {
        const pks = pick(v.pubkeys, c.key_indices);
        expectVectorError(() => keyAggAndTweak(pks, tweaksOf(v.tweaks, c.tweak_indices, c.is_xonly)), c.error);
      });
    });
  });

  describe('nonce_gen_vectors', () => {
    const v = loadVectors<{
      test_cases: {
        rand_: string; sk: string | null; pk: string; aggpk: string | null; msg: string | null;
        extra_in: string | null; expected_secnonce: string; expected_pubnonce: string;
      }[];
    }>('nonce_gen_vectors.json');
    const opt = (s: string | null): Uint8Array | undefined => (s === null ? undefined : hex(s));
    v.test_cases.forEach((c, n) => {
      it(`case ${n}`, () => {
        const out = nonceGen({
          rand: hex(c.rand_), sk: opt(c.sk), pk: hex(c.pk), aggpk: opt(c.aggpk), msg: opt(c.msg), extraIn: opt(c.extra_in),
        });
        expect(toHexUpper(out.secnonce)).toBe(c.expected_secnonce);
        expect(toHexUpper(out.pubnonce)).toBe(c.expected_pubnonce);
        validRan++;
      });
    });
  });

  describe('nonce_agg_vectors', () => {
    const v = loadVectors<{
      pnonces: string[];
      valid_test_cases: { pnonce_indices: number[]; expected: string }[];
      error_test_cases: { pnonce_indices: number[]; error: ErrorSpec; comment: string }[];
    }>('nonce_agg_vectors.json');
    v.valid_test_cases.forEach((c, n) => {
      it(`valid ${n}`, () => {
        expect(toHexUpper(nonceAgg(pick(v.pnonces, c.pnonce_indices)))).toBe(c.expected);
        validRan++;
      });
    });
    v.error_test_cases.forEach((c) => {
      it(`error: ${c.comment}`, () => {
        expectVectorError(() => nonceAgg(pick(v.pnonces, c.pnonce_indices)), c.error);
      });
    });
  });

  describe('sign_verify_vectors', () => {
    const v = loadVectors<{
      sk: string; pubkeys: string[]; secnonces: string[]; pnonces: string[]; aggnonces: string[]; msgs: string[];
      valid_test_cases: { key_indices: number[]; nonce_indices: number[]; aggnonce_index: number; msg_index: number; signer_index: number; expected: string }[];
      sign_error_test_cases: { key_indices: number[]; aggnonce_index: number; msg_index: number; secnonce_index: number; error: ErrorSpec; comment: string }[];
      verify_fail_test_cases: { sig: string; key_indices: number[]; nonce_indices: number[]; msg_index: number; signer_index: number; comment: string }[];
      verify_error_test_cases: { sig: string; key_indices: number[]; nonce_indices: number[]; msg_index: number; signer_index: number; error: ErrorSpec; comment: string }[];
    }>('sign_verify_vectors.json');
    const sk = hex(v.sk);

    v.valid_test_cases.forEach((c, n) => {
      it(`valid ${n}`, () => {
        const pubkeys = pick(v.pubkeys, c.key_indices);
        const pubnonces = pick(v.pnonces, c.nonce_indices);
        const aggnonce = hex(v.aggnonces[c.aggnonce_index] as string);
        expect(nonceAgg(pubnonces)).toEqual(aggnonce);
        const msg = hex(v.msgs[c.msg_index] as string);
        const psig = sign(hex(v.secnonces[0] as string), sk, { aggnonce, pubkeys, tweaks: [], msg });
        expect(toHexUpper(psig)).toBe(c.expected);
        expect(partialSigVerify(psig, pubnonces, pubkeys, [], msg, c.signer_index)).toBe(true);
        validRan++;
      });
    });
    v.sign_error_test_cases.forEach((c) => {
      it(`sign error: ${c.comment}`, () => {
        const ctx = {
          aggnonce: hex(v.aggnonces[c.aggnonce_index] as string), pubkeys: pick(v.pubkeys, c.key_indices),
          tweaks: [], msg: hex(v.msgs[c.msg_index] as string),
        };
        expectVectorError(() => sign(hex(v.secnonces[c.secnonce_index] as string), sk, ctx), c.error);
      });
    });
    it('isValidAggnonce accepts exactly the aggnonces Sign accepts', () => {
      const bad = new Set(
        v.sign_error_test_cases
          .filter((c) => c.error.type === 'invalid_contribution' && c.error.contrib === 'aggnonce')
          .map((c) => c.aggnonce_index),
      );
      expect(bad.size).toBe(3);
      v.aggnonces.forEach((a, i) => expect(isValidAggnonce(hex(a)), `aggnonce ${i}`).toBe(!bad.has(i)));
      expect(isValidAggnonce(new Uint8Array(66))).toBe(true); // both halves at infinity, as cpoint_ext allows
      expect(isValidAggnonce(new Uint8Array(65))).toBe(false);
    });
    v.verify_fail_test_cases.forEach((c) => {
      it(`verify fail: ${c.comment}`, () => {
        const ok = partialSigVerify(hex(c.sig), pick(v.pnonces, c.nonce_indices), pick(v.pubkeys, c.key_indices), [],
          hex(v.msgs[c.msg_index] as string), c.signer_index);
        expect(ok).toBe(false);
        errorRan++;
      });
    });
    v.verify_error_test_cases.forEach((c) => {
      it(`verify error: ${c.comment}`, () => {
        expectVectorError(() => partialSigVerify(hex(c.sig), pick(v.pnonces, c.nonce_indices), pick(v.pubkeys, c.key_indices), [],
          hex(v.msgs[c.msg_index] as string), c.signer_index), c.error);
      });
    });
  });

  describe('tweak_vectors', () => {
    const v = loadVectors<{
      sk: string; pubkeys: string[]; secnonce: string; pnonces: string[]; aggnonce: string; tweaks: string[]; msg: string;
      valid_test_cases: { key_indices: number[]; nonce_indices: number[]; tweak_indices: number[]; is_xonly: boolean[]; signer_index: number; expected: string; comment: string }[];
      error_test_cases: { key_indices: number[]; nonce_indices: number[]; tweak_indices: number[]; is_xonly: boolean[]; signer_index: number; error: ErrorSpec; comment: string }[];
    }>('tweak_vectors.json');
    const sk = hex(v.sk);
    const aggnonce = hex(v.aggnonce);
    const msg = hex(v.msg);

    v.valid_test_cases.forEach((c) => {
      it(`valid: ${c.comment}`, () => {
        const pubkeys = pick(v.pubkeys, c.key_indices);
        const pubnonces = pick(v.pnonces, c.nonce_indices);
        const tweaks = tweaksOf(v.tweaks, c.tweak_indices, c.is_xonly);
        expect(nonceAgg(pubnonces)).toEqual(aggnonce);
        const psig = sign(hex(v.secnonce), sk, { aggnonce, pubkeys, tweaks, msg });
        expect(toHexUpper(psig)).toBe(c.expected);
        expect(partialSigVerify(psig, pubnonces, pubkeys, tweaks, msg, c.signer_index)).toBe(true);
        validRan++;
      });
    });
    v.error_test_cases.forEach((c) => {
      it(`error: ${c.comment}`, () => {
        const ctx = { aggnonce, pubkeys: pick(v.pubkeys, c.key_indices), tweaks: tweaksOf(v.tweaks, c.tweak_indices, c.is_xonly), msg };
        expectVectorError(() => sign(hex(v.secnonce), sk, ctx), c.error);
      });
    });
  });

  describe('det_sign_vectors', () => {
    const v = loadVectors<{
      sk: string; pubkeys: string[]; msgs: string[];
      valid_test_cases: { rand: string | null; aggothernonce: string; key_indices: number[]; tweaks: string[]; is_xonly: boolean[]; msg_index: number; signer_index: number; expected: [string, string] }[];
      error_test_cases: { rand: string | null; aggothernonce: string; key_indices: number[]; tweaks: string[]; is_xonly: boolean[]; msg_index: number; signer_index: number; error: ErrorSpec; comment: string }[];
    }>('det_sign_vectors.json');
    const sk = hex(v.sk);
    const tweaksFrom = (tw: string[], xonly: boolean[]): Tweak[] => tw.map((t, j) => ({ tweak: hex(t), xonly: xonly[j] as boolean }));

    /**
     * Split aggothernonce into per-signer pubnonces (A − H and H for two other signers, H = 7·G)
     * so the psig can also be checked through the public partialSigVerify.
     */
    function otherNonces(aggothernonce: Uint8Array): [Uint8Array, Uint8Array] {
      const H = secp256k1.Point.BASE.multiply(7n);
      const halves = [aggothernonce.subarray(0, 33), aggothernonce.subarray(33)].map((h) => secp256k1.Point.fromBytes(h));
      const first = Uint8Array.from(halves.flatMap((A) => [...A.subtract(H).toBytes(true)]));
      const second = Uint8Array.from([...H.toBytes(true), ...H.toBytes(true)]);
      return [first, second];
    }

    v.valid_test_cases.forEach((c, n) => {
      it(`valid ${n}`, () => {
        const pubkeys = pick(v.pubkeys, c.key_indices);
        const tweaks = tweaksFrom(c.tweaks, c.is_xonly);
        const msg = hex(v.msgs[c.msg_index] as string);
        const aggothernonce = hex(c.aggothernonce);
        const out = deterministicSign(sk, aggothernonce, pubkeys, tweaks, msg, c.rand === null ? undefined : hex(c.rand));
        expect(toHexUpper(out.pubnonce)).toBe(c.expected[0]);
        expect(toHexUpper(out.psig)).toBe(c.expected[1]);
        // Same inputs, same answer: the deterministic signer is idempotent.
        expect(deterministicSign(sk, aggothernonce, pubkeys, tweaks, msg, c.rand === null ? undefined : hex(c.rand))).toEqual(out);
        const others = otherNonces(aggothernonce);
        const pubnonces = pubkeys.map((_, i) => (i === c.signer_index ? out.pubnonce : (others.shift() as Uint8Array)));
        expect(partialSigVerify(out.psig, pubnonces, pubkeys, tweaks, msg, c.signer_index)).toBe(true);
        validRan++;
      });
    });
    v.error_test_cases.forEach((c) => {
      it(`error: ${c.comment}`, () => {
        expectVectorError(() => deterministicSign(sk, hex(c.aggothernonce), pick(v.pubkeys, c.key_indices), tweaksFrom(c.tweaks, c.is_xonly),
          hex(v.msgs[c.msg_index] as string), c.rand === null ? undefined : hex(c.rand)), c.error);
      });
    });
  });

  describe('sig_agg_vectors', () => {
    const v = loadVectors<{
      pubkeys: string[]; pnonces: string[]; tweaks: string[]; psigs: string[]; msg: string;
      valid_test_cases: { aggnonce: string; nonce_indices: number[]; key_indices: number[]; tweak_indices: number[]; is_xonly: boolean[]; psig_indices: number[]; expected: string }[];
      error_test_cases: { aggnonce: string; nonce_indices: number[]; key_indices: number[]; tweak_indices: number[]; is_xonly: boolean[]; psig_indices: number[]; error: ErrorSpec; comment: string }[];
    }>('sig_agg_vectors.json');
    const msg = hex(v.msg);

    v.valid_test_cases.forEach((c, n) => {
      it(`valid ${n}`, () => {
        const aggnonce = hex(c.aggnonce);
        expect(nonceAgg(pick(v.pnonces, c.nonce_indices))).toEqual(aggnonce);
        const pubkeys = pick(v.pubkeys, c.key_indices);
        const tweaks = tweaksOf(v.tweaks, c.tweak_indices, c.is_xonly);
        const sig = partialSigAgg(pick(v.psigs, c.psig_indices), { aggnonce, pubkeys, tweaks, msg });
        expect(toHexUpper(sig)).toBe(c.expected);
        expect(schnorr.verify(sig, msg, getXonlyPk(keyAggAndTweak(pubkeys, tweaks)))).toBe(true);
        validRan++;
      });
    });
    v.error_test_cases.forEach((c) => {
      it(`error: ${c.comment}`, () => {
        const ctx = { aggnonce: hex(c.aggnonce), pubkeys: pick(v.pubkeys, c.key_indices), tweaks: tweaksOf(v.tweaks, c.tweak_indices, c.is_xonly), msg };
        expectVectorError(() => partialSigAgg(pick(v.psigs, c.psig_indices), ctx), c.error);
      });
    });
  });
});

// Runs last (vitest runs a file's tests in order): a skipped or missing case fails here.
describe('vector totals', () => {
  it.each(BACKENDS)('ran all 30 valid and 26 error-or-fail cases on %s', (backend) => {
    expect(ran.get(backend)).toEqual({ valid: 30, error: 26 });
  });
});
