// The behaviour every NonceLedger back end must have, written once. Each back end's test file
// runs ledgerContract() on its own stores, so SQLite and PostgreSQL are held to the same
// outcomes; only what a back end does differently (files, locks, servers) stays in its file.
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  LedgerError,
  LedgerUnavailableError,
  NonceCollisionError,
  NonceNotRecordedError,
  NonceReuseError,
  VelocityExceededError,
  type NonceLedger,
} from '../../src/ledger/index.js';

export const rand = (n: number) => new Uint8Array(randomBytes(n));
export const freshNonce = () => ({ keyId: 'alice', pubnonce: rand(66), sessionId: rand(32) });

/** One empty ledger store (a file, a database) for one test. */
export interface LedgerStore {
  /** A new handle on this store; a second handle stands for another process or replica. */
  open(): Promise<NonceLedger>;
  /** Runs one SQL statement on the store directly, bypassing the ledger; returns its rows. */
  query(text: string): Promise<unknown[]>;
  /** Removes the store; every handle is closed by then. */
  destroy(): Promise<void>;
}

export interface LedgerFixture<S extends LedgerStore> {
  /** This test's store. */
  readonly store: S;
  /** This test's ledger, the first handle on the store. A test may replace it (to reopen). */
  ledger: NonceLedger;
  /** Another handle on the same store, closed after the test. */
  another(): Promise<NonceLedger>;
}

/** A fresh store and ledger for every test in the calling describe block, all closed after. */
export function useLedger<S extends LedgerStore>(newStore: () => Promise<S>): LedgerFixture<S> {
  let store: S | undefined;
  let ledger: NonceLedger | undefined;
  const handles: NonceLedger[] = [];
  beforeEach(async () => {
    store = await newStore();
    ledger = await store.open();
  });
  afterEach(async () => {
    // close() is idempotent, so handles a test closed itself are harmless here.
    await Promise.all([ledger, ...handles.splice(0)].map((l) => l?.close()));
    ledger = undefined;
    await store?.destroy();
    store = undefined;
  });
  const current = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('the ledger fixture is only set inside a test');
    return v;
  };
  return {
    get store() {
      return current(store);
    },
    get ledger() {
      return current(ledger);
    },
    set ledger(next: NonceLedger) {
      if (ledger) handles.push(ledger); // a replaced handle is still closed after the test
      ledger = next;
    },
    async another() {
      const l = await current(store).open();
      handles.push(l);
      return l;
    },
  };
}

export interface ContractOptions {
  /** How many inserts the bulk test has in flight at once. Default 1000. */
  readonly concurrentInserts?: number;
}

/** Races are run both on one handle and spread over two (two processes or replicas). */
const SPREADS = [
  ['on one handle', 1],
  ['across two handles', 2],
] as const;

