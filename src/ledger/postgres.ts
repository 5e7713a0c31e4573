// The shared nonce ledger: PostgreSQL through a pg Pool, for several daemon replicas that
// share one token key (DESIGN.md section 3).
//
// Per-call design, no group commit: every write is ONE statement in its own implicit
// transaction (autocommit), so it is atomic, and its promise resolves only after PostgreSQL
// has answered the COMMIT, i.e. after the WAL flush (synchronous_commit must not be off:
// open() refuses a server where it is, or where fsync is off). The database itself
// enforces the rules, so replicas need no coordination among themselves:
//
// - recordNonce: a plain INSERT; the UNIQUE constraints on pubnonce and session_id answer a
//   repeat with 23505, which becomes NonceCollisionError.
// - markUsed: `UPDATE … SET used_at, digest WHERE pubnonce = $1 AND used_at IS NULL`. Two
//   replicas racing on one nonce: the row lock serialises them and the second re-checks
//   `used_at IS NULL` after the first commits, so exactly one gets a row back. With no row,
//   a read tells replay (same digest), reuse (another digest) and unknown apart; that read
//   is race-free because a used row never changes its digest and never reverts.
// - storePsig: conditional on the digest and on no psig yet; a read explains a refusal.
// - recordDeterministic: `INSERT … ON CONFLICT (pubnonce) DO NOTHING RETURNING`; on a
//   conflict (PostgreSQL waits for a concurrent inserter to commit first), a read tells
//   replay from reuse.
//
// Fail closed and fast: any connection failure, timeout, shutdown or server error is a
// LedgerUnavailableError. Connecting gives up after connectTimeoutMs, a statement after
// statementTimeoutMs (server side, statement_timeout) and, should the server vanish
// mid-query, the client gives up shortly after (query_timeout). The pool drops broken
// connections and opens new ones on the next call, so the ledger recovers by itself when
// the database comes back. The connection URL (which may hold a password) is never put in
// an error message or a log line.

import pg from 'pg';
import type { Pool as PgPool, PoolClient, QueryResultRow } from 'pg';
import {
  LedgerError,
  LedgerUnavailableError,
  NonceCollisionError,
  VelocityExceededError,
} from './errors.js';
import { migrate } from './postgres-schema.js';
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

export interface PostgresLedgerOptions {
  /** postgres:// or postgresql:// connection URL (libpq style; may carry sslmode etc.). */
  readonly url: string;
  /** Clock for created_at / used_at (unix ms). Default Date.now. */
  readonly now?: () => number;
  /** Pool size. Default 16. */
  readonly maxConnections?: number;
  /** Give up connecting after this long. Default 3000. */
  readonly connectTimeoutMs?: number;
  /** Server-side statement_timeout (also bounds lock waits). Default 3000. */
  readonly statementTimeoutMs?: number;
  /** healthy() answers false after this long. Default 1000. */
  readonly healthTimeoutMs?: number;
}

export const PG_DEFAULTS = {
  maxConnections: 16,
  connectTimeoutMs: 3000,
  statementTimeoutMs: 3000,
  healthTimeoutMs: 1000,
} as const;


const SQL = {
  insertRandom: `INSERT INTO nonces (key_id, pubnonce, session_id, path, created_at)
                 VALUES ($1, $2, $3, 'random', $4)`,
  insertDeterministic: `INSERT INTO nonces (key_id, pubnonce, session_id, path, created_at, used_at, digest, psig)
                        VALUES ($1, $2, NULL, 'deterministic', $3, $3, $4, $5)
                        ON CONFLICT (pubnonce) DO NOTHING RETURNING id`,
  markUsed: `UPDATE nonces SET used_at = $3, digest = $2
             WHERE pubnonce = $1 AND used_at IS NULL RETURNING id`,
  storePsig: `UPDATE nonces SET psig = $3
              WHERE pubnonce = $1 AND digest = $2 AND psig IS NULL RETURNING id`,
  byPubnonce: 'SELECT * FROM nonces WHERE pubnonce = $1',
  bySession: 'SELECT * FROM nonces WHERE session_id = $1',
  insertCharge: `INSERT INTO velocity_charges (key_id, rule, period_start, txid, amount, charged_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1`,
  ensureTotal: `INSERT INTO velocity_totals (key_id, rule, period_start, spent) VALUES ($1, $2, $3, 0)
                ON CONFLICT DO NOTHING`,
  // The check and the charge in one statement; the row lock serialises replicas, and a waiter
  // re-checks the condition on the committed total.
  addToTotal: `UPDATE velocity_totals SET spent = spent + $4
               WHERE key_id = $1 AND rule = $2 AND period_start = $3 AND spent + $4 <= $5 RETURNING spent`,
  spent: `SELECT COALESCE(SUM(amount), 0)::text AS s FROM velocity_charges
          WHERE key_id = $1 AND rule = $2 AND period_start = $3 AND txid <> $4`,
  upsertAuditHead: `INSERT INTO audit_heads (chain, seq, mac, updated_at) VALUES ($1, $2, $3, $4)
                    ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, mac = excluded.mac, updated_at = excluded.updated_at
                    WHERE excluded.seq > audit_heads.seq`,
  auditHead: 'SELECT seq, mac FROM audit_heads WHERE chain = $1',
} as const;

