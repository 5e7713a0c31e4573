// kill -9 of a real daemon in the middle of a signing load (16 loops of NonceGen ->
// DeterministicSign -> Sign), then a restart on the same token, SQLite ledger, audit log and
// address. Sessions opened before the kill never yield a new signature afterwards; deterministic
// requests repeated after the restart give identical bytes; the ledger and the audit log show
// no nonce used twice.
import { randomBytes } from '@noble/hashes/utils.js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, SignerClient } from '../../src/client/index.js';
import { contextDigest, deterministicDigest } from '../../src/signer/digest.js';
import { Daemon, hex, importKey, makeToken, removeToken } from '../e2e/harness.js';
import type { Token } from '../e2e/harness.js';
import { checkInvariants, readSqliteLedger } from './invariants.js';
import type { Received } from './invariants.js';
import { eventually, Load } from './load.js';

let token: Token;
let daemon: Daemon | undefined;
let client: SignerClient;
let pubkeys: Uint8Array[];
let ledgerFile: string;
let auditFile: string;

const daemonArgs = () => ['--audit-log', auditFile, '--workers', '1'];

beforeAll(async () => {
  token = await makeToken('musig2-kill9-');
  pubkeys = [await importKey(token, 'alice', hex(randomBytes(32))), await importKey(token, 'bob', hex(randomBytes(32)))];
  ledgerFile = join(token.dir, 'ledger.sqlite');
  auditFile = join(token.dir, 'audit.jsonl');
  daemon = await Daemon.start(token, { args: daemonArgs() });
  client = new SignerClient(daemon.address, { deadlineMs: 10_000 });
});

afterAll(async () => {
  client?.close();
  await daemon?.stop();
  await removeToken(token);
});

describe('kill -9 mid-session under load', () => {
  it('restarts on the same ledger: no signature for old sessions, identical deterministic retries, no nonce twice', async () => {
    const load = new Load({
      client: () => client,
      randomKey: 'alice',
      deterministicKey: 'bob',
      pubkeys,
      concurrency: 16,
      maxSessions: 20_000,
      backoffMs: 100,
      maxMs: 45_000,
      deterministicEvery: 2,
    });
    try {
      expect(await eventually(async () => load.sessionsCompleted >= 60)).toBe(true);
      const address = daemon!.address;
      const killed = await daemon!.stop('SIGKILL');
      expect(killed.signal).toBe('SIGKILL');
      const killedAt = performance.now();
      daemon = undefined;
      // The loops see the daemon gone, then it comes back on the same address.
      expect(await eventually(async () => load.count('NonceGen', 'UNAVAILABLE') >= 16)).toBe(true);
      const restartAt = performance.now();
      daemon = await Daemon.start(token, { listen: address, args: daemonArgs() });
      // Nothing signed by a dead daemon.
      expect(load.signedWithin(killedAt, restartAt)).toEqual([]);
      // The same client recovers by itself.
      const before = load.sessionsCompleted;
      expect(await eventually(async () => load.sessionsCompleted >= before + 30)).toBe(true);
    } finally {
      await load.stop();
    }
    expect(load.thrown).toEqual([]);
    expect(load.codeNames().sort()).toEqual(expect.arrayContaining(['OK', 'UNAVAILABLE']));
    for (const code of load.codeNames()) expect(['OK', 'UNAVAILABLE', 'NOT_FOUND', 'FAILED_PRECONDITION']).toContain(code);

    const received: Received[] = [...load.received];
    const rows = () => new Map(readSqliteLedger(ledgerFile).map((r) => [hex(r.session_id ?? Buffer.alloc(0)), r]));

    // Sessions left open by the kill: round 2 on the new daemon never makes a new signature. A
    // session whose Sign committed before the kill (answer lost) may only replay the stored psig.
    expect(load.open.length).toBeGreaterThan(0);
    const ledgerBefore = rows();
    let refused = 0;
    let replayed = 0;
    for (const s of load.open.slice(0, 200)) {
      const row = ledgerBefore.get(hex(s.params.sessionId));
      try {
        const r = await client.sign(s.params);
        replayed++;
        expect(row?.psig).toBeTruthy();
        expect(hex(r.partialSig)).toBe(hex(row!.psig!));
        received.push({
          pubnonce: r.pubnonce,
          psig: r.partialSig,
          digest: contextDigest({ path: 'random', keyId: 'alice', nonce: s.params.aggnonce, pubkeys, tweaks: [], message: s.params.message }),
          sessionId: s.params.sessionId,
        });
      } catch (err) {
        expect(err).toBeInstanceOf(ClientError);
        expect(['NOT_FOUND', 'FAILED_PRECONDITION']).toContain((err as ClientError).codeName);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(0);
    // An unsigned session stays unsigned in the ledger.
    const ledgerAfter = rows();
    for (const s of load.open.slice(0, 200)) {
      const b = ledgerBefore.get(hex(s.params.sessionId));
      const a = ledgerAfter.get(hex(s.params.sessionId));
      expect(a?.used_at ?? null).toEqual(b?.used_at ?? null);
    }

    // Deterministic requests (answered before the kill, lost in it, or after): identical bytes.
    let compared = 0;
    for (const d of load.deterministic.slice(-300)) {
      const r = await client.deterministicSign(d.params);
      if (d.result) {
        expect(hex(r.pubnonce)).toBe(hex(d.result.pubnonce));
        expect(hex(r.partialSig)).toBe(hex(d.result.partialSig));
        compared++;
      }
      received.push({
        pubnonce: r.pubnonce,
        psig: r.partialSig,
        digest: deterministicDigest(r.pubnonce, r.partialSig),
      });
    }
    expect(compared).toBeGreaterThan(0);

    await daemon!.stop();
    daemon = undefined;
    const report = await checkInvariants({ rows: readSqliteLedger(ledgerFile), received, auditFiles: [auditFile], auditEnv: token.env });
    expect(report.violations).toEqual([]);
    expect(report.auditSigned).toBeGreaterThan(0);
    console.log(`kill9: ${load.sessionsStarted} sessions, ${load.sessionsCompleted} signed, open ${load.open.length} (refused ${refused}, replayed ${replayed}), deterministic compared ${compared}, codes ${JSON.stringify([...load.codes])}, ledger rows ${report.rows}, audit records ${report.auditRecords}`);
  }, 180_000);
});
