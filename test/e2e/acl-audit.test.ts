// Access rules and the audit log on a real daemon with mTLS: an allowed client signs, a client
// whose CN is in no rule is refused (PERMISSION_DENIED, audited), a client allowed only key k1
// (matched by a URI SAN) is refused on k2, including Sign on a k2 session, the Aggregator serves
// every authenticated client, a failing audit log stops signing (UNAVAILABLE, health
// NOT_SERVING), and `audit verify` accepts the log and then names an edited line.
import { readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, status as Status } from '@grpc/grpc-js';
import { schnorr } from '@noble/curves/secp256k1.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AggregatorClient, ClientError, SignerClient } from '../../src/client/index.js';
import { createKey, Daemon, makeToken, removeToken, runCli } from './harness.js';
import type { Token } from './harness.js';
import { makePki } from './pki.js';
import type { Pki } from './pki.js';

let token: Token;
let daemon: Daemon | undefined;
let pki: Pki;
let auditDir: string;
let auditFile: string;
let pk1: Uint8Array;
let pk2: Uint8Array;
const opened: { close(): void }[] = [];

beforeAll(async () => {
  token = await makeToken('musig2-acl-');
  pki = makePki(token.dir, { 'coord-a': '', 'coord-b': 'URI:spiffe://test/coord-b', stranger: '' });
  pk1 = await createKey(token, 'k1');
  pk2 = await createKey(token, 'k2');
  const acl = join(token.dir, 'acl.json');
  writeFileSync(
    acl,
    JSON.stringify({
      aggregator: 'authenticated',
      rules: [
        { client: 'CN=coord-a', keys: ['k*'], rpcs: ['*'] },
        { clients: ['URI:spiffe://test/coord-b'], keys: ['k1'], rpcs: ['ListKeys', 'NonceGen', 'Sign', 'DeterministicSign'] },
      ],
    }),
  );
  auditDir = join(token.dir, 'audit');
  mkdirSync(auditDir);
  auditFile = join(auditDir, 'audit.jsonl');
  daemon = await Daemon.start(token, {
    listen: '0.0.0.0:0',
    args: ['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-client-ca', pki.ca, '--acl', acl, '--audit-log', auditFile],
  });
});

afterAll(async () => {
  for (const c of opened) c.close();
  await daemon?.stop();
  await removeToken(token);
});

const endpoint = () => `localhost:${daemon!.port}`;
function creds(who: string) {
  const c = pki.clients[who]!;
  return credentials.createSsl(readFileSync(pki.ca), readFileSync(c.key), readFileSync(c.cert));
}
function signerFor(who: string): SignerClient {
  const c = new SignerClient(endpoint(), { credentials: creds(who), deadlineMs: 20_000 });
  opened.push(c);
  return c;
}
function aggregatorFor(who: string): AggregatorClient {
  const c = new AggregatorClient(endpoint(), { credentials: creds(who), deadlineMs: 20_000 });
  opened.push(c);
  return c;
}
async function codeOf(p: Promise<unknown>): Promise<number> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ClientError);
  return (err as ClientError).code;
}
type AuditLine = Record<string, string | number | null>;
const auditLines = (file = auditFile): AuditLine[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AuditLine);

const message = new Uint8Array(32).fill(7);

