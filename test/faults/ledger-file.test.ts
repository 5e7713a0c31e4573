// Faults of the SQLite ledger file alone, made with real mounts (needs root, as CI has; a
// refused mount fails the test with mount's reason). The audit log and the token stay on
// another file system, so unlike disk.test.ts (a file-size limit on the whole process) only the
// ledger is hit.
//
// - A full disk: the ledger lives on a small tmpfs that a filler file fills to the last page.
//   SQLite then gets ENOSPC (SQLITE_FULL) on its next WAL append; the Signer must be
//   NOT_SERVING, answer UNAVAILABLE and sign nothing, the audit log must go on recording the
//   refused calls, and once the filler is gone the daemon must recover by itself.
// - A read-only ledger: a running daemon's ledger cannot be made read-only (the kernel refuses
//   to remount a mount with a file open for writing: EBUSY), so the case is a daemon started on
//   a read-only mount. SQLite would open the file read-only without a word; the daemon must
//   refuse to start, saying which file and why, and start and sign once it is writable again.
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, statfsSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from '@noble/hashes/utils.js';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, SignerClient } from '../../src/client/index.js';
import { SIGNER_SERVICE } from '../../src/protocol/contract.js';
import { Daemon, hex, importKey, makeToken, removeToken, type Token } from '../e2e/harness.js';
import { checkInvariants, readAuditLog, readSqliteLedger } from './invariants.js';
import { Load } from './load.js';
import { Mounts, runOutageScenario, startFaultRig, type FaultRig } from './rig.js';

const mounts = new Mounts();
const dirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  mounts.unmountAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Writes `file` until its file system has no page left (the kernel answers ENOSPC). */
function fillUp(file: string): void {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}

describe('the disk under the SQLite ledger alone full', () => {
  // Room for the ledger and its WAL in this run; what is left is taken by the filler.
  const TMPFS_BYTES = 8 * 1024 * 1024;
  let mnt: string;
  let rig: FaultRig | undefined;
  let reader: Database.Database | undefined;
  beforeAll(async () => {
    mnt = tempDir('musig2-ledgerfull-mnt-');
    mounts.tmpfs(mnt, TMPFS_BYTES);
    rig = await startFaultRig('musig2-ledgerfull-', { ledger: `sqlite:${join(mnt, 'ledger.sqlite')}` });
  });
  afterAll(async () => {
    reader?.close();
    await rig?.close();
  });

  it('SQLITE_FULL: UNAVAILABLE and NOT_SERVING, no signature, the audit log goes on; recovers when space returns', async () => {
    const r = rig!;
    const file = join(mnt, 'ledger.sqlite');
    const filler = join(mnt, 'filler');
    // A WAL that was checkpointed and restarted is overwritten from its start, in pages the
    // file already has: a full disk would not stop those commits. A read transaction held
    // from before the load pins the WAL so that every commit appends, i.e. needs new pages.
    reader = new Database(file, { readonly: true, fileMustExist: true });
    reader.exec('BEGIN');
    reader.prepare('SELECT count(*) FROM nonces').get();

    let auditBytesAtDown = 0;
    const load = await runOutageScenario(
      r,
      'ledger disk full',
      {
        takeDown: async () => {
          console.log(`ledger disk full: WAL ${statSync(`${file}-wal`).size} bytes when the disk filled`);
          fillUp(filler);
          expect(statfsSync(mnt).bavail).toBe(0);
          auditBytesAtDown = statSync(r.auditFile).size;
        },
        bringBack: async () => {
          // Still full: the refusal names the ledger, SQLite said SQLITE_FULL, and the audit
          // log (on another disk) has gone on recording the refused calls.
          const err = await r.probe.nonceGen({ keyId: 'alice', pubkeys: r.pubkeys }).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(ClientError);
          expect((err as ClientError).codeName).toBe('UNAVAILABLE');
          expect((err as ClientError).details).toBe('the nonce ledger is unavailable; nothing was signed');
          expect(await r.probe.health(SIGNER_SERVICE)).toBe('NOT_SERVING');
          const dbCodes = r.daemon
            .logEntries()
            .filter((e) => e.event === 'ledger_error')
            .map((e) => (e.err as { dbCode?: string } | undefined)?.dbCode);
          expect(dbCodes).toContain('SQLITE_FULL');
          expect(statSync(r.auditFile).size).toBeGreaterThan(auditBytesAtDown);
          reader!.exec('COMMIT');
          unlinkSync(filler);
        },
      },
      () => readSqliteLedger(file),
    );
    expect(load.count('NonceGen', 'UNAVAILABLE')).toBeGreaterThan(0);
    const audit = await readAuditLog(r.auditFile, r.token.env);
    expect(audit.filter((a) => a.event === 'call' && a.outcome === 'error' && a.code === 'UNAVAILABLE').length).toBeGreaterThan(0);
  }, 120_000);
});

