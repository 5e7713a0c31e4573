// PostgreSQL stopped and started again under a signing load, with a real daemon on a
// postgres:// ledger: while it is down the Signer is NOT_SERVING and answers UNAVAILABLE, no
// signature comes out; once it is back the daemon serves again without a restart, and the
// ledger and the audit log show no nonce used twice.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgCluster } from '../ledger/pg-harness.js';
import { readPgLedger } from './invariants.js';
import { runOutageScenario, startFaultRig, type FaultRig } from './rig.js';

let cluster: PgCluster;
let url: string;
let rig: FaultRig;
beforeAll(async () => {
  cluster = await PgCluster.start();
  url = await cluster.createDatabase('faults');
  rig = await startFaultRig('musig2-pgfault-', { ledger: url });
});
afterAll(async () => {
  await rig?.close();
  await cluster?.destroy();
});

describe('PostgreSQL stopped and started under load', () => {
  it('UNAVAILABLE and NOT_SERVING while down, no signature, recovers by itself', async () => {
    const load = await runOutageScenario(
      rig,
      'postgres',
      { takeDown: () => cluster.stop(), bringBack: () => cluster.restart() },
      () => readPgLedger(url),
    );
    expect(load.count('NonceGen', 'UNAVAILABLE')).toBeGreaterThan(0);
  }, 180_000);
});
