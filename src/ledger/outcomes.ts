// What both ledger back ends decide the same way: after a conditional write changed nothing,
// the row read back tells a replay (same context) from a reuse attempt (another context).
// One copy of these rules, so SQLite and PostgreSQL cannot drift apart on them.

import { LedgerError, NonceNotRecordedError, NonceReuseError } from './errors.js';
import type { MarkUsedResult, NonceRecord, RecordDeterministicResult, VelocityChargeEntry } from './types.js';

/** A ledger row as both drivers return it; times may arrive as numbers or (pg BIGINT) strings. */
export interface LedgerRow {
  key_id: string;
  pubnonce: Buffer;
  session_id: Buffer | null;
  path: 'random' | 'deterministic';
  created_at: number | string;
  used_at: number | string | null;
  digest: Buffer | null;
  psig: Buffer | null;
}

export function checkLength(name: string, value: Uint8Array, len: number): void {
  if (!(value instanceof Uint8Array) || value.length !== len) {
    throw new LedgerError(`${name} must be ${len} bytes`);
  }
}

/** An audit head as the anchor table stores it: 32-hex-digit chain id, positive seq, 64-hex-digit mac. */
export function checkAuditHead(head: { chain: string; seq: number; mac: string }): void {
  if (!/^[0-9a-f]{32}$/.test(head.chain)) throw new LedgerError('audit chain id must be 32 hex digits');
  if (!Number.isSafeInteger(head.seq) || head.seq < 1) throw new LedgerError('audit seq must be a positive integer');
  if (!/^[0-9a-f]{64}$/.test(head.mac)) throw new LedgerError('audit mac must be 64 hex digits');
}

/** Both drivers bind Buffers (pg would send a plain Uint8Array as text); a view, not a copy. */
export function toBuffer(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

export function toRecord(row: LedgerRow | undefined): NonceRecord | null {
  if (!row) return null;
  const copy = (b: Buffer | null) => (b ? new Uint8Array(b) : null);
  return {
    keyId: row.key_id,
    pubnonce: new Uint8Array(row.pubnonce),
    sessionId: copy(row.session_id),
    path: row.path,
    createdAtMs: Number(row.created_at),
    usedAtMs: row.used_at === null ? null : Number(row.used_at),
    digest: copy(row.digest),
    psig: copy(row.psig),
  };
}

/**
 * markUsed found no unused row. A used row never reverts and its digest never changes, so this
 * read after the failed update is race-free: same digest is a replay, any other a reuse.
 */
export function markUsedOutcome(row: LedgerRow | undefined, pubnonce: Uint8Array, digest: Buffer): MarkUsedResult {
  if (!row) throw new NonceNotRecordedError(pubnonce);
  if (row.digest && row.digest.equals(digest)) {
    return { outcome: 'replay', psig: row.psig ? new Uint8Array(row.psig) : null };
  }
  throw new NonceReuseError(pubnonce);
}

/** storePsig changed nothing: an identical retry is fine; anything else is refused. */
export function storePsigOutcome(row: LedgerRow | undefined, pubnonce: Uint8Array, digest: Buffer, psig: Buffer): void {
  if (!row) throw new NonceNotRecordedError(pubnonce);
  if (!row.digest || !row.digest.equals(digest)) {
    throw new LedgerError('cannot store a psig: the nonce is not used with this signing context');
  }
  if (row.psig && row.psig.equals(psig)) return; // idempotent retry
  throw new LedgerError('cannot store a psig: the nonce already holds a different psig');
}

/** recordDeterministic hit an existing pubnonce: the same context replays, any other is a reuse. */
export function deterministicOutcome(row: LedgerRow | undefined, pubnonce: Uint8Array, digest: Buffer): RecordDeterministicResult {
  if (row && row.path === 'deterministic' && row.digest?.equals(digest) && row.psig) {
    return { outcome: 'replay', psig: new Uint8Array(row.psig) };
  }
  throw new NonceReuseError(pubnonce);
}

/** A velocity charge's fields, checked before any database work. */
export function checkCharge(c: VelocityChargeEntry): void {
  checkLength('txid', c.txid, 32);
  if (typeof c.keyId !== 'string' || c.keyId.length === 0 || typeof c.rule !== 'string' || c.rule.length === 0) {
    throw new LedgerError('a velocity charge needs a key id and a rule');
  }
  if (!Number.isSafeInteger(c.periodStart) || c.periodStart < 0) throw new LedgerError('periodStart must be whole, non-negative seconds');
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  for (const [name, v] of [['amount', c.amount], ['limit', c.limit]] as const) {
    if (typeof v !== 'bigint' || v < 0n || v > max) throw new LedgerError(`${name} must be a bigint from 0 to 2^53 - 1`);
  }
}
