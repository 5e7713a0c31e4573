// The set-up the outage scenarios share: one daemon on its own token with two keys and an
// audit log, a client for the load and one for probes, and the run that takes a dependency
// away under load and then checks the ledger and the audit log.
import { randomBytes } from '@noble/hashes/utils.js';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'vitest';
import { SignerClient } from '../../src/client/index.js';
import { Daemon, hex, importKey, makeToken, removeToken } from '../e2e/harness.js';
import type { Token } from '../e2e/harness.js';
import { checkInvariants, type LedgerRow } from './invariants.js';
import { Load } from './load.js';
import { CLEAN_CODES, outage } from './outage.js';

export interface FaultRig {
  readonly token: Token;
  readonly daemon: Daemon;
  readonly client: SignerClient;
  readonly probe: SignerClient;
  readonly pubkeys: Uint8Array[];
  readonly auditFile: string;
  close(): Promise<void>;
}

/** A daemon (one worker) on a fresh token with keys alice (random path) and bob (deterministic). */
export async function startFaultRig(tokenPrefix: string, opts: { ledger?: string } = {}): Promise<FaultRig> {
  const token = await makeToken(tokenPrefix);
  const pubkeys = [await importKey(token, 'alice', hex(randomBytes(32))), await importKey(token, 'bob', hex(randomBytes(32)))];
  const auditFile = join(token.dir, 'audit.jsonl');
  const daemon = await Daemon.start(token, { ledger: opts.ledger, args: ['--audit-log', auditFile, '--workers', '1'] });
  const client = new SignerClient(daemon.address, { deadlineMs: 10_000 });
  const probe = new SignerClient(daemon.address, { deadlineMs: 10_000 });
  return {
    token,
    daemon,
    client,
    probe,
    pubkeys,
    auditFile,
    async close() {
      client.close();
      probe.close();
      await daemon.stop();
      await removeToken(token);
    },
  };
}

/**
 * Signing load from 16 loops while `takeDown` … `bringBack` happens (see outage.ts); then the
 * daemon is stopped and the ledger (read by `readRows`) and the audit log must show no nonce
 * used twice. Returns the load for scenario-specific checks.
 */
export async function runOutageScenario(
  rig: FaultRig,
  name: string,
  fault: { takeDown: () => Promise<void>; bringBack: () => Promise<void> },
  readRows: () => Promise<LedgerRow[]> | LedgerRow[],
): Promise<Load> {
  const load = new Load({
    client: () => rig.client,
    randomKey: 'alice',
    deterministicKey: 'bob',
    pubkeys: rig.pubkeys,
    concurrency: 16,
    maxSessions: 20_000,
    maxMs: 90_000,
    deterministicEvery: 3,
    backoffMs: 100,
  });
  try {
    await outage({ load, probe: rig.probe, keyId: 'alice', pubkeys: rig.pubkeys, ...fault });
  } finally {
    await load.stop();
  }
  expect(load.thrown).toEqual([]);
  for (const code of load.codeNames()) expect(CLEAN_CODES).toContain(code);

  await rig.daemon.stop();
  const report = await checkInvariants({ rows: await readRows(), received: load.received, auditFiles: [rig.auditFile], auditEnv: rig.token.env });
  expect(report.violations).toEqual([]);
  expect(report.auditSigned).toBeGreaterThan(0);
  console.log(
    `${name}: ${load.sessionsStarted} sessions, ${load.sessionsCompleted} signed, codes ${JSON.stringify([...load.codes])}, ledger rows ${report.rows}, audit records ${report.auditRecords}`,
  );
  return load;
}

/**
 * Mounts made by one test file (needs root, as CI has). A mount that is not permitted throws
 * with mount's own reason, so the test fails loudly instead of passing without its fault.
 * unmountAll() undoes them, lazily when still busy, so a failed test leaves nothing mounted.
 */
export class Mounts {
  private readonly points: string[] = [];

  /** A tmpfs of `bytes` on `dir` (an existing folder). */
  tmpfs(dir: string, bytes: number): void {
    mountCmd(['-t', 'tmpfs', '-o', `size=${bytes},mode=0700`, 'tmpfs', dir]);
    this.points.push(dir);
  }

  /** `source` bind-mounted on `dir`, writable until remount(dir, 'ro'). */
  bind(source: string, dir: string): void {
    mountCmd(['--bind', source, dir]);
    this.points.push(dir);
  }

  /** Makes a bind mount read-only or writable again; throws (e.g. EBUSY) when the kernel refuses. */
  remount(dir: string, mode: 'ro' | 'rw'): void {
    mountCmd(['-o', `remount,bind,${mode}`, dir]);
  }

  unmountAll(): void {
    for (const dir of this.points.splice(0).reverse()) {
      try {
        mountCmd([dir], 'umount');
      } catch {
        mountCmd(['-l', dir], 'umount');
      }
    }
  }
}

function mountCmd(args: string[], cmd = 'mount'): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
    throw new Error(`${cmd} ${args.join(' ')} failed: ${stderr || (err as Error).message}`);
  }
}
