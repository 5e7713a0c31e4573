// After a fault or load run: read the nonce ledger (SQLite file or PostgreSQL) and the audit
// logs, and check that no nonce was ever used twice and that every partial signature a client
// received is backed by a used ledger row with the same signing context.
//
// Checked:
// - every pubnonce row is unique, and every session id (the DB enforces both; checked anyway);
// - each row is in one of the three legal shapes (unused random; used random; deterministic);
// - every psig a client received: its pubnonce has a row, used_at is set, the row's digest is
//   the digest of the context the client asked for, and the row's psig is the received psig;
//   one pubnonce never came back with two different psigs or under two different digests;
// - each audit log's keyed chain verifies (with the token, through `audit verify`, when the
//   caller passes the token's environment; its links and shape otherwise); no two successful Sign decisions for one session
//   carry different context digests; every successful Sign/DeterministicSign decision matches
//   a used ledger row (by session and digest, or by digest on the deterministic path, where
//   both hold the digest of the released pubnonce and psig).
import { readFile } from 'node:fs/promises';
import Database from 'better-sqlite3';
import pg from 'pg';
import { verifyKeyedText } from '../../src/audit/index.js';
import type { KeyedRecord } from '../../src/audit/index.js';
import { runCli } from '../e2e/harness.js';

export interface LedgerRow {
  key_id: string;
  pubnonce: Buffer;
  session_id: Buffer | null;
  path: string;
  used_at: number | string | null;
  digest: Buffer | null;
  psig: Buffer | null;
}

/** A partial signature a client received, with the digest of the context it asked for. */
export interface Received {
  pubnonce: Uint8Array;
  psig: Uint8Array;
  digest: Uint8Array;
  /** For Sign: the session id. */
  sessionId?: Uint8Array;
}

const COLUMNS = 'key_id, pubnonce, session_id, path, used_at, digest, psig';
const hx = (b: Uint8Array | Buffer | null | undefined): string => (b ? Buffer.from(b).toString('hex') : '');

/** Every ledger row of a SQLite ledger file (opened read-only). */
export function readSqliteLedger(file: string): LedgerRow[] {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(`SELECT ${COLUMNS} FROM nonces`).all() as LedgerRow[];
  } finally {
    db.close();
  }
}

/** Every ledger row of a PostgreSQL ledger. */
export async function readPgLedger(url: string): Promise<LedgerRow[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<LedgerRow>(`SELECT ${COLUMNS} FROM nonces`)).rows;
  } finally {
    await client.end();
  }
}

/**
 * Parses an audit log after verifying its chain; throws (with the verifier's reason) when it does
 * not verify. With `tokenEnv` (the daemon's token), `audit verify` checks every mac in the token.
 */
export async function readAuditLog(file: string, tokenEnv?: NodeJS.ProcessEnv): Promise<KeyedRecord[]> {
  const text = await readFile(file, 'utf8');
  const v = verifyKeyedText(text);
  if (!v.ok) throw new Error(`audit log ${file} does not verify: line ${v.line}: ${v.reason}`);
  if (tokenEnv) {
    const r = await runCli(['audit', 'verify', file], { env: tokenEnv });
    if (r.code !== 0) throw new Error(`audit log ${file} does not verify in the token: ${r.stdout}${r.stderr}`);
  }
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as KeyedRecord);
}

export interface InvariantReport {
  rows: number;
  usedRows: number;
  received: number;
  auditRecords: number;
  /** Successful Sign / DeterministicSign decisions across all audit logs. */
  auditSigned: number;
  violations: string[];
}

/**
 * Checks the invariants; returns the report (violations empty when everything holds). `auditFiles`
 * may be empty when the run had no audit log.
 */
