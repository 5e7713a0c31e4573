// The PostgreSQL nonce ledger against a real PostgreSQL cluster (scripts/postgres.sh), one
// cluster for this file and a fresh database per test. The semantic tests mirror
// sqlite-ledger.test.ts; the replica tests open two ledgers (two pools, as two daemons
// would) on one database.
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  LedgerError,
  LedgerUnavailableError,
  NonceCollisionError,
  NonceNotRecordedError,
  NonceReuseError,
  openLedger,
  PostgresLedger,
  type NonceLedger,
} from '../../src/ledger/index.js';
import { dbName, PgCluster } from './pg-harness.js';

const rand = (n: number) => new Uint8Array(randomBytes(n));
const fresh = () => ({ keyId: 'alice', pubnonce: rand(66), sessionId: rand(32) });

let cluster: PgCluster;
let url: string;
let db: string;
let ledger: NonceLedger;
const extra: NonceLedger[] = [];

beforeAll(async () => {
  cluster = await PgCluster.start();
});

afterAll(async () => {
  await cluster?.destroy();
});

beforeEach(async () => {
  url = await cluster.createDatabase();
  db = dbName(url);
  ledger = await openLedger(url);
});

afterEach(async () => {
  await ledger.close();
  await Promise.all(extra.splice(0).map((l) => l.close()));
});

/** Another replica's ledger on the same database. */
async function replica(): Promise<NonceLedger> {
  const l = await openLedger(url);
  extra.push(l);
  return l;
}

async function count(): Promise<number> {
  const rows = await cluster.sql<{ c: string }>(db, 'SELECT count(*) AS c FROM nonces');
  return Number(rows[0]!.c);
}

