// One outage under load, the same steps for every dependency: run the load until sessions are
// being signed, take the dependency away, check that the daemon goes NOT_SERVING and answers
// UNAVAILABLE, give the dependency back, check that the daemon recovers by itself. Returns the
// window (performance.now()) in which the dependency was fully down.
import { expect } from 'vitest';
import { ClientError } from '../../src/client/index.js';
import type { SignerClient } from '../../src/client/index.js';
import { SIGNER_SERVICE } from '../../src/protocol/contract.js';
import { eventually } from './load.js';
import type { Load } from './load.js';

export async function outage(opts: {
  load: Load;
  /** A separate client for health checks and probes. */
  probe: SignerClient;
  keyId: string;
  pubkeys: readonly Uint8Array[];
  takeDown: () => Promise<void>;
  bringBack: () => Promise<void>;
}): Promise<{ downAt: number; upAt: number; probeCode: string }> {
  const { load, probe } = opts;
  expect(await eventually(async () => load.sessionsCompleted >= 40)).toBe(true);
  await opts.takeDown();
  const downAt = performance.now();
  expect(await eventually(async () => (await probe.health(SIGNER_SERVICE)) === 'NOT_SERVING')).toBe(true);
  // A fresh round 1 while it is down: refused, cleanly.
  const err = await probe.nonceGen({ keyId: opts.keyId, pubkeys: opts.pubkeys }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ClientError);
  const probeCode = (err as ClientError).codeName;
  expect(probeCode).toBe('UNAVAILABLE');
  // The loops see it too.
  const failedBefore = load.count('NonceGen', 'UNAVAILABLE') + load.count('Sign', 'UNAVAILABLE');
  expect(
    await eventually(async () => load.count('NonceGen', 'UNAVAILABLE') + load.count('Sign', 'UNAVAILABLE') >= failedBefore + 16),
  ).toBe(true);
  const upAt = performance.now();
  await opts.bringBack();
  // Recovery without a restart of the daemon.
  expect(await eventually(async () => (await probe.health(SIGNER_SERVICE)) === 'SERVING', 300)).toBe(true);
  const completed = load.sessionsCompleted;
  expect(await eventually(async () => load.sessionsCompleted >= completed + 30, 300)).toBe(true);
  // Nothing signed while it was down.
  expect(load.signedWithin(downAt, upAt)).toEqual([]);
  return { downAt, upAt, probeCode };
}

/** The codes a load may see around an outage. */
export const CLEAN_CODES = ['OK', 'UNAVAILABLE', 'NOT_FOUND', 'FAILED_PRECONDITION'];
