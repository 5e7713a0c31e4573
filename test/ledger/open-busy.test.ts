// Opening a ledger file that another process has locked (replicas or workers starting together):
// the open waits for the lock with async sleeps instead of failing at once.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { LedgerUnavailableError, openLedger } from '../../src/ledger/index.js';
import { holdWriteLock } from './faults.js';

const dirs: string[] = [];
function freshPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ledger-open-busy-'));
  dirs.push(dir);
  return join(dir, 'ledger.sqlite');
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('opening a locked ledger file', () => {
  it('waits for the lock, then opens and writes', async () => {
    const path = freshPath();
    // A new file locked in rollback-journal mode: switching it to WAL needs that lock.
    const holder = await holdWriteLock(path);
    let settled = false;
    const opening = openLedger(`sqlite:${path}?busy_timeout_ms=20000`).finally(() => (settled = true));
    for (let i = 0; i < 20; i++) await nextTurn();
    expect(settled).toBe(false);
    await holder.release();
    const ledger = await opening;
    try {
      await ledger.recordNonce({ keyId: 'k', pubnonce: new Uint8Array(66).fill(2), sessionId: new Uint8Array(32).fill(1) });
      expect(await ledger.healthy()).toBe(true);
    } finally {
      await ledger.close();
    }
  });

  it('gives up with LedgerUnavailableError (SQLITE_BUSY) once the busy timeout passes', async () => {
    const path = freshPath();
    const holder = await holdWriteLock(path);
    try {
      const err = await openLedger(`sqlite:${path}?busy_timeout_ms=50`).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LedgerUnavailableError);
      expect((err as LedgerUnavailableError).dbCode).toMatch(/^SQLITE_BUSY/);
    } finally {
      await holder.release();
    }
  });
});
