// The embedded nonce ledger: better-sqlite3 in WAL mode, every commit flushed to disk
// before its caller learns the outcome.
//
// Why flush every commit: a "used" mark rolled back by a power cut after its signature left
// the daemon would defeat the ledger, so a commit must reach the disk before anyone signs on
// it. SQLite's synchronous=FULL does that with an fsync inside COMMIT, on the daemon's only
// JavaScript thread: every signature then waited for the disk with the event loop frozen.
// So the ledger runs synchronous=NORMAL (SQLite still syncs the WAL before a checkpoint and
// the database after it, and the WAL header when it is reused) and adds the per-commit flush
// itself: after each COMMIT it fsyncs the -wal file on the libuv thread pool, and only then
// settles the callers. The commit's frames are in that file, so once the fsync returns the
// commit survives a power cut, as with FULL. In between, other readers may already see the
// rows; that only makes them refuse or replay sooner, never sign.
//
// A failed fsync is not retried: after one, the kernel may have dropped the unwritten pages
// and a second fsync would report success for data that is not on disk (as PostgreSQL
// concluded, it must not carry on). The batch is refused and the ledger stays unavailable
// (health NOT_SERVING) until the daemon is restarted on a healthy disk.
//
// better-sqlite3 is synchronous. Lock waits must not freeze the event loop, so SQLite's own
// busy handler is off (busy_timeout = 0: a held lock answers SQLITE_BUSY at once) and a busy
// database is retried here with short async sleeps until each request's deadline, after
// which that caller gets LedgerUnavailableError.
//
// Group commit. A commit costs an fsync. So every write (recordNonce, markUsed, storePsig,
// recordDeterministic) goes into one FIFO queue, and the writes that arrive within one
// event-loop turn, or while the previous batch's fsync runs, are applied in ONE transaction:
// one fsync for all of them. Why that is as safe as one transaction per call:
//
// - Durable before anyone acts. Each request's outcome is computed inside the transaction
//   but handed to its caller only after COMMIT and the fsync after it have returned. A
//   caller never learns "marked" (and so never signs) before the mark is on disk.
// - Same outcomes as sequential calls. Requests are applied one after another, in
//   submission order, inside the transaction, and each sees the effects of the ones before
//   it (a transaction reads its own writes). Two markUsed for one pubnonce in one batch:
//   the first turns it used, the second finds it used and gets replay (same digest) or
//   NonceReuseError (another digest), exactly as if the calls had been made one by one.
//   Requests of different batches are ordered too: one batch at a time, in queue order.
// - Each request has its own outcome. Each request runs inside a savepoint. A request-level
//   refusal (NonceReuseError, NonceNotRecordedError, NonceCollisionError, a psig mismatch, a
//   CHECK constraint) rolls back to that savepoint, undoing whatever that one request wrote,
//   and the batch goes on: one refused request does not fail its neighbours.
// - Fail closed together. Any database failure (I/O error, disk full, COMMIT failing)
//   aborts and rolls back the whole transaction and rejects every request of the batch
//   with LedgerUnavailableError, including those whose own outcome was already decided:
//   nothing of the batch is half-written, and nobody signs on an uncommitted decision. A
//   busy database (lock held by another process) applies nothing; the batch is retried as a
//   whole, its outcomes recomputed from scratch. (So a reuse attempt caught in a failed
//   batch reaches its caller as "unavailable", not NonceReuseError: refused either way,
//   only that attempt's reuse alarm is lost.)
// - If a batch failed after its WAL frames were written (a failed COMMIT or fsync), the
//   nonces may be marked used although every caller was told "unavailable" and signed
//   nothing. That direction is safe: a used nonce is never signed with again, and a
//   deterministic retry with the same inputs replays.
// - created_at / used_at are read from the clock once per batch: the batch's time.
//
// healthy() is non-blocking: it tries to take the write lock (BEGIN IMMEDIATE, answered at
// once since busy_timeout is 0) and releases it. Taking the lock writes nothing, so after a
// write failed for another reason (I/O error, disk full) it instead commits a real write
// (the database header's user_version, rewritten with its own value) until one succeeds.