describe('opening', () => {
  it('migrates the schema, records its version, and the database enforces uniqueness', async () => {
    expect(await cluster.sql(db, 'SELECT version FROM schema_migrations')).toEqual([{ version: 1 }]);
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

  it('replicas opening at once migrate exactly once', async () => {
    const other = await cluster.createDatabase('race');
    const ledgers = await Promise.all(Array.from({ length: 6 }, () => openLedger(other)));
    await Promise.all(ledgers.map((l) => l.close()));
    expect(await cluster.sql(dbName(other), 'SELECT version FROM schema_migrations')).toEqual([{ version: 1 }]);
  });

  it('reopens an existing ledger without re-running migrations, keeping its rows', async () => {
    const e = fresh();
    await ledger.recordNonce(e);
    await ledger.close();
    ledger = await openLedger(url.replace(/^postgres:/, 'postgresql:'));
    expect((await ledger.findByPubnonce(e.pubnonce))?.keyId).toBe('alice');
    expect(await cluster.sql(db, 'SELECT version FROM schema_migrations')).toEqual([{ version: 1 }]);
  });

  it('refuses a ledger written by a newer schema', async () => {
    await cluster.sql(db, 'INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)');
    await expect(openLedger(url)).rejects.toThrow(/newer than this daemon/);
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

describe('NonceGen rows', () => {
  it('records an unused random-path row', async () => {
    const e = fresh();
    await ledger.recordNonce(e);
    const row = await ledger.findByPubnonce(e.pubnonce);
    expect(row).toMatchObject({ keyId: 'alice', path: 'random', usedAtMs: null, digest: null, psig: null });
    expect(row?.sessionId).toEqual(e.sessionId);
    expect(row?.createdAtMs).toBeTypeOf('number');
    expect((await ledger.findBySession(e.sessionId))?.pubnonce).toEqual(e.pubnonce);
    expect(await ledger.findBySession(rand(32))).toBeNull();
  });

  it('refuses a repeated pubnonce or session id as a collision, also concurrently across replicas', async () => {
    const e = fresh();
    await ledger.recordNonce(e);
    await expect(ledger.recordNonce({ ...e, sessionId: rand(32) })).rejects.toBeInstanceOf(NonceCollisionError);
    await expect(ledger.recordNonce({ ...e, pubnonce: rand(66) })).rejects.toBeInstanceOf(NonceCollisionError);

    const b = await replica();
    const p = rand(66);
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => (i % 2 ? b : ledger).recordNonce({ keyId: 'a', pubnonce: p, sessionId: rand(32) })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(NonceCollisionError);
  });

  it('commits many concurrent inserts, each settled after its commit', async () => {
    const entries = Array.from({ length: 1000 }, fresh);
    await Promise.all(entries.map((e) => ledger.recordNonce(e)));
    expect(await count()).toBe(1000);
  });

  it('rejects malformed rows rather than storing them', async () => {
    await expect(ledger.recordNonce({ keyId: 'a', pubnonce: rand(65), sessionId: rand(32) })).rejects.toThrow(
      /pubnonce must be 66 bytes/,
    );
    const bad = await ledger.recordNonce({ keyId: '', pubnonce: rand(66), sessionId: rand(32) }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(LedgerError);
    expect(bad).not.toBeInstanceOf(LedgerUnavailableError);
    expect(String(bad)).toMatch(/constraint/);
    expect(await count()).toBe(0);
  });
});

describe('Sign: used-marking', () => {
  it('marks once, replays the same digest, refuses another digest', async () => {
    const e = fresh();
    const d1 = rand(32);
    const psig = rand(32);
    await ledger.recordNonce(e);
    expect(await ledger.markUsed(e.pubnonce, d1)).toEqual({ outcome: 'marked' });
    expect(await ledger.markUsed(e.pubnonce, d1)).toEqual({ outcome: 'replay', psig: null });
    await ledger.storePsig(e.pubnonce, d1, psig);
    expect(await ledger.markUsed(e.pubnonce, d1)).toEqual({ outcome: 'replay', psig });
    await expect(ledger.markUsed(e.pubnonce, rand(32))).rejects.toBeInstanceOf(NonceReuseError);

    const row = await ledger.findByPubnonce(e.pubnonce);
    expect(row?.digest).toEqual(d1);
    expect(row?.psig).toEqual(psig);
    expect(row?.usedAtMs).toBeTypeOf('number');
  });

  it('lets exactly one of many concurrent markUsed calls with different digests win, across replicas', async () => {
    const b = await replica();
    const e = fresh();
    await ledger.recordNonce(e);
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) => (i % 2 ? b : ledger).markUsed(e.pubnonce, rand(32))),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(NonceReuseError);
  });

  it('same digest from two replicas at once: one marks, the other replays', async () => {
    const b = await replica();
    const e = fresh();
    const d = rand(32);
    await ledger.recordNonce(e);
    const results = await Promise.all([ledger.markUsed(e.pubnonce, d), b.markUsed(e.pubnonce, d)]);
    expect(results.map((r) => r.outcome).sort()).toEqual(['marked', 'replay']);
  });

  it('refuses to mark or store for an unknown nonce', async () => {
    await expect(ledger.markUsed(rand(66), rand(32))).rejects.toBeInstanceOf(NonceNotRecordedError);
    await expect(ledger.storePsig(rand(66), rand(32), rand(32))).rejects.toBeInstanceOf(NonceNotRecordedError);
  });

  it('stores a psig idempotently and only under the used digest', async () => {
    const e = fresh();
    const d = rand(32);
    const psig = rand(32);
    await ledger.recordNonce(e);
    await expect(ledger.storePsig(e.pubnonce, d, psig)).rejects.toThrow(/not used with this signing context/);
    await ledger.markUsed(e.pubnonce, d);
    await expect(ledger.storePsig(e.pubnonce, rand(32), psig)).rejects.toThrow(/not used with this signing context/);
    await ledger.storePsig(e.pubnonce, d, psig);
    await ledger.storePsig(e.pubnonce, d, psig);
    await expect(ledger.storePsig(e.pubnonce, d, rand(32))).rejects.toThrow(/different psig/);
    expect((await ledger.findByPubnonce(e.pubnonce))?.psig).toEqual(psig);
  });
});

describe('DeterministicSign rows', () => {
  it('records, replays the same digest, refuses another digest', async () => {
    const pubnonce = rand(66);
    const digest = rand(32);
    const psig = rand(32);
    expect(await ledger.recordDeterministic({ keyId: 'bob', pubnonce, digest, psig })).toEqual({ outcome: 'recorded' });
    expect(await ledger.recordDeterministic({ keyId: 'bob', pubnonce, digest, psig })).toEqual({ outcome: 'replay', psig });
    await expect(
      ledger.recordDeterministic({ keyId: 'bob', pubnonce, digest: rand(32), psig: rand(32) }),
    ).rejects.toBeInstanceOf(NonceReuseError);
    const row = await ledger.findByPubnonce(pubnonce);
    expect(row).toMatchObject({ path: 'deterministic', sessionId: null, keyId: 'bob' });
    expect(row?.digest).toEqual(digest);
    expect(row?.usedAtMs).toBe(row?.createdAtMs);
  });

  it('identical records from two replicas at once: one row, one recorded, the rest replay', async () => {
    const b = await replica();
    const entry = { keyId: 'bob', pubnonce: rand(66), digest: rand(32), psig: rand(32) };
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? b : ledger).recordDeterministic(entry)));
    expect(results.filter((r) => r.outcome === 'recorded')).toHaveLength(1);
    for (const r of results) if (r.outcome === 'replay') expect(r.psig).toEqual(entry.psig);
    expect(await count()).toBe(1);
  });

  it('refuses a deterministic record on a random-path pubnonce', async () => {
    const e = fresh();
    await ledger.recordNonce(e);
    await expect(
      ledger.recordDeterministic({ keyId: 'alice', pubnonce: e.pubnonce, digest: rand(32), psig: rand(32) }),
    ).rejects.toBeInstanceOf(NonceReuseError);
  });

  it('refuses markUsed on a deterministic pubnonce with another digest', async () => {
    const pubnonce = rand(66);
    await ledger.recordDeterministic({ keyId: 'bob', pubnonce, digest: rand(32), psig: rand(32) });
    await expect(ledger.markUsed(pubnonce, rand(32))).rejects.toBeInstanceOf(NonceReuseError);
  });
});

describe('faults: fail closed', () => {
  it('answers unavailable after close, and reports unhealthy', async () => {
    const e = fresh();
    await ledger.recordNonce(e);
    expect(await ledger.healthy()).toBe(true);
    await ledger.close();
    expect(await ledger.healthy()).toBe(false);
    await expect(ledger.markUsed(e.pubnonce, rand(32))).rejects.toBeInstanceOf(LedgerUnavailableError);
    await expect(ledger.recordNonce(fresh())).rejects.toBeInstanceOf(LedgerUnavailableError);
  });

  it('a statement stuck behind a row lock times out as unavailable', async () => {
    await ledger.close();
    ledger = await PostgresLedger.open({ url, statementTimeoutMs: 300 });
    const e = fresh();
    await ledger.recordNonce(e);
    const holder = new (await import('pg')).default.Client({ connectionString: url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT * FROM nonces WHERE pubnonce = $1 FOR UPDATE', [Buffer.from(e.pubnonce)]);
      const err = await ledger.markUsed(e.pubnonce, rand(32)).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(LedgerUnavailableError);
      expect((err as LedgerUnavailableError).dbCode).toBe('57014');
      expect(await ledger.healthy()).toBe(true); // a row lock is not an outage
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    expect((await ledger.findByPubnonce(e.pubnonce))?.usedAtMs).toBeNull();
  });

  // Last in the file: it stops the shared cluster, then starts it again.
  it('answers unavailable while the database is down, and recovers by itself when it returns', async () => {
    await ledger.close();
    const secret = 'hunter2-not-in-errors';
    ledger = await PostgresLedger.open({ url: cluster.url(db, secret), connectTimeoutMs: 1000 });
    const e = fresh();
    const d = rand(32);
    await ledger.recordNonce(e);
    expect(await ledger.healthy()).toBe(true);
    await cluster.stop();
    try {
      expect(await ledger.healthy()).toBe(false);
      const errs = [
        await ledger.markUsed(e.pubnonce, d).catch((x: unknown) => x),
        await ledger.recordNonce(fresh()).catch((x: unknown) => x),
        await ledger
          .recordDeterministic({ keyId: 'b', pubnonce: rand(66), digest: rand(32), psig: rand(32) })
          .catch((x: unknown) => x),
        await ledger.findByPubnonce(e.pubnonce).catch((x: unknown) => x),
      ];
      for (const err of errs) {
        expect(err).toBeInstanceOf(LedgerUnavailableError);
        expect(inspect(err, { depth: 10 })).not.toContain(secret);
      }
    } finally {
      await cluster.restart();
    }
    // Same ledger object, no reopen: the pool reconnects.
    expect(await ledger.healthy()).toBe(true);
    expect((await ledger.findByPubnonce(e.pubnonce))?.usedAtMs).toBeNull();
    expect(await ledger.markUsed(e.pubnonce, d)).toEqual({ outcome: 'marked' });
    await ledger.recordNonce(fresh());
  });
});
