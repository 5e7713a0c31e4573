// grpc.health.v1 on a real daemon process while its real dependencies fail: the SQLite ledger
// locked by another process, then the SoftHSM2 token folder moved away. The overall status and
// the Signer go NOT_SERVING (the Aggregator, pure arithmetic, keeps serving), signing answers
// UNAVAILABLE, and both recover when the fault is gone.
import { readdirSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { randomBytes } from '@noble/hashes/utils.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AggregatorClient, ClientError, SignerClient } from '../../src/client/index.js';
import { holdWriteLock } from '../ledger/faults.js';
import { createKey, Daemon, makeToken, removeToken } from './harness.js';
import type { Token } from './harness.js';

let token: Token;
let daemon: Daemon;
let signer: SignerClient;
let aggregator: AggregatorClient;
let pubkey: Uint8Array;
let ledgerPath: string;

beforeAll(async () => {
  token = await makeToken();
  pubkey = await createKey(token, 'k');
  ledgerPath = join(token.dir, 'health-ledger.sqlite');
  // A short busy timeout, so a locked ledger is reported quickly.
  daemon = await Daemon.start(token, { ledger: `sqlite:${ledgerPath}?busy_timeout_ms=100` });
  signer = new SignerClient(daemon.address);
  aggregator = new AggregatorClient(daemon.address);
});

afterAll(async () => {
  signer?.close();
  aggregator?.close();
  await daemon?.stop();
  await removeToken(token);
});

/** Polls the health check until it reports `want` (the daemon re-checks every 1.5 s). */
async function waitForHealth(want: string, service = ''): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await signer.health(service)) === want) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`health of '${service}' never became ${want}`);
}

const signOnce = () =>
  signer.deterministicSign({ keyId: 'k', aggothernonce: otherNonce, pubkeys: [pubkey, otherKey], message: randomBytes(32) });
const otherKey = Uint8Array.from(Buffer.from('02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9', 'hex'));
const otherNonce = Uint8Array.from(
  Buffer.from(
    '0337c87821afd50a8644d820a8f3e02e499c931865c2360fb43d0a0d20dafe07ea0287bf891d2a6deaebadc909352aa9405d1428c15f4b75f04dae642a95c2548480',
    'hex',
  ),
);

async function expectUnavailable(p: Promise<unknown>): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ClientError);
  expect((err as ClientError).code).toBe(Status.UNAVAILABLE);
}

describe('health while dependencies fail', () => {
  it('is SERVING with the token and the ledger up', async () => {
    expect(await signer.health()).toBe('SERVING');
    expect(await signer.health('musig2.signer.v1.Signer')).toBe('SERVING');
    await expect(signOnce()).resolves.toMatchObject({ partialSig: expect.any(Uint8Array) });
  });

  it('goes NOT_SERVING while another process holds the ledger lock, and back', async () => {
    const lock = await holdWriteLock(ledgerPath);
    try {
      await waitForHealth('NOT_SERVING');
      expect(await signer.health('musig2.signer.v1.Signer')).toBe('NOT_SERVING');
      expect(await signer.health('musig2.signer.v1.Aggregator')).toBe('SERVING');
      await expectUnavailable(signOnce());
      // Public arithmetic does not need the ledger.
      expect((await aggregator.keyAgg([pubkey, otherKey])).aggregatePubkeyXonly).toHaveLength(32);
    } finally {
      await lock.release();
    }
    await waitForHealth('SERVING');
    await expect(signOnce()).resolves.toMatchObject({ pubnonce: expect.any(Uint8Array) });
  });

  it('goes NOT_SERVING while the token is gone, and back', async () => {
    const tokens = join(token.dir, 'hsm', 'tokens');
    const parked = join(token.dir, 'parked');
    const [uuid] = readdirSync(tokens);
    mkdirSync(parked, { recursive: true });
    renameSync(join(tokens, uuid!), join(parked, uuid!));
    try {
      await waitForHealth('NOT_SERVING');
      expect(await signer.health('musig2.signer.v1.Signer')).toBe('NOT_SERVING');
      await expectUnavailable(signOnce());
    } finally {
      renameSync(join(parked, uuid!), join(tokens, uuid!));
    }
    await waitForHealth('SERVING');
    await expect(signOnce()).resolves.toMatchObject({ pubnonce: expect.any(Uint8Array) });
  });
});
