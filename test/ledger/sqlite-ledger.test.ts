// The SQLite nonce ledger against a real database file in a temp dir: the shared contract
// (contract.ts), then what only SQLite has (the file, WAL, its write lock, file-write faults).

import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { LedgerError, LedgerUnavailableError, openLedger } from '../../src/ledger/index.js';
import { freshNonce, ledgerContract, rand, useLedger, type LedgerStore } from './contract.js';
import { holdWriteLock, withFileWritesFailing } from './faults.js';

interface SqliteStore extends LedgerStore {
  readonly dbPath: string;
}

/** A ledger file in nested directories that do not exist yet (open creates them). */
async function sqliteStore(): Promise<SqliteStore> {
  const dir = mkdtempSync(join(tmpdir(), 'ledger-test-'));
  const dbPath = join(dir, 'nested', 'dirs', 'ledger.db');
  return {
    dbPath,
    open: () => openLedger(`sqlite:${dbPath}?busy_timeout_ms=200`),
    query: async (text) => {
      const db = new Database(dbPath);
      try {
        const stmt = db.prepare(text);
        if (stmt.reader) return stmt.all();
        stmt.run();
        return [];
      } finally {
        db.close();
      }
    },
    destroy: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

// 5000: several group commits' worth (a batch holds at most 1000 writes).
ledgerContract('SQLite', sqliteStore, { concurrentInserts: 5000 });

describe('SQLite only', () => {
  const t = useLedger(sqliteStore);

  describe('opening', () => {
    it('creates the directories, uses WAL, and has the ledger columns', () => {
      expect(existsSync(t.store.dbPath)).toBe(true);
      const other = new Database(t.store.dbPath, { readonly: true });
      try {
        expect(other.pragma('journal_mode', { simple: true })).toBe('wal');
        const cols = (other.prepare('PRAGMA table_info(nonces)').all() as { name: string }[]).map((c) => c.name);
        expect(cols).toEqual(['id', 'key_id', 'pubnonce', 'session_id', 'path', 'created_at', 'used_at', 'digest', 'psig']);
      } finally {
        other.close();
      }
    });

    it('opens the same file by its sqlite:// URL, keeping its rows', async () => {
      const e = freshNonce();
      await t.ledger.recordNonce(e);
      await t.ledger.close();
      t.ledger = await openLedger(`sqlite://${t.store.dbPath}`);
      expect((await t.ledger.findByPubnonce(e.pubnonce))?.keyId).toBe('alice');
    });

    it('rejects unsupported URLs clearly', async () => {
      // postgres:// is the PostgreSQL ledger (postgres-ledger.test.ts); nothing listens on port 1.
      await expect(openLedger('postgres://u@127.0.0.1:1/db')).rejects.toBeInstanceOf(LedgerUnavailableError);
      await expect(openLedger('mysql://x')).rejects.toBeInstanceOf(LedgerError);
      await expect(openLedger(`sqlite:${t.store.dbPath}?bogus=1`)).rejects.toThrow(/unknown ledger URL option/);
    });
  });

  describe('faults: fail closed', () => {
    it('answers unavailable while another process holds the write lock, and recovers after', async () => {
      const e = freshNonce();
      await t.ledger.recordNonce(e);
      const d = rand(32);
      const holder = await holdWriteLock(t.store.dbPath);
      try {
        expect(await t.ledger.healthy()).toBe(false);
        const busy = await t.ledger.markUsed(e.pubnonce, d).catch((err: unknown) => err);
        expect(busy).toBeInstanceOf(LedgerUnavailableError);
        expect((busy as LedgerUnavailableError).dbCode).toMatch(/^SQLITE_BUSY/);
        await expect(t.ledger.recordNonce(freshNonce())).rejects.toBeInstanceOf(LedgerUnavailableError);
        await expect(
          t.ledger.recordDeterministic({ keyId: 'b', pubnonce: rand(66), digest: rand(32), psig: rand(32) }),
        ).rejects.toBeInstanceOf(LedgerUnavailableError);
      } finally {
        await holder.release();
      }
      // Nothing was marked while the lock was held.
      expect((await t.ledger.findByPubnonce(e.pubnonce))?.usedAtMs).toBeNull();
      expect(await t.ledger.healthy()).toBe(true);
      expect(await t.ledger.markUsed(e.pubnonce, d)).toEqual({ outcome: 'marked' });
    });

    it('answers unavailable when the kernel refuses file writes, and recovers after', async () => {
      const e = freshNonce();
      await t.ledger.recordNonce(e);
      const d = rand(32);
      const outcome = await withFileWritesFailing(async () => {
        const mark = await t.ledger.markUsed(e.pubnonce, d).catch((err: unknown) => err);
        const insert = await t.ledger.recordNonce(freshNonce()).catch((err: unknown) => err);
        return { mark, insert };
      });
      expect(outcome.mark).toBeInstanceOf(LedgerUnavailableError);
      expect((outcome.mark as LedgerUnavailableError).dbCode).toMatch(/^SQLITE_(IOERR|FULL)/);
      expect(outcome.insert).toBeInstanceOf(LedgerUnavailableError);
      expect((await t.ledger.findByPubnonce(e.pubnonce))?.usedAtMs).toBeNull();
      expect(await t.ledger.markUsed(e.pubnonce, d)).toEqual({ outcome: 'marked' });
    });
  });
});
