// The audit log writer and verifier on real files: chaining across restarts, group commit,
// every kind of tampering named by line, and fail-closed behaviour under real write faults
// (a file-size limit on this process, and the log's directory replaced by a file).
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, AuditLogCorruptError, AuditUnavailableError, GENESIS_HASH, verifyAuditFile, verifyAuditText } from '../../src/audit/index.js';
import { withFileWritesFailing } from '../ledger/faults.js';

let dir: string;
let file: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'musig2-audit-'));
  file = join(dir, 'audit.jsonl');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const lines = () => readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
const parsed = () => lines().map((l) => JSON.parse(l) as Record<string, unknown>);
const writeLines = (ls: string[]) => writeFileSync(file, ls.map((l) => `${l}\n`).join(''));

async function logWith(n: number): Promise<void> {
  const log = await AuditLog.open(file);
  for (let i = 0; i < n; i++) await log.append('call', { rpc: 'Sign', n: i });
  await log.close();
}

describe('writing', () => {
  it('chains records from the genesis hash, and continues the chain after a reopen', async () => {
    await logWith(3);
    let recs = parsed();
    expect(recs.map((r) => r.event)).toEqual(['audit_open', 'call', 'call', 'call', 'audit_close']);
    expect(recs[0]!.prev).toBe(GENESIS_HASH);
    expect(recs.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    for (let i = 1; i < recs.length; i++) expect(recs[i]!.prev).toBe(recs[i - 1]!.hash);

    const log = await AuditLog.open(file);
    expect(log.last.seq).toBe(6);
    await log.close();
    recs = parsed();
    expect(recs[5]).toMatchObject({ event: 'audit_open', seq: 6, prev: recs[4]!.hash });
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 7 });
  });

  it('durably appends concurrent records in call order, each resolving with its own record', async () => {
    const log = await AuditLog.open(file);
    const recs = await Promise.all(Array.from({ length: 40 }, (_, i) => log.append('call', { n: i })));
    expect(recs.map((r) => r.n)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(recs.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 2));
    // Resolved means on disk already.
    expect(lines()).toHaveLength(41);
    await log.close();
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 42 });
  });

  it('refuses reserved and non-scalar fields', async () => {
    const log = await AuditLog.open(file);
    await expect(log.append('call', { seq: 9 })).rejects.toThrow(/reserved/);
    await expect(log.append('call', { x: 1.5 })).rejects.toThrow(/safe integer/);
    await log.close();
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 2 });
  });

  it('refuses to continue a file whose last line is incomplete or garbled', async () => {
    await logWith(2);
    appendFileSync(file, '{"seq":5,"ti');
    await expect(AuditLog.open(file)).rejects.toBeInstanceOf(AuditLogCorruptError);
    writeLines([...lines().slice(0, 3), 'not json']);
    await expect(AuditLog.open(file)).rejects.toThrow(/not valid JSON/);
    const ls = lines();
    writeLines([...ls.slice(0, 2), ls[2]!.replace('"Sign"', '"Sig"')]);
    await expect(AuditLog.open(file)).rejects.toThrow(/edited/);
  });
});

