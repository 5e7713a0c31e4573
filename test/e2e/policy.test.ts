// The signing policy through a real daemon process (SoftHSM2 token, SQLite ledger, gRPC): a
// policy file that does not load refuses to start, naming the field; the policy hash in the start
// log, ListKeys and every audit record; a refusal as PERMISSION_DENIED with ErrorInfo POLICY_*,
// audited with the amounts and counted by reason in /metrics; the raw-message RPCs refused; and
// SIGHUP reloading the file (a broken file keeps the old policy), audited.
import { readFile, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { join } from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, runPsbtSession, SessionError, SignerClient } from '../../src/client/index.js';
import { parsePolicy, signApproval } from '../../src/policy/index.js';
import { combinePsbts } from '../../src/psbt/index.js';
import { approver, p2tr } from '../policy/helpers.js';
import { changeScript, walletDescriptor, walletTx } from '../signer/policy-fixture.js';
import { createKey, Daemon, makeToken, removeToken, runCli } from './harness.js';
import type { Token } from './harness.js';

let token: Token;
let daemon: Daemon | undefined;
let client: SignerClient;
let wallet: ReturnType<typeof walletDescriptor>;
let policyFile: string;
let auditFile: string;

const policyDoc = (maxAmount: number) => ({
  version: 1,
  network: 'regtest',
  keys: { ours: { wallets: [wallet.text], rules: [{ name: 'small', max_amount: maxAmount }] } },
});

async function refusal(p: Promise<unknown>): Promise<ClientError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ClientError);
  return err as ClientError;
}

