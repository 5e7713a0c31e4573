// The audit log against tampering, on real daemons with a real SoftHSM2 token and real SQLite
// and PostgreSQL ledgers: one writer per log (a second daemon is refused), `audit verify`
// catching an edited line, a removed line, a cut tail (against the ledger's anchor) and a chain
// rebuilt without the token (under another key, or unkeyed), a daemon refusing to start on a
// cut log with an alarm, and a torn last line set aside so the daemon starts.
import { createHmac, randomBytes } from 'node:crypto';
import { appendFileSync, copyFileSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainKeyedRecord, chainRecord, GENESIS_HASH, KEYED_GENESIS, newChainId } from '../../src/audit/index.js';
import { ClientError, SignerClient } from '../../src/client/index.js';
import { dbName, PgCluster } from '../ledger/pg-harness.js';
import { Daemon, makeToken, removeToken, runCli } from './harness.js';
import type { Token } from './harness.js';

let token: Token;
const daemons: Daemon[] = [];

beforeAll(async () => {
  token = await makeToken('musig2-audit-anchor-');
});
afterAll(async () => {
  for (const d of daemons) await d.stop();
  await removeToken(token);
});

async function start(auditLog: string, ledger: string): Promise<Daemon> {
  const d = await Daemon.start(token, { ledger, args: ['--audit-log', auditLog] });
  daemons.push(d);
  return d;
}

/** A few audited calls (ListKeys needs no key). */
async function calls(d: Daemon, n: number): Promise<void> {
  const c = new SignerClient(d.address);
  try {
    for (let i = 0; i < n; i++) await c.listKeys();
  } finally {
    c.close();
  }
}

const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
const writeLines = (file: string, ls: string[]) => writeFileSync(file, ls.map((l) => `${l}\n`).join(''));
/** The file without its last record: lines cut from the end. */
function cutLast(file: string): void {
  writeLines(file, lines(file).slice(0, -1));
}
const verify = (file: string, ...extra: string[]) => runCli(['audit', 'verify', file, ...extra], { env: token.env });
const serveOnce = (auditLog: string, ledger: string) =>
  runCli(['serve', '--listen', '127.0.0.1:0', '--ledger', ledger, '--audit-log', auditLog], { env: token.env });

describe('one writer per audit log', () => {
  it('refuses a second daemon on the same log, and the first keeps serving', async () => {
    const log = join(token.dir, 'one-writer.jsonl');
    const first = await start(log, `sqlite:${join(token.dir, 'one-writer-a.sqlite')}`);
    const second = await serveOnce(log, `sqlite:${join(token.dir, 'one-writer-b.sqlite')}`);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`audit log ${log} is in use by another process, which holds the lock on ${log}.lock`);
    await calls(first, 1);
    await first.stop();
    // The refused daemon wrote nothing: one start, one call, one stop.
    expect(lines(log).map((l) => (JSON.parse(l) as { event: string }).event)).toEqual(['audit_open', 'call', 'audit_close']);
  });
});

