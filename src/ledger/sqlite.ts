// The embedded nonce ledger: better-sqlite3 in WAL mode with synchronous=FULL.
//
// Why FULL: in WAL mode, NORMAL skips the fsync at commit, so a power cut can roll back
// the last commits. A "used" mark rolled back after its signature left the daemon would
// defeat the ledger, so every commit reaches the disk before the caller may sign.
//
// better-sqlite3 is synchronous. Lock waits must not freeze the event loop, so SQLite's own
// busy handler is off (busy_timeout = 0) and a busy database is retried here with short
// async sleeps until a deadline, after which the caller gets LedgerUnavailableError.
//
// NonceGen inserts are group-committed: inserts that arrive in the same event-loop turn
// share one transaction (one fsync), and each caller's promise settles only after that
// commit. Used-marking stays one conditional UPDATE per call.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import {
  LedgerError,
  LedgerUnavailableError,
  NonceCollisionError,
  NonceNotRecordedError,
  NonceReuseError,
} from './errors.js';
import { migrate } from './sqlite-schema.js';
import type { MarkUsedResult, NonceLedger, NonceRecord, RecordDeterministicResult } from './types.js';

export interface SqliteLedgerOptions {
  /** Database file path; parent directories are created. `:memory:` for a throwaway ledger. */
  readonly path: string;
  /** How long to keep retrying while another connection holds the write lock. Default 2000. */
  readonly busyTimeoutMs?: number;
  /** Clock for created_at / used_at (unix ms). Default Date.now. */
  readonly now?: () => number;
}

export const DEFAULT_BUSY_TIMEOUT_MS = 2000;
/** Upper bound on rows per group commit, so one transaction never grows without limit. */
const MAX_BATCH = 1000;

interface PendingInsert {
  readonly keyId: string;
  readonly pubnonce: Buffer;
  readonly sessionId: Buffer;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

interface Row {
  key_id: string;
  pubnonce: Buffer;
  session_id: Buffer | null;
  path: 'random' | 'deterministic';
  created_at: number;
  used_at: number | null;
  digest: Buffer | null;
  psig: Buffer | null;
}

export class SqliteLedger implements NonceLedger {
  private readonly db: Database.Database;
  private readonly busyTimeoutMs: number;
  private readonly now: () => number;
  private closed = false;
  private pending: PendingInsert[] = [];
  private flushScheduled = false;
  private inFlightFlushes = new Set<Promise<void>>();

  private readonly stmts: {
    insertRandom: Database.Statement;
    insertDeterministic: Database.Statement;
    markUsed: Database.Statement;
    storePsig: Database.Statement;
    byPubnonce: Database.Statement;
    bySession: Database.Statement;
  };
  private readonly insertBatch: Database.Transaction<(batch: PendingInsert[], at: number) => boolean[]>;

