// The SQLite ledger's own per-commit flush: SQLite runs synchronous=NORMAL and the ledger
// fsyncs the -wal file off the event loop after every committed batch, settling callers only
// then. The flush is held or failed through the ledger's `flush` option, wrapped around the
// real fsync: the kernel cannot be made to fail an fsync on demand here.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fsync, open as openFd, close as closeFd } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LedgerUnavailableError, SqliteLedger } from '../../src/ledger/index.js';

const rand = (n: number) => new Uint8Array(randomBytes(n));
const fresh = () => ({ keyId: 'alice', pubnonce: rand(66), sessionId: rand(32) });
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

/** The real flush, as the ledger's default does it. */
function realFsync(path: string): Promise<void> {
  return new Promise((resolve, reject) =>
    openFd(path, 'r', (e, fd) => (e ? reject(e) : fsync(fd, (se) => closeFd(fd, (ce) => ((se ?? ce) ? reject(se ?? ce) : resolve()))))),
  );
}

/** A flush that records its calls and can be held shut or made to fail. */
class Flush {
  readonly paths: string[] = [];
  private gate: Promise<void> = Promise.resolve();
  private open: () => void = () => {};
  failWith: NodeJS.ErrnoException | undefined;

  hold(): void {
    this.gate = new Promise((r) => (this.open = r));
  }

  release(): void {
    this.open();
  }

  readonly fn = async (path: string): Promise<void> => {
    this.paths.push(path);
    await this.gate;
    if (this.failWith) throw this.failWith;
    await realFsync(path);
  };
}

let dir: string;
let path: string;
let flush: Flush;
let ledger: SqliteLedger;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ledger-flush-'));
  path = join(dir, 'ledger.db');
  flush = new Flush();
  ledger = SqliteLedger.open({ path, flush: flush.fn });
});

afterEach(async () => {
  flush.release();
  await ledger.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Whether a promise has settled, without waiting for it. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  for (let i = 0; i < 5; i++) await nextTurn();
  return done;
}

describe('the per-commit flush', () => {
  it('flushes the -wal file once per committed batch', async () => {
    await Promise.all(Array.from({ length: 20 }, () => ledger.recordNonce(fresh())));
    expect(flush.paths).toEqual([`${path}-wal`]);
    await ledger.recordNonce(fresh());
    expect(flush.paths).toHaveLength(2);
  });

  it('settles no caller before the flush returns, though the row is committed', async () => {
    flush.hold();
    const e = fresh();
    const write = ledger.recordNonce(e);
    expect(await settled(write)).toBe(false);
    // Committed (a reader sees it) but not yet known durable: the caller still waits.
    expect(await ledger.findByPubnonce(e.pubnonce)).not.toBeNull();
    flush.release();
    await expect(write).resolves.toBeUndefined();
  });

  it('commits the writes that arrive during a flush together, in the next batch', async () => {
    flush.hold();
    const first = ledger.recordNonce(fresh());
    await nextTurn();
    const more = Array.from({ length: 10 }, () => ledger.recordNonce(fresh()));
    await nextTurn();
    expect(flush.paths).toHaveLength(1);
    flush.release();
    await Promise.all([first, ...more]);
    expect(flush.paths).toHaveLength(2);
  });

  it('a failed flush refuses its batch and all queued behind it, and the ledger stays down', async () => {
    flush.hold();
    flush.failWith = Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    const e = fresh();
    const write = ledger.recordNonce(e);
    await nextTurn();
    const queued = ledger.markUsed(e.pubnonce, rand(32));
    flush.release();
    await expect(write).rejects.toBeInstanceOf(LedgerUnavailableError);
    await expect(write).rejects.toThrow(/flushed to disk \(fsync: EIO\).*restarted/);
    await expect(queued).rejects.toBeInstanceOf(LedgerUnavailableError);

    // No way back without a restart: a later fsync could "succeed" over lost pages.
    flush.failWith = undefined;
    await expect(ledger.recordNonce(fresh())).rejects.toThrow(/flushed to disk/);
    await expect(ledger.findByPubnonce(e.pubnonce)).rejects.toThrow(/flushed to disk/);
    expect(await ledger.healthy()).toBe(false);

    // A fresh open (the restart) finds the committed row, marked as it was: refused either
    // way, never signed twice.
    await ledger.close();
    ledger = SqliteLedger.open({ path, flush: flush.fn });
    expect((await ledger.findByPubnonce(e.pubnonce))?.usedAtMs).toBeNull();
    expect(await ledger.healthy()).toBe(true);
  });
});
