// A full disk under a signing load, as the daemon process sees it: its file-size limit
// (RLIMIT_FSIZE, set from outside with prlimit) drops to 1 byte, so the kernel refuses every
// write to the SQLite ledger and to the audit log (EFBIG), as a full or failing disk would. While
// it lasts the Signer is NOT_SERVING and answers UNAVAILABLE, no signature comes out; once the
// limit is raised the daemon recovers by itself.
import { randomBytes } from '@noble/hashes/utils.js';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignerClient } from '../../src/client/index.js';
import { Daemon, hex, importKey, makeToken, removeToken } from '../e2e/harness.js';
import type { Token } from '../e2e/harness.js';
import { checkInvariants, readSqliteLedger } from './invariants.js';
import { Load } from './load.js';
import { CLEAN_CODES, outage } from './outage.js';

let token: Token;
let daemon: Daemon | undefined;
let client: SignerClient;
let probe: SignerClient;
let pubkeys: Uint8Array[];
let auditFile: string;

beforeAll(async () => {
  token = await makeToken('musig2-diskfault-');
  pubkeys = [await importKey(token, 'alice', hex(randomBytes(32))), await importKey(token, 'bob', hex(randomBytes(32)))];
  auditFile = join(token.dir, 'audit.jsonl');
  daemon = await Daemon.start(token, { args: ['--audit-log', auditFile, '--workers', '1'] });
  client = new SignerClient(daemon.address, { deadlineMs: 10_000 });
  probe = new SignerClient(daemon.address, { deadlineMs: 10_000 });
});

afterAll(async () => {
  client?.close();
  probe?.close();
  await daemon?.stop();
  await removeToken(token);
});

describe('the disk under the ledger full', () => {
  it('UNAVAILABLE and NOT_SERVING while no file can grow, no signature, recovers when space returns', async () => {
    const pid = String(daemon!.pid);
    const [soft, hard] = execFileSync('prlimit', ['--pid', pid, '--fsize', '--raw', '--noheadings', '--output=SOFT,HARD'])
      .toString()
      .trim()
      .split(/\s+/);
    const load = new Load({
      client: () => client,
      randomKey: 'alice',
      deterministicKey: 'bob',
      pubkeys,
      concurrency: 16,
      maxSessions: 20_000,
      maxMs: 90_000,
      deterministicEvery: 3,
      backoffMs: 100,
    });
    try {
      await outage({
        load,
        probe,
        keyId: 'alice',
        pubkeys,
        takeDown: async () => void execFileSync('prlimit', ['--pid', pid, `--fsize=1:${hard}`]),
        bringBack: async () => void execFileSync('prlimit', ['--pid', pid, `--fsize=${soft}:${hard}`]),
      });
    } finally {
      await load.stop();
    }
    expect(load.thrown).toEqual([]);
    for (const code of load.codeNames()) expect(CLEAN_CODES).toContain(code);

    await daemon!.stop();
    daemon = undefined;
    const report = await checkInvariants({ rows: readSqliteLedger(join(token.dir, 'ledger.sqlite')), received: load.received, auditFiles: [auditFile] });
    expect(report.violations).toEqual([]);
    expect(report.auditSigned).toBeGreaterThan(0);
    console.log(`disk: ${load.sessionsStarted} sessions, ${load.sessionsCompleted} signed, codes ${JSON.stringify([...load.codes])}, ledger rows ${report.rows}, audit records ${report.auditRecords}`);
  }, 180_000);
});
