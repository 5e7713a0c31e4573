// The Aggregator service over a compute pool: the same replies, the same gRPC codes and the
// same ErrorInfo as the inline default, byte for byte, with the curve arithmetic posted to the
// pool's worker threads (KeySort, a byte sort, stays on the event loop).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AggregatorClient, ClientError } from '../../src/client/index.js';
import * as musig2 from '../../src/musig2/index.js';
import { DaemonServer } from '../../src/server/index.js';
import type { DaemonServerOptions } from '../../src/server/index.js';
import { ComputePool } from '../../src/signer/index.js';
import type { ComputePublicOp } from '../../src/signer/index.js';
import { capturingLogger, LocalSigner, rand } from '../signer/helpers.js';

/** The Aggregator needs no signer: one that is healthy and never asked. */
const noSigner = {
  health: async () => ({ keystore: true, ledger: true }),
  listKeys: async () => [],
  nonceGen: async () => {
    throw new Error('not used');
  },
  sign: async () => {
    throw new Error('not used');
  },
  deterministicSign: async () => {
    throw new Error('not used');
  },
} as unknown as DaemonServerOptions['signer'];

const posted: ComputePublicOp[] = [];
let pool: ComputePool;
let pooled: DaemonServer;
let inline: DaemonServer;
let viaPool: AggregatorClient;
let viaLoop: AggregatorClient;

beforeAll(async () => {
  pool = await ComputePool.start(2, { testHooks: { posted: (op) => posted.push(op) } });
  const { logger } = capturingLogger();
  pooled = await DaemonServer.start({ signer: noSigner, logger, listen: '127.0.0.1:0', compute: pool });
  inline = await DaemonServer.start({ signer: noSigner, logger, listen: '127.0.0.1:0' });
  viaPool = new AggregatorClient(pooled.address);
  viaLoop = new AggregatorClient(inline.address);
});

afterAll(async () => {
  viaPool?.close();
  viaLoop?.close();
  await pooled?.shutdown(1000);
  await inline?.shutdown(1000);
  await pool?.close();
});

/** The reply, or the error's code, details and ErrorInfo. */
async function outcome(p: Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await p };
  } catch (err) {
    if (!(err instanceof ClientError)) throw err;
    return { code: err.codeName, details: err.details, errorInfo: err.errorInfo };
  }
}

function session() {
  const signers = [new LocalSigner(), new LocalSigner(), new LocalSigner()];
  const pubkeys = signers.map((s) => s.pk);
  const tweaks: musig2.Tweak[] = [{ tweak: rand(32).fill(0, 0, 1), xonly: true }];
  const message = rand(32);
  const nonces = signers.map((s) => s.nonceGen());
  const pubnonces = nonces.map((n) => n.pubnonce);
  const aggnonce = musig2.nonceAgg(pubnonces);
  const ctx = { aggnonce, pubkeys, tweaks, msg: message };
  const partialSigs = signers.map((s, i) => s.sign(nonces[i]!.secnonce, ctx));
  return { pubkeys, tweaks, message, pubnonces, aggnonce, partialSigs };
}

const notAPoint = (): Uint8Array => Uint8Array.of(2, ...new Uint8Array(32).fill(0xff));

describe('Aggregator over the compute pool', () => {
  it('gives the inline replies and errors, code for code and ErrorInfo for ErrorInfo', async () => {
    const s = session();
    const badKeys = [s.pubkeys[0]!, notAPoint(), s.pubkeys[2]!];
    const badNonces = [s.pubnonces[0]!, s.pubnonces[1]!, Uint8Array.of(...notAPoint(), ...s.pubnonces[2]!.subarray(33))];
    const bigTweak = [{ tweak: new Uint8Array(32).fill(0xff), xonly: false }];
    const calls: [string, (c: AggregatorClient) => Promise<unknown>][] = [
      ['KeySort', (c) => c.keySort(s.pubkeys)],
      ['KeyAgg', (c) => c.keyAgg(s.pubkeys, s.tweaks)],
      ['KeyAgg bad pubkey', (c) => c.keyAgg(badKeys)],
      ['KeyAgg bad tweak', (c) => c.keyAgg(s.pubkeys, bigTweak)],
      ['NonceAgg', (c) => c.nonceAgg(s.pubnonces)],
      ['NonceAgg bad pubnonce', (c) => c.nonceAgg(badNonces)],
      ['NonceAgg short pubnonce', (c) => c.nonceAgg([s.pubnonces[0]!.subarray(1)])],
      ...[0, 1, 2].map((i): [string, (c: AggregatorClient) => Promise<unknown>] => [
        `PartialSigVerify ${i}`,
        (c) => c.partialSigVerify({ ...s, partialSig: s.partialSigs[i]!, signerIndex: i }),
      ]),
      ['PartialSigVerify wrong psig', (c) => c.partialSigVerify({ ...s, partialSig: s.partialSigs[0]!, signerIndex: 1 })],
      ['PartialSigVerify bad pubnonce', (c) => c.partialSigVerify({ ...s, pubnonces: badNonces, partialSig: s.partialSigs[0]!, signerIndex: 0 })],
      ['PartialSigVerify bad pubkey', (c) => c.partialSigVerify({ ...s, pubkeys: badKeys, partialSig: s.partialSigs[0]!, signerIndex: 0 })],
      ['PartialSigVerify bad tweak', (c) => c.partialSigVerify({ ...s, tweaks: bigTweak, partialSig: s.partialSigs[0]!, signerIndex: 0 })],
      ['PartialSigAgg', (c) => c.partialSigAgg(s)],
      ['PartialSigAgg psig >= n', (c) => c.partialSigAgg({ ...s, partialSigs: [s.partialSigs[0]!, new Uint8Array(32).fill(0xff), s.partialSigs[2]!] })],
      ['PartialSigAgg bad aggnonce', (c) => c.partialSigAgg({ ...s, aggnonce: Uint8Array.of(...notAPoint(), ...s.aggnonce.subarray(33)) })],
      ['PartialSigAgg bad pubkey', (c) => c.partialSigAgg({ ...s, pubkeys: badKeys })],
    ];
    posted.length = 0;
    for (const [what, call] of calls) {
      const want = await outcome(call(viaLoop));
      expect(await outcome(call(viaPool)), what).toEqual(want);
    }
    // A few spot checks that the comparison compared something.
    expect(await outcome(viaPool.partialSigVerify({ ...s, partialSig: s.partialSigs[1]!, signerIndex: 1 }))).toEqual({ ok: true });
    expect(await outcome(viaPool.nonceAgg(badNonces))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      errorInfo: { reason: 'INVALID_CONTRIBUTION', metadata: { signer: '2', contribution: 'pubnonce' } },
    });
    expect(await outcome(viaPool.keyAgg(badKeys))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      errorInfo: { metadata: { signer: '1', contribution: 'pubkey' } },
    });
    // Everything but KeySort and the shape errors refused before any arithmetic went to a worker.
    expect(new Set(posted)).toEqual(new Set(['keyAgg', 'nonceAgg', 'partialSigVerify', 'partialSigAgg']));
    expect(posted).toHaveLength(calls.length - 2 + 3);
  });
});
