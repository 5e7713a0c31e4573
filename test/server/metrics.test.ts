// Each metric moves when its event happens: a real SignerService over a real SoftHSM2 token and
// real SQLite ledgers, read through the Prometheus text the registry serves.
import { mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Keystore, TokenUnavailableError } from '../../src/keystore/index.js';
import { openLedger } from '../../src/ledger/index.js';
import type { NonceLedger } from '../../src/ledger/index.js';
import * as musig2 from '../../src/musig2/index.js';
import { DaemonServer, Metrics } from '../../src/server/index.js';
import { SignerService } from '../../src/signer/index.js';
import type { SignerServiceOptions } from '../../src/signer/index.js';
import { AggregatorClient } from '../../src/client/index.js';
import { holdWriteLock } from '../ledger/faults.js';
import { rawPkcs11, setUpToken } from '../keystore/helpers.js';
import type { TestToken } from '../keystore/helpers.js';
import { LocalSigner, capturingLogger, rand, signerError } from '../signer/helpers.js';

let token: TestToken;
let keystore: Keystore;
let alicePk: Uint8Array;
let ledgerSeq = 0;
const open: { service: SignerService; ledger: NonceLedger }[] = [];

beforeAll(async () => {
  token = await setUpToken('metrics-token', 'metrics-');
  keystore = await Keystore.open(token.options);
  alicePk = (await keystore.createKey('alice')).publicKey;
});

afterEach(async () => {
  for (const { service, ledger } of open.splice(0)) {
    await service.close();
    await ledger.close();
  }
});

afterAll(async () => {
  await keystore.close();
  rmSync(token.dir, { recursive: true, force: true });
});

interface Harness {
  service: SignerService;
  ledger: NonceLedger;
  dbPath: string;
  metrics: Metrics;
  /** The current value of a sample, e.g. value('nonce_reuse_attempts_total') (prefix added). */
  value(name: string, labels?: string): Promise<number>;
}

async function harness(opts: Partial<SignerServiceOptions> = {}, wrap?: (l: NonceLedger) => NonceLedger): Promise<Harness> {
  const dbPath = join(token.dir, 'ledgers', `ledger-${++ledgerSeq}.db`);
  const ledger = await openLedger(`sqlite:${dbPath}?busy_timeout_ms=100`);
  const service = new SignerService({ keystore, ledger: wrap ? wrap(ledger) : ledger, ...opts });
  open.push({ service, ledger });
  const metrics = new Metrics({
    openSessions: () => service.openSessions(),
    signerCounters: () => service.counters,
    keystoreStats: () => keystore.stats,
    defaultMetrics: false,
  });
  return { service, ledger, dbPath, metrics, value: (name, labels) => sample(metrics, name, labels) };
}

async function sample(metrics: Metrics, name: string, labels = ''): Promise<number> {
  const text = await metrics.registry.metrics();
  const key = `musig2_signer_${name}${labels ? `{${labels}}` : ''} `;
  const line = text.split('\n').find((l) => l.startsWith(key));
  if (line === undefined) throw new Error(`no sample ${key.trim()} in:\n${text}`);
  return Number(line.slice(key.length));
}

async function roundOne(service: SignerService, message?: Uint8Array) {
  const carol = new LocalSigner();
  const pubkeys = [alicePk, carol.pk];
  const ng = await service.nonceGen({ keyId: 'alice', pubkeys, tweaks: [], message });
  const aggnonce = musig2.nonceAgg([ng.pubnonce, carol.nonceGen().pubnonce]);
  return { sessionId: ng.sessionId, aggnonce, pubkeys, tweaks: [], pubnonce: ng.pubnonce };
}

