// Calls in flight per client, at the server edge, over real connections: a client past its cap
// is refused at once with RESOURCE_EXHAUSTED naming the cap, whatever connection it uses, and
// is served again once its calls have answered. (HTTP/2 max_concurrent_streams holds one
// connection to the same cap, so the client here opens one connection per call.)
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Client, credentials, Metadata, status as Status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Keystore } from '../../src/keystore/index.js';
import { openLedger } from '../../src/ledger/index.js';
import type { NonceLedger } from '../../src/ledger/index.js';
import { AggregatorClient, SignerClient } from '../../src/client/index.js';
import { DaemonServer, quotaIdentity } from '../../src/server/index.js';
import { ComputePool, SignerService } from '../../src/signer/index.js';
import { capturingLogger, LocalSigner, openTestKeystore } from '../signer/helpers.js';

let dir: string;
let keystore: Keystore;
let ledger: NonceLedger;
let service: SignerService;

beforeAll(async () => {
  const opened = await openTestKeystore('call-quota-');
  dir = opened.dir;
  keystore = opened.keystore;
  ledger = await openLedger(`sqlite:${join(dir, 'ledger.sqlite')}`);
  service = new SignerService({ keystore, ledger });
});

afterAll(async () => {
  await service?.close();
  await ledger?.close();
  await keystore?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** ListKeys over a connection of its own. */
function listKeys(address: string): Promise<{ code: number; details: string }> {
  const c = new Client(address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  return new Promise((resolve) => {
    c.makeUnaryRequest(
      '/musig2.signer.v1.Signer/ListKeys',
      (x: Buffer) => x,
      (x: Buffer) => x,
      Buffer.alloc(0),
      new Metadata(),
      { deadline: Date.now() + 20_000 },
      (err: ServiceError | null) => {
        c.close();
        resolve({ code: err?.code ?? Status.OK, details: err?.details ?? '' });
      },
    );
  });
}

describe('calls in flight per client', () => {
  it('refuses the call past the cap at once, on any connection, and serves again afterwards', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const held: string[] = [];
    const signer = {
      listKeys: async () => {
        held.push('call');
        await gate;
        return service.listKeys();
      },
      nonceGen: service.nonceGen.bind(service),
      sign: service.sign.bind(service),
      deterministicSign: service.deterministicSign.bind(service),
      health: service.health.bind(service),
    };
    const server = await DaemonServer.start({ signer, logger: capturingLogger().logger, listen: '127.0.0.1:0', maxCallsPerClient: 2 });
    try {
      const first = [listKeys(server.address), listKeys(server.address)];
      while (held.length < 2) await new Promise((r) => setTimeout(r, 10));
      const third = await listKeys(server.address);
      expect(third.code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(third.details).toBe("client 'peer:127.0.0.1' already has 2 calls in flight (cap 2 per client); wait for answers before sending more");
      open();
      for (const r of await Promise.all(first)) expect(r.code).toBe(Status.OK);
      expect((await listKeys(server.address)).code).toBe(Status.OK);
    } finally {
      await server.shutdown(1000);
    }
  });

  it("passes the call's identity down: the signer's session cap and the pool's compute cap refuse this client by name", async () => {
    const key = await keystore.createKey('identity-key');
    const capped = new SignerService({ keystore, ledger, maxSessions: 8, maxSessionsPerClient: 1 });
    // One worker whose two permits are held by blocked test ops: Aggregator calls queue behind them.
    const pool = await ComputePool.start(1, { testHooks: {}, maxPerClient: 1 });
    const flags = new Int32Array(new SharedArrayBuffer(8));
    const blocked = [pool.testOp('block', flags.buffer as SharedArrayBuffer), pool.testOp('block', flags.buffer as SharedArrayBuffer)];
    const server = await DaemonServer.start({ signer: capped, compute: pool, logger: capturingLogger().logger, listen: '127.0.0.1:0' });
    const s = new SignerClient(server.address);
    const a = new AggregatorClient(server.address);
    try {
      const pubkeys = [key.publicKey, new LocalSigner().pk];
      await s.nonceGen({ keyId: 'identity-key', pubkeys });
      const second = await s.nonceGen({ keyId: 'identity-key', pubkeys }).then(() => undefined, (e: unknown) => e as ServiceError);
      expect(second?.code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(second?.details).toContain("client 'peer:127.0.0.1' has too many open sessions");
      while (pool.load()[0] !== 2) await new Promise((r) => setImmediate(r));
      const queued = a.keyAgg(pubkeys); // waits for a permit, counted for this client
      while (pool.queued() !== 1) await new Promise((r) => setImmediate(r));
      const refused = await a.keyAgg(pubkeys).then(() => undefined, (e: unknown) => e as ServiceError);
      expect(refused?.code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(refused?.details).toContain("client 'peer:127.0.0.1' already has 1");
      Atomics.store(flags, 0, 1);
      Atomics.notify(flags, 0);
      await Promise.all(blocked);
      expect((await queued).aggregatePubkey).toHaveLength(33); // served once the worker is free
    } finally {
      s.close();
      a.close();
      await server.shutdown(1000);
      await capped.close();
      await pool.close();
    }
  });

  it('names a client by its certificate, else by its address without the port', () => {
    const call = (peer: string) => ({ getAuthContext: () => ({}), getPeer: () => peer });
    expect(quotaIdentity(call('127.0.0.1:5555'))).toBe('peer:127.0.0.1');
    expect(quotaIdentity(call('[::1]:5555'))).toBe('peer:::1');
    const cert = { subject: { CN: 'coord-1' }, subjectaltname: undefined } as never;
    expect(quotaIdentity({ getAuthContext: () => ({ transportSecurityType: 'ssl', sslPeerCertificate: cert }), getPeer: () => '10.0.0.1:1' })).toBe('CN=coord-1');
  });
});