import { accessSync, closeSync, constants, fsync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import {
  LedgerError,
  LedgerUnavailableError,
  NonceCollisionError,
  VelocityExceededError,
} from './errors.js';
import { migrate } from './sqlite-schema.js';
import type {
  AuditHeadRecord,
  MarkUsedResult,
  NonceLedger,
  NonceRecord,
  RecordDeterministicResult,
  VelocityChargeEntry,
} from './types.js';
import {
  checkAuditHead,
  checkCharge,
  checkLength,
  deterministicOutcome,
  markUsedOutcome,
  storePsigOutcome,
  toBuffer,
  toRecord,
  type LedgerRow,
} from './outcomes.js';

export interface SqliteLedgerOptions {
  /** Database file path; parent directories are created. `:memory:` for a throwaway ledger. */
  readonly path: string;
  /** How long to keep retrying while another connection holds the write lock. Default 2000. */
  readonly busyTimeoutMs?: number;
  /** Clock for created_at / used_at (unix ms). Default Date.now. */
  readonly now?: () => number;
  /**
   * Flushes the -wal file to disk, off the event loop; called after every committed batch, whose
   * callers settle only when it resolves. Default: fsync on the libuv pool of a descriptor held
   * from open to close, so every writeback error since open is reported to it. Tests replace it
   * to hold or fail the flush.
   */
  readonly flush?: (path: string) => Promise<void>;
}

export const DEFAULT_BUSY_TIMEOUT_MS = 2000;
/** Upper bound on rows per group commit, so one transaction never grows without limit. */
const MAX_BATCH = 1000;

/** One queued write: what it does inside the batch transaction, and who waits for it. */
interface PendingWrite {
  /** The ledger method, for error messages. */
  readonly op: string;
  /**
   * Runs inside the batch transaction (in its own savepoint). Returns the caller's result,
   * or throws a request-level LedgerError that refuses this request alone.
   */
  readonly apply: (at: number) => unknown;
  /** Date.now() after which a busy database answers this request unavailable. */
  readonly deadline: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
}

/** A request's own outcome inside a batch that committed. */
type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: LedgerError };


export class SqliteLedger implements NonceLedger {
  private readonly db: Database.Database;
  private readonly busyTimeoutMs: number;
  private readonly now: () => number;
  /** close() has begun: new writes are refused, queued ones still settle. */
  private closing = false;
  private closed = false;
  /** Writes not yet committed, in submission order. */
  private queue: PendingWrite[] = [];
  /** The drain loop is scheduled or running; `drained` settles when it stops. */
  private draining = false;
  private drained: Promise<void> = Promise.resolve();
  /** The last batch failed for a reason other than a busy lock, and no write has succeeded since. */
  private writeFailed = false;
  /** The -wal file, flushed after every commit; undefined for an in-memory ledger. */
  private readonly walPath: string | undefined;
  private readonly flush: (path: string) => Promise<void>;
  /** The default flush's descriptor of the -wal file. */
  private readonly walFd: number | undefined;
  /** A flush failed: nothing is known to be on disk any more; refuse everything until a restart. */
  private flushFailed: LedgerUnavailableError | undefined;

  private readonly stmts: {
    insertRandom: Database.Statement;
    insertDeterministic: Database.Statement;
    markUsed: Database.Statement;
    storePsig: Database.Statement;
    byPubnonce: Database.Statement;
    bySession: Database.Statement;
    insertCharge: Database.Statement;
    ensureTotal: Database.Statement;
    addToTotal: Database.Statement;
    spent: Database.Statement;
    upsertAuditHead: Database.Statement;
    auditHead: Database.Statement;
  };
  /** The whole batch in one BEGIN IMMEDIATE … COMMIT; one outcome per request. */
  private readonly applyBatch: Database.Transaction<(batch: readonly PendingWrite[], at: number) => Outcome[]>;
  /** One request, called inside applyBatch: better-sqlite3 nests it as a savepoint. */
  private readonly applyOne: Database.Transaction<(w: PendingWrite, at: number) => unknown>;
  /** healthy() after a failed write: commit a write that changes nothing. */
  private readonly probeWrite: Database.Transaction<() => void>;

