// The audit log writer and verifier on real files, with the MAC key in a real SoftHSM2 token:
// chaining across restarts, group commit, every kind of tampering named by line (including a
// chain rebuilt without the token), one writer per file, a torn last line set aside, the anchor
// in a real SQLite ledger, and fail-closed behaviour under real write faults (a file-size limit
// on this process, and the log's directory replaced by a file).
import { createHmac, randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AuditAnchorError,
  AuditLockedError,
  AuditLog,
  AuditLogCorruptError,
  AuditUnavailableError,
  chainKeyedRecord,
  chainRecord,
  GENESIS_HASH,
  KEYED_GENESIS,
  newChainId,
  recordLine,
  verifyKeyedText,
} from '../../src/audit/index.js';
import type { AuditKey, AuditMac, KeyedVerifyResult } from '../../src/audit/index.js';
import { auditKeyOf } from '../../src/cli/serve.js';
import { Keystore } from '../../src/keystore/index.js';
import { openLedger } from '../../src/ledger/index.js';
import type { NonceLedger } from '../../src/ledger/index.js';
import { setUpToken } from '../keystore/helpers.js';
import type { TestToken } from '../keystore/helpers.js';
import { withFileWritesFailing } from '../ledger/faults.js';

let token: TestToken;
let keystore: Keystore;
let key: AuditKey;
let dir: string;
let file: string;

beforeAll(async () => {
  token = await setUpToken('audit-test', 'musig2-audit-token-');
  keystore = await Keystore.open(token.options);
  key = auditKeyOf(keystore);
});
afterAll(async () => {
  await keystore.close();
  rmSync(token.dir, { recursive: true, force: true });
});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'musig2-audit-'));
  file = join(dir, 'audit.jsonl');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const lines = () => readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
const parsed = () => lines().map((l) => JSON.parse(l) as Record<string, unknown>);
const writeLines = (ls: string[]) => writeFileSync(file, ls.map((l) => `${l}\n`).join(''));
const verifyFile = (): Promise<KeyedVerifyResult> => key.withMac((mac) => verifyKeyedText(readFileSync(file, 'utf8'), mac));
const open = (opts: Partial<Parameters<typeof AuditLog.open>[1]> = {}) => AuditLog.open(file, { key, ...opts });

async function logWith(n: number): Promise<void> {
  const log = await open();
  for (let i = 0; i < n; i++) await log.append('call', { rpc: 'Sign', n: i });
  await log.close();
}

/** Rewrites every line of the file as a fresh chain with `mac`: what someone without the token can do. */
function rebuildWith(mac: AuditMac): void {
  let head = { chain: newChainId(), seq: 0, mac: KEYED_GENESIS };
  const out: string[] = [];
  for (const r of parsed()) {
    const { chain: _c, seq: _s, time, prev: _p, event, mac: _m, ...fields } = r;
    const next = chainKeyedRecord(head, new Date(String(time)), String(event), fields as Record<string, string>, mac);
    out.push(JSON.stringify(next));
    head = next;
  }
  writeLines(out);
}