export function ledgerContract(backend: string, newStore: () => Promise<LedgerStore>, opts: ContractOptions = {}): void {
  describe(`${backend} ledger contract`, () => {
    const t = useLedger(newStore);

    /** n handles on the test's store; racing calls take them in turn. */
    const handles = async (n: number): Promise<NonceLedger[]> => (n === 1 ? [t.ledger] : [t.ledger, await t.another()]);

    const rowCount = async (): Promise<number> => {
      const [row] = (await t.store.query('SELECT count(*) AS c FROM nonces')) as { c: number | string }[];
      return Number(row?.c);
    };
    const schemaVersions = (store: LedgerStore) => store.query('SELECT version FROM schema_migrations ORDER BY version');
    const ALL_VERSIONS = [{ version: 1 }, { version: 2 }, { version: 3 }];
    /** The tables each later schema version adds (2: the audit anchor, 3: velocity charges). */
    const TABLES_OF: Record<number, string[]> = { 2: ['audit_heads'], 3: ['velocity_charges', 'velocity_totals'] };
    /** Turns the test's store into one an older daemon left at `version`: later tables and their rows in schema_migrations gone. */
    const leaveAt = async (version: number) => {
      await t.ledger.close();
      for (const [v, tables] of Object.entries(TABLES_OF)) {
        if (Number(v) > version) for (const name of tables) await t.store.query(`DROP TABLE ${name}`);
      }
      await t.store.query(`DELETE FROM schema_migrations WHERE version > ${version}`);
      expect(await schemaVersions(t.store)).toEqual(ALL_VERSIONS.filter((r) => r.version <= version));
    };
    const hexOf = (n: number) => Buffer.from(rand(n)).toString('hex');
    const velocityCharge = (amount: bigint) => ({ keyId: 'alice', rule: 'daily', periodStart: 86_400, amount, limit: 1000n, txid: rand(32) });

    describe('opening', () => {
      it('records every schema version in a new store', async () => {
        expect(await schemaVersions(t.store)).toEqual(ALL_VERSIONS);
      });

      it('reopens an existing ledger without re-running migrations, keeping its rows', async () => {
        const e = freshNonce();
        await t.ledger.recordNonce(e);
        await t.ledger.close();
        t.ledger = await t.store.open();
        expect((await t.ledger.findByPubnonce(e.pubnonce))?.keyId).toBe('alice');
        expect(await schemaVersions(t.store)).toEqual(ALL_VERSIONS);
      });

      it('migrates a version 1 store through versions 2 and 3, keeping its rows; both later tables work', async () => {
        const e = freshNonce();
        await t.ledger.recordNonce(e);
        await leaveAt(1);
        t.ledger = await t.store.open();
        expect(await schemaVersions(t.store)).toEqual(ALL_VERSIONS);
        expect((await t.ledger.findByPubnonce(e.pubnonce))?.keyId).toBe('alice');
        const chain = hexOf(16);
        const mac = hexOf(32);
        expect(await t.ledger.recordAuditHead({ chain, seq: 1, mac })).toBe(true);
        expect(await t.ledger.auditHead(chain)).toEqual({ seq: 1, mac });
        expect(await t.ledger.markUsedCharging([{ pubnonce: e.pubnonce, digest: rand(32) }], velocityCharge(300n))).toEqual([{ outcome: 'marked' }]);
        expect(await t.ledger.spentInPeriod('alice', 'daily', 86_400)).toBe(300n);
      });

      it('migrates a version 2 store (audit anchor, no velocity) to version 3, keeping its audit heads', async () => {
        const chain = hexOf(16);
        const mac = hexOf(32);
        await t.ledger.recordAuditHead({ chain, seq: 7, mac });
        await leaveAt(2);
        t.ledger = await t.store.open();
        expect(await schemaVersions(t.store)).toEqual(ALL_VERSIONS);
        expect(await t.ledger.auditHead(chain)).toEqual({ seq: 7, mac });
        const [e1, e2] = [freshNonce(), freshNonce()];
        await Promise.all([t.ledger.recordNonce(e1), t.ledger.recordNonce(e2)]);
        expect(await t.ledger.markUsedCharging([{ pubnonce: e1.pubnonce, digest: rand(32) }], velocityCharge(1000n))).toEqual([{ outcome: 'marked' }]);
        await expect(t.ledger.markUsedCharging([{ pubnonce: e2.pubnonce, digest: rand(32) }], velocityCharge(1n))).rejects.toBeInstanceOf(VelocityExceededError);
      });

      it('refuses a ledger written by a newer schema', async () => {
        await t.store.query('INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)');
        await expect(t.store.open()).rejects.toThrow(/newer than this daemon/);
      });

      it('several handles opening a new store at once migrate it exactly once', async () => {
        const other = await newStore();
        try {
          const ledgers = await Promise.all(Array.from({ length: 6 }, () => other.open()));
          await Promise.all(ledgers.map((l) => l.close()));
          expect(await schemaVersions(other)).toEqual(ALL_VERSIONS);
        } finally {
          await other.destroy();
        }
      });
    });

    describe('NonceGen rows', () => {
      it('records an unused random-path row', async () => {
        const e = freshNonce();
        await t.ledger.recordNonce(e);
        const row = await t.ledger.findByPubnonce(e.pubnonce);
        expect(row).toMatchObject({ keyId: 'alice', path: 'random', usedAtMs: null, digest: null, psig: null });
        expect(row?.sessionId).toEqual(e.sessionId);
        expect(row?.createdAtMs).toBeTypeOf('number');
        expect((await t.ledger.findBySession(e.sessionId))?.pubnonce).toEqual(e.pubnonce);
        expect(await t.ledger.findBySession(rand(32))).toBeNull();
      });

      it('refuses a repeated pubnonce or session id as a collision', async () => {
        const e = freshNonce();
        await t.ledger.recordNonce(e);
        await expect(t.ledger.recordNonce({ ...e, sessionId: rand(32) })).rejects.toBeInstanceOf(NonceCollisionError);
        await expect(t.ledger.recordNonce({ ...e, pubnonce: rand(66) })).rejects.toBeInstanceOf(NonceCollisionError);
      });

      for (const [where, n] of SPREADS) {
        it(`records a pubnonce submitted many times at once exactly once, the rest collide, ${where}`, async () => {
          const ls = await handles(n);
          const p = rand(66);
          const results = await Promise.allSettled(
            Array.from({ length: 10 }, (_, i) => ls[i % n]!.recordNonce({ keyId: 'a', pubnonce: p, sessionId: rand(32) })),
          );
          expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
          for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(NonceCollisionError);
          expect(await rowCount()).toBe(1);
        });
      }

      it('commits many concurrent inserts, each settled after its commit', async () => {
        const n = opts.concurrentInserts ?? 1000;
        const entries = Array.from({ length: n }, freshNonce);
        await Promise.all(entries.map((e) => t.ledger.recordNonce(e)));
        expect(await rowCount()).toBe(n);
      });

      it('rejects malformed rows rather than storing them', async () => {
        await expect(t.ledger.recordNonce({ keyId: 'a', pubnonce: rand(65), sessionId: rand(32) })).rejects.toThrow(
          /pubnonce must be 66 bytes/,
        );
        const bad = await t.ledger.recordNonce({ keyId: '', pubnonce: rand(66), sessionId: rand(32) }).catch((e: unknown) => e);
        // A refused row, not an outage: the database is fine.
        expect(bad).toBeInstanceOf(LedgerError);
        expect(bad).not.toBeInstanceOf(LedgerUnavailableError);
        expect(String(bad)).toMatch(/constraint/);
        expect(await rowCount()).toBe(0);
      });
    });

    describe('Sign: used-marking', () => {
      it('marks once, replays the same digest, refuses another digest', async () => {
        const e = freshNonce();
        const d1 = rand(32);
        const psig = rand(32);
        await t.ledger.recordNonce(e);
        expect(await t.ledger.markUsed(e.pubnonce, d1)).toEqual({ outcome: 'marked' });
        // A retry before the psig is stored: replay, but with nothing to return yet.
        expect(await t.ledger.markUsed(e.pubnonce, d1)).toEqual({ outcome: 'replay', psig: null });
        await t.ledger.storePsig(e.pubnonce, d1, psig);
        expect(await t.ledger.markUsed(e.pubnonce, d1)).toEqual({ outcome: 'replay', psig });
        await expect(t.ledger.markUsed(e.pubnonce, rand(32))).rejects.toBeInstanceOf(NonceReuseError);

        const row = await t.ledger.findByPubnonce(e.pubnonce);
        expect(row?.digest).toEqual(d1);
        expect(row?.psig).toEqual(psig);
        expect(row?.usedAtMs).toBeTypeOf('number');
      });

      it('a nonce marked through one handle replays its psig, or is refused, through another', async () => {
        const b = await t.another();
        const e = freshNonce();
        const d = rand(32);
        const psig = rand(32);
        await t.ledger.recordNonce(e);
        expect(await t.ledger.markUsed(e.pubnonce, d)).toEqual({ outcome: 'marked' });
        await t.ledger.storePsig(e.pubnonce, d, psig);
        expect(await b.markUsed(e.pubnonce, d)).toEqual({ outcome: 'replay', psig });
        await expect(b.markUsed(e.pubnonce, rand(32))).rejects.toBeInstanceOf(NonceReuseError);
      });

      for (const [where, n] of SPREADS) {
        it(`lets exactly one of many concurrent markUsed calls with different digests win, ${where}`, async () => {
          const ls = await handles(n);
          const e = freshNonce();
          await t.ledger.recordNonce(e);
          const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => ls[i % n]!.markUsed(e.pubnonce, rand(32))));
          expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
          for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(NonceReuseError);
        });

        it(`the same digest twice at once: one marks, the other replays, ${where}`, async () => {
          const ls = await handles(n);
          const e = freshNonce();
          const d = rand(32);
          await t.ledger.recordNonce(e);
          const results = await Promise.all([ls[0]!.markUsed(e.pubnonce, d), ls[1 % n]!.markUsed(e.pubnonce, d)]);
          expect(results.map((r) => r.outcome).sort()).toEqual(['marked', 'replay']);
        });
      }

      it('refuses to mark or store for an unknown nonce', async () => {
        await expect(t.ledger.markUsed(rand(66), rand(32))).rejects.toBeInstanceOf(NonceNotRecordedError);
        await expect(t.ledger.storePsig(rand(66), rand(32), rand(32))).rejects.toBeInstanceOf(NonceNotRecordedError);
      });

      it('stores a psig idempotently and only under the used digest', async () => {
        const e = freshNonce();
        const d = rand(32);
        const psig = rand(32);
        await t.ledger.recordNonce(e);
        await expect(t.ledger.storePsig(e.pubnonce, d, psig)).rejects.toThrow(/not used with this signing context/);
        await t.ledger.markUsed(e.pubnonce, d);
        await expect(t.ledger.storePsig(e.pubnonce, rand(32), psig)).rejects.toThrow(/not used with this signing context/);
        await t.ledger.storePsig(e.pubnonce, d, psig);
        await t.ledger.storePsig(e.pubnonce, d, psig);
        await expect(t.ledger.storePsig(e.pubnonce, d, rand(32))).rejects.toThrow(/different psig/);
        expect((await t.ledger.findByPubnonce(e.pubnonce))?.psig).toEqual(psig);
      });
    });

    describe('DeterministicSign rows', () => {
      it('records, replays the same digest, refuses another digest', async () => {
        const pubnonce = rand(66);
        const digest = rand(32);
        const psig = rand(32);
        const entry = { keyId: 'bob', pubnonce, digest, psig };
        expect(await t.ledger.recordDeterministic(entry)).toEqual({ outcome: 'recorded' });
        expect(await t.ledger.recordDeterministic(entry)).toEqual({ outcome: 'replay', psig });
        await expect(t.ledger.recordDeterministic({ ...entry, digest: rand(32), psig: rand(32) })).rejects.toBeInstanceOf(
          NonceReuseError,
        );
        const row = await t.ledger.findByPubnonce(pubnonce);
        expect(row).toMatchObject({ path: 'deterministic', sessionId: null, keyId: 'bob' });
        expect(row?.digest).toEqual(digest);
        expect(row?.usedAtMs).toBe(row?.createdAtMs);
      });

      for (const [where, n] of SPREADS) {
        it(`identical records at once: one row, one recorded, the rest replay, ${where}`, async () => {
          const ls = await handles(n);
          const entry = { keyId: 'bob', pubnonce: rand(66), digest: rand(32), psig: rand(32) };
          const results = await Promise.all(Array.from({ length: 10 }, (_, i) => ls[i % n]!.recordDeterministic(entry)));
          expect(results.filter((r) => r.outcome === 'recorded')).toHaveLength(1);
          for (const r of results) if (r.outcome === 'replay') expect(r.psig).toEqual(entry.psig);
          expect(await rowCount()).toBe(1);
        });
      }

      it('refuses a deterministic record on a random-path pubnonce', async () => {
        const e = freshNonce();
        await t.ledger.recordNonce(e);
        await expect(
          t.ledger.recordDeterministic({ keyId: 'alice', pubnonce: e.pubnonce, digest: rand(32), psig: rand(32) }),
        ).rejects.toBeInstanceOf(NonceReuseError);
      });

      it('refuses markUsed on a deterministic pubnonce with another digest', async () => {
        const pubnonce = rand(66);
        await t.ledger.recordDeterministic({ keyId: 'bob', pubnonce, digest: rand(32), psig: rand(32) });
        await expect(t.ledger.markUsed(pubnonce, rand(32))).rejects.toBeInstanceOf(NonceReuseError);
      });
    });

    describe('velocity charges (signing policy)', () => {
      const charge = (amount: bigint, txid = rand(32), limit = 1000n) => ({ keyId: 'alice', rule: 'daily', periodStart: 86_400, amount, limit, txid });
      const usedNonce = async (ledger: NonceLedger = t.ledger) => {
        const e = freshNonce();
        await ledger.recordNonce(e);
        return { pubnonce: e.pubnonce, digest: rand(32) };
      };

      it('marks and charges together; a refused charge marks nothing; a retry of the txid is not charged again', async () => {
        const a = await usedNonce();
        const c = charge(600n);
        expect(await t.ledger.markUsedCharging([a], c)).toEqual([{ outcome: 'marked' }]);
        expect(await t.ledger.spentInPeriod('alice', 'daily', 86_400)).toBe(600n);
        // The same txid again (an identical retry): replays, charged nothing more, and judged without its own charge.
        expect(await t.ledger.markUsedCharging([a], c)).toEqual([{ outcome: 'replay', psig: null }]);
        expect(await t.ledger.spentInPeriod('alice', 'daily', 86_400)).toBe(600n);
        expect(await t.ledger.spentInPeriod('alice', 'daily', 86_400, c.txid)).toBe(0n);
        // Another transaction that would pass the limit: nothing marked, nothing charged.
        const b = await usedNonce();
        await expect(t.ledger.markUsedCharging([b], charge(401n))).rejects.toBeInstanceOf(VelocityExceededError);
        expect((await t.ledger.findByPubnonce(b.pubnonce))?.usedAtMs).toBeNull();
        // Exactly up to the limit is allowed; other windows, rules and keys are separate.
        expect(await t.ledger.markUsedCharging([b], charge(400n))).toEqual([{ outcome: 'marked' }]);
        expect(await t.ledger.spentInPeriod('alice', 'daily', 86_400)).toBe(1000n);
        expect(await t.ledger.spentInPeriod('alice', 'daily', 172_800)).toBe(0n);
        expect(await t.ledger.spentInPeriod('alice', 'weekly', 86_400)).toBe(0n);
        expect(await t.ledger.spentInPeriod('bob', 'daily', 86_400)).toBe(0n);
      });

      it('a reuse among the marks refuses the whole call: no mark and no charge', async () => {
        const a = await usedNonce();
        await t.ledger.markUsed(a.pubnonce, a.digest);
        const b = await usedNonce();
        await expect(t.ledger.markUsedCharging([b, { pubnonce: a.pubnonce, digest: rand(32) }], charge(10n))).rejects.toBeInstanceOf(NonceReuseError);
        expect((await t.ledger.findByPubnonce(b.pubnonce))?.usedAtMs).toBeNull();
        expect(await t.ledger.spentInPeriod('alice', 'daily', 86_400)).toBe(0n);
      });

      it('records deterministic signatures and charges together, the same way', async () => {
        const entry = () => ({ keyId: 'alice', pubnonce: rand(66), digest: rand(32), psig: rand(32) });
        const e1 = entry();
        const c = charge(700n);
        expect(await t.ledger.recordDeterministicCharging([e1], c)).toEqual([{ outcome: 'recorded' }]);
        expect(await t.ledger.recordDeterministicCharging([e1], c)).toEqual([{ outcome: 'replay', psig: e1.psig }]);
        expect(await t.ledger.spentInPeriod('alice', 'daily', 86_400)).toBe(700n);
        const e2 = entry();
        await expect(t.ledger.recordDeterministicCharging([e2], charge(301n))).rejects.toBeInstanceOf(VelocityExceededError);
        expect(await t.ledger.findByPubnonce(e2.pubnonce)).toBeNull();
      });

      for (const [where, n] of SPREADS) {
        it(`50 concurrent charges of 100 against a limit of 1000: exactly 10 succeed, ${where}`, async () => {
          const ls = await handles(n);
          const marks = await Promise.all(Array.from({ length: 50 }, () => usedNonce()));
          const results = await Promise.allSettled(marks.map((m, i) => ls[i % n]!.markUsedCharging([m], charge(100n))));
          expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
          for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(VelocityExceededError);
          expect(await t.ledger.spentInPeriod('alice', 'daily', 86_400)).toBe(1000n);
          const used = await Promise.all(marks.map(async (m) => (await t.ledger.findByPubnonce(m.pubnonce))?.usedAtMs ?? null));
          expect(used.filter((u) => u !== null)).toHaveLength(10);
        });
      }

      it('the spent budget survives reopening', async () => {
        await t.ledger.markUsedCharging([await usedNonce()], charge(250n));
        await t.ledger.close();
        t.ledger = await t.store.open();
        expect(await t.ledger.spentInPeriod('alice', 'daily', 86_400)).toBe(250n);
      });

      it('refuses malformed charges before touching the database', async () => {
        const m = await usedNonce();
        await expect(t.ledger.markUsedCharging([m], { ...charge(1n), txid: rand(31) })).rejects.toThrow(/txid/);
        await expect(t.ledger.markUsedCharging([m], charge(-1n))).rejects.toThrow(/amount/);
        expect((await t.ledger.findByPubnonce(m.pubnonce))?.usedAtMs).toBeNull();
      });
    });

    describe('audit anchor', () => {
      const chain = () => rand(16).reduce((h, b) => h + b.toString(16).padStart(2, '0'), '');
      const mac = () => Buffer.from(rand(32)).toString('hex');

      it('knows no head for a chain it never saw', async () => {
        expect(await t.ledger.auditHead(chain())).toBeNull();
      });

      it('keeps the furthest head of each chain: a later one moves it, an older one does not', async () => {
        const a = chain();
        const b = chain();
        const m5 = mac();
        // True when it moved the head; false (and no change) when the stored one is as far or further.
        expect(await t.ledger.recordAuditHead({ chain: a, seq: 3, mac: mac() })).toBe(true);
        expect(await t.ledger.recordAuditHead({ chain: a, seq: 5, mac: m5 })).toBe(true);
        expect(await t.ledger.recordAuditHead({ chain: a, seq: 4, mac: mac() })).toBe(false);
        expect(await t.ledger.recordAuditHead({ chain: a, seq: 5, mac: mac() })).toBe(false);
        expect(await t.ledger.recordAuditHead({ chain: b, seq: 1, mac: m5 })).toBe(true);
        expect(await t.ledger.auditHead(a)).toEqual({ seq: 5, mac: m5 });
        expect(await t.ledger.auditHead(b)).toEqual({ seq: 1, mac: m5 });
      });

      it('is durable and shared: another handle, and a reopened ledger, see it', async () => {
        const a = chain();
        const m = mac();
        await Promise.all([1, 2, 3].map((seq) => t.ledger.recordAuditHead({ chain: a, seq, mac: seq === 3 ? m : mac() })));
        expect(await (await t.another()).auditHead(a)).toEqual({ seq: 3, mac: m });
        await t.ledger.close();
        t.ledger = await t.store.open();
        expect(await t.ledger.auditHead(a)).toEqual({ seq: 3, mac: m });
      });

      it('refuses a malformed head', async () => {
        await expect(t.ledger.recordAuditHead({ chain: 'xyz', seq: 1, mac: mac() })).rejects.toBeInstanceOf(LedgerError);
        await expect(t.ledger.recordAuditHead({ chain: chain(), seq: 0, mac: mac() })).rejects.toBeInstanceOf(LedgerError);
        await expect(t.ledger.recordAuditHead({ chain: chain(), seq: 1, mac: 'ab' })).rejects.toBeInstanceOf(LedgerError);
      });
    });

    describe('closing', () => {
      it('answers unavailable after close, and reports unhealthy', async () => {
        const e = freshNonce();
        await t.ledger.recordNonce(e);
        expect(await t.ledger.healthy()).toBe(true);
        await t.ledger.close();
        expect(await t.ledger.healthy()).toBe(false);
        await expect(t.ledger.markUsed(e.pubnonce, rand(32))).rejects.toBeInstanceOf(LedgerUnavailableError);
        await expect(t.ledger.recordNonce(freshNonce())).rejects.toBeInstanceOf(LedgerUnavailableError);
      });

      it('settles inserts accepted before close', async () => {
        const entries = Array.from({ length: 10 }, freshNonce);
        const pending = entries.map((e) => t.ledger.recordNonce(e));
        await t.ledger.close();
        await expect(Promise.all(pending)).resolves.toHaveLength(10);
        t.ledger = await t.store.open();
        for (const e of entries) expect(await t.ledger.findByPubnonce(e.pubnonce)).not.toBeNull();
      });
    });
  });
}
