// Prometheus metrics: calls by method and status, latency, open sessions, and alarms (nonce
// reuse attempts above all). A per-server registry, so tests can run several servers in one
// process; served over plain HTTP on its own address when one is configured.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { formatListenAddress, parseListenAddress } from './listen.js';

export class Metrics {
  readonly registry = new Registry();
  readonly calls: Counter<'method' | 'code'>;
  readonly latency: Histogram<'method'>;
  readonly alarms: Counter<'kind'>;
  readonly nonceReuseAttempts: Counter;

  constructor(openSessions: () => number) {
    const registers = [this.registry];
    this.calls = new Counter({
      name: 'musig2_grpc_calls_total',
      help: 'gRPC calls handled, by method and status code',
      labelNames: ['method', 'code'],
      registers,
    });
    this.latency = new Histogram({
      name: 'musig2_grpc_call_seconds',
      help: 'gRPC call handling time, by method',
      labelNames: ['method'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.alarms = new Counter({
      name: 'musig2_alarms_total',
      help: 'security alarms raised by the signer, by kind',
      labelNames: ['kind'],
      registers,
    });
    this.nonceReuseAttempts = new Counter({
      name: 'nonce_reuse_attempts_total',
      help: 'requests refused because a nonce was already used for another signing context',
      registers,
    });
    new Gauge({
      name: 'musig2_open_sessions',
      help: 'round-1 sessions holding a secret nonce in memory',
      registers,
      collect() {
        this.set(openSessions());
      },
    });
  }

  /** Serves /metrics on HOST:PORT; resolves with the bound address once listening. */
  async listen(address: string): Promise<{ address: string; close: () => Promise<void> }> {
    const { host, port } = parseListenAddress(address);
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      this.registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(body),
        () => res.writeHead(500).end(),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const bound = (server.address() as AddressInfo).port;
    return {
      address: formatListenAddress({ host, port: bound }),
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  }
}
