// `musig2-signer health`: the container HEALTHCHECK. Address handling, and the exit code
// against a bare grpc.health.v1 server (SERVING, NOT_SERVING, nothing listening).
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dialAddress, runHealth } from '../../src/cli/health.js';
import { CliError } from '../../src/cli/errors.js';

describe('dialAddress', () => {
  it('dials loopback for a wildcard listen address', () => {
    expect(dialAddress('0.0.0.0:50051')).toBe('127.0.0.1:50051');
    expect(dialAddress('[::]:50051')).toBe('[::1]:50051');
    expect(dialAddress('127.0.0.1:7000')).toBe('127.0.0.1:7000');
    expect(dialAddress('signer.internal:443')).toBe('signer.internal:443');
  });
  it('rejects port 0 and garbage', () => {
    expect(() => dialAddress('127.0.0.1:0')).toThrow(CliError);
    expect(() => dialAddress('no-port')).toThrow(CliError);
  });
});

describe('runHealth', () => {
  const health = new HealthImplementation({ '': 'SERVING' });
  const server = new Server();
  let port = 0;

  beforeAll(async () => {
    health.addToServer(server);
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
  });
  afterAll(() => server.forceShutdown());

  it('exits 0 for SERVING and 1 for NOT_SERVING', async () => {
    health.setStatus('', 'SERVING');
    expect(await runHealth(['--address', `127.0.0.1:${port}`])).toBe(0);
    health.setStatus('', 'NOT_SERVING');
    expect(await runHealth(['--address', `127.0.0.1:${port}`])).toBe(1);
  });

  it('reads MUSIG2_LISTEN when no address is given', async () => {
    health.setStatus('', 'SERVING');
    const before = process.env.MUSIG2_LISTEN;
    process.env.MUSIG2_LISTEN = `0.0.0.0:${port}`;
    try {
      expect(await runHealth([])).toBe(0);
    } finally {
      if (before === undefined) delete process.env.MUSIG2_LISTEN;
      else process.env.MUSIG2_LISTEN = before;
    }
  });

  it('exits 1 when nothing listens', async () => {
    const closed = new Server();
    const p = await new Promise<number>((resolve, reject) =>
      closed.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, q) => (err ? reject(err) : resolve(q))),
    );
    closed.forceShutdown();
    expect(await runHealth(['--address', `127.0.0.1:${p}`, '--timeout-ms', '1000'])).toBe(1);
  });
});