describe('audit verify and the start check, SQLite ledger', () => {
  const log = () => join(token.dir, 'sqlite-audit.jsonl');
  const ledger = () => `sqlite:${join(token.dir, 'sqlite-ledger.sqlite')}`;
  const copy = (name: string) => {
    const f = join(token.dir, name);
    copyFileSync(log(), f);
    return f;
  };

  beforeAll(async () => {
    const d = await start(log(), ledger());
    await calls(d, 4);
    await d.stop();
  });

  it('accepts the intact log, and finds the ledger anchor at its last record', async () => {
    const n = lines(log()).length;
    const r = await verify(log(), '--ledger', ledger());
    expect(r.stdout).toMatch(new RegExp(`^ok ${n} records \\(chain [0-9a-f]{32}, last seq ${n}, mac [0-9a-f]{64}\\); the ledger's anchor \\(seq ${n}\\) is in the log`));
    expect(r.code).toBe(0);
  });

  it('names an edited line', async () => {
    const f = copy('edited.jsonl');
    const ls = lines(f);
    ls[2] = ls[2]!.replace('"outcome":"ok"', '"outcome":"denied"');
    writeLines(f, ls);
    const r = await verify(f);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(
      `${f}: line 3: mac does not match the record (the line was edited, or written without the token's audit key) (2 records before it are intact)\n`,
    );
  });

  it('names the line after a removed one', async () => {
    const f = copy('removed.jsonl');
    const ls = lines(f);
    writeLines(f, [...ls.slice(0, 2), ...ls.slice(3)]);
    const r = await verify(f);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(
      `${f}: line 3: seq is 4 where 3 was expected (a line before it was removed, or lines were reordered) (2 records before it are intact)\n`,
    );
  });

  it('catches a cut tail against the ledger, which the chain alone cannot', async () => {
    const f = copy('cut.jsonl');
    const n = lines(f).length;
    cutLast(f);
    expect((await verify(f)).code).toBe(0);
    const r = await verify(f, '--ledger', ledger());
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`the log ends at record ${n - 1}, but the ledger saw record ${n} of chain [0-9a-f]{32} durable: 1 record\\(s\\) were cut from the end`));
  });

  it('refuses a chain rebuilt without the token: under another key, or unkeyed', async () => {
    const records = lines(log()).map((l) => JSON.parse(l) as Record<string, string>);
    const strip = (r: Record<string, string>) => {
      const { chain: _c, seq: _s, time: _t, prev: _p, event: _e, mac: _m, ...fields } = r;
      return fields;
    };
    // Every line edited the same way, then a fresh, internally consistent chain under a made-up key.
    const otherKey = randomBytes(32);
    let head = { chain: newChainId(), seq: 0, mac: KEYED_GENESIS };
    const keyed = records.map((r) => {
      head = chainKeyedRecord(head, new Date(r.time!), r.event!, { ...strip(r), client: 'someone-else' }, (data) =>
        createHmac('sha256', otherKey).update(data).digest(),
      );
      return JSON.stringify(head);
    });
    const f1 = join(token.dir, 'rebuilt-other-key.jsonl');
    writeLines(f1, keyed);
    const r1 = await verify(f1);
    expect(r1.code).toBe(1);
    expect(r1.stdout).toBe(
      `${f1}: line 1: mac does not match the record (the line was edited, or written without the token's audit key) (0 records before it are intact)\n`,
    );

    let v1head = { seq: 0, hash: GENESIS_HASH };
    const unkeyed = records.map((r) => {
      v1head = chainRecord(v1head, new Date(r.time!), r.event!, strip(r));
      return JSON.stringify(v1head);
    });
    const f2 = join(token.dir, 'rebuilt-unkeyed.jsonl');
    writeLines(f2, unkeyed);
    const r2 = await verify(f2);
    expect(r2.code).toBe(1);
    expect(r2.stdout).toContain(`${f2}: line 1: the record is not keyed (a plain SHA-256 hash, no mac)`);
    // An old log of that format can still be checked as what it is.
    expect((await verify(f2, '--legacy-unkeyed')).stdout).toMatch(/^ok \d+ unkeyed records/);
  });

  it('refuses to start a daemon on a cut log, with an alarm, and leaves the file as it was', async () => {
    const f = copy('cut-start.jsonl');
    // The copy shares the chain, and so the ledger's anchor, with the original.
    cutLast(f);
    const before = readFileSync(f, 'utf8');
    const r = await serveOnce(f, ledger());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ends at record \d+, but the ledger saw record \d+ of this chain \([0-9a-f]{32}\) durable: records were cut from the end/);
    const alarm = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((e) => e.event === 'audit_log_behind_ledger');
    expect(alarm).toMatchObject({ alarm: true, msg: 'ALARM audit_log_behind_ledger', file: f });
    expect(Number(alarm!.ledgerSeq)).toBe(Number(alarm!.fileSeq) + 1);
    expect(readFileSync(f, 'utf8')).toBe(before);
  });
});