describe('access rules over mTLS', () => {
  it('lets an allowed client run a whole session, with the Aggregator open to the others', async () => {
    const a = signerFor('coord-a');
    const b = signerFor('coord-b');
    expect((await a.listKeys()).map((k) => k.keyId).sort()).toEqual(['k1', 'k2']);
    // ListKeys shows a client only the keys its rules grant.
    expect((await b.listKeys()).map((k) => k.keyId)).toEqual(['k1']);

    const pubkeys = [pk1, pk2];
    const n1 = await a.nonceGen({ keyId: 'k1', pubkeys, message });
    const n2 = await a.nonceGen({ keyId: 'k2', pubkeys, message });
    // A client in no rule may still use the Aggregator: it is open to every authenticated client.
    const aggnonce = await aggregatorFor('stranger').nonceAgg([n1.pubnonce, n2.pubnonce]);

    // coord-b may not sign on k2's session (Sign carries no key id: the session's key counts),
    // and the refusal leaves the session usable.
    expect(await codeOf(b.sign({ sessionId: n2.sessionId, aggnonce, pubkeys, message }))).toBe(Status.PERMISSION_DENIED);
    const s1 = await a.sign({ sessionId: n1.sessionId, aggnonce, pubkeys, message });
    const s2 = await a.sign({ sessionId: n2.sessionId, aggnonce, pubkeys, message });
    const agg = aggregatorFor('coord-b');
    const signature = await agg.partialSigAgg({ partialSigs: [s1.partialSig, s2.partialSig], aggnonce, pubkeys, message });
    const { aggregatePubkeyXonly } = await agg.keyAgg(pubkeys);
    expect(schnorr.verify(signature, message, aggregatePubkeyXonly)).toBe(true);
  });

  it('refuses a client whose CN is in no rule, for every Signer RPC', async () => {
    const s = signerFor('stranger');
    expect(await codeOf(s.listKeys())).toBe(Status.PERMISSION_DENIED);
    expect(await codeOf(s.nonceGen({ keyId: 'k1', pubkeys: [pk1, pk2] }))).toBe(Status.PERMISSION_DENIED);
    expect(await codeOf(s.deterministicSign({ keyId: 'k1', aggothernonce: new Uint8Array(66), pubkeys: [pk1, pk2], message }))).toBe(
      Status.PERMISSION_DENIED,
    );
    const denied = auditLines().filter((r) => r.client === 'CN=stranger');
    expect(denied.map((r) => `${r.rpc} ${r.outcome} ${r.code}`)).toEqual([
      'ListKeys denied PERMISSION_DENIED',
      'NonceGen denied PERMISSION_DENIED',
      'DeterministicSign denied PERMISSION_DENIED',
    ]);
  });

  it('refuses a client allowed only k1 on k2, and serves it on k1', async () => {
    const a = signerFor('coord-a');
    const b = signerFor('coord-b');
    const pubkeys = [pk1, pk2];
    expect(await codeOf(b.nonceGen({ keyId: 'k2', pubkeys }))).toBe(Status.PERMISSION_DENIED);
    const other = await a.nonceGen({ keyId: 'k2', pubkeys, message });
    expect(await codeOf(b.deterministicSign({ keyId: 'k2', aggothernonce: other.pubnonce, pubkeys, message }))).toBe(
      Status.PERMISSION_DENIED,
    );
    const det = await b.deterministicSign({ keyId: 'k1', aggothernonce: other.pubnonce, pubkeys, message });
    expect(det.partialSig).toHaveLength(32);

    // Named by its CN in records; the rule matched its URI SAN.
    const recs = auditLines().filter((r) => r.client === 'CN=coord-b');
    expect(recs.map((r) => `${r.rpc} ${r.key_id} ${r.outcome}`)).toEqual([
      'ListKeys null ok',
      'Sign k2 denied',
      'NonceGen k2 denied',
      'DeterministicSign k2 denied',
      'DeterministicSign k1 ok',
    ]);
    const ok = recs.at(-1)!;
    expect(ok.message_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(ok.context_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(ok.code).toBe('OK');
    // Digests only: no raw message, nonce or signature bytes in the log.
    const text = readFileSync(auditFile, 'utf8');
    for (const secretish of [det.partialSig, other.pubnonce, message]) expect(text).not.toContain(Buffer.from(secretish).toString('hex'));
  });
});

describe('audit log', () => {
  it('signs nothing while the log cannot be written: UNAVAILABLE, and health goes NOT_SERVING', async () => {
    const a = signerFor('coord-a');
    const pubkeys = [pk1, pk2];
    const other = await a.nonceGen({ keyId: 'k2', pubkeys, message });
    expect(await a.health('musig2.signer.v1.Signer')).toBe('SERVING');
    // The log's directory replaced by a file: the path no longer names the daemon's open file.
    renameSync(auditDir, `${auditDir}.moved`);
    writeFileSync(auditDir, 'not a directory');
    expect(await codeOf(a.deterministicSign({ keyId: 'k1', aggothernonce: other.pubnonce, pubkeys, message }))).toBe(Status.UNAVAILABLE);
    expect(await codeOf(a.listKeys())).toBe(Status.UNAVAILABLE);
    let health = '';
    for (let i = 0; i < 100 && health !== 'NOT_SERVING'; i++) {
      health = await a.health('musig2.signer.v1.Signer');
      if (health !== 'NOT_SERVING') await new Promise((r) => setTimeout(r, 100));
    }
    expect(health).toBe('NOT_SERVING');
    // The Aggregator is public arithmetic and keeps serving.
    expect(await aggregatorFor('coord-a').keySort(pubkeys)).toHaveLength(2);
  });

  it('verifies after the run, and names an edited line', async () => {
    await daemon!.stop();
    daemon = undefined;
    const file = join(`${auditDir}.moved`, 'audit.jsonl');
    const recs = auditLines(file);
    expect(recs[0]!.event).toBe('audit_open');
    // The failed call left no record.
    expect(recs.filter((r) => r.rpc === 'DeterministicSign' && r.client === 'CN=coord-a')).toHaveLength(0);
    const ok = await runCli(['audit', 'verify', file], { env: token.env });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`^ok ${recs.length} records`));

    const lines = readFileSync(file, 'utf8').split('\n');
    const target = lines.findIndex((l) => l.includes('"outcome":"denied"'));
    lines[target] = lines[target]!.replace('"outcome":"denied"', '"outcome":"ok"');
    writeFileSync(file, lines.join('\n'));
    const bad = await runCli(['audit', 'verify', file], { env: token.env });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain(`line ${target + 1}: mac does not match`);
  });
});

describe('startup policy', () => {
  const tlsArgs = () => ['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-client-ca', pki.ca];

  it('refuses a non-loopback address without access rules or without an audit log', async () => {
    const base = ['serve', '--listen', '0.0.0.0:0', '--ledger', 'sqlite::memory:', ...tlsArgs()];
    const noAcl = await runCli(base, { env: token.env });
    expect(noAcl.code).toBe(2);
    expect(noAcl.stderr).toContain('without access rules: pass --acl FILE');
    const noAudit = await runCli([...base, '--acl', join(token.dir, 'acl.json')], { env: token.env });
    expect(noAudit.code).toBe(2);
    expect(noAudit.stderr).toContain('without an audit log: pass --audit-log FILE');
  });

  it('refuses to start with a rule file that does not parse, naming the problem', async () => {
    const bad = join(token.dir, 'bad-acl.json');
    writeFileSync(bad, '{"rules":[{"client":"CN=a","keys":["k"],"rpcs":["Sing"]}]}');
    const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--ledger', 'sqlite::memory:', '--acl', bad], { env: token.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${bad}: rules[0]: unknown RPC 'Sing'`);
  });

  it('refuses to continue an audit log whose complete last line is garbled', async () => {
    const log = join(token.dir, 'garbled.jsonl');
    writeFileSync(log, '{"seq":1,"ti\n');
    const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--ledger', 'sqlite::memory:', '--audit-log', log], { env: token.env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the last line is not valid JSON');
  });
});
