// Audit records: one JSON line each, hash-chained. A record is a flat object of strings,
// integers, booleans and nulls: {seq, time, prev, event, ...fields, hash}.
//
//   hash = hex(SHA-256("musig2-signer/audit/v1\n" || canonical(record without hash)))
//
// canonical() is JSON with the keys sorted (code-unit order) and no whitespace, so a verifier
// in any language can recompute it from the parsed line whatever order the keys were written in.
// `prev` is the previous record's hash (64 zeros for the first), `seq` counts from 1: an edited
// line breaks its own hash, a removed or reordered line breaks `seq` and `prev`.
import { createHash } from 'node:crypto';

export const AUDIT_HASH_DOMAIN = 'musig2-signer/audit/v1\n';
export const GENESIS_HASH = '0'.repeat(64);

export type AuditValue = string | number | boolean | null;
export type AuditFields = Record<string, AuditValue>;

/** The chain fields every record carries, plus its own fields. */
export interface AuditRecord extends AuditFields {
  seq: number;
  time: string;
  prev: string;
  event: string;
  hash: string;
}

// `chain` and `mac` belong to the keyed format (keyed.ts).
const RESERVED = new Set(['seq', 'time', 'prev', 'hash', 'chain', 'mac']);

/** Caps that give one record a known maximum size: fields per record, characters per string value. */
export const MAX_AUDIT_FIELDS = 24;
export const MAX_AUDIT_VALUE_CHARS = 512;

/** A string value cut to MAX_AUDIT_VALUE_CHARS, marked when cut; other values as they are. */
export function capAuditValue(v: AuditValue): AuditValue {
  return typeof v === 'string' && v.length > MAX_AUDIT_VALUE_CHARS ? `${v.slice(0, MAX_AUDIT_VALUE_CHARS - 13)}… (truncated)` : v;
}

/** JSON with sorted keys; only flat objects of JSON scalars are accepted. */
export function canonical(fields: AuditFields): string {
  const keys = Object.keys(fields).sort();
  const parts: string[] = [];
  for (const k of keys) {
    const v = fields[k];
    if (v !== null && typeof v !== 'string' && typeof v !== 'boolean' && !(typeof v === 'number' && Number.isSafeInteger(v))) {
      throw new TypeError(`audit field '${k}' must be a string, a safe integer, a boolean or null`);
    }
    parts.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
  }
  return `{${parts.join(',')}}`;
}

export function recordHash(withoutHash: AuditFields): string {
  return createHash('sha256').update(AUDIT_HASH_DOMAIN).update(canonical(withoutHash)).digest('hex');
}

/** Throws a TypeError for a reserved name or a value that is not a JSON scalar. */
export function checkFields(fields: AuditFields): void {
  const keys = Object.keys(fields);
  if (keys.length > MAX_AUDIT_FIELDS) throw new TypeError(`an audit record takes at most ${MAX_AUDIT_FIELDS} fields`);
  for (const k of keys) {
    if (RESERVED.has(k) || k === 'event') throw new TypeError(`audit field '${k}' is reserved`);
    if (k.length > 64) throw new TypeError('audit field names are at most 64 characters');
  }
  canonical(fields);
}

/** Builds the next record after `prev` (seq and hash of the last record, or 0 and GENESIS_HASH). */
export function chainRecord(
  last: { seq: number; hash: string },
  time: Date,
  event: string,
  fields: AuditFields,
): AuditRecord {
  checkFields(fields);
  const capped: AuditFields = {};
  for (const [k, v] of Object.entries(fields)) capped[k] = capAuditValue(v);
  const body: AuditFields = { seq: last.seq + 1, time: time.toISOString(), prev: last.hash, event: String(capAuditValue(event)), ...capped };
  return { ...body, hash: recordHash(body) } as AuditRecord;
}

/** The line written for a record: its fields in a fixed order, then the hash, then "\n". */
export function recordLine(record: AuditRecord): string {
  return `${JSON.stringify(record)}\n`;
}

/** Hex SHA-256 of some bytes (the digests of messages and contexts that records carry). */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