describe('a read-only ledger file', () => {
  let token: Token | undefined;
  let daemon: Daemon | undefined;
  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    await removeToken(token);
  });

  it('no daemon starts on it (exit 1, names the file and EROFS, no stack); once writable one starts and signs, nothing lost', async () => {
    token = await makeToken('musig2-ledgerro-');
    const t = token;
    const pubkeys = [await importKey(t, 'alice', hex(randomBytes(32))), await importKey(t, 'bob', hex(randomBytes(32)))];
    const auditFile = join(t.dir, 'audit.jsonl');
    const source = tempDir('musig2-ledgerro-src-');
    const mnt = tempDir('musig2-ledgerro-mnt-');
    mounts.bind(source, mnt);
    const file = join(mnt, 'ledger.sqlite');
    const start = () => Daemon.start(t, { ledger: `sqlite:${file}`, args: ['--audit-log', auditFile, '--workers', '1'] });
    const received: Load['received'] = [];
    const sign = async (d: Daemon) => {
      const client = new SignerClient(d.address, { deadlineMs: 10_000 });
      try {
        const load = new Load({
          client: () => client,
          randomKey: 'alice',
          deterministicKey: 'bob',
          pubkeys,
          concurrency: 4,
          maxSessions: 24,
          maxMs: 30_000,
          deterministicEvery: 3,
        });
        await load.done;
        expect(load.thrown).toEqual([]);
        expect(load.codeNames()).toEqual(['OK']);
        expect(load.sessionsCompleted).toBe(24);
        received.push(...load.received);
      } finally {
        client.close();
      }
    };

    // A daemon signs, then dies without closing: the ledger keeps its -wal and -shm, the case
    // in which SQLite opens a read-only file without complaint.
    daemon = await start();
    await sign(daemon);
    expect((await daemon.stop('SIGKILL')).signal).toBe('SIGKILL');
    expect(existsSync(`${file}-wal`)).toBe(true);
    expect(existsSync(`${file}-shm`)).toBe(true);

    mounts.remount(mnt, 'ro');
    daemon = undefined;
    const refused = await start().then(
      async (d) => {
        daemon = d;
        return undefined;
      },
      (e: unknown) => e as Error,
    );
    expect(refused, 'the daemon started on a read-only ledger').toBeInstanceOf(Error);
    const out = refused!.message;
    expect(out).toMatch(/^daemon exited \(1\) before listening/);
    const why = 'the nonce ledger must be writable; nothing can be signed';
    expect(out).toContain(`musig2-signer serve: ledger file ${file} is not writable (EROFS): ${why}`);
    expect(out).not.toMatch(/^\s+at /m);
    // The same reason as a JSON log line, for pipelines that read only those.
    expect(out).toMatch(/"event":"start_failed","reason":"ledger file [^"]+ is not writable \(EROFS\)/);

    // Writable again: a new daemon starts, finds every row, signs; no nonce used twice.
    mounts.remount(mnt, 'rw');
    daemon = await start();
    const probe = new SignerClient(daemon.address, { deadlineMs: 10_000 });
    try {
      expect(await probe.health(SIGNER_SERVICE)).toBe('SERVING');
      // While it runs, its ledger cannot be turned read-only under it.
      expect(() => mounts.remount(mnt, 'ro')).toThrow(/busy/i);
      expect(await probe.health(SIGNER_SERVICE)).toBe('SERVING');
    } finally {
      probe.close();
    }
    await sign(daemon);
    await daemon.stop();
    const report = await checkInvariants({ rows: readSqliteLedger(file), received, auditFiles: [auditFile], auditEnv: token!.env });
    expect(report.violations).toEqual([]);
    expect(report.received).toBe(received.length);
    expect(report.usedRows).toBeGreaterThanOrEqual(48);
    console.log(`read-only ledger: ${report.rows} ledger rows, ${report.auditRecords} audit records, ${report.auditSigned} signed`);
  }, 120_000);
});
