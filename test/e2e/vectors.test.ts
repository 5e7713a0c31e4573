// The official BIP327 vectors over gRPC against a real daemon process. DeterministicSign uses
// the vector's secret key, imported through `musig2-signer keys import` (hex on stdin); every
// valid case must give the exact vector bytes and every error case INVALID_ARGUMENT with the
// right google.rpc.ErrorInfo in the rich-error trailer. The public-math vectors (KeySort,
// KeyAgg, NonceAgg, PartialSigVerify, PartialSigAgg) go through the Aggregator service.
import { status as Status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AggregatorClient, ClientError, SignerClient } from '../../src/client/index.js';
import type { Tweak } from '../../src/client/index.js';
import { readVectorJson } from '../vectors/load.js';
import { Daemon, fromHex, hex, importKey, makeToken, removeToken } from './harness.js';
import type { Token } from './harness.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const load = (name: string): any => readVectorJson(`bip327/${name}_vectors.json`);

type VectorError = { type: 'invalid_contribution'; signer: number | null; contrib: string } | { type: 'value'; message: string };

let token: Token;
let daemon: Daemon;
let signer: SignerClient;
let aggregator: AggregatorClient;

beforeAll(async () => {
  token = await makeToken();
  await importKey(token, 'bip327-det-sign', load('det_sign').sk as string);
  daemon = await Daemon.start(token);
  signer = new SignerClient(daemon.address);
  aggregator = new AggregatorClient(daemon.address);
});

afterAll(async () => {
  signer?.close();
  aggregator?.close();
  await daemon?.stop();
  await removeToken(token);
});

/** Awaits a call that must fail; returns its ClientError. */
async function failure(p: Promise<unknown>): Promise<ClientError> {
  const outcome = await p.then(
    (value) => ({ ok: true as const, value }),
    (err: unknown) => ({ ok: false as const, err }),
  );
  if (outcome.ok) throw new Error(`expected an error, got ${JSON.stringify(outcome.value)}`);
  expect(outcome.err).toBeInstanceOf(ClientError);
  return outcome.err as ClientError;
}

/** INVALID_ARGUMENT, with the ErrorInfo a vector's error demands (and none for a value error). */
function expectVectorError(err: ClientError, expected: VectorError, field: RegExp): void {
  expect(err.code).toBe(Status.INVALID_ARGUMENT);
  expect(err.details).toMatch(field);
  if (expected.type === 'invalid_contribution') {
    expect(err.errorInfo).toEqual({
      reason: 'INVALID_CONTRIBUTION',
      domain: 'musig2.signer.v1',
      metadata: { signer: expected.signer === null ? 'aggregator' : String(expected.signer), contribution: expected.contrib },
    });
    expect(err.contribution).toEqual({ signer: expected.signer ?? 'aggregator', contribution: expected.contrib });
  } else {
    expect(err.errorInfo).toBeUndefined();
    // The field is named once; a tweak error then gives the reference implementation's words.
    const field = err.details.slice(0, err.details.indexOf(': '));
    expect(field).toMatch(/^[a-z_]+(\[\d+\])?$/);
    expect(err.details.split(field).length - 1).toBe(1);
    if (/tweak/i.test(expected.message)) expect(err.details).toBe(`${field}: ${expected.message}`);
  }
}

const tweaksOf = (all: string[], indices: number[], xonly: boolean[]): Tweak[] =>
  indices.map((t, i) => ({ tweak: fromHex(all[t]!), xonly: xonly[i]! }));

describe('DeterministicSign vectors over gRPC', () => {
  const v = load('det_sign');
  const request = (c: {
    rand: string | null;
    aggothernonce: string;
    key_indices: number[];
    tweaks: string[];
    is_xonly: boolean[];
    msg_index: number;
  }) => ({
    keyId: 'bip327-det-sign',
    aggothernonce: fromHex(c.aggothernonce),
    pubkeys: c.key_indices.map((i) => fromHex(v.pubkeys[i])),
    tweaks: c.tweaks.map((t, i) => ({ tweak: fromHex(t), xonly: c.is_xonly[i]! })),
    message: fromHex(v.msgs[c.msg_index]),
    // null means absent; 32 zero bytes are present.
    ...(c.rand === null ? {} : { rand: fromHex(c.rand) }),
  });

  it('the imported key is the vector key', async () => {
    const keys = await signer.listKeys();
    expect(keys.find((k) => k.keyId === 'bip327-det-sign')?.publicKey).toEqual(fromHex(v.pubkeys[0]));
  });

  for (const [n, c] of (v.valid_test_cases as { expected: [string, string] }[]).entries()) {
    it(`valid case ${n}: exact pubnonce and partial signature, idempotent`, async () => {
      const req = request(c as never);
      const first = await signer.deterministicSign(req);
      expect(hex(first.pubnonce).toUpperCase()).toBe(c.expected[0]);
      expect(hex(first.partialSig).toUpperCase()).toBe(c.expected[1]);
      // A retry with the same inputs is the same answer (the ledger records it once).
      const again = await signer.deterministicSign(req);
      expect(hex(again.partialSig)).toBe(hex(first.partialSig));
    });
  }

  it('an all-zero rand is present: it differs from an absent rand', async () => {
    const c = v.valid_test_cases[0];
    expect(c.rand).toBe('00'.repeat(32));
    const { rand: _rand, ...absent } = request(c);
    const withZero = await signer.deterministicSign(request(c));
    const withoutRand = await signer.deterministicSign(absent);
    expect(hex(withZero.pubnonce).toUpperCase()).toBe(c.expected[0]);
    expect(hex(withoutRand.pubnonce)).not.toBe(hex(withZero.pubnonce));
  });

  const fields: RegExp[] = [/pubkeys\[2\]/, /pubkeys/, /aggothernonce/, /aggothernonce/, /tweak/];
  for (const [n, c] of (v.error_test_cases as { error: VectorError; comment: string }[]).entries()) {
    it(`error case ${n}: ${c.comment}`, async () => {
      const err = await failure(signer.deterministicSign(request(c as never)));
      expectVectorError(err, c.error, fields[n]!);
    });
  }
});