describe('signer counters', () => {
  it('counts a conflicting Sign in nonce_reuse_attempts_total, and open_sessions follows the sessions', async () => {
    const h = await harness();
    expect(await h.value('nonce_reuse_attempts_total')).toBe(0);
    const r = await roundOne(h.service);
    expect(await h.value('open_sessions')).toBe(1);
    const req = { ...r, message: rand(32) };
    await h.service.sign(req);
    expect(await h.value('open_sessions')).toBe(0);
    await h.service.sign(req); // an identical retry is not an attempt
    expect(await h.value('nonce_reuse_attempts_total')).toBe(0);
    await signerError(h.service.sign({ ...req, message: rand(32) }), 'FAILED_PRECONDITION');
    await signerError(h.service.sign({ ...req, message: rand(32) }), 'FAILED_PRECONDITION');
    expect(await h.value('nonce_reuse_attempts_total')).toBe(2);
    // Scraping again does not count again.
    expect(await h.value('nonce_reuse_attempts_total')).toBe(2);
  });

  it('counts a pubnonce the ledger already has in nonce_collisions_total (the RNG-failure alarm)', async () => {
    // The ledger writes every record twice: the second insert hits the real UNIQUE constraint,
    // exactly what a repeated RNG output would do.
    const h = await harness({}, (l) =>
      Object.assign(Object.create(l) as NonceLedger, {
        async recordNonce(entry: Parameters<NonceLedger['recordNonce']>[0]) {
          await l.recordNonce(entry);
          await l.recordNonce(entry);
        },
      }),
    );
    await signerError(h.service.nonceGen({ keyId: 'alice', pubkeys: [alicePk], tweaks: [] }), 'INTERNAL');
    expect(await h.value('nonce_collisions_total')).toBe(1);
    expect(await h.value('open_sessions')).toBe(0);
  });

  it('counts ledger failures in ledger_errors_total', async () => {
    const h = await harness();
    const r = await roundOne(h.service);
    const holder = await holdWriteLock(h.dbPath);
    try {
      await signerError(h.service.sign({ ...r, message: rand(32) }), 'UNAVAILABLE');
      await signerError(h.service.nonceGen({ keyId: 'alice', pubkeys: [alicePk], tweaks: [] }), 'UNAVAILABLE');
    } finally {
      await holder.release();
    }
    expect(await h.value('ledger_errors_total')).toBe(2);
  });

  it('counts binding mismatches and expired sessions', async () => {
    let clock = 1_000_000;
    const h = await harness({ now: () => clock, sessionTtlMs: 60_000, sweepIntervalMs: 60_000 });
    const message = rand(32);
    const r = await roundOne(h.service, message);
    await signerError(h.service.sign({ ...r, message: rand(32) }), 'FAILED_PRECONDITION');
    expect(await h.value('session_binding_mismatches_total')).toBe(1);
    expect(await h.value('sessions_expired_total')).toBe(0);
    clock += 60_000;
    await signerError(h.service.sign({ ...r, message }), 'FAILED_PRECONDITION');
    expect(await h.value('sessions_expired_total')).toBe(1);
    expect(await h.value('open_sessions')).toBe(0);
  });

  it('mirrors self_verify_failures_total and every signer counter from its source, never backwards', async () => {
    // A psig failing self-verification needs a fault inside the curve arithmetic, which no real
    // input produces; the mirroring is the same code for every counter, checked here directly.
    const counters = { nonceReuseAttempts: 0, nonceCollisions: 0, ledgerErrors: 0, selfVerifyFailures: 0, bindingMismatches: 0, sessionsExpired: 0 };
    const metrics = new Metrics({ signerCounters: () => counters, defaultMetrics: false });
    expect(await sample(metrics, 'self_verify_failures_total')).toBe(0);
    counters.selfVerifyFailures = 3;
    expect(await sample(metrics, 'self_verify_failures_total')).toBe(3);
    counters.selfVerifyFailures = 1; // a source that went backwards (replaced) never lowers a counter
    expect(await sample(metrics, 'self_verify_failures_total')).toBe(3);
    counters.selfVerifyFailures = 4;
    expect(await sample(metrics, 'self_verify_failures_total')).toBe(4);
  });
});