  private constructor(db: Database.Database, opts: SqliteLedgerOptions) {
    this.db = db;
    this.busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    this.now = opts.now ?? Date.now;
    this.walPath = opts.path === ':memory:' ? undefined : `${opts.path}-wal`;
    if (opts.flush !== undefined || this.walPath === undefined) {
      this.flush = opts.flush ?? (async () => {});
    } else {
      const fd = openSync(this.walPath, 'r');
      this.walFd = fd;
      this.flush = () => fsyncFd(fd);
    }
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
      insertCharge: db.prepare(
        `INSERT INTO velocity_charges (key_id, rule, period_start, txid, amount, charged_at)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ),
      ensureTotal: db.prepare(
        'INSERT INTO velocity_totals (key_id, rule, period_start, spent) VALUES (?, ?, ?, 0) ON CONFLICT DO NOTHING',
      ),
      // The check and the charge in one statement: no room, no row changed.
      addToTotal: db.prepare(
        'UPDATE velocity_totals SET spent = spent + ? WHERE key_id = ? AND rule = ? AND period_start = ? AND spent + ? <= ?',
      ),
      spent: db.prepare(
        'SELECT COALESCE(SUM(amount), 0) AS s FROM velocity_charges WHERE key_id = ? AND rule = ? AND period_start = ? AND txid <> ?',
      ),
      upsertAuditHead: db.prepare(
        `INSERT INTO audit_heads (chain, seq, mac, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, mac = excluded.mac, updated_at = excluded.updated_at
         WHERE excluded.seq > audit_heads.seq`,
      ),
      auditHead: db.prepare('SELECT seq, mac FROM audit_heads WHERE chain = ?'),
    };
    this.applyOne = db.transaction((w: PendingWrite, at: number) => w.apply(at));
    this.applyBatch = db.transaction((batch: readonly PendingWrite[], at: number) =>
      batch.map((w): Outcome => {
        try {
          return { ok: true, value: this.applyOne(w, at) };
        } catch (err) {
          // A refusal of this request alone: its savepoint is rolled back, the batch goes on.
          if (isRequestRefusal(err)) return { ok: false, error: toLedgerError(w.op, err) };
          throw err; // a database failure: abort the whole batch
        }
      }),
    );
    this.probeWrite = db.transaction(() => rewriteUserVersion(db));
  }

  /** Open (creating if needed) a ledger file: WAL, schema migrated, flushed to disk. */
  static open(opts: SqliteLedgerOptions): SqliteLedger {
    const busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new LedgerError('busy timeout must be a non-negative integer of milliseconds');
    }
    const memory = opts.path === ':memory:';
    let db: Database.Database | undefined;
    try {
      if (!memory) mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
      // timeout: 0 — SQLite's busy handler would sleep on this thread; see retries below.
      db = new Database(opts.path, { timeout: 0 });
      db.pragma('busy_timeout = 0');
      const mode = db.pragma('journal_mode = WAL', { simple: true }) as string;
      if (!memory && mode.toLowerCase() !== 'wal') {
        throw new LedgerError(`ledger could not enter WAL mode (got ${mode})`);
      }
      // The per-commit sync is done off the event loop by drain(); see the top of the file.
      db.pragma('synchronous = NORMAL');
      // The migration and a real write, committed together. A file it cannot write SQLite
      // opens read-only without a word, and in WAL mode even BEGIN IMMEDIATE then succeeds:
      // only a write shows it. Refuse now rather than serve and fail every write.
      const conn = db;
      conn.transaction(() => {
        migrate(conn, (opts.now ?? Date.now)());
        rewriteUserVersion(conn);
      }).immediate();
      // Make the files and their directory entries durable before the first signature.
      if (!memory) for (const p of [opts.path, `${opts.path}-wal`, dirname(opts.path)]) fsyncPathSync(p);
      return new SqliteLedger(db, opts);
    } catch (err) {
      db?.close();
      throw memory ? toLedgerError('open', err) : openError(opts.path, err);
    }
  }

  async recordNonce(entry: { keyId: string; pubnonce: Uint8Array; sessionId: Uint8Array }): Promise<void> {
    checkLength('pubnonce', entry.pubnonce, 66);
    checkLength('sessionId', entry.sessionId, 32);
    const p = toBuffer(entry.pubnonce);
    const s = toBuffer(entry.sessionId);
    return this.enqueue('recordNonce', (at): void => {
      if (this.stmts.insertRandom.run(entry.keyId, p, s, at).changes !== 1) throw new NonceCollisionError(entry.pubnonce);
    });
  }

  async markUsed(pubnonce: Uint8Array, digest: Uint8Array): Promise<MarkUsedResult> {
    checkLength('pubnonce', pubnonce, 66);
    checkLength('digest', digest, 32);
    const p = toBuffer(pubnonce);
    const d = toBuffer(digest);
    return this.enqueue('markUsed', (at): MarkUsedResult => {
      if (this.stmts.markUsed.run(at, d, p).changes === 1) return { outcome: 'marked' };
      // Nothing changed: the row is missing or already used. We hold the write lock, and a
      // used row never reverts, so reading it back after the failed update is race-free.
      return markUsedOutcome(this.stmts.byPubnonce.get(p) as LedgerRow | undefined, pubnonce, d);
    });
  }

  async storePsig(pubnonce: Uint8Array, digest: Uint8Array, psig: Uint8Array): Promise<void> {
    checkLength('pubnonce', pubnonce, 66);
    checkLength('digest', digest, 32);
    checkLength('psig', psig, 32);
    const p = toBuffer(pubnonce);
    const d = toBuffer(digest);
    const s = toBuffer(psig);
    return this.enqueue('storePsig', (): void => {
      if (this.stmts.storePsig.run(s, p, d).changes === 1) return;
      storePsigOutcome(this.stmts.byPubnonce.get(p) as LedgerRow | undefined, pubnonce, d, s);
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
    return this.enqueue('recordDeterministic', (at): RecordDeterministicResult => {
      if (this.stmts.insertDeterministic.run(entry.keyId, p, at, at, d, s).changes === 1) return { outcome: 'recorded' };
      return deterministicOutcome(this.stmts.byPubnonce.get(p) as LedgerRow | undefined, entry.pubnonce, d);
    });
  }

  async spentInPeriod(keyId: string, rule: string, periodStart: number, excludeTxid?: Uint8Array): Promise<bigint> {
    const x = excludeTxid === undefined ? Buffer.alloc(0) : toBuffer(excludeTxid);
    return this.retrying('spentInPeriod', () => BigInt((this.stmts.spent.get(keyId, rule, periodStart, x) as { s: number }).s));
  }

  async markUsedCharging(marks: readonly { pubnonce: Uint8Array; digest: Uint8Array }[], charge: VelocityChargeEntry): Promise<MarkUsedResult[]> {
    checkCharge(charge);
    const rows = marks.map((m) => {
      checkLength('pubnonce', m.pubnonce, 66);
      checkLength('digest', m.digest, 32);
      return { raw: m.pubnonce, p: toBuffer(m.pubnonce), d: toBuffer(m.digest) };
    });
    // One request, so one savepoint: a refused charge or mark undoes every mark of this call.
    return this.enqueue('markUsedCharging', (at): MarkUsedResult[] => {
      const out = rows.map((r): MarkUsedResult => {
        if (this.stmts.markUsed.run(at, r.d, r.p).changes === 1) return { outcome: 'marked' };
        return markUsedOutcome(this.stmts.byPubnonce.get(r.p) as LedgerRow | undefined, r.raw, r.d);
      });
      this.applyCharge(charge, at);
      return out;
    });
  }

  async recordDeterministicCharging(
    entries: readonly { keyId: string; pubnonce: Uint8Array; digest: Uint8Array; psig: Uint8Array }[],
    charge: VelocityChargeEntry,
  ): Promise<RecordDeterministicResult[]> {
    checkCharge(charge);
    const rows = entries.map((e) => {
      checkLength('pubnonce', e.pubnonce, 66);
      checkLength('digest', e.digest, 32);
      checkLength('psig', e.psig, 32);
      return { keyId: e.keyId, raw: e.pubnonce, p: toBuffer(e.pubnonce), d: toBuffer(e.digest), s: toBuffer(e.psig) };
    });
    return this.enqueue('recordDeterministicCharging', (at): RecordDeterministicResult[] => {
      const out = rows.map((r): RecordDeterministicResult => {
        if (this.stmts.insertDeterministic.run(r.keyId, r.p, at, at, r.d, r.s).changes === 1) return { outcome: 'recorded' };
        return deterministicOutcome(this.stmts.byPubnonce.get(r.p) as LedgerRow | undefined, r.raw, r.d);
      });
      this.applyCharge(charge, at);
      return out;
    });
  }

  /** Inside a batch request: charge once per txid, within the limit, or throw (the request's savepoint rolls back). */
  private applyCharge(c: VelocityChargeEntry, at: number): void {
    const txid = toBuffer(c.txid);
    if (this.stmts.insertCharge.run(c.keyId, c.rule, c.periodStart, txid, c.amount, at).changes !== 1) return; // charged before
    this.stmts.ensureTotal.run(c.keyId, c.rule, c.periodStart);
    if (this.stmts.addToTotal.run(c.amount, c.keyId, c.rule, c.periodStart, c.amount, c.limit).changes !== 1) {
      throw new VelocityExceededError(c.rule, c.periodStart);
    }
  }

  /** Rides the group commit like any write: no flush of its own when nonce writes are queued. */
  async recordAuditHead(head: AuditHeadRecord): Promise<boolean> {
    checkAuditHead(head);
    return this.enqueue('recordAuditHead', (at): boolean => this.stmts.upsertAuditHead.run(head.chain, head.seq, head.mac, at).changes === 1);
  }

  async auditHead(chain: string): Promise<{ seq: number; mac: string } | null> {
    return this.retrying('auditHead', () => {
      const row = this.stmts.auditHead.get(chain) as { seq: number; mac: string } | undefined;
      return row ? { seq: Number(row.seq), mac: row.mac } : null;
    });
  }

  async findByPubnonce(pubnonce: Uint8Array): Promise<NonceRecord | null> {
    const p = toBuffer(pubnonce);
    return this.retrying('findByPubnonce', () => toRecord(this.stmts.byPubnonce.get(p) as LedgerRow | undefined));
  }

  async findBySession(sessionId: Uint8Array): Promise<NonceRecord | null> {
    const s = toBuffer(sessionId);
    return this.retrying('findBySession', () => toRecord(this.stmts.bySession.get(s) as LedgerRow | undefined));
  }

  /**
   * Never blocks and never throws. Takes and releases the write lock (answered at once, as
   * busy_timeout is 0), so a lock held elsewhere shows. (A read-only file would give the lock
   * in WAL mode; it is refused at open.) After a write failed for another reason (I/O error,
   * disk full), which taking the lock cannot see, it commits a real one-page write instead,
   * until one succeeds.
   */
  async healthy(): Promise<boolean> {
    if (this.closing || this.closed || this.flushFailed) return false;
    try {
      if (this.writeFailed) {
        this.probeWrite.immediate();
        this.writeFailed = false;
      } else {
        this.db.exec('BEGIN IMMEDIATE');
        this.db.exec('ROLLBACK');
      }
      return true;
    } catch {
      this.rollbackQuietly();
      return false;
    }
  }

  /** Settles every accepted write (committing what it can), then closes. */
  async close(): Promise<void> {
    this.closing = true;
    while (this.draining) await this.drained;
    if (this.closed) return;
    this.closed = true;
    this.db.close();
    if (this.walFd !== undefined) closeSync(this.walFd);
  }

  /** Queue a write for the next group commit; settles after that commit, with its own outcome. */
  private enqueue<T>(op: string, apply: (at: number) => T): Promise<T> {
    if (this.closing || this.closed) return Promise.reject(closedError());
    if (this.flushFailed) return Promise.reject(this.flushFailed);
    return new Promise<T>((resolve, reject) => {
      this.queue.push({
        op,
        apply,
        deadline: Date.now() + this.busyTimeoutMs,
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      if (!this.draining) {
        this.draining = true;
        this.drained = this.drain();
      }
    });
  }

  /**
   * Commits the queue, one batch at a time, until it is empty. Starts after the current
   * turn's writes have arrived, and yields a turn between batches. Never rejects.
   */
  private async drain(): Promise<void> {
    try {
      let delayMs = 1;
      await nextTurn();
      while (this.queue.length > 0) {
        const batch = this.queue.slice(0, MAX_BATCH);
        let outcomes: Outcome[];
        try {
          this.rollbackQuietly(); // never start a batch inside a leftover transaction
          outcomes = this.applyBatch.immediate(batch, this.now());
        } catch (err) {
          if (isBusy(err)) {
            // Nothing was applied. Requests past their deadline give up; the rest wait and
            // are retried together with whatever arrives meanwhile.
            const t = Date.now();
            const expired = this.queue.filter((w) => w.deadline <= t);
            this.queue = this.queue.filter((w) => w.deadline > t);
            for (const w of expired) w.reject(toLedgerError(w.op, err));
            if (this.queue.length > 0) await sleep(delayMs);
            delayMs = Math.min(delayMs * 2, 50);
            continue;
          }
          // A database failure: the transaction is rolled back; the whole batch fails closed.
          this.queue.splice(0, batch.length);
          this.writeFailed = true;
          for (const w of batch) w.reject(toUnavailable(w.op, err));
          delayMs = 1;
          if (this.queue.length > 0) await nextTurn();
          continue;
        }
        // Committed; flushed to disk before anyone learns an outcome (see the top of the file).
        if (this.walPath !== undefined) {
          try {
            await this.flush(this.walPath);
          } catch (err) {
            this.flushFailed = flushError(err);
            // This batch and everything queued behind it: refused, and so is all that follows.
            for (const w of this.queue.splice(0)) w.reject(this.flushFailed);
            continue;
          }
        }
        // Durable: now, and only now, every caller learns its own outcome.
        this.queue.splice(0, batch.length);
        this.writeFailed = false;
        batch.forEach((w, i) => {
          const o = outcomes[i]!;
          if (o.ok) w.resolve(o.value);
          else w.reject(o.error);
        });
        delayMs = 1;
        if (this.queue.length > 0) await nextTurn();
      }
    } finally {
      // Synchronous with the empty-queue check above, so no write can slip in between.
      this.draining = false;
    }
  }

  private rollbackQuietly(): void {
    if (!this.db.inTransaction) return;
    try {
      this.db.exec('ROLLBACK');
    } catch {
      // the connection is unusable; the next statement reports it
    }
  }

  /** Run a synchronous read, retrying while the database is busy, mapping errors. */
  private async retrying<T>(op: string, step: () => T): Promise<T> {
    const deadline = Date.now() + this.busyTimeoutMs;
    let delayMs = 1;
    for (;;) {
      if (this.closed) throw closedError();
      if (this.flushFailed) throw this.flushFailed;
      try {
        return step();
      } catch (err) {
        if (isBusy(err) && Date.now() < deadline) {
          await sleep(delayMs);
          delayMs = Math.min(delayMs * 2, 50);
          continue;
        }
        throw toLedgerError(op, err);
      }
    }
  }
}

/** Commits nothing new: rewrites the header's user_version with its own value (one page). */
function rewriteUserVersion(db: Database.Database): void {
  const v = db.pragma('user_version', { simple: true }) as number;
  db.pragma(`user_version = ${Number(v)}`);
}

/** An open that failed; when the file system will not let the ledger be written, says so and where. */
function openError(path: string, err: unknown): LedgerError {
  const e = toLedgerError('open', err);
  if (!(e instanceof LedgerUnavailableError) || isBusy(err)) return e;
  const why = notWritable(path) ?? (e.dbCode?.startsWith('SQLITE_READONLY') ? e.dbCode : undefined);
  if (why === undefined) return e;
  return new LedgerUnavailableError(
    `ledger file ${path} is not writable (${why}): the nonce ledger must be writable; nothing can be signed`,
    e.dbCode,
    { cause: err },
  );
}

/**
 * Why the file, or the folder it is (or would be) created in, cannot be written: EROFS,
 * EACCES…; undefined when both can. Asked after a failure, to explain it (root too gets EROFS).
 */
function notWritable(path: string): string | undefined {
  for (let p = path; ; p = dirname(p)) {
    try {
      accessSync(p, constants.W_OK);
      if (p !== path) return undefined; // the nearest existing folder (-wal and -shm go there)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') return code ?? 'EACCES';
    }
    if (dirname(p) === p) return undefined;
  }
}

/** fsync on the libuv thread pool. */
function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
}

/** fsync a file or directory now (at open, before the ledger serves). */
function fsyncPathSync(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function flushError(err: unknown): LedgerUnavailableError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? 'unknown error';
  return new LedgerUnavailableError(
    `ledger file could not be flushed to disk (fsync: ${code}); what it holds is no longer known to be durable, ` +
      'so nothing is signed until the daemon is restarted on a healthy disk',
    undefined,
    { cause: err },
  );
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * An error that refuses one request and says nothing about the database: our own verdicts
 * (reuse, collision, unknown nonce, psig mismatch) and a CHECK constraint on its row.
 */
function isRequestRefusal(err: unknown): boolean {
  if (err instanceof LedgerUnavailableError) return false;
  if (err instanceof LedgerError) return true;
  return err instanceof Database.SqliteError && err.code.startsWith('SQLITE_CONSTRAINT');
}

/** A failed batch: every member is told the ledger is unavailable, whatever the cause. */
function toUnavailable(op: string, err: unknown): LedgerUnavailableError {
  const e = toLedgerError(op, err);
  if (e instanceof LedgerUnavailableError) return e;
  return new LedgerUnavailableError(`ledger ${op} failed: ${e.message}`, undefined, { cause: err });
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



