// The keyed audit chain (format v2). Each record is one JSON line:
//
//   {chain, seq, time, prev, event, ...fields, mac}
//   mac = hex(HMAC-SHA256(K, "musig2-signer/audit/v2\n" || canonical(record without mac)))
//
// K is the audit MAC key inside the PKCS#11 token (src/keystore/audit-key.ts): it never leaves
// the token, so someone who can edit the file but cannot use the token cannot recompute a
// `mac`, and cannot rebuild the chain after an edit. `prev` is the previous record's mac
// (64 zeros for the first), `seq` counts from 1 and `chain` is a random id fixed for the whole
// file, which is how the nonce ledger's anchor (the head it last saw) is found again.
// canonical() is the v1 one (record.ts). v1 records (a plain SHA-256 `hash`, no key) are
// only read, by `audit verify --legacy-unkeyed`; the daemon never continues them.
import { randomBytes } from 'node:crypto';
import { canonical, chainRecord } from './record.js';
import type { AuditFields } from './record.js';

export const AUDIT_MAC_DOMAIN = 'musig2-signer/audit/v2\n';
export const KEYED_GENESIS = '0'.repeat(64);

/** HMAC-SHA256 under the token's audit key, synchronous inside AuditKey.withMac. */
export type AuditMac = (data: Uint8Array) => Buffer;

/** The token's audit MAC key, as the audit module needs it (the keystore provides it). */
export interface AuditKey {
  /** Finds the key; with `create`, generates it when missing. */
  ensure(create: boolean): Promise<'found' | 'created' | 'missing'>;
  /** Runs `fn` with the MAC function; `fn` may run twice (a token reconnect retries it). */
  withMac<T>(fn: (mac: AuditMac) => T): Promise<T>;
}

export interface KeyedRecord extends AuditFields {
  chain: string;
  seq: number;
  time: string;
  prev: string;
  event: string;
  mac: string;
}

/** Where a keyed chain stands: its id, last sequence number and last mac. */
export interface AuditHead {
  chain: string;
  seq: number;
  mac: string;
}

const CHAIN_ID = /^[0-9a-f]{32}$/;
const HEX64 = /^[0-9a-f]{64}$/;

export const newChainId = (): string => randomBytes(16).toString('hex');

export function macInput(withoutMac: AuditFields): Buffer {
  return Buffer.from(AUDIT_MAC_DOMAIN + canonical(withoutMac), 'utf8');
}

/** Builds the record after `last` (for a new chain: seq 0 and KEYED_GENESIS). */
export function chainKeyedRecord(last: AuditHead, time: Date, event: string, fields: AuditFields, mac: AuditMac): KeyedRecord {
  // The body (seq, time, prev, event, fields) comes from the v1 builder, so whatever it checks
  // and caps in the fields applies to both formats alike; its unkeyed hash is dropped.
  const { hash: _unkeyed, ...v1 } = chainRecord({ seq: last.seq, hash: last.mac }, time, event, fields);
  const body: AuditFields = { chain: last.chain, ...v1 };
  return { ...body, mac: mac(macInput(body)).toString('hex') } as KeyedRecord;
}

/**
 * Checks a parsed line's shape as a keyed record; without `mac`, only the shape. Returns why it
 * is bad, if it is. A v1 record (a `hash`, no `mac`) is named as unkeyed.
 */
export function checkKeyedRecord(value: unknown, mac?: AuditMac): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const r = value as Record<string, unknown>;
  if (r.mac === undefined && r.hash !== undefined) {
    return 'the record is not keyed (a plain SHA-256 hash, no mac): anyone who can edit the file can rebuild such a chain';
  }
  if (typeof r.chain !== 'string' || !CHAIN_ID.test(r.chain)) return 'chain is missing or not a 32-digit hex id';
  if (!Number.isSafeInteger(r.seq) || (r.seq as number) < 1) return 'seq is missing or not a positive integer';
  if (typeof r.time !== 'string' || Number.isNaN(Date.parse(r.time))) return 'time is missing or not a date';
  if (typeof r.prev !== 'string' || !HEX64.test(r.prev)) return 'prev is missing or not a 64-digit hex mac';
  if (typeof r.event !== 'string') return 'event is missing';
  if (typeof r.mac !== 'string' || !HEX64.test(r.mac)) return 'mac is missing or not a 64-digit hex HMAC';
  for (const [k, v] of Object.entries(r)) {
    if (v !== null && typeof v !== 'string' && typeof v !== 'boolean' && !(typeof v === 'number' && Number.isSafeInteger(v))) {
      return `field '${k}' is not a string, integer, boolean or null`;
    }
  }
  if (mac) {
    const { mac: given, ...body } = r;
    if (mac(macInput(body as AuditFields)).toString('hex') !== given) {
      return 'mac does not match the record (the line was edited, or written without the token\'s audit key)';
    }
  }
  return undefined;
}

export type KeyedVerifyResult =
  | { ok: true; records: number; head: AuditHead | undefined }
  | { ok: false; records: number; line: number; reason: string; head: AuditHead | undefined };

/**
 * Verifies a whole keyed log: every line is a keyed record whose mac matches under the token's
 * key (not checked without `mac`: then only shapes and links), one chain id throughout, seq + 1 and prev = the line before's mac. `head` is the last
 * intact record.
 */
export function verifyKeyedText(text: string, mac?: AuditMac, onRecord?: (r: KeyedRecord) => void): KeyedVerifyResult {
  let head: AuditHead | undefined;
  if (text.length === 0) return { ok: true, records: 0, head };
  const lines = text.split('\n');
  const complete = text.endsWith('\n');
  if (complete) lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const bad = (reason: string): KeyedVerifyResult => ({ ok: false, records: i, line: i + 1, reason, head });
    if (!complete && i === lines.length - 1) return bad('the last line is incomplete (no newline at the end: truncated or garbled)');
    let parsed: unknown;
    try {
      parsed = JSON.parse(lines[i]!);
    } catch {
      return bad('not valid JSON (garbled or truncated)');
    }
    const why = checkKeyedRecord(parsed, mac);
    if (why !== undefined) return bad(why);
    const r = parsed as KeyedRecord;
    const expected = head ?? { chain: r.chain, seq: 0, mac: KEYED_GENESIS };
    if (r.chain !== expected.chain) return bad(`chain is ${r.chain} where ${expected.chain} was expected (lines from another log)`);
    if (r.seq !== expected.seq + 1) {
      return bad(`seq is ${r.seq} where ${expected.seq + 1} was expected (a line before it was removed, or lines were reordered)`);
    }
    if (r.prev !== expected.mac) {
      return bad(`prev does not match the mac of ${i === 0 ? 'the chain start' : `line ${i}`} (a line was removed or reordered)`);
    }
    head = { chain: r.chain, seq: r.seq, mac: r.mac };
    onRecord?.(r);
  }
  return { ok: true, records: lines.length, head };
}

/** Whether the text's first line is a v1 (unkeyed) record. */
export function isUnkeyedLog(text: string): boolean {
  const first = text.slice(0, text.indexOf('\n') >= 0 ? text.indexOf('\n') : text.length);
  try {
    const r = JSON.parse(first) as Record<string, unknown>;
    return typeof r === 'object' && r !== null && r.hash !== undefined && r.mac === undefined;
  } catch {
    return false;
  }
}