export async function checkInvariants(opts: {
  rows: LedgerRow[];
  received: readonly Received[];
  auditFiles?: readonly string[];
  /** The token's environment, so the audit logs' macs are checked in it. */
  auditEnv?: NodeJS.ProcessEnv;
}): Promise<InvariantReport> {
  const violations: string[] = [];
  const byNonce = new Map<string, LedgerRow>();
  const bySession = new Map<string, LedgerRow>();
  const usedDigests = new Set<string>();
  let usedRows = 0;
  for (const r of opts.rows) {
    const n = hx(r.pubnonce);
    if (byNonce.has(n)) violations.push(`pubnonce ${n} has two ledger rows`);
    byNonce.set(n, r);
    if (r.session_id) {
      const s = hx(r.session_id);
      if (bySession.has(s)) violations.push(`session ${s} has two ledger rows`);
      bySession.set(s, r);
    }
    const used = r.used_at !== null;
    if (used !== (r.digest !== null)) violations.push(`row ${n}: used_at and digest disagree`);
    if (r.psig !== null && r.digest === null) violations.push(`row ${n}: psig without digest`);
    if ((r.path === 'random') !== (r.session_id !== null)) violations.push(`row ${n}: path ${r.path} with session ${hx(r.session_id)}`);
    if (r.path === 'deterministic' && r.psig === null) violations.push(`row ${n}: deterministic row without psig`);
    if (used) {
      usedRows++;
      usedDigests.add(hx(r.digest));
    }
  }

  // What clients received: one pubnonce, one digest, one psig, all matching the ledger.
  const seen = new Map<string, { digest: string; psig: string }>();
  for (const got of opts.received) {
    const n = hx(got.pubnonce);
    const d = hx(got.digest);
    const p = hx(got.psig);
    const before = seen.get(n);
    if (before && (before.digest !== d || before.psig !== p)) {
      violations.push(`pubnonce ${n} was answered twice with different contexts or psigs`);
    }
    seen.set(n, { digest: d, psig: p });
    const row = byNonce.get(n);
    if (!row) {
      violations.push(`received psig for pubnonce ${n} that has no ledger row`);
      continue;
    }
    if (row.used_at === null) violations.push(`received psig for pubnonce ${n} whose row is not used`);
    if (hx(row.digest) !== d) violations.push(`received psig for pubnonce ${n} under another digest than the ledger's`);
    if (hx(row.psig) !== p) violations.push(`received psig for pubnonce ${n} differs from the ledger's psig`);
    if (got.sessionId && hx(row.session_id) !== hx(got.sessionId)) violations.push(`pubnonce ${n}: session differs from the ledger's`);
  }

  // The audit logs.
  let auditRecords = 0;
  let auditSigned = 0;
  const signContexts = new Map<string, string>();
  for (const file of opts.auditFiles ?? []) {
    let records: KeyedRecord[];
    try {
      records = await readAuditLog(file, opts.auditEnv);
    } catch (err) {
      violations.push((err as Error).message);
      continue;
    }
    auditRecords += records.length;
    for (const r of records) {
      if (r.event !== 'call' || r.outcome !== 'ok') continue;
      const ctx = typeof r.context_sha256 === 'string' ? r.context_sha256 : '';
      if (r.rpc === 'Sign') {
        auditSigned++;
        const s = String(r.session_id);
        const prev = signContexts.get(s);
        if (prev !== undefined && prev !== ctx) violations.push(`audit: session ${s} signed under two contexts`);
        signContexts.set(s, ctx);
        const row = bySession.get(s);
        if (!row || row.used_at === null || hx(row.digest) !== ctx) {
          violations.push(`audit: Sign of session ${s} allowed, but no used ledger row with its digest (${file} seq ${r.seq})`);
        }
      } else if (r.rpc === 'DeterministicSign') {
        auditSigned++;
        if (!usedDigests.has(ctx)) violations.push(`audit: DeterministicSign ${ctx} allowed, but no used ledger row with that digest`);
      }
    }
  }
  return { rows: opts.rows.length, usedRows, received: opts.received.length, auditRecords, auditSigned, violations };
}
