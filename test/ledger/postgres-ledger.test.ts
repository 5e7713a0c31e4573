// The PostgreSQL nonce ledger against a real PostgreSQL cluster (scripts/postgres.sh), one
// cluster for this file and a fresh database per test: the shared contract (contract.ts),
// where a second handle is a second pool as another replica would open, then what only
// PostgreSQL has (server settings, the server going away, row locks, passwords in URLs).
// Concurrent first opens (the advisory-lock migration) are in the contract.
import { inspect } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LedgerUnavailableError, openLedger, PostgresLedger } from '../../src/ledger/index.js';
import { freshNonce, ledgerContract, rand, useLedger, type LedgerStore } from './contract.js';
import { dbName, PgCluster } from './pg-harness.js';

let cluster: PgCluster;

beforeAll(async () => {
  cluster = await PgCluster.start();
});

afterAll(async () => {
  await cluster?.destroy();
});

interface PgStore extends LedgerStore {
  readonly url: string;
  readonly db: string;
}

async function pgStore(): Promise<PgStore> {
  const url = await cluster.createDatabase();
  const db = dbName(url);
  return {
    url,
    db,
    open: () => openLedger(url),
    query: (text) => cluster.sql(db, text),
    destroy: async () => undefined, // the databases go with the cluster, in afterAll
  };
}

ledgerContract('PostgreSQL', pgStore);

describe('PostgreSQL only', () => {
  const t = useLedger(pgStore);

  describe('opening', () => {
    it('migrates the ledger columns, and the database itself enforces uniqueness and row shapes', async () => {
      const { db } = t.store;
      const cols = await cluster.sql<{ column_name: string }>(
        db,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'nonces' ORDER BY ordinal_position",
      );
      expect(cols.map((c) => c.column_name)).toEqual([
        'id', 'key_id', 'pubnonce', 'session_id', 'path', 'created_at', 'used_at', 'digest', 'psig',
      ]);
      // Straight to the database, bypassing the ledger: the constraints are PostgreSQL's own.
      const p = Buffer.from(rand(66));
      const insert = `INSERT INTO nonces (key_id, pubnonce, path, created_at, used_at, digest, psig)
                      VALUES ('k', $1, 'deterministic', 0, 0, $2, $3)`;
      await cluster.sql(db, insert, [p, Buffer.from(rand(32)), Buffer.from(rand(32))]);
      await expect(cluster.sql(db, insert, [p, Buffer.from(rand(32)), Buffer.from(rand(32))])).rejects.toMatchObject({
        code: '23505',
      });
      await expect(
        cluster.sql(db, `INSERT INTO nonces (key_id, pubnonce, path, created_at) VALUES ('k', $1, 'deterministic', 0)`, [
          Buffer.from(rand(66)),
        ]),
      ).rejects.toMatchObject({ code: '23514' });
    });

    it('opens the same database by a postgresql:// URL, keeping its rows', async () => {
      const e = freshNonce();
      await t.ledger.recordNonce(e);
      await t.ledger.close();
      t.ledger = await openLedger(t.store.url.replace(/^postgres:/, 'postgresql:'));
      expect((await t.ledger.findByPubnonce(e.pubnonce))?.keyId).toBe('alice');
    });

    it('refuses a server that acknowledges commits before they are flushed', async () => {
      const other = await cluster.createDatabase('async');
      await cluster.sql('postgres', `ALTER DATABASE ${dbName(other)} SET synchronous_commit = off`);
      await expect(openLedger(other)).rejects.toThrow(/synchronous_commit/);
    });

    it('answers unavailable when the server cannot be reached, without quoting the password', async () => {
      const secret = 'pa55-w0rd-never-logged';
      const err = await openLedger(`postgres://postgres:${secret}@127.0.0.1:1/x`).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LedgerUnavailableError);
      expect(inspect(err, { depth: 10 })).not.toContain(secret);
    });
  });

  describe('faults: fail closed', () => {
    it('a statement stuck behind a row lock times out as unavailable', async () => {
      await t.ledger.close();
      t.ledger = await PostgresLedger.open({ url: t.store.url, statementTimeoutMs: 300 });
      const e = freshNonce();
      await t.ledger.recordNonce(e);
      const holder = new pg.Client({ connectionString: t.store.url });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT * FROM nonces WHERE pubnonce = $1 FOR UPDATE', [Buffer.from(e.pubnonce)]);
        const err = await t.ledger.markUsed(e.pubnonce, rand(32)).catch((x: unknown) => x);
        expect(err).toBeInstanceOf(LedgerUnavailableError);
        expect((err as LedgerUnavailableError).dbCode).toBe('57014');
        expect(await t.ledger.healthy()).toBe(true); // a row lock is not an outage
      } finally {
        await holder.query('ROLLBACK');
        await holder.end();
      }
      expect((await t.ledger.findByPubnonce(e.pubnonce))?.usedAtMs).toBeNull();
    });

    // Last in the file: it stops the shared cluster, then starts it again.
    it('answers unavailable while the database is down, and recovers by itself when it returns', async () => {
      await t.ledger.close();
      const secret = 'hunter2-not-in-errors';
      t.ledger = await PostgresLedger.open({ url: cluster.url(t.store.db, secret), connectTimeoutMs: 1000 });
      const e = freshNonce();
      const d = rand(32);
      await t.ledger.recordNonce(e);
      expect(await t.ledger.healthy()).toBe(true);
      await cluster.stop();
      try {
        expect(await t.ledger.healthy()).toBe(false);
        const errs = [
          await t.ledger.markUsed(e.pubnonce, d).catch((x: unknown) => x),
          await t.ledger.recordNonce(freshNonce()).catch((x: unknown) => x),
          await t.ledger
            .recordDeterministic({ keyId: 'b', pubnonce: rand(66), digest: rand(32), psig: rand(32) })
            .catch((x: unknown) => x),
          await t.ledger.findByPubnonce(e.pubnonce).catch((x: unknown) => x),
        ];
        for (const err of errs) {
          expect(err).toBeInstanceOf(LedgerUnavailableError);
          expect(inspect(err, { depth: 10 })).not.toContain(secret);
        }
      } finally {
        await cluster.restart();
      }
      // Same ledger object, no reopen: the pool reconnects.
      expect(await t.ledger.healthy()).toBe(true);
      expect((await t.ledger.findByPubnonce(e.pubnonce))?.usedAtMs).toBeNull();
      expect(await t.ledger.markUsed(e.pubnonce, d)).toEqual({ outcome: 'marked' });
      await t.ledger.recordNonce(freshNonce());
    });
  });
});
