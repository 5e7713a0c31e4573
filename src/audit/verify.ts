// Verifies an audit log: every line parses, its hash matches its contents, and it follows the
// line before it (seq + 1, prev = that line's hash). Reports the first bad line, 1-based.
import { readFile } from 'node:fs/promises';
import { GENESIS_HASH, recordHash } from './record.js';
import type { AuditFields } from './record.js';

export type VerifyResult =
  | { ok: true; records: number; last: { seq: number; hash: string } }
  | { ok: false; records: number; line: number; reason: string };

const HEX64 = /^[0-9a-f]{64}$/;

/** Checks one parsed line on its own: shape and hash. Returns the reason it is bad, if it is. */
export function checkRecordShape(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const r = value as Record<string, unknown>;
  if (!Number.isSafeInteger(r.seq) || (r.seq as number) < 1) return 'seq is missing or not a positive integer';
  if (typeof r.time !== 'string' || Number.isNaN(Date.parse(r.time))) return 'time is missing or not a date';
  if (typeof r.prev !== 'string' || !HEX64.test(r.prev)) return 'prev is missing or not a SHA-256 hex digest';
  if (typeof r.event !== 'string') return 'event is missing';
  if (typeof r.hash !== 'string' || !HEX64.test(r.hash)) return 'hash is missing or not a SHA-256 hex digest';
  for (const [k, v] of Object.entries(r)) {
    if (v !== null && typeof v !== 'string' && typeof v !== 'boolean' && !(typeof v === 'number' && Number.isSafeInteger(v))) {
      return `field '${k}' is not a string, integer, boolean or null`;
    }
  }
  const { hash, ...body } = r;
  if (recordHash(body as AuditFields) !== hash) return 'hash does not match the record (the line was edited)';
  return undefined;
}

export function verifyAuditText(text: string): VerifyResult {
  let last = { seq: 0, hash: GENESIS_HASH };
  if (text.length === 0) return { ok: true, records: 0, last };
  const lines = text.split('\n');
  const complete = text.endsWith('\n');
  if (complete) lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const bad = (reason: string): VerifyResult => ({ ok: false, records: i, line: lineNo, reason });
    const line = lines[i]!;
    if (!complete && i === lines.length - 1) return bad('the last line is incomplete (no newline at the end: truncated or garbled)');
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      return bad('not valid JSON (garbled or truncated)');
    }
    const shape = checkRecordShape(parsed);
    if (shape !== undefined) return bad(shape);
    const r = parsed as { seq: number; prev: string; hash: string };
    if (r.seq !== last.seq + 1) {
      return bad(`seq is ${r.seq} where ${last.seq + 1} was expected (a line before it was removed, or lines were reordered)`);
    }
    if (r.prev !== last.hash) {
      return bad(`prev does not match the hash of ${i === 0 ? 'the chain start' : `line ${i}`} (a line was removed or reordered)`);
    }
    last = { seq: r.seq, hash: r.hash };
  }
  return { ok: true, records: lines.length, last };
}

export async function verifyAuditFile(path: string): Promise<VerifyResult> {
  return verifyAuditText(await readFile(path, 'utf8'));
}