describe('writing', () => {
  it('chains records by mac from the genesis, and continues the chain after a reopen', async () => {
    await logWith(3);
    let recs = parsed();
    expect(recs.map((r) => r.event)).toEqual(['audit_open', 'call', 'call', 'call', 'audit_close']);
    expect(recs[0]!.prev).toBe(KEYED_GENESIS);
    expect(recs.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    for (let i = 1; i < recs.length; i++) expect(recs[i]!.prev).toBe(recs[i - 1]!.mac);
    expect(new Set(recs.map((r) => r.chain)).size).toBe(1);
    expect(recs[0]!.hash).toBeUndefined();

    const log = await open();
    expect(log.last.seq).toBe(6);
    await log.close();
    recs = parsed();
    expect(recs[5]).toMatchObject({ event: 'audit_open', seq: 6, prev: recs[4]!.mac, chain: recs[0]!.chain });
    expect(await verifyFile()).toMatchObject({ ok: true, records: 7 });
  });

  it('durably appends concurrent records in call order, each resolving with its own record', async () => {
    const log = await open();
    const recs = await Promise.all(Array.from({ length: 40 }, (_, i) => log.append('call', { n: i })));
    expect(recs.map((r) => r.n)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(recs.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 2));
    // Resolved means on disk already.
    expect(lines()).toHaveLength(41);
    await log.close();
    expect(await verifyFile()).toMatchObject({ ok: true, records: 42 });
  });

  it('refuses reserved and non-scalar fields', async () => {
    const log = await open();
    await expect(log.append('call', { seq: 9 })).rejects.toThrow(/reserved/);
    await expect(log.append('call', { mac: 'x' })).rejects.toThrow(/reserved/);
    await expect(log.append('call', { x: 1.5 })).rejects.toThrow(/safe integer/);
    await log.close();
    expect(await verifyFile()).toMatchObject({ ok: true, records: 2 });
  });

  it('refuses to continue a file whose complete last line is garbled or edited', async () => {
    await logWith(2);
    const ls = lines();
    writeLines([...ls.slice(0, 3), 'not json']);
    await expect(open()).rejects.toThrow(/not valid JSON/);
    writeLines([...ls.slice(0, 2), ls[2]!.replace('"Sign"', '"Sig"')]);
    await expect(open()).rejects.toThrow(/mac does not match/);
    expect(readdirSync(dir).filter((f) => f.includes('.torn-'))).toEqual([]);
  });

  it('refuses to continue an unkeyed (v1) log, and a last line forged without the token', async () => {
    const v1 = chainRecord({ seq: 0, hash: GENESIS_HASH }, new Date(), 'audit_open', {});
    writeFileSync(file, recordLine(v1));
    await expect(open()).rejects.toThrow(/unkeyed \(v1\) records/);
    // The same text ending in a line chained with a key the attacker made up.
    rmSync(file);
    await logWith(1);
    rebuildWith((data) => createHmac('sha256', randomBytes(32)).update(data).digest());
    await expect(open()).rejects.toBeInstanceOf(AuditLogCorruptError);
  });
});

describe('one writer', () => {
  it('refuses a second writer on the same file while the first has it, and lets it in after', async () => {
    const first = await open();
    const err = await open().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuditLockedError);
    expect(String(err)).toContain(`${file}.lock`);
    await first.append('call', { n: 1 });
    await first.close();
    const second = await open();
    await second.close();
    expect(await verifyFile()).toMatchObject({ ok: true, records: 5 });
  });
});

describe('a torn last line', () => {
  it('is moved aside, recorded, and the chain goes on', async () => {
    await logWith(2);
    const before = readFileSync(file, 'utf8');
    appendFileSync(file, '{"chain":"abc","seq":5,"ti');
    const log = await open();
    await log.close();
    const aside = readdirSync(dir).filter((f) => f.startsWith('audit.jsonl.torn-'));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(dir, aside[0]!), 'utf8')).toBe('{"chain":"abc","seq":5,"ti');
    expect(readFileSync(file, 'utf8').startsWith(before)).toBe(true);
    const recs = parsed();
    expect(recs[4]).toMatchObject({ event: 'audit_torn_tail', seq: 5, torn_bytes: 26, moved_to: aside[0] });
    expect(recs[5]).toMatchObject({ event: 'audit_open', seq: 6 });
    expect(await verifyFile()).toMatchObject({ ok: true, records: 7 });
  });

  it('is found across read chunks: a long log, a long torn tail', async () => {
    const log = await open();
    await Promise.all(Array.from({ length: 1500 }, (_, i) => log.append('call', { n: i, pad: 'x'.repeat(i % 300) })));
    await log.close();
    const torn = `{"chain":"${'y'.repeat(100_000)}`;
    appendFileSync(file, torn);
    await (await open()).close();
    const recs = parsed();
    expect(recs.at(-3)).toMatchObject({ event: 'audit_torn_tail', seq: 1503, torn_bytes: torn.length });
    expect(await verifyFile()).toMatchObject({ ok: true, records: 1505 });
  });

  it('as the only content starts a new chain', async () => {
    writeFileSync(file, '{"chain":"0f');
    const log = await open();
    await log.close();
    expect(parsed().map((r) => r.event)).toEqual(['audit_torn_tail', 'audit_open', 'audit_close']);
    expect(await verifyFile()).toMatchObject({ ok: true, records: 3 });
  });
});

