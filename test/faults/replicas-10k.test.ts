// 10,000 signing sessions through two daemon replicas on one PostgreSQL ledger and one token,
// 32 at a time: each session's NonceGen and Sign go to one replica (alternating by loop), every
// 10th session's second nonce comes from DeterministicSign. Afterwards the shared ledger and
// both audit logs show no nonce used twice and every received psig backed by its ledger row.
import { randomBytes } from '@noble/hashes/utils.js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignerClient } from '../../src/client/index.js';
import { Daemon, hex, importKey, makeToken, removeToken } from '../e2e/harness.js';
import type { Token } from '../e2e/harness.js';
import { PgCluster } from '../ledger/pg-harness.js';
import { checkInvariants, readPgLedger } from './invariants.js';
import { Load } from './load.js';

// The count. MUSIG2_FAULT_SESSIONS lowers it for a quick local run (about 60 sessions/s
// on 2 shared cores: 10,000 take close to 3 minutes).
const SESSIONS = Number(process.env.MUSIG2_FAULT_SESSIONS ?? 10_000);
const DETERMINISTIC = Math.ceil(SESSIONS / 10);

let cluster: PgCluster;
let url: string;
let token: Token;
let daemons: Daemon[] = [];
let clients: SignerClient[] = [];
let pubkeys: Uint8Array[];
let audits: string[];

beforeAll(async () => {
  cluster = await PgCluster.start();
  url = await cluster.createDatabase('tenk');
  token = await makeToken('musig2-10k-');
  // Keys first: two processes on one SoftHSM token dir see what was there when they started.
  pubkeys = [await importKey(token, 'alice', hex(randomBytes(32))), await importKey(token, 'bob', hex(randomBytes(32)))];
  audits = [join(token.dir, 'audit-a.jsonl'), join(token.dir, 'audit-b.jsonl')];
  daemons = await Promise.all(audits.map((a) => Daemon.start(token, { ledger: url, args: ['--audit-log', a, '--workers', '1'] })));
  clients = daemons.map((d) => new SignerClient(d.address, { deadlineMs: 30_000 }));
});

afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all(daemons.map((d) => d.stop()));
  await removeToken(token);
  await cluster?.destroy();
});

describe('10,000 sessions through two replicas on one PostgreSQL ledger', () => {
  it('all complete; the ledger and both audit logs show no nonce used twice', async () => {
    const started = performance.now();
    const load = new Load({
      client: (i) => clients[i % 2]!,
      randomKey: 'alice',
      deterministicKey: 'bob',
      pubkeys,
      concurrency: 32,
      maxSessions: SESSIONS,
      maxMs: 600_000,
      deterministicEvery: 10,
    });
    await load.done;
    const seconds = (performance.now() - started) / 1000;
    expect(load.thrown).toEqual([]);
    expect([...load.codes].filter(([k]) => !k.endsWith(' OK'))).toEqual([]);
    expect(load.sessionsCompleted).toBe(SESSIONS);

    await Promise.all(daemons.map((d) => d.stop()));
    daemons = [];
    const report = await checkInvariants({ rows: await readPgLedger(url), received: load.received, auditFiles: audits, auditEnv: token.env });
    expect(report.violations).toEqual([]);
    expect(report.received).toBe(SESSIONS + DETERMINISTIC);
    expect(report.auditSigned).toBe(SESSIONS + DETERMINISTIC);
    expect(report.usedRows).toBe(SESSIONS + DETERMINISTIC);
    console.log(`replicas-10k: ${SESSIONS} sessions in ${seconds.toFixed(1)} s (${(SESSIONS / seconds).toFixed(0)}/s), ledger rows ${report.rows}, audit records ${report.auditRecords}`);
  }, 720_000);
});
