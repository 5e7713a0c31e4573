// The SQLite nonce ledger against a real database file in a temp dir.

import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  LedgerError,
  LedgerUnavailableError,
  NonceCollisionError,
  NonceNotRecordedError,
  NonceReuseError,
  openLedger,
  type NonceLedger,
} from '../../src/ledger/index.js';
import { holdWriteLock, withFileWritesFailing } from './faults.js';

const rand = (n: number) => new Uint8Array(randomBytes(n));
const fresh = () => ({ keyId: 'alice', pubnonce: rand(66), sessionId: rand(32) });

let dir: string;
let dbPath: string;
let ledger: NonceLedger;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ledger-test-'));
  dbPath = join(dir, 'nested', 'dirs', 'ledger.db');
  ledger = await openLedger(`sqlite:${dbPath}?busy_timeout_ms=200`);
});

afterEach(async () => {
  await ledger.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('opening', () => {
  it('creates the directories, uses WAL, and records the schema version', () => {
    expect(existsSync(dbPath)).toBe(true);
    const other = new Database(dbPath, { readonly: true });
    try {
      expect(other.pragma('journal_mode', { simple: true })).toBe('wal');
      const versions = other.prepare('SELECT version FROM schema_migrations').all();
      expect(versions).toEqual([{ version: 1 }]);
      const cols = (other.prepare('PRAGMA table_info(nonces)').all() as { name: string }[]).map((c) => c.name);
      expect(cols).toEqual(['id', 'key_id', 'pubnonce', 'session_id', 'path', 'created_at', 'used_at', 'digest', 'psig']);
    } finally {
      other.close();
    }
  });

  it('reopens an existing ledger without re-running migrations, keeping its rows', async () => {
    const e = fresh();
    await ledger.recordNonce(e);
    await ledger.close();
    ledger = await openLedger(`sqlite://${dbPath}`);
    expect((await ledger.findByPubnonce(e.pubnonce))?.keyId).toBe('alice');
  });

  it('refuses a ledger written by a newer schema', async () => {
    await ledger.close();
    const db = new Database(dbPath);
    db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)').run();
    db.close();
    await expect(openLedger(`sqlite:${dbPath}`)).rejects.toThrow(/newer than this daemon/);
    ledger = await openLedger('sqlite::memory:'); // for afterEach
  });

  it('rejects unsupported URLs clearly', async () => {
    // postgres:// is the PostgreSQL ledger (postgres-ledger.test.ts); nothing listens on port 1.
    await expect(openLedger('postgres://u@127.0.0.1:1/db')).rejects.toBeInstanceOf(LedgerUnavailableError);
    await expect(openLedger('mysql://x')).rejects.toBeInstanceOf(LedgerError);
    await expect(openLedger(`sqlite:${dbPath}?bogus=1`)).rejects.toThrow(/unknown ledger URL option/);
  });
});

describe('NonceGen rows', () => {
  it('records an unused random-path row', async () => {
    const e = fresh();
    await ledger.recordNonce(e);
    const row = await ledger.findByPubnonce(e.pubnonce);
    expect(row).toMatchObject({ keyId: 'alice', path: 'random', usedAtMs: null, digest: null, psig: null });
    expect(row?.sessionId).toEqual(e.sessionId);
    expect((await ledger.findBySession(e.sessionId))?.pubnonce).toEqual(e.pubnonce);
  });

  it('refuses a repeated pubnonce as a collision, also within one group commit', async () => {
    const e = fresh();
    await ledger.recordNonce(e);
    await expect(ledger.recordNonce({ ...e, sessionId: rand(32) })).rejects.toBeInstanceOf(NonceCollisionError);

    const p = rand(66);
    const results = await Promise.allSettled([
      ledger.recordNonce({ keyId: 'a', pubnonce: p, sessionId: rand(32) }),
      ledger.recordNonce({ keyId: 'a', pubnonce: p, sessionId: rand(32) }),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(rejected.reason).toBeInstanceOf(NonceCollisionError);
  });

  it('refuses a repeated session id as a collision', async () => {
    const e = fresh();
    await ledger.recordNonce(e);
    await expect(ledger.recordNonce({ ...e, pubnonce: rand(66) })).rejects.toBeInstanceOf(NonceCollisionError);
  });

  it('commits thousands of concurrent inserts, each settled after its commit', async () => {
    const entries = Array.from({ length: 5000 }, fresh);
    await Promise.all(entries.map((e) => ledger.recordNonce(e)));
    const other = new Database(dbPath, { readonly: true });
    try {
      expect(other.prepare('SELECT count(*) AS c FROM nonces').get()).toEqual({ c: 5000 });
    } finally {
      other.close();
    }
  });

  it('rejects malformed rows rather than storing them', async () => {
    await expect(ledger.recordNonce({ keyId: 'a', pubnonce: rand(65), sessionId: rand(32) })).rejects.toThrow(
      /pubnonce must be 66 bytes/,
    );
    await expect(ledger.recordNonce({ keyId: '', pubnonce: rand(66), sessionId: rand(32) })).rejects.toThrow(
      /constraint/,
    );
  });
});

describe('Sign: used-marking', () => {
  it('marks once, replays the same digest, refuses another digest', async () => {
    const e = fresh();
    const d1 = rand(32);
    const psig = rand(32);
    await ledger.recordNonce(e);
    expect(await ledger.markUsed(e.pubnonce, d1)).toEqual({ outcome: 'marked' });
    // A retry before the psig is stored: replay, but with nothing to return yet.
    expect(await ledger.markUsed(e.pubnonce, d1)).toEqual({ outcome: 'replay', psig: null });
    await ledger.storePsig(e.pubnonce, d1, psig);
    expect(await ledger.markUsed(e.pubnonce, d1)).toEqual({ outcome: 'replay', psig });
    await expect(ledger.markUsed(e.pubnonce, rand(32))).rejects.toBeInstanceOf(NonceReuseError);

    const row = await ledger.findByPubnonce(e.pubnonce);
    expect(row?.digest).toEqual(d1);
    expect(row?.psig).toEqual(psig);
    expect(row?.usedAtMs).toBeTypeOf('number');
  });

  it('lets exactly one of many concurrent markUsed calls with different digests win', async () => {
    const e = fresh();
    await ledger.recordNonce(e);
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => ledger.markUsed(e.pubnonce, rand(32))));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(NonceReuseError);
    }
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
    expect(await ledger.recordDeterministic({ keyId: 'bob', pubnonce, digest, psig })).toEqual({
      outcome: 'replay',
      psig,
    });
    await expect(
      ledger.recordDeterministic({ keyId: 'bob', pubnonce, digest: rand(32), psig: rand(32) }),
    ).rejects.toBeInstanceOf(NonceReuseError);
    const row = await ledger.findByPubnonce(pubnonce);
    expect(row).toMatchObject({ path: 'deterministic', sessionId: null, keyId: 'bob' });
    expect(row?.digest).toEqual(digest);
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
  it('answers unavailable while another process holds the write lock, and recovers after', async () => {
    const e = fresh();
    await ledger.recordNonce(e);
    const d = rand(32);
    const holder = await holdWriteLock(dbPath);
    try {
      expect(await ledger.healthy()).toBe(false);
      const busy = await ledger.markUsed(e.pubnonce, d).catch((err: unknown) => err);
      expect(busy).toBeInstanceOf(LedgerUnavailableError);
      expect((busy as LedgerUnavailableError).dbCode).toMatch(/^SQLITE_BUSY/);
      await expect(ledger.recordNonce(fresh())).rejects.toBeInstanceOf(LedgerUnavailableError);
      await expect(
        ledger.recordDeterministic({ keyId: 'b', pubnonce: rand(66), digest: rand(32), psig: rand(32) }),
      ).rejects.toBeInstanceOf(LedgerUnavailableError);
    } finally {
      await holder.release();
    }
    // Nothing was marked while the lock was held.
    expect((await ledger.findByPubnonce(e.pubnonce))?.usedAtMs).toBeNull();
    expect(await ledger.healthy()).toBe(true);
    expect(await ledger.markUsed(e.pubnonce, d)).toEqual({ outcome: 'marked' });
  });

  it('answers unavailable when the kernel refuses file writes, and recovers after', async () => {
    const e = fresh();
    await ledger.recordNonce(e);
    const d = rand(32);
    const outcome = await withFileWritesFailing(async () => {
      const mark = await ledger.markUsed(e.pubnonce, d).catch((err: unknown) => err);
      const insert = await ledger.recordNonce(fresh()).catch((err: unknown) => err);
      return { mark, insert };
    });
    expect(outcome.mark).toBeInstanceOf(LedgerUnavailableError);
    expect((outcome.mark as LedgerUnavailableError).dbCode).toMatch(/^SQLITE_(IOERR|FULL)/);
    expect(outcome.insert).toBeInstanceOf(LedgerUnavailableError);
    expect((await ledger.findByPubnonce(e.pubnonce))?.usedAtMs).toBeNull();
    expect(await ledger.markUsed(e.pubnonce, d)).toEqual({ outcome: 'marked' });
  });

  it('answers unavailable after close, and reports unhealthy', async () => {
    const e = fresh();
    await ledger.recordNonce(e);
    await ledger.close();
    expect(await ledger.healthy()).toBe(false);
    await expect(ledger.markUsed(e.pubnonce, rand(32))).rejects.toBeInstanceOf(LedgerUnavailableError);
    await expect(ledger.recordNonce(fresh())).rejects.toBeInstanceOf(LedgerUnavailableError);
  });

  it('settles inserts accepted before close', async () => {
    const entries = Array.from({ length: 10 }, fresh);
    const pending = entries.map((e) => ledger.recordNonce(e));
    await ledger.close();
    await expect(Promise.all(pending)).resolves.toHaveLength(10);
    ledger = await openLedger(`sqlite:${dbPath}`);
    for (const e of entries) expect(await ledger.findByPubnonce(e.pubnonce)).not.toBeNull();
  });
});