describe('token counters', () => {
  it('token_decrypt_on_event_loop is 1 while decrypts run on the loop, 0 once they moved to the libuv pool', async () => {
    const stats = { tokenErrors: 0, reconnects: 0, decryptOnEventLoop: true };
    const metrics = new Metrics({ keystoreStats: () => stats, defaultMetrics: false });
    expect(await sample(metrics, 'token_decrypt_on_event_loop')).toBe(1);
    stats.decryptOnEventLoop = false;
    expect(await sample(metrics, 'token_decrypt_on_event_loop')).toBe(0);
  });

  it('counts a reconnect in token_reconnects_total and a vanished token in token_errors_total', async () => {
    const metrics = new Metrics({ keystoreStats: () => keystore.stats, defaultMetrics: false });
    const before = { errors: await sample(metrics, 'token_errors_total'), reconnects: await sample(metrics, 'token_reconnects_total') };

    rawPkcs11(token.modulePath).C_Finalize(); // every session and the login are gone
    expect(await keystore.healthy()).toBe(true);
    expect(await sample(metrics, 'token_reconnects_total')).toBe(before.reconnects + 1);
    expect(await sample(metrics, 'token_errors_total')).toBe(before.errors);

    const tokens = join(token.dir, 'tokens');
    const parked = join(token.dir, 'parked');
    const [uuid] = readdirSync(tokens);
    mkdirSync(parked, { recursive: true });
    renameSync(join(tokens, uuid!), join(parked, uuid!));
    try {
      await expect(keystore.withSecretKey('alice', () => undefined)).rejects.toBeInstanceOf(TokenUnavailableError);
      expect(await sample(metrics, 'token_errors_total')).toBe(before.errors + 1);
    } finally {
      renameSync(join(parked, uuid!), join(tokens, uuid!));
    }
    expect(await keystore.healthy()).toBe(true);
    expect((await keystore.listKeys()).map((k) => k.label)).toContain('alice');
  });
});

describe('server', () => {
  it('times calls by rpc and code, reports health by component, serves GET /metrics and 404 elsewhere', async () => {
    const h = await harness();
    const { logger } = capturingLogger();
    const metrics = new Metrics({ openSessions: () => h.service.openSessions(), signerCounters: () => h.service.counters });
    const server = await DaemonServer.start({ signer: h.service, logger, listen: '127.0.0.1:0', metrics });
    const client = new AggregatorClient(server.address);
    const http = await metrics.listen('127.0.0.1:0');
    try {
      await client.keySort([alicePk]);
      await client.keySort([]).catch(() => undefined);
      expect(await sample(metrics, 'grpc_requests_total', 'rpc="KeySort",code="OK"')).toBe(1);
      expect(await sample(metrics, 'grpc_request_duration_seconds_count', 'rpc="KeySort",code="INVALID_ARGUMENT"')).toBe(1);
      expect(await sample(metrics, 'grpc_request_duration_seconds_bucket', 'le="+Inf",rpc="KeySort",code="OK"')).toBe(1);
      for (const component of ['signer', 'keystore', 'ledger']) {
        expect(await sample(metrics, 'health_status', `component="${component}"`)).toBe(1);
      }

      const fetch = (path: string, method = 'GET') =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = get({ host: '127.0.0.1', port: Number(http.address.split(':').pop()), path, method }, (res) => {
            let body = '';
            res.on('data', (d: Buffer) => (body += d.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          });
          req.on('error', reject);
        });
      const ok = await fetch('/metrics');
      expect(ok.status).toBe(200);
      expect(ok.body).toContain('musig2_signer_nonce_reuse_attempts_total 0');
      expect(ok.body).toContain('process_cpu_seconds_total'); // prom-client's defaults
      expect((await fetch('/')).status).toBe(404);
      expect((await fetch('/metrics/x')).status).toBe(404);
      expect((await fetch('/metrics', 'POST')).status).toBe(404);

      await server.shutdown(1000);
      expect(await sample(metrics, 'health_status', 'component="signer"')).toBe(0);
    } finally {
      client.close();
      await http.close();
      await server.shutdown(1000);
    }
  });
});