type TxQuery = (text: string, values: unknown[]) => Promise<pg.QueryResult>;

export class PostgresLedger implements NonceLedger {
  private closed = false;
  /** Calls accepted before close(); close() lets them finish before it ends the pool. */
  private readonly inFlight = new Set<Promise<unknown>>();

  private constructor(
    private readonly pool: PgPool,
    private readonly now: () => number,
    private readonly healthTimeoutMs: number,
  ) {}

  /** Connect, check the server's durability settings, and migrate the schema. */
  static async open(opts: PostgresLedgerOptions): Promise<PostgresLedger> {
    const statementTimeoutMs = opts.statementTimeoutMs ?? PG_DEFAULTS.statementTimeoutMs;
    const pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.maxConnections ?? PG_DEFAULTS.maxConnections,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? PG_DEFAULTS.connectTimeoutMs,
      statement_timeout: statementTimeoutMs,
      // Client side, for a server that stops answering without closing the connection.
      query_timeout: statementTimeoutMs + 1000,
      idle_in_transaction_session_timeout: statementTimeoutMs * 2,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: 'musig2-signer',
    });
    // An idle connection that dies (server restart, admin shutdown) is reported here; the
    // pool has already dropped it. Without a listener it would crash the process.
    pool.on('error', () => undefined);
    let client: PoolClient | undefined;
    try {
      client = await pool.connect();
      await checkDurability(client);
      await migrate(client, (opts.now ?? Date.now)());
      client.release();
      client = undefined;
      return new PostgresLedger(pool, opts.now ?? Date.now, opts.healthTimeoutMs ?? PG_DEFAULTS.healthTimeoutMs);
    } catch (err) {
      client?.release(true);
      await pool.end().catch(() => undefined);
      throw toLedgerError('open', err);
    }
  }

  async recordNonce(entry: { keyId: string; pubnonce: Uint8Array; sessionId: Uint8Array }): Promise<void> {
    checkLength('pubnonce', entry.pubnonce, 66);
    checkLength('sessionId', entry.sessionId, 32);
    return this.call(async () => {
      try {
        await this.query('recordNonce', SQL.insertRandom, [
          entry.keyId,
          toBuffer(entry.pubnonce),
          toBuffer(entry.sessionId),
          this.now(),
        ]);
      } catch (err) {
        if (err instanceof LedgerError && errCode(err.cause) === '23505') throw new NonceCollisionError(entry.pubnonce);
        throw err;
      }
    });
  }

  async markUsed(pubnonce: Uint8Array, digest: Uint8Array): Promise<MarkUsedResult> {
    checkLength('pubnonce', pubnonce, 66);
    checkLength('digest', digest, 32);
    const p = toBuffer(pubnonce);
    const d = toBuffer(digest);
    return this.call(async (): Promise<MarkUsedResult> => {
      const marked = await this.query('markUsed', SQL.markUsed, [p, d, this.now()]);
      if (marked.rowCount === 1) return { outcome: 'marked' };
      // Not marked: the row is missing or already used. A used row never reverts and its
      // digest never changes, so this read after the failed update is race-free.
      return markUsedOutcome(await this.row('markUsed', SQL.byPubnonce, p), pubnonce, d);
    });
  }

  async storePsig(pubnonce: Uint8Array, digest: Uint8Array, psig: Uint8Array): Promise<void> {
    checkLength('pubnonce', pubnonce, 66);
    checkLength('digest', digest, 32);
    checkLength('psig', psig, 32);
    const p = toBuffer(pubnonce);
    const d = toBuffer(digest);
    const s = toBuffer(psig);
    return this.call(async () => {
      const stored = await this.query('storePsig', SQL.storePsig, [p, d, s]);
      if (stored.rowCount === 1) return;
      storePsigOutcome(await this.row('storePsig', SQL.byPubnonce, p), pubnonce, d, s);
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
    return this.call(async (): Promise<RecordDeterministicResult> => {
      const inserted = await this.query('recordDeterministic', SQL.insertDeterministic, [
        entry.keyId,
        p,
        this.now(),
        d,
        toBuffer(entry.psig),
      ]);
      if (inserted.rowCount === 1) return { outcome: 'recorded' };
      return deterministicOutcome(await this.row('recordDeterministic', SQL.byPubnonce, p), entry.pubnonce, d);
    });
  }

  async spentInPeriod(keyId: string, rule: string, periodStart: number, excludeTxid?: Uint8Array): Promise<bigint> {
    const x = excludeTxid === undefined ? Buffer.alloc(0) : toBuffer(excludeTxid);
    return this.call(async () => {
      const r = await this.query<{ s: string }>('spentInPeriod', SQL.spent, [keyId, rule, periodStart, x]);
      return BigInt(r.rows[0]?.s ?? '0');
    });
  }

  async markUsedCharging(marks: readonly { pubnonce: Uint8Array; digest: Uint8Array }[], charge: VelocityChargeEntry): Promise<MarkUsedResult[]> {
    checkCharge(charge);
    for (const m of marks) {
      checkLength('pubnonce', m.pubnonce, 66);
      checkLength('digest', m.digest, 32);
    }
    return this.transaction('markUsedCharging', async (q) => {
      const at = this.now();
      const out: MarkUsedResult[] = [];
      for (const m of marks) {
        const p = toBuffer(m.pubnonce);
        const d = toBuffer(m.digest);
        const marked = await q(SQL.markUsed, [p, d, at]);
        if (marked.rowCount === 1) out.push({ outcome: 'marked' });
        else out.push(markUsedOutcome((await q(SQL.byPubnonce, [p])).rows[0] as LedgerRow | undefined, m.pubnonce, d));
      }
      await this.applyCharge(q, charge, at);
      return out;
    });
  }

  async recordDeterministicCharging(
    entries: readonly { keyId: string; pubnonce: Uint8Array; digest: Uint8Array; psig: Uint8Array }[],
    charge: VelocityChargeEntry,
  ): Promise<RecordDeterministicResult[]> {
    checkCharge(charge);
    for (const e of entries) {
      checkLength('pubnonce', e.pubnonce, 66);
      checkLength('digest', e.digest, 32);
      checkLength('psig', e.psig, 32);
    }
    return this.transaction('recordDeterministicCharging', async (q) => {
      const at = this.now();
      const out: RecordDeterministicResult[] = [];
      for (const e of entries) {
        const p = toBuffer(e.pubnonce);
        const d = toBuffer(e.digest);
        const inserted = await q(SQL.insertDeterministic, [e.keyId, p, at, d, toBuffer(e.psig)]);
        if (inserted.rowCount === 1) out.push({ outcome: 'recorded' });
        else out.push(deterministicOutcome((await q(SQL.byPubnonce, [p])).rows[0] as LedgerRow | undefined, e.pubnonce, d));
      }
      await this.applyCharge(q, charge, at);
      return out;
    });
  }

  /** Inside a transaction: charge once per txid, within the limit, or throw (the caller rolls back). */
  private async applyCharge(q: TxQuery, c: VelocityChargeEntry, at: number): Promise<void> {
    const inserted = await q(SQL.insertCharge, [c.keyId, c.rule, c.periodStart, toBuffer(c.txid), c.amount.toString(), at]);
    if (inserted.rowCount !== 1) return; // charged before
    await q(SQL.ensureTotal, [c.keyId, c.rule, c.periodStart]);
    const added = await q(SQL.addToTotal, [c.keyId, c.rule, c.periodStart, c.amount.toString(), c.limit.toString()]);
    if (added.rowCount !== 1) throw new VelocityExceededError(c.rule, c.periodStart);
  }

  /** Several statements in one transaction on one connection; any throw rolls it all back. */
  private transaction<T>(op: string, run: (q: TxQuery) => Promise<T>): Promise<T> {
    return this.call(async () => {
      let client: PoolClient;
      try {
        client = await this.pool.connect();
      } catch (err) {
        throw toLedgerError(op, err);
      }
      // As in recordAuditHead: a server lost between statements must not be an unhandled 'error'.
      const onError = () => undefined;
      client.on('error', onError);
      let broken = false;
      const q: TxQuery = async (text, values) => {
        try {
          return await client.query(text, values);
        } catch (err) {
          throw toLedgerError(op, err);
        }
      };
      try {
        await q('BEGIN', []);
        const out = await run(q);
        await q('COMMIT', []);
        return out;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        throw err;
      } finally {
        // A destroyed client keeps its listener, for whatever it reports while closing.
        if (!broken) client.off('error', onError);
        client.release(broken);
      }
    });
  }

  /**
   * One short transaction with synchronous_commit off: the anchor does not wait for a WAL flush
   * of its own (losing the last one in a server crash leaves it behind, the safe direction).
   */
  async recordAuditHead(head: AuditHeadRecord): Promise<boolean> {
    checkAuditHead(head);
    return this.call(async () => {
      let client: PoolClient | undefined;
      // A checked-out client has no error listener: a server that goes away between two of
      // these statements must not become an unhandled 'error' event.
      const onError = () => undefined;
      try {
        client = await this.pool.connect();
        client.on('error', onError);
        await client.query('BEGIN');
        await client.query('SET LOCAL synchronous_commit TO off');
        const moved = await client.query(SQL.upsertAuditHead, [head.chain, head.seq, head.mac, this.now()]);
        await client.query('COMMIT');
        client.off('error', onError);
        client.release();
        return moved.rowCount === 1;
      } catch (err) {
        // Destroyed, not reused: its listener stays, for whatever it reports while closing.
        client?.release(true);
        throw toLedgerError('recordAuditHead', err);
      }
    });
  }

  async auditHead(chain: string): Promise<{ seq: number; mac: string } | null> {
    return this.call(async () => {
      const r = await this.query<{ seq: string; mac: string }>('auditHead', SQL.auditHead, [chain]);
      const row = r.rows[0];
      return row ? { seq: Number(row.seq), mac: row.mac } : null;
    });
  }

  async findByPubnonce(pubnonce: Uint8Array): Promise<NonceRecord | null> {
    return this.call(async () => toRecord(await this.row('findByPubnonce', SQL.byPubnonce, toBuffer(pubnonce))));
  }

  async findBySession(sessionId: Uint8Array): Promise<NonceRecord | null> {
    return this.call(async () => toRecord(await this.row('findBySession', SQL.bySession, toBuffer(sessionId))));
  }

  /** A `SELECT 1` answered within healthTimeoutMs. Never throws. */
  async healthy(): Promise<boolean> {
    if (this.closed) return false;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.healthTimeoutMs);
    });
    const probe = this.pool.query('SELECT 1').then(
      () => true,
      () => false,
    );
    try {
      return await Promise.race([probe, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Waits for calls in flight, then closes every connection. (pool.end() alone would strand
   * calls still queued for a connection until the connect timeout failed them.)
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled(this.inFlight);
    await this.pool.end().catch(() => undefined);
  }

  /** One ledger call: refused once close() has begun, otherwise allowed to finish by close(). */
  private call<T>(run: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(closedError());
    const p = run();
    this.inFlight.add(p);
    const done = () => this.inFlight.delete(p);
    void p.then(done, done);
    return p;
  }

  /** Only inside call(), so a call accepted before close() may run all its statements. */
  private async query<R extends QueryResultRow>(op: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, values);
    } catch (err) {
      throw toLedgerError(op, err);
    }
  }

  private async row(op: string, text: string, key: Buffer): Promise<LedgerRow | undefined> {
    const r = await this.query<LedgerRow>(op, text, [key]);
    return r.rows[0];
  }
}