describe('Aggregator vectors over gRPC', () => {
  it('KeySort', async () => {
    const v = load('key_sort');
    const sorted = await aggregator.keySort(v.pubkeys.map(fromHex));
    expect(sorted.map((b) => hex(b).toUpperCase())).toEqual(v.sorted_pubkeys);
  });

  it('KeyAgg: valid cases and every error case', async () => {
    const v = load('key_agg');
    for (const c of v.valid_test_cases) {
      const r = await aggregator.keyAgg(c.key_indices.map((i: number) => fromHex(v.pubkeys[i])));
      expect(hex(r.aggregatePubkeyXonly).toUpperCase()).toBe(c.expected);
      expect(hex(r.aggregatePubkey.subarray(1)).toUpperCase()).toBe(c.expected);
    }
    for (const c of v.error_test_cases) {
      const err = await failure(
        aggregator.keyAgg(c.key_indices.map((i: number) => fromHex(v.pubkeys[i])), tweaksOf(v.tweaks, c.tweak_indices, c.is_xonly)),
      );
      expectVectorError(err, c.error, c.error.type === 'value' ? /tweak/ : new RegExp(`pubkeys\\[${c.error.signer}\\]`));
    }
  });

  it('NonceAgg: valid cases and every error case', async () => {
    const v = load('nonce_agg');
    for (const c of v.valid_test_cases) {
      const r = await aggregator.nonceAgg(c.pnonce_indices.map((i: number) => fromHex(v.pnonces[i])));
      expect(hex(r).toUpperCase()).toBe(c.expected);
    }
    for (const c of v.error_test_cases) {
      const err = await failure(aggregator.nonceAgg(c.pnonce_indices.map((i: number) => fromHex(v.pnonces[i]))));
      expectVectorError(err, c.error, new RegExp(`pubnonces\\[${c.error.signer}\\]`));
    }
  });

  it('PartialSigVerify: valid signatures, failing ones, and every error case', async () => {
    const v = load('sign_verify');
    const args = (c: { key_indices: number[]; nonce_indices: number[]; msg_index: number; signer_index: number }) => ({
      pubkeys: c.key_indices.map((i) => fromHex(v.pubkeys[i])),
      pubnonces: c.nonce_indices.map((i) => fromHex(v.pnonces[i])),
      message: fromHex(v.msgs[c.msg_index]),
      signerIndex: c.signer_index,
    });
    for (const c of v.valid_test_cases) {
      expect(await aggregator.partialSigVerify({ ...args(c), partialSig: fromHex(c.expected) })).toBe(true);
    }
    for (const c of v.verify_fail_test_cases) {
      expect(await aggregator.partialSigVerify({ ...args(c), partialSig: fromHex(c.sig) })).toBe(false);
    }
    for (const c of v.verify_error_test_cases) {
      const err = await failure(aggregator.partialSigVerify({ ...args(c), partialSig: fromHex(c.sig) }));
      const field = c.error.contrib === 'pubkey' ? 'pubkeys' : 'pubnonces';
      expectVectorError(err, c.error, new RegExp(`${field}\\[${c.error.signer}\\]`));
    }
  });

  it('PartialSigVerify with tweaks: every valid case, and a tweak >= n', async () => {
    const v = load('tweak');
    const base = (c: { key_indices: number[]; nonce_indices: number[]; tweak_indices: number[]; is_xonly: boolean[]; signer_index: number }) => ({
      pubkeys: c.key_indices.map((i) => fromHex(v.pubkeys[i])),
      pubnonces: c.nonce_indices.map((i) => fromHex(v.pnonces[i])),
      tweaks: tweaksOf(v.tweaks, c.tweak_indices, c.is_xonly),
      message: fromHex(v.msg),
      signerIndex: c.signer_index,
    });
    for (const c of v.valid_test_cases) {
      expect(await aggregator.partialSigVerify({ ...base(c), partialSig: fromHex(c.expected) })).toBe(true);
    }
    for (const c of v.error_test_cases) {
      const err = await failure(aggregator.partialSigVerify({ ...base(c), partialSig: new Uint8Array(32) }));
      expectVectorError(err, c.error, /tweak/);
    }
  });

  it('PartialSigAgg: valid cases and the psig >= n case', async () => {
    const v = load('sig_agg');
    const req = (c: {
      aggnonce: string;
      key_indices: number[];
      tweak_indices: number[];
      is_xonly: boolean[];
      psig_indices: number[];
    }) => ({
      partialSigs: c.psig_indices.map((i) => fromHex(v.psigs[i])),
      aggnonce: fromHex(c.aggnonce),
      pubkeys: c.key_indices.map((i) => fromHex(v.pubkeys[i])),
      tweaks: tweaksOf(v.tweaks, c.tweak_indices, c.is_xonly),
      message: fromHex(v.msg),
    });
    for (const c of v.valid_test_cases) {
      expect(hex(await aggregator.partialSigAgg(req(c))).toUpperCase()).toBe(c.expected);
    }
    for (const c of v.error_test_cases) {
      const err = await failure(aggregator.partialSigAgg(req(c)));
      expectVectorError(err, c.error, new RegExp(`partial_sigs\\[${c.error.signer}\\]`));
    }
  });
});
