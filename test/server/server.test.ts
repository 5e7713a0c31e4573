// DaemonServer in process over a real token and ledger: the plaintext listen policy enforced at
// the server itself (not only by the CLI), per-call metrics and debug logs, and a clean
// shutdown. Request handling end to end is covered by test/e2e against daemon processes.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AggregatorClient, ClientError } from '../../src/client/index.js';
import type { Keystore } from '../../src/keystore/index.js';
import { openLedger } from '../../src/ledger/index.js';
import type { NonceLedger } from '../../src/ledger/index.js';
import { DaemonServer, InsecureListenError, isLoopbackHost, Metrics, parseListenAddress } from '../../src/server/index.js';
import { SignerService } from '../../src/signer/index.js';
import { capturingLogger, openTestKeystore } from '../signer/helpers.js';

let dir: string;
let keystore: Keystore;
let ledger: NonceLedger;
let service: SignerService;

beforeAll(async () => {
  const opened = await openTestKeystore('server-');
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

describe('listen addresses', () => {
  it('parses IPv4, bracketed IPv6 and host names, and rejects the rest', () => {
    expect(parseListenAddress('127.0.0.1:50051')).toEqual({ host: '127.0.0.1', port: 50051 });
    expect(parseListenAddress('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseListenAddress('localhost:7')).toEqual({ host: 'localhost', port: 7 });
    for (const bad of ['127.0.0.1', ':50051', '::1:50051', '[nothex]:1', 'host:65536', 'a b:1', '']) {
      expect(() => parseListenAddress(bad), bad).toThrow(/listen address|IPv6|port/);
    }
  });

  it('knows which hosts are loopback', () => {
    for (const h of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) expect(isLoopbackHost(h), h).toBe(true);
    // A name is never trusted as loopback: /etc/hosts or DNS may map it anywhere.
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', '::ffff:10.0.0.1', 'localhost', 'LOCALHOST']) expect(isLoopbackHost(h), h).toBe(false);
  });

  it('DaemonServer itself refuses plaintext on a non-loopback address, and allows it when told', async () => {
    const { logger } = capturingLogger();
    await expect(DaemonServer.start({ signer: service, logger, listen: '0.0.0.0:0' })).rejects.toBeInstanceOf(InsecureListenError);
    // `localhost` is a name, not an address: it could resolve anywhere.
    await expect(DaemonServer.start({ signer: service, logger, listen: 'localhost:0' })).rejects.toBeInstanceOf(InsecureListenError);
    const server = await DaemonServer.start({ signer: service, logger, listen: '0.0.0.0:0', insecure: true });
    expect(server.address).toMatch(/^0\.0\.0\.0:[1-9]\d*$/);
    expect(await server.shutdown(1000)).toEqual({ forced: false });
  });
});

describe('per-call observability', () => {
  it('counts calls by method and status code and logs each at debug level', async () => {
    const { logger, lines } = capturingLogger();
    const metrics = new Metrics({ openSessions: () => service.openSessions(), defaultMetrics: false });
    const server = await DaemonServer.start({ signer: service, logger, listen: '127.0.0.1:0', metrics });
    const client = new AggregatorClient(server.address);
    try {
      const err = await client.keySort([]).catch((e: unknown) => e);
      expect((err as ClientError).code).toBe(Status.INVALID_ARGUMENT);
      expect((await client.keySort([new Uint8Array(33).fill(2)])).length).toBe(1);

      const text = await metrics.registry.metrics();
      expect(text).toContain('musig2_signer_grpc_requests_total{rpc="KeySort",code="INVALID_ARGUMENT"} 1');
      expect(text).toContain('musig2_signer_grpc_requests_total{rpc="KeySort",code="OK"} 1');
      expect(text).toMatch(/musig2_signer_open_sessions 0/);
      const calls = lines.map((l) => JSON.parse(l) as { msg: string; method?: string; code?: string }).filter((e) => e.msg === 'call');
      expect(calls.map((c) => `${c.method} ${c.code}`)).toEqual(['KeySort INVALID_ARGUMENT', 'KeySort OK']);
    } finally {
      client.close();
      await server.shutdown(1000);
    }
  });
});
