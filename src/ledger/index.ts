// The nonce ledger: one interface (types.ts), an embedded SQLite implementation, and
// openLedger() choosing by URL: SQLite embedded, or PostgreSQL shared by several replicas.

import { setTimeout as sleep } from 'node:timers/promises';
import { LedgerError, LedgerUnavailableError } from './errors.js';
import { PostgresLedger } from './postgres.js';
import { DEFAULT_BUSY_TIMEOUT_MS, SqliteLedger } from './sqlite.js';
import type { NonceLedger } from './types.js';

export * from './errors.js';
export type * from './types.js';
export { SqliteLedger, DEFAULT_BUSY_TIMEOUT_MS } from './sqlite.js';
export type { SqliteLedgerOptions } from './sqlite.js';
export { PostgresLedger, PG_DEFAULTS } from './postgres.js';
export { NoLedger } from './none.js';
export type { PostgresLedgerOptions } from './postgres.js';

export interface OpenLedgerOptions {
  /** Clock for created_at / used_at (unix ms). Default Date.now. */
  readonly now?: () => number;
}

/**
 * Open a ledger by URL.
 * - `sqlite:PATH` (also `sqlite://PATH`): a file, created with its directories if needed.
 *   Optional query `?busy_timeout_ms=N`: how long to wait for a write lock held by another
 *   process before answering unavailable (default 2000). `sqlite::memory:` for tests.
 * - `postgres://` / `postgresql://`: a PostgreSQL database that several daemon replicas may
 *   share (libpq-style URL, passed to pg as is; never logged, as it may hold a password).
 *   The schema is migrated at open.
 */
export async function openLedger(url: string, opts: OpenLedgerOptions = {}): Promise<NonceLedger> {
  if (/^postgres(ql)?:\/\//i.test(url)) {
    return PostgresLedger.open({ url, now: opts.now });
  }
  const m = /^sqlite:(?:\/\/)?([^?]+)(?:\?(.*))?$/i.exec(url);
  if (!m) {
    throw new LedgerError('ledger URL must be sqlite:PATH or postgres://…');
  }
  const path = m[1]!;
  let busyTimeoutMs: number | undefined;
  for (const [key, value] of new URLSearchParams(m[2] ?? '')) {
    if (key !== 'busy_timeout_ms') throw new LedgerError(`unknown ledger URL option "${key}"`);
    if (!/^\d{1,9}$/.test(value)) throw new LedgerError('busy_timeout_ms must be a whole number of milliseconds');
    busyTimeoutMs = Number(value);
  }
  return openSqliteRetryingBusy({ path, busyTimeoutMs, now: opts.now });
}

/** The ledger URL as it may be shown to a person or a log: a PostgreSQL password is masked. */
export function describeLedger(url: string): string {
  if (!/^postgres(ql)?:\/\//i.test(url)) return url;
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparseable URL)';
  }
}

/**
 * Another process may hold the database lock while it opens or migrates the same file (replicas
 * or test workers starting together). Opening is synchronous and must not spin on this thread,
 * so a busy open is retried with async sleeps until the busy timeout.
 */
async function openSqliteRetryingBusy(opts: { path: string; busyTimeoutMs?: number; now?: () => number }): Promise<SqliteLedger> {
  const deadline = Date.now() + (opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS);
  for (let delayMs = 5; ; delayMs = Math.min(delayMs * 2, 100)) {
    try {
      return SqliteLedger.open(opts);
    } catch (err) {
      const busy = err instanceof LedgerUnavailableError && /^SQLITE_(BUSY|LOCKED)/.test(err.dbCode ?? '');
      if (!busy || Date.now() >= deadline) throw err;
      await sleep(delayMs);
    }
  }
}
