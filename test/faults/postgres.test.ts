// PostgreSQL stopped and started again under a signing load, with a real daemon on a
// postgres:// ledger: while it is down the Signer is NOT_SERVING and answers UNAVAILABLE, no
// signature comes out; once it is back the daemon serves again without a restart, and the
// ledger and the audit log show no nonce used twice.
import { randomBytes } from '@noble/hashes/utils.js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignerClient } from '../../src/client/index.js';
import { Daemon, hex, importKey, makeToken, removeToken } from '../e2e/harness.js';
import type { Token } from '../e2e/harness.js';
import { PgCluster } from '../ledger/pg-harness.js';
import { checkInvariants, readPgLedger } from './invariants.js';
import { Load } from './load.js';
import { CLEAN_CODES, outage } from './outage.js';

let cluster: PgCluster;
let url: string;
let token: Token;
let daemon: Daemon | undefined;
let client: SignerClient;
let probe: SignerClient;
let pubkeys: Uint8Array[];
let auditFile: string;

beforeAll(async () => {
  cluster = await PgCluster.start();
  url = await cluster.createDatabase('faults');
  token = await makeToken('musig2-pgfault-');
  pubkeys = [await importKey(token, 'alice', hex(randomBytes(32))), await importKey(token, 'bob', hex(randomBytes(32)))];
  auditFile = join(token.dir, 'audit.jsonl');
  daemon = await Daemon.start(token, { ledger: url, args: ['--audit-log', auditFile, '--workers', '1'] });
  client = new SignerClient(daemon.address, { deadlineMs: 10_000 });
  probe = new SignerClient(daemon.address, { deadlineMs: 10_000 });
});

afterAll(async () => {
  client?.close();
  probe?.close();
  await daemon?.stop();
  await removeToken(token);
  await cluster?.destroy();
});

describe('PostgreSQL stopped and started under load', () => {
  it('UNAVAILABLE and NOT_SERVING while down, no signature, recovers by itself', async () => {
    const load = new Load({
      client: () => client,
      randomKey: 'alice',
      deterministicKey: 'bob',
      pubkeys,
      concurrency: 16,
      maxSessions: 20_000,
      maxMs: 90_000,
      deterministicEvery: 3,
      backoffMs: 100,
    });
    try {
      await outage({ load, probe, keyId: 'alice', pubkeys, takeDown: () => cluster.stop(), bringBack: () => cluster.restart() });
    } finally {
      await load.stop();
    }
    expect(load.thrown).toEqual([]);
    for (const code of load.codeNames()) expect(CLEAN_CODES).toContain(code);
    expect(load.count('NonceGen', 'UNAVAILABLE')).toBeGreaterThan(0);

    await daemon!.stop();
    daemon = undefined;
    const report = await checkInvariants({ rows: await readPgLedger(url), received: load.received, auditFiles: [auditFile] });
    expect(report.violations).toEqual([]);
    expect(report.auditSigned).toBeGreaterThan(0);
    console.log(`postgres: ${load.sessionsStarted} sessions, ${load.sessionsCompleted} signed, codes ${JSON.stringify([...load.codes])}, ledger rows ${report.rows}, audit records ${report.auditRecords}`);
  }, 180_000);
});
