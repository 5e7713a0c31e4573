// The token taken away from a running daemon under a signing load: SoftHSM's token folder is
// moved out of its tokens/ directory (as a removed or failed HSM would look), which ends the
// daemon's PKCS#11 sessions on it. While it is gone the Signer is NOT_SERVING and answers
// UNAVAILABLE, no signature comes out; once the folder is back the daemon reconnects by itself.
import { randomBytes } from '@noble/hashes/utils.js';
import { mkdirSync, readdirSync, renameSync } from 'node:fs';
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
  token = await makeToken('musig2-tokenfault-');
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

describe("the token's sessions closed under load", () => {
  it('UNAVAILABLE and NOT_SERVING while the token is gone, no signature, reconnects by itself', async () => {
    const tokens = join(token.dir, 'hsm', 'tokens');
    const parked = join(token.dir, 'parked');
    mkdirSync(parked);
    const [uuid] = readdirSync(tokens);
    expect(uuid).toBeDefined();
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
        takeDown: async () => renameSync(join(tokens, uuid!), join(parked, uuid!)),
        bringBack: async () => renameSync(join(parked, uuid!), join(tokens, uuid!)),
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
    console.log(`token: ${load.sessionsStarted} sessions, ${load.sessionsCompleted} signed, codes ${JSON.stringify([...load.codes])}, ledger rows ${report.rows}, audit records ${report.auditRecords}`);
  }, 180_000);
});