  private constructor(db: Database.Database, opts: SqliteLedgerOptions) {
    this.db = db;
    this.busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    this.now = opts.now ?? Date.now;
    // DO NOTHING without a target covers every uniqueness constraint (pubnonce and
    // session_id); CHECK failures still throw, so a malformed row is never silently dropped.
    this.stmts = {
      insertRandom: db.prepare(
        `INSERT INTO nonces (key_id, pubnonce, session_id, path, created_at)
         VALUES (?, ?, ?, 'random', ?) ON CONFLICT DO NOTHING`,
      ),
      insertDeterministic: db.prepare(
        `INSERT INTO nonces (key_id, pubnonce, session_id, path, created_at, used_at, digest, psig)
         VALUES (?, ?, NULL, 'deterministic', ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ),
      markUsed: db.prepare(
        'UPDATE nonces SET used_at = ?, digest = ? WHERE pubnonce = ? AND used_at IS NULL',
      ),
      storePsig: db.prepare(
        'UPDATE nonces SET psig = ? WHERE pubnonce = ? AND digest = ? AND psig IS NULL',
      ),
      byPubnonce: db.prepare('SELECT * FROM nonces WHERE pubnonce = ?'),
      bySession: db.prepare('SELECT * FROM nonces WHERE session_id = ?'),
    };
    this.insertBatch = db.transaction((batch: PendingInsert[], at: number) =>
      batch.map((e) => this.stmts.insertRandom.run(e.keyId, e.pubnonce, e.sessionId, at).changes === 1),
    );
  }

  /** Open (creating if needed) a ledger file: WAL, synchronous=FULL, schema migrated. */
  static open(opts: SqliteLedgerOptions): SqliteLedger {
    const busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new LedgerError('busy timeout must be a non-negative integer of milliseconds');
    }
    const memory = opts.path === ':memory:';
    let db: Database.Database | undefined;
    try {
      if (!memory) mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
      db = new Database(opts.path);
      db.pragma('busy_timeout = 0');
      const mode = db.pragma('journal_mode = WAL', { simple: true }) as string;
      if (!memory && mode.toLowerCase() !== 'wal') {
        throw new LedgerError(`ledger could not enter WAL mode (got ${mode})`);
      }
      db.pragma('synchronous = FULL');
      migrate(db, (opts.now ?? Date.now)());
      return new SqliteLedger(db, opts);
    } catch (err) {
      db?.close();
      throw toLedgerError('open', err);
    }
  }

  async recordNonce(entry: { keyId: string; pubnonce: Uint8Array; sessionId: Uint8Array }): Promise<void> {
    if (this.closed) throw closedError();
    checkLength('pubnonce', entry.pubnonce, 66);
    checkLength('sessionId', entry.sessionId, 32);
    return new Promise<void>((resolve, reject) => {
      this.pending.push({
        keyId: entry.keyId,
        pubnonce: toBuffer(entry.pubnonce),
        sessionId: toBuffer(entry.sessionId),
        resolve,
        reject,
      });
      this.scheduleFlush();
    });
  }

  async markUsed(pubnonce: Uint8Array, digest: Uint8Array): Promise<MarkUsedResult> {
    checkLength('pubnonce', pubnonce, 66);
    checkLength('digest', digest, 32);
    const p = toBuffer(pubnonce);
    const d = toBuffer(digest);
    return this.retrying('markUsed', () => {
      if (this.stmts.markUsed.run(this.now(), d, p).changes === 1) return { outcome: 'marked' } as const;
      // Nothing changed: the row is missing or already used. A used row never reverts, so
      // reading it back after the failed update is race-free.
      const row = this.stmts.byPubnonce.get(p) as Row | undefined;
      if (!row) throw new NonceNotRecordedError(pubnonce);
      if (row.digest && row.digest.equals(d)) {
        return { outcome: 'replay', psig: row.psig ? new Uint8Array(row.psig) : null } as const;
      }
      throw new NonceReuseError(pubnonce);
    });
  }

  async storePsig(pubnonce: Uint8Array, digest: Uint8Array, psig: Uint8Array): Promise<void> {
    checkLength('pubnonce', pubnonce, 66);
    checkLength('digest', digest, 32);
    checkLength('psig', psig, 32);
    const p = toBuffer(pubnonce);
    const d = toBuffer(digest);
    const s = toBuffer(psig);
    return this.retrying('storePsig', () => {
      if (this.stmts.storePsig.run(s, p, d).changes === 1) return;
      const row = this.stmts.byPubnonce.get(p) as Row | undefined;
      if (!row) throw new NonceNotRecordedError(pubnonce);
      if (!row.digest || !row.digest.equals(d)) {
        throw new LedgerError('cannot store a psig: the nonce is not used with this signing context');
      }
      if (row.psig && row.psig.equals(s)) return; // idempotent retry
      throw new LedgerError('cannot store a psig: the nonce already holds a different psig');
    });
  }

  async recordDeterministic(entry: {
    keyId: string;
    pubnonce: Uint8Array;
    digest: Uint8Array;
    psig: Uint8Array;
  }): Promise<RecordDeterministicResult> {
    checkLength('pubnonce', entry.pubnonce, 66);
    checkLength('digest', entry.digest, 32);
    checkLength('psig', entry.psig, 32);
    const p = toBuffer(entry.pubnonce);
    const d = toBuffer(entry.digest);
    const s = toBuffer(entry.psig);
    return this.retrying('recordDeterministic', () => {
      const at = this.now();
      const inserted = this.stmts.insertDeterministic.run(entry.keyId, p, at, at, d, s).changes === 1;
      if (inserted) return { outcome: 'recorded' } as const;
      const row = this.stmts.byPubnonce.get(p) as Row | undefined;
      if (row && row.path === 'deterministic' && row.digest?.equals(d) && row.psig) {
        return { outcome: 'replay', psig: new Uint8Array(row.psig) } as const;
      }
      throw new NonceReuseError(entry.pubnonce);
    });
  }

  async findByPubnonce(pubnonce: Uint8Array): Promise<NonceRecord | null> {
    const p = toBuffer(pubnonce);
    return this.retrying('findByPubnonce', () => toRecord(this.stmts.byPubnonce.get(p) as Row | undefined));
  }

  async findBySession(sessionId: Uint8Array): Promise<NonceRecord | null> {
    const s = toBuffer(sessionId);
    return this.retrying('findBySession', () => toRecord(this.stmts.bySession.get(s) as Row | undefined));
  }

  /** Takes and releases the write lock, so a lock held elsewhere or a read-only file shows. */
  async healthy(): Promise<boolean> {
    if (this.closed) return false;
    try {
      this.db.exec('BEGIN IMMEDIATE');
      this.db.exec('ROLLBACK');
      return true;
    } catch {
      if (this.db.inTransaction) {
        try {
          this.db.exec('ROLLBACK');
        } catch {
          // the connection is already unusable; report unhealthy
        }
      }
      return false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Settle every accepted insert before closing, so no caller is left waiting.
    while (this.pending.length > 0 || this.inFlightFlushes.size > 0) {
      if (this.pending.length > 0) this.startFlush();
      await Promise.allSettled([...this.inFlightFlushes]);
    }
    this.closed = true;
    this.db.close();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      while (this.pending.length > 0) this.startFlush();
    });
  }

  private startFlush(): void {
    const batch = this.pending.splice(0, MAX_BATCH);
    const done = this.flush(batch).finally(() => this.inFlightFlushes.delete(done));
    this.inFlightFlushes.add(done);
  }

  /** One transaction for the whole batch; each entry learns whether its row went in. */
  private async flush(batch: PendingInsert[]): Promise<void> {
    let inserted: boolean[];
    try {
      inserted = await this.retrying('recordNonce', () => this.insertBatch.immediate(batch, this.now()));
    } catch (err) {
      for (const e of batch) e.reject(err);
      return;
    }
    batch.forEach((e, i) => (inserted[i] ? e.resolve() : e.reject(new NonceCollisionError(e.pubnonce))));
  }

  /** Run a synchronous database step, retrying while the database is busy, mapping errors. */
  private async retrying<T>(op: string, step: () => T): Promise<T> {
    const deadline = Date.now() + this.busyTimeoutMs;
    let delayMs = 1;
    for (;;) {
      if (this.closed) throw closedError();
      try {
        return step();
      } catch (err) {
        if (isBusy(err) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, delayMs));
          delayMs = Math.min(delayMs * 2, 50);
          continue;
        }
        throw toLedgerError(op, err);
      }
    }
  }
}

function closedError(): LedgerUnavailableError {
  return new LedgerUnavailableError('ledger is closed');
}

function isBusy(err: unknown): boolean {
  return (
    err instanceof Database.SqliteError &&
    (err.code.startsWith('SQLITE_BUSY') || err.code.startsWith('SQLITE_LOCKED'))
  );
}

/**
 * Every failure becomes a LedgerError. Database and I/O failures become
 * LedgerUnavailableError, so the signer fails closed; a constraint failure is a bug, not an
 * outage, and stays a plain LedgerError.
 */
function toLedgerError(op: string, err: unknown): LedgerError {
  if (err instanceof LedgerError) return err;
  if (err instanceof Database.SqliteError) {
    if (err.code.startsWith('SQLITE_CONSTRAINT')) {
      return new LedgerError(`ledger ${op} violated a constraint (${err.code})`, { cause: err });
    }
    return new LedgerUnavailableError(`ledger ${op} failed (${err.code})`, err.code, { cause: err });
  }
  return new LedgerUnavailableError(`ledger ${op} failed`, undefined, { cause: err });
}

function checkLength(name: string, value: Uint8Array, len: number): void {
  if (!(value instanceof Uint8Array) || value.length !== len) {
    throw new LedgerError(`${name} must be ${len} bytes`);
  }
}

/** better-sqlite3 binds Buffers, not plain Uint8Arrays; this views the same memory. */
function toBuffer(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

function toRecord(row: Row | undefined): NonceRecord | null {
  if (!row) return null;
  const copy = (b: Buffer | null) => (b ? new Uint8Array(b) : null);
  return {
    keyId: row.key_id,
    pubnonce: new Uint8Array(row.pubnonce),
    sessionId: copy(row.session_id),
    path: row.path,
    createdAtMs: row.created_at,
    usedAtMs: row.used_at,
    digest: copy(row.digest),
    psig: copy(row.psig),
  };
}