function metricsText(address: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(`http://${address}/metrics`, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
}

async function auditRecords(): Promise<Record<string, unknown>[]> {
  return (await readFile(auditFile, 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

beforeAll(async () => {
  token = await makeToken();
  const keys = [await createKey(token, 'ours'), await createKey(token, 'a'), await createKey(token, 'b')];
  wallet = walletDescriptor(keys);
  policyFile = join(token.dir, 'policy.json');
  auditFile = join(token.dir, 'audit.jsonl');
}, 60_000);

afterAll(async () => {
  client?.close();
  await daemon?.stop();
  await removeToken(token);
});

describe('policy check', () => {
  it('prints the rule that allows a transaction, or why each rule refuses it, without signing', async () => {
    const file = join(token.dir, 'check-policy.json');
    await writeFile(
      file,
      JSON.stringify({
        version: 1,
        network: 'regtest',
        keys: { ours: { wallets: [wallet.text], rules: [{ name: 'small', max_amount: 10_000 }, { name: 'to-payee', destinations: [Buffer.from(p2tr(0x42)).toString('hex')] }] } },
      }),
    );
    const psbtFile = join(token.dir, 'check.psbt');
    const pay = (script: Uint8Array) =>
      walletTx(wallet.desc, [100_000n], [{ script, amount: 50_000n }, { script: changeScript(wallet.desc, 1), amount: 49_000n }], `check ${script[2]}`);
    await writeFile(psbtFile, Buffer.from(pay(p2tr(0x42)).psbt).toString('base64'));
    const ok = await runCli(['policy', 'check', '--policy', file, '--psbt', psbtFile, '--key', 'ours'], { env: token.env });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("key ours: ALLOWED by rule 'to-payee' (sends 50000 sats, change 49000 sats, fee 1000 sats)");
    await writeFile(psbtFile, pay(p2tr(0x44)).psbt);
    const no = await runCli(['policy', 'check', '--policy', file, '--psbt', psbtFile], { env: token.env });
    expect(no.code).toBe(1);
    expect(no.stdout).toContain("key ours: REFUSED POLICY_AMOUNT (rule 'small')");
    expect(no.stdout).toContain("rule 'to-payee': POLICY_DESTINATION");
  });
});

describe('the final-signer role', () => {
  it('refuses to start with no ledger and a velocity rule, and refuses --ledger none outside the role', async () => {
    const file = join(token.dir, 'velocity.json');
    await writeFile(file, JSON.stringify({ version: 1, network: 'regtest', keys: { ours: { rules: [{ name: 'daily', per_period: { amount: 1000, period_seconds: 86400 } }] } } }));
    const velocity = await runCli(['serve', '--listen', '127.0.0.1:0', '--role', 'final-signer', '--ledger', 'none', '--policy', file], { env: token.env });
    expect(velocity.code).toBe(2);
    expect(velocity.stderr).toContain('velocity rule (per_period), which needs a ledger');
    const notFinal = await runCli(['serve', '--listen', '127.0.0.1:0', '--ledger', 'none'], { env: token.env });
    expect(notFinal.code).toBe(2);
    expect(notFinal.stderr).toContain('--ledger none is only for --role final-signer');
  });

  it('with no ledger and a policy that needs none: PsbtDeterministicSign signs and is judged; the random-nonce RPCs are refused', async () => {
    const file = join(token.dir, 'final.json');
    await writeFile(file, JSON.stringify(policyDoc(10_000)));
    const helperDaemon = await Daemon.start(token, { ledger: `sqlite:${join(token.dir, 'helper.db')}` });
    // With no ledger the audit log has no anchor: it is still written and verifies, and the start log says it is unanchored.
    const finalAudit = join(token.dir, 'final-audit.jsonl');
    const final = await Daemon.start(token, { ledger: 'none', args: ['--role', 'final-signer', '--policy', file, '--audit-log', finalAudit] });
    const helperClient = new SignerClient(helperDaemon.address);
    const finalClient = new SignerClient(final.address);
    try {
      const withNonces = async (sent: bigint, seed: string) => {
        const t = walletTx(wallet.desc, [100_000n], [{ script: p2tr(0x42), amount: sent }, { script: changeScript(wallet.desc, 2), amount: 99_000n - sent }], seed);
        const r1 = await Promise.all(['a', 'b'].map((keyId) => helperClient.psbtNonceGen({ keyId, psbt: t.psbt })));
        return combinePsbts([t.psbt, ...r1.map((r) => r.psbt)]);
      };
      const signed = await finalClient.psbtDeterministicSign({ keyId: 'ours', psbt: await withNonces(5_000n, 'final-ok') });
      expect(signed.inputs).toEqual([0]);
      const big = await refusal(finalClient.psbtDeterministicSign({ keyId: 'ours', psbt: await withNonces(50_000n, 'final-big') }));
      expect(big.errorInfo?.reason).toBe('POLICY_AMOUNT');
      const keys = (await finalClient.listKeys()).map((k) => k.publicKey);
      const ng = await refusal(finalClient.nonceGen({ keyId: 'ours', pubkeys: keys }));
      expect(ng.code).toBe(Status.FAILED_PRECONDITION);
      expect(ng.errorInfo?.reason).toBe('FINAL_SIGNER_ONLY');
      const png = await refusal(finalClient.psbtNonceGen({ keyId: 'ours', psbt: await withNonces(5_000n, 'final-png') }));
      expect(png.errorInfo?.reason).toBe('FINAL_SIGNER_ONLY');
      expect(final.logEntries().some((e) => typeof e.msg === 'string' && e.msg.includes('no ledger (stateless)'))).toBe(true);
      expect(final.logEntries().some((e) => e.event === 'audit_log_unanchored' && e.file === finalAudit)).toBe(true);
      const finalRecords = (await readFile(finalAudit, 'utf8')).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(finalRecords.filter((r) => r.rpc === 'PsbtDeterministicSign').map((r) => r.outcome)).toEqual(['ok', 'policy_denied']);
      const verified = await runCli(['audit', 'verify', finalAudit], { env: token.env });
      expect(verified.code).toBe(0);
      // A reload to a policy with a velocity rule is refused: there is no ledger to charge.
      const hashBefore = await finalClient.policyHash();
      await writeFile(file, JSON.stringify({ version: 1, network: 'regtest', keys: { ours: { rules: [{ name: 'daily', per_period: { amount: 1, period_seconds: 60 } }] } } }));
      process.kill(final.pid, 'SIGHUP');
      await until(() => final.logEntries().some((e) => e.event === 'policy_reload_failed'), 'the refused reload');
      expect(String(final.logEntries().find((e) => e.event === 'policy_reload_failed')?.reason)).toContain('needs a ledger');
      expect(await finalClient.policyHash()).toBe(hashBefore);
    } finally {
      helperClient.close();
      finalClient.close();
      await Promise.all([helperDaemon.stop(), final.stop()]);
    }
  }, 60_000);
});

describe('approvals through the SDK', () => {
  it('runPsbtSession passes approvals to every daemon call: two of three sign; one is refused with POLICY_APPROVALS', async () => {
    const officers = ['x', 'y', 'z'].map(approver);
    const file = join(token.dir, 'cold.json');
    const doc = {
      version: 1,
      network: 'regtest',
      keys: { ours: { wallets: [wallet.text], rules: [{ name: 'two-officers', approvals: { keys: officers.map((o) => o.hex), min: 2 } }] } },
    };
    await writeFile(file, JSON.stringify(doc));
    const hash = parsePolicy(JSON.stringify(doc)).hash;
    const helperDaemon = await Daemon.start(token, { ledger: `sqlite:${join(token.dir, 'helper-sdk.db')}` });
    const cold = await Daemon.start(token, { ledger: `sqlite:${join(token.dir, 'cold.db')}`, args: ['--policy', file] });
    const signers = [
      { endpoint: helperDaemon.address, keyId: 'a' },
      { endpoint: helperDaemon.address, keyId: 'b' },
      { endpoint: cold.address, keyId: 'ours' },
    ];
    try {
      const t = walletTx(wallet.desc, [100_000n], [{ script: p2tr(0x42), amount: 90_000n }, { script: changeScript(wallet.desc, 4), amount: 9_000n }], 'sdk');
      const one = await runPsbtSession({ psbt: t.psbt, signers, approvals: [signApproval(officers[0]!.secret, t.txid, hash)] }).then(
        () => undefined,
        (e: unknown) => e as SessionError,
      );
      expect(one).toBeInstanceOf(SessionError);
      expect(((one as SessionError).cause as ClientError).errorInfo?.reason).toBe('POLICY_APPROVALS');
      const done = await runPsbtSession({ psbt: t.psbt, signers, approvals: [0, 2].map((i) => signApproval(officers[i]!.secret, t.txid, hash)) });
      expect(done.rawTx).toBeDefined();
      expect(done.finalized).toEqual([0]);
      // The same through `psbt sign --approval`.
      const t2 = walletTx(wallet.desc, [100_000n], [{ script: p2tr(0x42), amount: 80_000n }, { script: changeScript(wallet.desc, 5), amount: 19_000n }], 'cli');
      const psbtFile = join(token.dir, 'cli.psbt');
      await writeFile(psbtFile, t2.psbt);
      const approvalArgs = [1, 2].flatMap((i) => {
        const a = signApproval(officers[i]!.secret, t2.txid, hash);
        return ['--approval', `${Buffer.from(a.pubkey).toString('hex')}:${Buffer.from(a.signature).toString('hex')}`];
      });
      const signerArgs = signers.flatMap((x) => ['--signer', `${x.endpoint}/${x.keyId}`]);
      const cli = await runCli(['psbt', 'sign', ...signerArgs, '--psbt', psbtFile, '--json', ...approvalArgs], { env: token.env });
      expect(cli.code).toBe(0);
      expect(JSON.parse(cli.stdout)).toMatchObject({ txid: Buffer.from(t2.txid).toString('hex') });
    } finally {
      await Promise.all([helperDaemon.stop(), cold.stop()]);
    }
  }, 60_000);
});

describe('serve --policy', () => {
  it('a policy file that does not load refuses to start, naming the field', async () => {
    await writeFile(policyFile, JSON.stringify({ ...policyDoc(10_000), keys: { ours: { rules: [{ name: 'r', max_amont: 5 }] } } }));
    const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--ledger', `sqlite:${join(token.dir, 'l.db')}`, '--policy', policyFile], { env: token.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('keys["ours"].rules[0].max_amont: unknown field');
  });

  it('serves with the policy: hash in the start log, ListKeys and audit; refusals audited and counted; raw messages refused', async () => {
    await writeFile(policyFile, JSON.stringify(policyDoc(10_000)));
    const hash = parsePolicy(await readFile(policyFile, 'utf8')).hashHex;
    daemon = await Daemon.start(token, { metrics: true, args: ['--policy', policyFile, '--audit-log', auditFile] });
    client = new SignerClient(daemon.address);
    expect(daemon.logEntries().find((e) => e.event === 'policy_loaded')?.policyHash).toBe(hash);
    expect(await client.policyHash()).toBe(hash);

    // 50 000 to a payee: over max_amount. Refused at round 1, before any nonce.
    const t = walletTx(wallet.desc, [100_000n], [{ script: p2tr(0x42), amount: 50_000n }, { script: changeScript(wallet.desc, 0), amount: 49_000n }], 'e2e');
    const e = await refusal(client.psbtNonceGen({ keyId: 'ours', psbt: t.psbt }));
    expect(e.code).toBe(Status.PERMISSION_DENIED);
    expect(e.errorInfo?.reason).toBe('POLICY_AMOUNT');
    expect(e.errorInfo?.metadata.rule).toBe('small');
    expect(e.errorInfo?.metadata.amount_sent).toBe('50000');

    const keys = (await client.listKeys()).map((k) => k.publicKey);
    const rawDenied = await refusal(client.nonceGen({ keyId: 'ours', pubkeys: keys }));
    expect(rawDenied.errorInfo?.reason).toBe('POLICY_RAW_MESSAGE');

    const records = await auditRecords();
    expect(records.find((r) => r.event === 'audit_open')?.policy_hash).toBe(hash);
    const denied = records.find((r) => r.rpc === 'PsbtNonceGen');
    expect(denied).toMatchObject({ outcome: 'policy_denied', code: 'PERMISSION_DENIED', policy_reason: 'POLICY_AMOUNT', policy_rule: 'small', policy_amount_sent: '50000', policy_fee: '1000', policy_hash: hash });
    for (const r of records.filter((x) => x.event === 'call')) expect(r.policy_hash).toBe(hash);

    const text = await metricsText(daemon.metricsAddress!);
    expect(text).toMatch(/musig2_signer_policy_refusals_total\{reason="POLICY_AMOUNT"\} 1/);
    expect(text).toMatch(/musig2_signer_policy_refusals_total\{reason="POLICY_RAW_MESSAGE"\} 1/);
  });

  it('SIGHUP reloads the file; a broken file keeps the old policy and says why; both audited', async () => {
    const d = daemon!;
    const before = (await client.policyHash())!;
    await writeFile(policyFile, JSON.stringify(policyDoc(60_000)));
    const next = parsePolicy(await readFile(policyFile, 'utf8')).hashHex;
    process.kill(d.pid, 'SIGHUP');
    await until(async () => (await client.policyHash()) === next, 'the reloaded policy');
    // The transaction refused before now passes round 1.
    const t = walletTx(wallet.desc, [100_000n], [{ script: p2tr(0x42), amount: 50_000n }, { script: changeScript(wallet.desc, 0), amount: 49_000n }], 'e2e-2');
    expect((await client.psbtNonceGen({ keyId: 'ours', psbt: t.psbt })).inputs).toEqual([0]);
    // Its audit record names the rule that allowed it and the amounts.
    const allowed = (await auditRecords()).filter((r) => r.rpc === 'PsbtNonceGen' && r.outcome === 'ok');
    expect(allowed).toHaveLength(1);
    expect(allowed[0]).toMatchObject({ policy_hash: next, policy_rule: 'small', policy_amount_sent: '50000', policy_fee: '1000', policy_change: '49000' });

    await writeFile(policyFile, '{"version": 1, "network": "regtest", "keys": {"ours": {"rules": [{"name": "x", "max_amount": -1}]}}}');
    process.kill(d.pid, 'SIGHUP');
    await until(() => d.logEntries().some((e) => e.event === 'policy_reload_failed'), 'the failed reload');
    expect(await client.policyHash()).toBe(next);
    const failed = d.logEntries().find((e) => e.event === 'policy_reload_failed');
    expect(String(failed?.reason)).toContain('max_amount');

    const reloads = (await auditRecords()).filter((r) => r.event === 'policy_reload');
    expect(reloads).toHaveLength(2);
    expect(reloads[0]).toMatchObject({ loaded: true, previous_policy_hash: before, policy_hash: next });
    expect(reloads[1]).toMatchObject({ loaded: false, previous_policy_hash: next, policy_hash: next });
    expect(String(reloads[1]!.error)).toContain('max_amount');
  });
});
