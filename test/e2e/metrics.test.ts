// Prometheus metrics from a real daemon process: started with --metrics-listen 127.0.0.1:0, it
// logs the bound metrics address, and GET /metrics counts the calls made, the open sessions and
// a nonce-reuse attempt. A non-loopback metrics address is refused without --insecure.
import { get } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, SignerClient } from '../../src/client/index.js';
import * as musig2 from '../../src/musig2/index.js';
import { createKey, Daemon, makeToken, removeToken, runCli } from './harness.js';
import type { Token } from './harness.js';

let token: Token;
let daemon: Daemon;
let client: SignerClient;
let alicePk: Uint8Array;

beforeAll(async () => {
  token = await makeToken('musig2-e2e-metrics-');
  alicePk = await createKey(token, 'alice');
  daemon = await Daemon.start(token, { metrics: true });
  client = new SignerClient(daemon.address);
});

afterAll(async () => {
  client?.close();
  await daemon?.stop();
  await removeToken(token);
});

function scrape(path = '/metrics'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(`http://${daemon.metricsAddress}${path}`, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

/** The value of one sample, e.g. value(body, 'grpc_requests_total', 'rpc="Sign",code="OK"'); 0 when absent. */
function value(body: string, name: string, labels = ''): number {
  const key = `musig2_signer_${name}${labels ? `{${labels}}` : ''} `;
  const line = body.split('\n').find((l) => l.startsWith(key));
  return line === undefined ? 0 : Number(line.slice(key.length));
}

describe('metrics endpoint', () => {
  it('logs the bound metrics address, on loopback with a real port', () => {
    expect(daemon.metricsAddress).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    expect(daemon.logEntries().some((e) => e.metricsAddress === daemon.metricsAddress)).toBe(true);
  });

  it('counts calls by rpc and code, open sessions and a nonce-reuse attempt', async () => {
    const before = (await scrape()).body;
    expect(value(before, 'nonce_reuse_attempts_total')).toBe(0);
    expect(value(before, 'health_status', 'component="signer"')).toBe(1);

    await client.listKeys();
    const carol = musig2.individualPubkey(Uint8Array.from({ length: 32 }, (_, i) => i + 1));
    const pubkeys = [alicePk, carol];
    const r1 = await client.nonceGen({ keyId: 'alice', pubkeys, tweaks: [] });
    await client.nonceGen({ keyId: 'alice', pubkeys, tweaks: [] }); // left open
    const carolNonce = musig2.nonceGen({ pk: carol, extraIn: Uint8Array.of(1) }).pubnonce;
    const aggnonce = musig2.nonceAgg([r1.pubnonce, carolNonce]);
    const req = { sessionId: r1.sessionId, aggnonce, pubkeys, tweaks: [], message: new Uint8Array(32).fill(7) };
    await client.sign(req);
    await client.sign(req); // an identical retry: the same psig, not an attempt
    const refused = await client.sign({ ...req, message: new Uint8Array(32).fill(8) }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ClientError);

    const after = (await scrape()).body;
    const delta = (labels: string) => value(after, 'grpc_requests_total', labels) - value(before, 'grpc_requests_total', labels);
    expect(delta('rpc="ListKeys",code="OK"')).toBe(1);
    expect(delta('rpc="NonceGen",code="OK"')).toBe(2);
    expect(delta('rpc="Sign",code="OK"')).toBe(2);
    expect(delta('rpc="Sign",code="FAILED_PRECONDITION"')).toBe(1);
    expect(value(after, 'grpc_request_duration_seconds_count', 'rpc="Sign",code="OK"')).toBe(value(after, 'grpc_requests_total', 'rpc="Sign",code="OK"'));
    expect(value(after, 'open_sessions')).toBe(1);
    expect(await daemon.metric('musig2_signer_open_sessions')).toBe(1);
    expect(value(after, 'nonce_reuse_attempts_total')).toBe(1);
    expect(value(after, 'nonce_collisions_total')).toBe(0);
    expect(value(after, 'ledger_errors_total')).toBe(0);
    expect(value(after, 'token_errors_total')).toBe(0);
    // Nothing request-derived becomes a label: no session ids, key ids or nonces.
    expect(after).not.toContain(Buffer.from(r1.sessionId).toString('hex'));
    expect(after).not.toContain('alice');
  });

  it('names the curve backend in the start log and in curve_backend_info (auto picks native when the addon loads)', async () => {
    const entry = daemon.logEntries().find((e) => e.curveBackend !== undefined);
    expect(entry?.curveBackend).toBe('native');
    expect(entry?.requested).toBe('auto');
    const body = (await scrape()).body;
    expect(value(body, 'curve_backend_info', 'backend="native"')).toBe(1);
    expect(body).not.toContain('curve_backend_info{backend="noble"}');
  });

  it('runs on the noble backend when asked, with the same answers', async () => {
    const noble = await Daemon.start(token, { metrics: true, ledger: `sqlite:${join(token.dir, 'noble-ledger.sqlite')}`, args: ['--curve-backend', 'noble'] });
    const nobleClient = new SignerClient(noble.address);
    try {
      expect(noble.logEntries().find((e) => e.curveBackend !== undefined)?.curveBackend).toBe('noble');
      const body = await new Promise<string>((resolve, reject) => {
        get(`http://${noble.metricsAddress}/metrics`, (res) => {
          let b = '';
          res.on('data', (d: Buffer) => (b += d.toString()));
          res.on('end', () => resolve(b));
        }).on('error', reject);
      });
      expect(value(body, 'curve_backend_info', 'backend="noble"')).toBe(1);
      // DeterministicSign is deterministic: both daemons (one key, one token) give the same bytes.
      const carol = musig2.individualPubkey(Uint8Array.from({ length: 32 }, (_, i) => i + 7));
      const aggothernonce = musig2.nonceGen({ pk: carol, extraIn: Uint8Array.of(2) }).pubnonce;
      const req = { keyId: 'alice', aggothernonce, pubkeys: [carol, alicePk], tweaks: [], message: new Uint8Array(32).fill(3) };
      expect(await nobleClient.deterministicSign(req)).toEqual(await client.deterministicSign(req));
    } finally {
      nobleClient.close();
      await noble.stop();
    }
  });

  it('refuses an unknown --curve-backend (exit 2)', async () => {
    const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--curve-backend', 'fast'], { env: token.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--curve-backend must be one of auto, native, noble, got 'fast'/);
  });

  it('answers 404 for anything but GET /metrics', async () => {
    expect((await scrape('/')).status).toBe(404);
    expect((await scrape('/healthz')).status).toBe(404);
    expect((await scrape('/metrics')).status).toBe(200);
  });

  it('refuses a non-loopback metrics address without --insecure (exit 2, before opening the token)', async () => {
    const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--metrics-listen', '0.0.0.0:0'], { env: token.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/refusing \/metrics on non-loopback address 0\.0\.0\.0:0/);
  });
});