describe('anchor in the ledger', () => {
  let ledger: NonceLedger;
  beforeEach(async () => {
    ledger = await openLedger(`sqlite:${join(dir, 'ledger.sqlite')}`);
  });
  afterEach(async () => {
    await ledger.close();
  });

  it('anchors the head as records commit, and refuses a log cut before it', async () => {
    const log = await open({ anchor: ledger });
    for (let i = 0; i < 5; i++) await log.append('call', { n: i });
    await log.close();
    const recs = parsed();
    const last = recs.at(-1)!;
    expect(await ledger.auditHead(String(last.chain))).toEqual({ seq: last.seq, mac: last.mac });

    const text = readFileSync(file, 'utf8');
    const cut = text.slice(0, text.lastIndexOf('\n', text.length - 2) + 1);
    writeFileSync(file, cut);
    const err = await open({ anchor: ledger }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuditAnchorError);
    expect(String(err)).toMatch(/ends at record 6, but the ledger saw record 7/);
    // Refused before anything was written.
    expect(readFileSync(file, 'utf8')).toBe(cut);
  });

  it('refuses a copy of the log that went on separately (a fork), whose record at the anchor differs', async () => {
    await (await open({ anchor: ledger })).close();
    const copy = join(dir, 'copy.jsonl');
    writeFileSync(copy, readFileSync(file));
    // The original goes on with the anchor; the copy goes on elsewhere, further, unanchored.
    const a = await open({ anchor: ledger });
    for (let i = 0; i < 3; i++) await a.append('call', { n: i });
    await a.close();
    const b = await AuditLog.open(copy, { key });
    for (let i = 0; i < 6; i++) await b.append('call', { n: i });
    await b.close();
    const err = await AuditLog.open(copy, { key, anchor: ledger }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuditAnchorError);
    expect(String(err)).toMatch(/record 7 of chain [0-9a-f]{32} is not the one the ledger recorded/);
    // The original is the anchored one and opens.
    await (await open({ anchor: ledger })).close();
  });

  it('stops a log whose chain another writer carries further while it runs (a fork), with an alarm', async () => {
    await (await open({ anchor: ledger })).close();
    const copy = join(dir, 'copy.jsonl');
    writeFileSync(copy, readFileSync(file));
    const alarms: string[] = [];
    let stopped!: () => void;
    const stop = new Promise<void>((resolve) => (stopped = resolve));
    const a = await open({ anchor: ledger });
    // The original's audit_open (seq 3) anchored first, so the copy is the one behind.
    const chain = String(parsed()[0]!.chain);
    while ((await ledger.auditHead(chain))?.seq !== 3) await new Promise((r) => setTimeout(r, 5));
    // The copy started elsewhere before the original moved the anchor (so its start check passed);
    // its anchor writes go to the same ledger.
    const b = await AuditLog.open(copy, {
      key,
      anchor: { auditHead: async () => null, recordAuditHead: (h) => ledger.recordAuditHead(h) },
      onAlarm: (event) => alarms.push(event),
      onStateChange: (healthy) => {
        if (!healthy) stopped();
      },
    });
    // The original runs ahead; the copy's next anchored head is behind what the ledger holds
    // (its own audit_open, or this record: whichever is anchored after the original's).
    for (let i = 0; i < 5; i++) await a.append('call', { n: i });
    await a.close();
    await b.append('call', { n: 0 }).catch(() => undefined);
    await stop;
    expect(alarms).toEqual(['audit_chain_forked']);
    expect(b.healthy()).toBe(false);
    await expect(b.append('call', { n: 1 })).rejects.toThrow(/continued by another writer/);
    await b.close();
  });

  it('refuses a cut log that also ends in a torn line, leaving both as they were', async () => {
    await (await open({ anchor: ledger })).close();
    const text = readFileSync(file, 'utf8');
    const cut = `${text.slice(0, text.lastIndexOf('\n', text.length - 2) + 1)}{"torn`;
    writeFileSync(file, cut);
    await expect(open({ anchor: ledger })).rejects.toBeInstanceOf(AuditAnchorError);
    expect(readFileSync(file, 'utf8')).toBe(cut);
    expect(readdirSync(dir).filter((f) => f.includes('.torn-'))).toEqual([]);
  });
});

