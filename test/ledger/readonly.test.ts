// A ledger file that cannot be written (a read-only mount; needs root, as CI has) is refused at
// open with a reason that names the file. SQLite itself opens such a file read-only without a
// word, and in WAL mode with -wal/-shm present even BEGIN IMMEDIATE succeeds, so without the
// refusal a daemon would start, report healthy and then fail every write.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LedgerUnavailableError, openLedger } from '../../src/ledger/index.js';
import { Mounts } from '../faults/rig.js';

const SESSION = new Uint8Array(32).fill(7);
const PUBNONCE = new Uint8Array(66).fill(3);

// Runs in a separate process: writes one row in WAL mode and dies, leaving -wal and -shm behind.
const DIE_AFTER_WRITE = `
const Database = require('better-sqlite3');
const db = new Database(process.argv[1]);
db.pragma('journal_mode = WAL');
db.pragma('wal_autocheckpoint = 0');
db.prepare("INSERT INTO nonces (key_id, pubnonce, session_id, path, created_at) VALUES ('k', ?, ?, 'random', 1)")
  .run(Buffer.from(process.argv[2], 'hex'), Buffer.from(process.argv[3], 'hex'));
process.kill(process.pid, 'SIGKILL');
`;

const mounts = new Mounts();
let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'ledger-readonly-'));
});
afterEach(() => mounts.unmountAll());
afterAll(() => {
  mounts.unmountAll();
  rmSync(root, { recursive: true, force: true });
});

/** A folder holding a ledger with its schema, and an empty folder to mount it on. */
async function ledgerFolder(name: string): Promise<{ source: string; mnt: string }> {
  const source = join(root, name);
  const mnt = join(root, `${name}-mnt`);
  mkdirSync(mnt, { recursive: true });
  const ledger = await openLedger(`sqlite:${join(source, 'ledger.sqlite')}`);
  await ledger.close();
  return { source, mnt };
}

async function openError(url: string): Promise<LedgerUnavailableError> {
  const err = await openLedger(url).then(
    async (l) => {
      await l.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LedgerUnavailableError);
  return err as LedgerUnavailableError;
}

describe('a read-only ledger file', () => {
  it('with -wal and -shm left by a dead writer: refused at open (EROFS, the file named); opens with its rows once writable', async () => {
    const { source, mnt } = await ledgerFolder('dirty');
    const hexOf = (b: Uint8Array) => Buffer.from(b).toString('hex');
    const r = spawnSync(process.execPath, ['-e', DIE_AFTER_WRITE, join(source, 'ledger.sqlite'), hexOf(PUBNONCE), hexOf(SESSION)]);
    expect(r.signal).toBe('SIGKILL');
    expect(existsSync(join(source, 'ledger.sqlite-wal'))).toBe(true);
    expect(existsSync(join(source, 'ledger.sqlite-shm'))).toBe(true);

    mounts.bind(source, mnt);
    mounts.remount(mnt, 'ro');
    const file = join(mnt, 'ledger.sqlite');
    const err = await openError(`sqlite:${file}`);
    expect(err.message).toBe(`ledger file ${file} is not writable (EROFS): the nonce ledger must be writable; nothing can be signed`);

    mounts.remount(mnt, 'rw');
    const ledger = await openLedger(`sqlite:${file}`);
    try {
      expect((await ledger.findBySession(SESSION))?.keyId).toBe('k');
      await ledger.recordNonce({ keyId: 'k', pubnonce: new Uint8Array(66).fill(4), sessionId: new Uint8Array(32).fill(8) });
      expect(await ledger.healthy()).toBe(true);
    } finally {
      await ledger.close();
    }
  });

  it('closed cleanly (no -wal): refused at open with the same reason', async () => {
    const { source, mnt } = await ledgerFolder('clean');
    expect(existsSync(join(source, 'ledger.sqlite-wal'))).toBe(false);
    mounts.bind(source, mnt);
    mounts.remount(mnt, 'ro');
    const file = join(mnt, 'ledger.sqlite');
    const err = await openError(`sqlite:${file}`);
    expect(err.message).toContain(`ledger file ${file} is not writable (EROFS): `);
  });

  it('not there yet, on a read-only mount (the file, or a folder above it, cannot be created): refused with the reason', async () => {
    const source = join(root, 'empty');
    const mnt = join(root, 'empty-mnt');
    mkdirSync(source);
    mkdirSync(mnt);
    mounts.bind(source, mnt);
    mounts.remount(mnt, 'ro');
    for (const file of [join(mnt, 'ledger.sqlite'), join(mnt, 'sub', 'ledger.sqlite')]) {
      const err = await openError(`sqlite:${file}`);
      expect(err.message).toContain(`ledger file ${file} is not writable (EROFS): `);
    }
  });
});