describe('a log cut under a running daemon', () => {
  it('stops signing at once, raises the alarm metric, and needs a restart', async () => {
    const log = join(token.dir, 'cut-live.jsonl');
    const d = await Daemon.start(token, { ledger: `sqlite:${join(token.dir, 'cut-live.sqlite')}`, metrics: true, args: ['--audit-log', log] });
    daemons.push(d);
    await calls(d, 2);
    expect(await d.metric('musig2_signer_audit_alarms_total')).toBe(0);
    const text = readFileSync(log, 'utf8');
    truncateSync(log, text.lastIndexOf('\n', text.length - 2) + 1);
    const c = new SignerClient(d.address);
    try {
      const err = await c.listKeys().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ClientError);
      expect((err as ClientError).message).toMatch(/audit log unavailable/);
    } finally {
      c.close();
    }
    expect(await d.metric('musig2_signer_audit_alarms_total')).toBe(1);
    expect(d.logEntries().find((e) => e.event === 'audit_log_cut')).toMatchObject({ alarm: true, file: log });
    await d.stop();
  });
});

describe('a torn last line after kill -9', () => {
  it('is moved aside and recorded, and the daemon starts', async () => {
    const log = join(token.dir, 'torn.jsonl');
    const ledger = `sqlite:${join(token.dir, 'torn.sqlite')}`;
    const d = await start(log, ledger);
    await calls(d, 2);
    expect((await d.stop('SIGKILL')).signal).toBe('SIGKILL');
    const intact = readFileSync(log, 'utf8');
    // What a write cut short by the crash leaves: part of a record, no newline.
    const torn = lines(log).at(-1)!.slice(0, 50);
    appendFileSync(log, torn);

    const again = await start(log, ledger);
    await calls(again, 1);
    await again.stop();
    const aside = readdirSync(token.dir).filter((f) => f.startsWith('torn.jsonl.torn-'));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(token.dir, aside[0]!), 'utf8')).toBe(torn);
    const text = readFileSync(log, 'utf8');
    expect(text.startsWith(intact)).toBe(true);
    const events = lines(log).map((l) => JSON.parse(l) as Record<string, unknown>);
    const kept = intact.split('\n').length - 1;
    expect(events.slice(kept).map((e) => e.event)).toEqual(['audit_torn_tail', 'audit_open', 'call', 'audit_close']);
    expect(events[kept]).toMatchObject({ torn_bytes: 50, moved_to: aside[0] });
    expect((await verify(log, '--ledger', ledger)).code).toBe(0);
  });

  it('but a complete last line that does not verify is still a refusal', async () => {
    const log = join(token.dir, 'bad-last.jsonl');
    const d = await start(log, `sqlite:${join(token.dir, 'bad-last.sqlite')}`);
    await d.stop();
    const ls = lines(log);
    writeLines(log, [...ls.slice(0, -1), ls.at(-1)!.replace('audit_close', 'audit_closed')]);
    const r = await serveOnce(log, `sqlite:${join(token.dir, 'bad-last.sqlite')}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the last line is bad: mac does not match the record');
  });
});

describe('PostgreSQL ledger', () => {
  let cluster: PgCluster;
  let url: string;
  beforeAll(async () => {
    cluster = await PgCluster.start();
    url = await cluster.createDatabase('audit_anchor');
  });
  afterAll(async () => {
    await cluster?.destroy();
  });

  it('anchors the head, refuses a daemon on the cut log and catches it in audit verify', async () => {
    const log = join(token.dir, 'pg-audit.jsonl');
    const d = await start(log, url);
    await calls(d, 3);
    await d.stop();
    const n = lines(log).length;
    const [row] = await cluster.sql<{ seq: string }>(dbName(url), 'SELECT seq FROM audit_heads');
    expect(Number(row!.seq)).toBe(n);
    expect((await verify(log, '--ledger', url)).code).toBe(0);

    cutLast(log);
    const refused = await serveOnce(log, url);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`ends at record ${n - 1}, but the ledger saw record ${n}`);
    expect(refused.stderr).toContain('ALARM audit_log_behind_ledger');
    const r = await verify(log, '--ledger', url);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`the log ends at record ${n - 1}, but the ledger saw record ${n}`);
  });
});