describe('audit verify', () => {
  it('accepts an empty log and an intact one', async () => {
    writeFileSync(file, '');
    expect(await verifyFile()).toMatchObject({ ok: true, records: 0 });
    await logWith(4);
    expect(await verifyFile()).toMatchObject({ ok: true, records: 6 });
  });

  it('names an edited line', async () => {
    await logWith(4);
    const ls = lines();
    ls[2] = ls[2]!.replace('"n":1', '"n":7');
    writeLines(ls);
    expect(await verifyFile()).toMatchObject({ ok: false, line: 3, reason: expect.stringMatching(/edited/) as unknown });
  });

  it('names the line after a removed one, including a removed first line', async () => {
    await logWith(4);
    const ls = lines();
    writeLines([...ls.slice(0, 2), ...ls.slice(3)]);
    expect(await verifyFile()).toMatchObject({ ok: false, line: 3, reason: expect.stringMatching(/removed/) as unknown });
    writeLines(ls.slice(1));
    expect(await verifyFile()).toMatchObject({ ok: false, line: 1 });
  });

  it('names the first of two swapped lines', async () => {
    await logWith(4);
    const ls = lines();
    [ls[3], ls[4]] = [ls[4]!, ls[3]!];
    writeLines(ls);
    expect(await verifyFile()).toMatchObject({ ok: false, line: 4, reason: expect.stringMatching(/reordered/) as unknown });
  });

  it('names a truncated or garbled last line', async () => {
    await logWith(2);
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.slice(0, -20));
    expect(await verifyFile()).toMatchObject({ ok: false, line: 4, reason: expect.stringMatching(/incomplete/) as unknown });
    writeFileSync(file, `${text}garbage\n`);
    expect(await verifyFile()).toMatchObject({ ok: false, line: 5, reason: expect.stringMatching(/JSON/) as unknown });
  });

  it('refuses a chain rebuilt after an edit without the token: under another key, or unkeyed', async () => {
    await logWith(3);
    const ls = lines();
    writeLines(ls.map((l) => l.replace('"n":1', '"n":9')));
    rebuildWith((data) => createHmac('sha256', randomBytes(32)).update(data).digest());
    // Internally consistent, but not under the token's key.
    expect(await verifyFile()).toMatchObject({ ok: false, line: 1, reason: expect.stringMatching(/without the token's audit key/) as unknown });

    // The same records as a plain SHA-256 chain (the v1 format).
    let head = { seq: 0, hash: GENESIS_HASH };
    const v1 = ls.map((l) => {
      const { chain: _c, seq: _s, time, prev: _p, event, mac: _m, ...fields } = JSON.parse(l) as Record<string, string>;
      const r = chainRecord(head, new Date(time!), event!, fields);
      head = r;
      return JSON.stringify(r);
    });
    writeLines(v1);
    expect(await verifyFile()).toMatchObject({ ok: false, line: 1, reason: expect.stringMatching(/not keyed/) as unknown });
  });
});

describe('fail closed', () => {
  it('rejects appends while file writes fail, keeps them out of the file, and resumes afterwards', async () => {
    const changes: boolean[] = [];
    const log = await open({ onStateChange: (healthy) => changes.push(healthy) });
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
    expect(await verifyFile()).toMatchObject({ ok: true, records: 5 });
  });

  it('fails closed when the directory is replaced by a file, and stays failed', async () => {
    const sub = join(dir, 'logs');
    mkdirSync(sub);
    file = join(sub, 'audit.jsonl');
    const log = await open();
    await log.append('call', { n: 1 });
    renameSync(sub, join(dir, 'moved'));
    writeFileSync(sub, 'not a directory');
    await expect(log.append('call', { n: 2 })).rejects.toBeInstanceOf(AuditUnavailableError);
    expect(log.healthy()).toBe(false);
    await expect(log.ensureWritable()).rejects.toBeInstanceOf(AuditUnavailableError);
    await log.close();
    file = join(dir, 'moved', 'audit.jsonl');
    expect(await verifyFile()).toMatchObject({ ok: true, records: 2 });
  });

  it('fails closed, and stays failed, when the file is cut under a running daemon', async () => {
    const log = await open();
    await log.append('call', { n: 1 });
    const text = readFileSync(file, 'utf8');
    truncateSync(file, text.lastIndexOf('\n', text.length - 2) + 1);
    const err = await log.append('call', { n: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuditUnavailableError);
    expect(String(err)).toMatch(/cut under the daemon/);
    await expect(log.ensureWritable()).rejects.toBeInstanceOf(AuditUnavailableError);
    await log.close();
    expect(lines()).toHaveLength(1);
    expect(existsSync(`${file}.lock`)).toBe(true);
  });
});
