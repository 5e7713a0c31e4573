// Group commit in the SQLite ledger: writes submitted in one event-loop turn share one
// transaction, yet every request gets the outcome it would get alone, settles only after the
// commit, and a failed commit fails every member and leaves nothing behind. Real files, real
// faults (a second process holding the write lock, a file-size limit), no mocks.

import { mkdtempSync, rmSync } from 'node:fs';
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
const hex = (u: Uint8Array) => Buffer.from(u).toString('hex');
const fresh = () => ({ keyId: 'alice', pubnonce: rand(66), sessionId: rand(32) });
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

let dir: string;
const open: NonceLedger[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ledger-group-'));
});

afterEach(async () => {
  for (const l of open.splice(0)) await l.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A ledger on its own file; `now` counts calls, so rows written in one batch share a timestamp. */
async function ledgerAt(name: string, busyTimeoutMs = 200): Promise<{ ledger: NonceLedger; path: string }> {
  const path = join(dir, `${name}.db`);
  let clock = 1_000;
  const ledger = await openLedger(`sqlite:${path}?busy_timeout_ms=${busyTimeoutMs}`, { now: () => ++clock });
  open.push(ledger);
  return { ledger, path };
}

/** What a second connection sees: committed rows only. */
function committedRows(path: string): Record<string, unknown>[] {
  const db = new Database(path, { readonly: true });
  try {
    return db
      .prepare(
        `SELECT key_id, hex(pubnonce) AS pubnonce, hex(session_id) AS session_id, path,
                created_at, used_at, hex(digest) AS digest, hex(psig) AS psig
         FROM nonces ORDER BY hex(pubnonce)`,
      )
      .all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

/** A settled promise as comparable data: values with bytes as hex, errors by class, message and code. */
function describeOutcome(r: PromiseSettledResult<unknown>): unknown {
  if (r.status === 'rejected') {
    const e = r.reason as Error & { dbCode?: string };
    return { error: e.constructor.name, message: e.message, dbCode: e.dbCode };
  }
  return JSON.parse(JSON.stringify(r.value ?? null, (_k, v: unknown) => (v instanceof Uint8Array ? hex(v) : v))) as unknown;
}

type Step = (l: NonceLedger) => Promise<unknown>;

/**
 * A mixed workload touching the same nonces repeatedly, with refusals between successes:
 * conflicting and repeated markUsed, psig storage inside the same batch, deterministic
 * records, replays and conflicts, collisions, unknown nonces and a constraint failure.
 */
function scenario(): Step[] {
  const a = fresh();
  const b = fresh();
  const c = fresh();
  const [da, da2, db, dc] = [rand(32), rand(32), rand(32), rand(32)];
  const [pa, pb, pa2] = [rand(32), rand(32), rand(32)];
  const det = { keyId: 'bob', pubnonce: rand(66), digest: rand(32), psig: rand(32) };
  const det2 = { keyId: 'bob', pubnonce: rand(66), digest: rand(32), psig: rand(32) };
  // Every input is fixed here, so both runs of a scenario submit the same bytes.
  const [unknown, badKey] = [rand(66), fresh()];
  const [detOther, det2Psig, detReuse] = [
    { ...det, digest: rand(32), psig: rand(32) },
    { ...det2, psig: rand(32) },
    rand(32),
  ];
  return [
    (l) => l.recordNonce(a),
    (l) => l.recordNonce(b),
    (l) => l.markUsed(a.pubnonce, da), // marked
    (l) => l.markUsed(a.pubnonce, da2), // reuse: the first mark wins
    (l) => l.markUsed(a.pubnonce, da), // replay, no psig yet
    (l) => l.recordNonce({ ...c, pubnonce: a.pubnonce }), // collision
    (l) => l.recordNonce(c), // its neighbour still goes in
    (l) => l.storePsig(a.pubnonce, da2, pa), // not used with this context
    (l) => l.storePsig(a.pubnonce, da, pa),
    (l) => l.markUsed(a.pubnonce, da), // replay with the psig stored above
    (l) => l.storePsig(a.pubnonce, da, pa2), // a different psig
    (l) => l.storePsig(a.pubnonce, da, pa), // idempotent
    (l) => l.markUsed(unknown, db), // unknown nonce
    (l) => l.markUsed(b.pubnonce, db),
    (l) => l.storePsig(b.pubnonce, db, pb),
    (l) => l.recordDeterministic(det), // recorded
    (l) => l.recordDeterministic(det), // replay
    (l) => l.recordDeterministic(detOther), // reuse
    (l) => l.recordDeterministic({ ...det2, keyId: '' }), // CHECK constraint
    (l) => l.recordDeterministic(det2), // so det2 is still free
    (l) => l.recordDeterministic(det2Psig), // same digest, other psig: replay of the stored one
    (l) => l.recordDeterministic({ keyId: 'bob', pubnonce: c.pubnonce, digest: dc, psig: pa }), // random-path nonce
    (l) => l.markUsed(det.pubnonce, detReuse), // reuse of a deterministic nonce
    (l) => l.markUsed(det.pubnonce, det.digest), // replay of a deterministic nonce
    (l) => l.markUsed(c.pubnonce, dc),
    (l) => l.recordNonce({ ...badKey, keyId: '' }), // CHECK constraint
  ];
}

describe('group commit gives the outcomes of sequential calls', () => {
  it('a mixed batch: same outcomes and same committed rows as one call at a time', async () => {
    const steps = scenario();
    const seq = await ledgerAt('sequential');
    const batched = await ledgerAt('batched');

    const one: PromiseSettledResult<unknown>[] = [];
    for (const step of steps) one.push(...(await Promise.allSettled([step(seq.ledger)])));
    const all = await Promise.allSettled(steps.map((step) => step(batched.ledger)));

    expect(all.map(describeOutcome)).toEqual(one.map(describeOutcome));
    const kinds = all.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as Error).constructor));
    expect(kinds).toEqual([
      'ok', 'ok', 'ok', NonceReuseError, 'ok', NonceCollisionError, 'ok', LedgerError, 'ok', 'ok', LedgerError, 'ok',
      NonceNotRecordedError, 'ok', 'ok', 'ok', 'ok', NonceReuseError, LedgerError, 'ok', 'ok', NonceReuseError,
      NonceReuseError, 'ok', 'ok', LedgerError,
    ]);

    // Same rows, timestamps aside; and the batch was one transaction (one clock reading).
    const strip = (rows: Record<string, unknown>[]) => rows.map(({ created_at: _c, used_at: u, ...r }) => ({ ...r, used: u !== null }));
    const seqRows = committedRows(seq.path);
    const batchedRows = committedRows(batched.path);
    expect(strip(batchedRows)).toEqual(strip(seqRows));
    expect(batchedRows).toHaveLength(5);
    const stamps = new Set(batchedRows.flatMap((r) => [r.created_at, r.used_at]).filter((t) => t !== null));
    expect(stamps.size).toBe(1);
  });

  it('many markUsed on one nonce in one batch: the first submitted wins, the rest see it used', async () => {
    const { ledger } = await ledgerAt('race');
    const e = fresh();
    await ledger.recordNonce(e);
    const digests = Array.from({ length: 20 }, () => rand(32));
    digests[7] = digests[0]!; // a retry of the winner inside the same batch
    const results = await Promise.allSettled(digests.map((d) => ledger.markUsed(e.pubnonce, d)));
    expect(results[0]).toEqual({ status: 'fulfilled', value: { outcome: 'marked' } });
    expect(results[7]).toEqual({ status: 'fulfilled', value: { outcome: 'replay', psig: null } });
    results.forEach((r, i) => {
      if (i === 0 || i === 7) return;
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(NonceReuseError);
    });
    expect((await ledger.findByPubnonce(e.pubnonce))?.digest).toEqual(digests[0]);
  });

  it('a reuse in the middle of a batch fails only itself', async () => {
    const { ledger, path } = await ledgerAt('middle');
    const entries = Array.from({ length: 9 }, fresh);
    await Promise.all(entries.map((e) => ledger.recordNonce(e)));
    const used = entries[4]!;
    await ledger.markUsed(used.pubnonce, rand(32));

    const digests = entries.map(() => rand(32));
    const results = await Promise.allSettled(entries.map((e, i) => ledger.markUsed(e.pubnonce, digests[i]!)));
    results.forEach((r, i) => {
      if (i === 4) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(NonceReuseError);
      else expect(r).toEqual({ status: 'fulfilled', value: { outcome: 'marked' } });
    });
    const rows = committedRows(path);
    for (const [i, e] of entries.entries()) {
      const row = rows.find((r) => r.pubnonce === hex(e.pubnonce).toUpperCase());
      if (i !== 4) expect(row?.digest).toBe(hex(digests[i]!).toUpperCase());
      else expect(row?.digest).not.toBe(hex(digests[4]!).toUpperCase());
    }
  });

  it('more writes than one batch holds, in flight at once: each exactly once, in order', async () => {
    const { ledger } = await ledgerAt('many');
    const entries = Array.from({ length: 2500 }, fresh);
    await Promise.all(entries.map((e) => ledger.recordNonce(e)));
    // Each nonce marked twice with different digests, far apart in the queue: the first wins.
    const first = entries.map(() => rand(32));
    const calls = [
      ...entries.map((e, i) => ledger.markUsed(e.pubnonce, first[i]!)),
      ...entries.map((e) => ledger.markUsed(e.pubnonce, rand(32))),
    ];
    const results = await Promise.allSettled(calls);
    expect(results.slice(0, 2500).every((r) => r.status === 'fulfilled')).toBe(true);
    expect(results.slice(2500).every((r) => r.status === 'rejected' && r.reason instanceof NonceReuseError)).toBe(true);
    for (const i of [0, 999, 1000, 2499]) {
      expect((await ledger.findByPubnonce(entries[i]!.pubnonce))?.digest).toEqual(first[i]);
    }
  });

  it('a caller learns its outcome only once another connection can read the commit', async () => {
    const { ledger, path } = await ledgerAt('durable');
    const entries = Array.from({ length: 8 }, fresh);
    await Promise.all(entries.map((e) => ledger.recordNonce(e)));
    const seen: boolean[] = [];
    const visible = (pubnonce: Uint8Array, used: boolean) => {
      const row = committedRows(path).find((r) => r.pubnonce === hex(pubnonce).toUpperCase());
      return row !== undefined && (row.used_at !== null) === used;
    };
    const dets = Array.from({ length: 8 }, () => ({ keyId: 'bob', pubnonce: rand(66), digest: rand(32), psig: rand(32) }));
    await Promise.all([
      ...entries.map((e) => ledger.markUsed(e.pubnonce, rand(32)).then(() => seen.push(visible(e.pubnonce, true)))),
      ...dets.map((d) => ledger.recordDeterministic(d).then(() => seen.push(visible(d.pubnonce, true)))),
    ]);
    expect(seen).toEqual(Array(16).fill(true));
  });
});

describe('a failed commit fails every member and leaves nothing half-written', () => {
  /** A batch of every kind of write, with refusals mixed in, all submitted in one turn. */
  async function prepared(ledger: NonceLedger) {
    const unused = Array.from({ length: 3 }, fresh);
    await Promise.all(unused.map((e) => ledger.recordNonce(e)));
    const marked = fresh();
    const markedDigest = rand(32);
    await ledger.recordNonce(marked);
    await ledger.markUsed(marked.pubnonce, markedDigest);
    const det = { keyId: 'bob', pubnonce: rand(66), digest: rand(32), psig: rand(32) };
    await ledger.recordDeterministic(det);
    const newNonce = fresh();
    const newDet = { keyId: 'bob', pubnonce: rand(66), digest: rand(32), psig: rand(32) };
    const submit = () => [
      ledger.markUsed(unused[0]!.pubnonce, rand(32)),
      ledger.markUsed(marked.pubnonce, rand(32)), // would be a reuse
      ledger.markUsed(unused[1]!.pubnonce, rand(32)),
      ledger.storePsig(marked.pubnonce, markedDigest, rand(32)),
      ledger.recordDeterministic(det), // would be a replay
      ledger.recordDeterministic(newDet),
      ledger.recordNonce(newNonce),
      ledger.markUsed(unused[2]!.pubnonce, rand(32)),
    ];
    return { unused, marked, newNonce, newDet, submit };
  }

  async function expectUntouched(ledger: NonceLedger, p: Awaited<ReturnType<typeof prepared>>) {
    for (const e of p.unused) expect((await ledger.findByPubnonce(e.pubnonce))?.usedAtMs).toBeNull();
    expect((await ledger.findByPubnonce(p.marked.pubnonce))?.psig).toBeNull();
    expect(await ledger.findByPubnonce(p.newNonce.pubnonce)).toBeNull();
    expect(await ledger.findByPubnonce(p.newDet.pubnonce)).toBeNull();
  }

  it('when the kernel refuses file writes (I/O error at commit)', async () => {
    const { ledger } = await ledgerAt('iofail');
    const p = await prepared(ledger);
    const { results, healthDuring } = await withFileWritesFailing(async () => {
      const settled = await Promise.allSettled(p.submit());
      return { results: settled, healthDuring: await ledger.healthy() };
    });
    for (const r of results) {
      expect(r.status).toBe('rejected');
      const err = (r as PromiseRejectedResult).reason as LedgerUnavailableError;
      expect(err).toBeInstanceOf(LedgerUnavailableError);
      expect(err.dbCode).toMatch(/^SQLITE_(IOERR|FULL)/);
    }
    // Taking the lock cannot see a disk that refuses writes; after a failed write, health probes by writing.
    expect(healthDuring).toBe(false);
    await expectUntouched(ledger, p);
    expect(await ledger.healthy()).toBe(true);
    const again = await Promise.allSettled(p.submit());
    expect(again.map((r) => r.status)).toEqual([
      'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled',
    ]);
  });

  it('when another process holds the write lock past the busy timeout', async () => {
    const { ledger, path } = await ledgerAt('locked');
    const p = await prepared(ledger);
    const holder = await holdWriteLock(path);
    let results: PromiseSettledResult<unknown>[];
    try {
      results = await Promise.allSettled(p.submit());
    } finally {
      await holder.release();
    }
    for (const r of results) {
      const err = (r as PromiseRejectedResult).reason as LedgerUnavailableError;
      expect(err).toBeInstanceOf(LedgerUnavailableError);
      expect(err.dbCode).toMatch(/^SQLITE_BUSY/);
    }
    await expectUntouched(ledger, p);
    expect(await ledger.healthy()).toBe(true);
  });
});

describe('the event loop stays free while the ledger waits', () => {
  it('healthy() answers false at once while another process holds the lock, even with a long busy timeout', async () => {
    const { ledger, path } = await ledgerAt('health', 60_000);
    const holder = await holdWriteLock(path);
    try {
      // With a 60 s busy timeout, a probe that waited for the lock would outlast the test.
      expect(await ledger.healthy()).toBe(false);
      expect(await ledger.healthy()).toBe(false);
    } finally {
      await holder.release();
    }
    expect(await ledger.healthy()).toBe(true);
  });

  it('writes waiting for the lock let timers, health probes and reads run, and commit once it is free', async () => {
    const { ledger, path } = await ledgerAt('wait', 60_000);
    const e = fresh();
    await ledger.recordNonce(e);
    const d = rand(32);
    const holder = await holdWriteLock(path);
    let settled = false;
    let mark: Promise<unknown>;
    let other: Promise<unknown>;
    try {
      mark = ledger.markUsed(e.pubnonce, d).finally(() => (settled = true));
      const late = fresh();
      other = ledger.recordNonce(late);
      // Timers fire, probes and reads answer, while both writes are still waiting.
      for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 1));
      expect(await ledger.healthy()).toBe(false);
      expect((await ledger.findByPubnonce(e.pubnonce))?.usedAtMs).toBeNull();
      await nextTurn();
      expect(settled).toBe(false);
    } finally {
      await holder.release();
    }
    await expect(mark).resolves.toEqual({ outcome: 'marked' });
    await expect(other).resolves.toBeUndefined();
    expect((await ledger.findByPubnonce(e.pubnonce))?.digest).toEqual(d);
  });
});

describe('closing', () => {
  it('settles writes of every kind accepted before close, and refuses new ones', async () => {
    const { ledger, path } = await ledgerAt('close');
    const e = fresh();
    await ledger.recordNonce(e);
    const d = rand(32);
    const det = { keyId: 'bob', pubnonce: rand(66), digest: rand(32), psig: rand(32) };
    const pending = Promise.all([
      ledger.markUsed(e.pubnonce, d),
      ledger.storePsig(e.pubnonce, d, rand(32)),
      ledger.recordDeterministic(det),
      ledger.recordNonce(fresh()),
    ]);
    const closing = ledger.close();
    await expect(ledger.markUsed(rand(66), rand(32))).rejects.toBeInstanceOf(LedgerUnavailableError);
    expect(await ledger.healthy()).toBe(false);
    await closing;
    await expect(pending).resolves.toEqual([{ outcome: 'marked' }, undefined, { outcome: 'recorded' }, undefined]);
    await expect(ledger.recordDeterministic(det)).rejects.toBeInstanceOf(LedgerUnavailableError);
    expect(committedRows(path)).toHaveLength(3);
  });
});