describe('audit verify', () => {
  it('accepts an empty log and an intact one', async () => {
    expect(verifyAuditText('')).toMatchObject({ ok: true, records: 0 });
    await logWith(4);
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 6 });
  });

  it('names an edited line', async () => {
    await logWith(4);
    const ls = lines();
    ls[2] = ls[2]!.replace('"n":1', '"n":7');
    writeLines(ls);
    expect(await verifyAuditFile(file)).toMatchObject({ ok: false, line: 3, reason: expect.stringMatching(/edited/) as unknown });
  });

  it('names the line after a removed one, including a removed first line', async () => {
    await logWith(4);
    const ls = lines();
    writeLines([...ls.slice(0, 2), ...ls.slice(3)]);
    expect(await verifyAuditFile(file)).toMatchObject({ ok: false, line: 3, reason: expect.stringMatching(/removed/) as unknown });
    writeLines(ls.slice(1));
    expect(await verifyAuditFile(file)).toMatchObject({ ok: false, line: 1 });
  });

  it('names the first of two swapped lines', async () => {
    await logWith(4);
    const ls = lines();
    [ls[3], ls[4]] = [ls[4]!, ls[3]!];
    writeLines(ls);
    expect(await verifyAuditFile(file)).toMatchObject({ ok: false, line: 4, reason: expect.stringMatching(/reordered/) as unknown });
  });

  it('names a truncated or garbled last line', async () => {
    await logWith(2);
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.slice(0, -20));
    expect(await verifyAuditFile(file)).toMatchObject({ ok: false, line: 4, reason: expect.stringMatching(/incomplete/) as unknown });
    writeFileSync(file, text.slice(0, -1));
    expect(await verifyAuditFile(file)).toMatchObject({ ok: false, line: 4, reason: expect.stringMatching(/incomplete/) as unknown });
    writeFileSync(file, `${text}garbage\n`);
    expect(await verifyAuditFile(file)).toMatchObject({ ok: false, line: 5, reason: expect.stringMatching(/JSON/) as unknown });
  });

  it('detects a forged record whose hash was recomputed but whose prev is stale', async () => {
    await logWith(3);
    const ls = lines();
    // Drop line 3 and keep line 4 as is: its prev points to the dropped record.
    writeLines([ls[0]!, ls[1]!, ls[3]!, ls[4]!]);
    const r = await verifyAuditFile(file);
    expect(r).toMatchObject({ ok: false, line: 3 });
  });
});

describe('fail closed', () => {
  it('rejects appends while file writes fail, keeps them out of the file, and resumes afterwards', async () => {
    const changes: boolean[] = [];
    const log = await AuditLog.open(file, { onStateChange: (healthy) => changes.push(healthy) });
    await log.append('call', { n: 1 });
    // Make the file big enough that a 1-byte file-size limit refuses every further write.
    await withFileWritesFailing(async () => {
      const results = await Promise.allSettled([log.append('call', { n: 2 }), log.append('call', { n: 3 })]);
      for (const r of results) {
        expect(r.status).toBe('rejected');
        expect((r as PromiseRejectedResult).reason).toBeInstanceOf(AuditUnavailableError);
      }
      expect(log.healthy()).toBe(false);
      await expect(log.ensureWritable()).rejects.toBeInstanceOf(AuditUnavailableError);
    });
    expect(log.healthy()).toBe(false);
    await log.ensureWritable();
    expect(log.healthy()).toBe(true);
    await log.append('call', { n: 4 });
    await log.close();
    expect(changes).toEqual([false, true]);
    const recs = parsed();
    expect(recs.map((r) => `${String(r.event)}${r.n === undefined ? '' : `:${String(r.n)}`}`)).toEqual([
      'audit_open',
      'call:1',
      'audit_resumed',
      'call:4',
      'audit_close',
    ]);
    expect(recs[2]!.error).toBe('EFBIG');
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 5 });
  });

  it('fails closed when the directory is replaced by a file, and stays failed', async () => {
    const sub = join(dir, 'logs');
    mkdirSync(sub);
    file = join(sub, 'audit.jsonl');
    const log = await AuditLog.open(file);
    await log.append('call', { n: 1 });
    renameSync(sub, join(dir, 'moved'));
    writeFileSync(sub, 'not a directory');
    await expect(log.append('call', { n: 2 })).rejects.toBeInstanceOf(AuditUnavailableError);
    expect(log.healthy()).toBe(false);
    await expect(log.ensureWritable()).rejects.toBeInstanceOf(AuditUnavailableError);
    await log.close();
    const moved = readFileSync(join(dir, 'moved', 'audit.jsonl'), 'utf8');
    expect(verifyAuditText(moved)).toMatchObject({ ok: true, records: 2 });
  });
});
