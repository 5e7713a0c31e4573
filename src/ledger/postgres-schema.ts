// PostgreSQL schema and migrations for the nonce ledger (DESIGN.md section 3): the same
// table, constraints and meaning as the SQLite schema (sqlite-schema.ts).
//
// Migrations are append-only: a released version is never edited, a change is a new entry.
// Several replicas may start at once against one database, so migrate() runs in one
// transaction holding a transaction-scoped advisory lock: one replica applies, the others
// wait, then find nothing left to do.

import type { PoolClient } from 'pg';
import { LedgerError } from './errors.js';

interface Migration {
  readonly version: number;
  readonly sql: string;
}

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    // One row per pubnonce. The CHECKs keep rows in one of three shapes: random unused
    // (no digest), random used (digest, maybe psig), deterministic (digest and psig at once).
    // Times are unix milliseconds, as in SQLite.
    sql: `
      CREATE TABLE nonces (
        id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        key_id     TEXT   NOT NULL CHECK (char_length(key_id) BETWEEN 1 AND 1024),
        pubnonce   BYTEA  NOT NULL UNIQUE CHECK (octet_length(pubnonce) = 66),
        session_id BYTEA  UNIQUE CHECK (session_id IS NULL OR octet_length(session_id) = 32),
        path       TEXT   NOT NULL CHECK (path IN ('random', 'deterministic')),
        created_at BIGINT NOT NULL,
        used_at    BIGINT,
        digest     BYTEA  CHECK (digest IS NULL OR octet_length(digest) = 32),
        psig       BYTEA  CHECK (psig IS NULL OR octet_length(psig) = 32),
        CHECK ((used_at IS NULL) = (digest IS NULL)),
        CHECK (psig IS NULL OR digest IS NOT NULL),
        CHECK ((path = 'random') = (session_id IS NOT NULL)),
        CHECK (path = 'random' OR psig IS NOT NULL)
      );
    `,
  },
  {
    version: 2,
    // The audit log's anchor: the last durable head of each audit chain (see types.ts).
    sql: `
      CREATE TABLE audit_heads (
        chain      TEXT   PRIMARY KEY CHECK (char_length(chain) = 32),
        seq        BIGINT NOT NULL CHECK (seq >= 1),
        mac        TEXT   NOT NULL CHECK (char_length(mac) = 64),
        updated_at BIGINT NOT NULL
      );
    `,
  },
  {
    version: 3,
    // Signing-policy velocity, as in SQLite: charges once per txid, and a running total per
    // window whose conditional UPDATE (row-locked) is the atomic check-and-charge.
    sql: `
      CREATE TABLE velocity_charges (
        key_id       TEXT   NOT NULL,
        rule         TEXT   NOT NULL,
        period_start BIGINT NOT NULL,
        txid         BYTEA  NOT NULL CHECK (octet_length(txid) = 32),
        amount       BIGINT NOT NULL CHECK (amount >= 0),
        charged_at   BIGINT NOT NULL,
        PRIMARY KEY (key_id, rule, period_start, txid)
      );
      CREATE TABLE velocity_totals (
        key_id       TEXT   NOT NULL,
        rule         TEXT   NOT NULL,
        period_start BIGINT NOT NULL,
        spent        BIGINT NOT NULL CHECK (spent >= 0),
        PRIMARY KEY (key_id, rule, period_start)
      );
    `,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** pg_advisory_xact_lock key: "musig2" read as a number, so it is ours and stable. */
const MIGRATION_LOCK_KEY = 0x6d7573696732;

/** Bring the schema up to date inside one transaction; returns the resulting version. */
export async function migrate(client: PoolClient, nowMs: number): Promise<number> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    INTEGER PRIMARY KEY,
      applied_at BIGINT  NOT NULL
    )`);
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
    const current = rows[0]?.v ?? 0;
    if (current > LATEST_SCHEMA_VERSION) {
      throw new LedgerError(
        `ledger schema version ${current} is newer than this daemon supports (${LATEST_SCHEMA_VERSION})`,
      );
    }
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [m.version, nowMs]);
    }
    await client.query('COMMIT');
    return LATEST_SCHEMA_VERSION;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