/** A ledger must survive a power cut: refuse a server that acknowledges commits before the flush. */
async function checkDurability(client: PoolClient): Promise<void> {
  const { rows } = await client.query<{ fsync: string; sc: string }>(
    "SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sc",
  );
  const r = rows[0];
  if (!r || r.fsync !== 'on' || r.sc === 'off') {
    throw new LedgerError('PostgreSQL ledger refused: the server must run with fsync=on and synchronous_commit not off');
  }
}

function closedError(): LedgerUnavailableError {
  return new LedgerUnavailableError('ledger is closed');
}

function errCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Every failure becomes a LedgerError. An integrity-constraint violation (SQLSTATE class 23)
 * refuses the request and stays a plain LedgerError (the callers turn 23505 into a
 * collision); everything else (connection refused or lost, timeouts, admin shutdown 57P01,
 * statement timeout 57014, out of resources, read-only) is LedgerUnavailableError, so the
 * signer fails closed. Messages name the operation and the code only, never the URL.
 */
function toLedgerError(op: string, err: unknown): LedgerError {
  if (err instanceof LedgerError) return err;
  const code = errCode(err);
  if (err instanceof pg.DatabaseError && code?.startsWith('23')) {
    return new LedgerError(`ledger ${op} violated a constraint (${code})`, { cause: err });
  }
  return new LedgerUnavailableError(`ledger ${op} failed${code ? ` (${code})` : ''}`, code, { cause: err });
}



