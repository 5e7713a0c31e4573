// Velocity across replicas: two daemon processes under one signing policy share ONE PostgreSQL
// ledger, so they share one budget. 50 concurrent transactions, half to each replica, against a
// daily budget for exactly 10: exactly 10 are signed, and the ledger holds exactly the budget.
// A restarted replica still sees the budget spent.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, SignerClient } from '../../src/client/index.js';
import { periodStart } from '../../src/policy/index.js';
import { combinePsbts } from '../../src/psbt/index.js';
import { dbName, PgCluster } from '../ledger/pg-harness.js';
import { p2tr } from '../policy/helpers.js';
import { changeScript, walletDescriptor, walletTx } from '../signer/policy-fixture.js';
import { createKey, Daemon, makeToken, removeToken } from './harness.js';
import type { Token } from './harness.js';

let cluster: PgCluster;
let db: string;
let token: Token;
let ledgerUrl: string;
let policyFile: string;
let wallet: ReturnType<typeof walletDescriptor>;
const daemons: Daemon[] = [];
const clients: SignerClient[] = [];

beforeAll(async () => {
  cluster = await PgCluster.start();
  ledgerUrl = await cluster.createDatabase('policy');
  db = dbName(ledgerUrl);
  token = await makeToken('musig2-policy-replicas-');
  const keys = [await createKey(token, 'ours'), await createKey(token, 'a'), await createKey(token, 'b')];
  wallet = walletDescriptor(keys);
  policyFile = join(token.dir, 'policy.json');
  await writeFile(
    policyFile,
    JSON.stringify({ version: 1, network: 'regtest', keys: { ours: { wallets: [wallet.text], rules: [{ name: 'daily', per_period: { amount: 100_000, period_seconds: 86_400 } }] } } }),
  );
  const started = await Promise.all([
    Daemon.start(token, { ledger: `sqlite:${join(token.dir, 'helper.db')}` }),
    Daemon.start(token, { ledger: ledgerUrl, args: ['--policy', policyFile] }),
    Daemon.start(token, { ledger: ledgerUrl, args: ['--policy', policyFile] }),
  ]);
  daemons.push(...started);
  clients.push(...started.map((d) => new SignerClient(d.address)));
}, 120_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all(daemons.map((d) => d.stop()));
  await removeToken(token);
  await cluster?.destroy();
});

describe('velocity shared by two replicas on one PostgreSQL ledger', () => {
  it('50 concurrent transactions against a budget for 10: exactly 10 signed across both; a restarted replica keeps the spent budget', async () => {
    const [helper, r1, r2] = clients as [SignerClient, SignerClient, SignerClient];
    const psbts = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const t = walletTx(wallet.desc, [100_000n], [{ script: p2tr(0x42), amount: 10_000n }, { script: changeScript(wallet.desc, 0), amount: 89_000n }], `replica ${i}`);
        const nonces = await Promise.all(['a', 'b'].map((keyId) => helper.psbtNonceGen({ keyId, psbt: t.psbt })));
        return combinePsbts([t.psbt, ...nonces.map((n) => n.psbt)]);
      }),
    );
    const results = await Promise.allSettled(psbts.map((psbt, i) => (i % 2 === 0 ? r1 : r2).psbtDeterministicSign({ keyId: 'ours', psbt })));
    const signed = results.filter((r) => r.status === 'fulfilled');
    expect(signed).toHaveLength(10);
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as ClientError).errorInfo?.reason).toBe('POLICY_VELOCITY');
    }
    const start = periodStart(Math.floor(Date.now() / 1000), 86_400);
    const [total] = await cluster.sql<{ spent: string }>(db, 'SELECT spent FROM velocity_totals WHERE key_id = $1 AND rule = $2 AND period_start = $3', ['ours', 'daily', start]);
    expect(total?.spent).toBe('100000');
    const [charges] = await cluster.sql<{ n: string }>(db, 'SELECT count(*) AS n FROM velocity_charges');
    expect(charges?.n).toBe('10');

    // Restart the second replica: the budget is still spent.
    await daemons[2]!.stop();
    clients[2]!.close();
    daemons[2] = await Daemon.start(token, { ledger: ledgerUrl, args: ['--policy', policyFile] });
    clients[2] = new SignerClient(daemons[2].address);
    const refused = await clients[2].psbtDeterministicSign({ keyId: 'ours', psbt: psbts.find((_, i) => results[i]!.status === 'rejected')! }).then(
      () => undefined,
      (e: unknown) => e as ClientError,
    );
    expect(refused?.errorInfo?.reason).toBe('POLICY_VELOCITY');
  }, 120_000);
});
