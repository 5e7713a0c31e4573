// SQLite schema and migrations for the nonce ledger (DESIGN.md section 3).
//
// Migrations are append-only: a released version is never edited, a change is a new entry.
// `schema_migrations` records what has been applied; a ledger written by a newer daemon is
// refused rather than guessed at.

import type Database from 'better-sqlite3';
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
    sql: `
      CREATE TABLE nonces (
        id         INTEGER PRIMARY KEY,
        key_id     TEXT    NOT NULL CHECK (length(key_id) BETWEEN 1 AND 1024),
        pubnonce   BLOB    NOT NULL UNIQUE CHECK (length(pubnonce) = 66),
        session_id BLOB    UNIQUE CHECK (session_id IS NULL OR length(session_id) = 32),
        path       TEXT    NOT NULL CHECK (path IN ('random', 'deterministic')),
        created_at INTEGER NOT NULL,
        used_at    INTEGER,
        digest     BLOB    CHECK (digest IS NULL OR length(digest) = 32),
        psig       BLOB    CHECK (psig IS NULL OR length(psig) = 32),
        CHECK ((used_at IS NULL) = (digest IS NULL)),
        CHECK (psig IS NULL OR digest IS NOT NULL),
        CHECK ((path = 'random') = (session_id IS NOT NULL)),
        CHECK (path = 'random' OR psig IS NOT NULL)
      ) STRICT;
    `,
  },
  {
    version: 2,
    // The audit log's anchor: the last durable head of each audit chain (see types.ts).
    sql: `
      CREATE TABLE audit_heads (
        chain      TEXT    PRIMARY KEY CHECK (length(chain) = 32),
        seq        INTEGER NOT NULL CHECK (seq >= 1),
        mac        TEXT    NOT NULL CHECK (length(mac) = 64),
        updated_at INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 3,
    // Signing-policy velocity: one row per transaction charged to a window (a retry of the same
    // txid is not charged again), and the window's running total, updated only while it stays
    // within the rule's limit (the check and the charge are one statement).
    sql: `
      CREATE TABLE velocity_charges (
        key_id       TEXT    NOT NULL,
        rule         TEXT    NOT NULL,
        period_start INTEGER NOT NULL,
        txid         BLOB    NOT NULL CHECK (length(txid) = 32),
        amount       INTEGER NOT NULL CHECK (amount >= 0),
        charged_at   INTEGER NOT NULL,
        PRIMARY KEY (key_id, rule, period_start, txid)
      ) STRICT;
      CREATE TABLE velocity_totals (
        key_id       TEXT    NOT NULL,
        rule         TEXT    NOT NULL,
        period_start INTEGER NOT NULL,
        spent        INTEGER NOT NULL CHECK (spent >= 0),
        PRIMARY KEY (key_id, rule, period_start)
      ) STRICT;
    `,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Bring the schema up to date inside one write transaction; returns the resulting version. */
export function migrate(db: Database.Database, nowMs: number): number {
  const run = db.transaction(() => {
    db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    INTEGER PRIMARY KEY,
      applied_at INTEGER NOT NULL
    ) STRICT`);
    const row = db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number | null };
    const current = row.v ?? 0;
    if (current > LATEST_SCHEMA_VERSION) {
      throw new LedgerError(
        `ledger schema version ${current} is newer than this daemon supports (${LATEST_SCHEMA_VERSION})`,
      );
    }
    const record = db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)');
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      db.exec(m.sql);
      record.run(m.version, nowMs);
    }
    return LATEST_SCHEMA_VERSION;
  });
  return run.immediate();
}
