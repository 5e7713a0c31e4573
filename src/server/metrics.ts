// Prometheus metrics. Every name carries the `musig2_signer_` prefix (the process and Node.js
// defaults from prom-client keep their standard names):
//
//   grpc_requests_total{rpc,code}               counter   calls handled, by RPC and gRPC status
//   grpc_request_duration_seconds{rpc,code}     histogram handling time (buckets for 1-100 ms)
//   open_sessions                               gauge     round-1 sessions holding a secret nonce
//   nonce_reuse_attempts_total                  counter   Sign/DeterministicSign refused: nonce used for another context
//   nonce_collisions_total                      counter   NonceGen drew a pubnonce the ledger already had (RNG failure)
//   ledger_errors_total                         counter   ledger unavailable or refused a write; nothing signed
//   token_errors_total                          counter   token operations failed: unreachable, gone, PIN refused
//   token_reconnects_total                      counter   PKCS#11 library re-initializations after a lost session
//   self_verify_failures_total                  counter   partial signatures that failed self-verification (withheld)
//   sessions_expired_total                      counter   sessions whose TTL passed before Sign
//   session_binding_mismatches_total            counter   Sign with pubkeys/tweaks/message other than NonceGen's
//   health_status{component}                    gauge     1 serving / 0 not; component = signer | keystore | ledger
//   policy_refusals_total{reason}               counter   calls the signing policy refused, by reason (POLICY_*)
//   audit_alarms_total                          counter   the audit log was cut, or its chain forked, under the running daemon (ALARM)
//   curve_backend_info{backend}                 gauge     1 for the curve backend in use: native | noble
//
// Labels are bounded: RPC names and status codes come from fixed sets, and nothing derived
// from a request (keys, session ids, messages, nonces) ever becomes a label or a value.
// The counters are read from their owners (SignerService.counters, Keystore.stats) at scrape
// time, so the signer and the keystore never depend on this library. A registry per instance
// lets tests run several in one process. Served over plain HTTP, GET /metrics only.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { formatListenAddress, parseListenAddress } from './listen.js';

export const METRIC_PREFIX = 'musig2_signer_';

/** The SignerService counters the metrics read (a structural subset of SignerCounters). */
export interface SignerCounterSource {
  nonceReuseAttempts: number;
  nonceCollisions: number;
  ledgerErrors: number;
  selfVerifyFailures: number;
  bindingMismatches: number;
  sessionsExpired: number;
}

/** The Keystore counters the metrics read (a structural copy of KeystoreStats). */
export interface KeystoreStatsSource {
  tokenErrors: number;
  reconnects: number;
  /** Whether key decrypts still run on the event loop (false once the token has been slow). */
  decryptOnEventLoop?: boolean;
}

/** Health by component, as last checked: `signer` is the Signer service's gRPC health. */
export interface HealthComponents {
  signer: boolean;
  keystore: boolean;
  ledger: boolean;
}

/** Where the scrape-time values come from; each is read lazily, so it may be wired up later. */
export interface MetricsSources {
  openSessions?: () => number;
  signerCounters?: () => SignerCounterSource;
  keystoreStats?: () => KeystoreStatsSource;
  health?: () => HealthComponents;
  /** Signing-policy refusals by reason (PolicyGate.refusals). */
  policyRefusals?: () => ReadonlyMap<string, number>;
  /** The curve backend the arithmetic runs on (native or noble). */
  curveBackend?: () => string;
  /** Include prom-client's default process and Node.js metrics (default true). */
  defaultMetrics?: boolean;
}

/** Buckets for calls that normally take 1-100 ms, with room either side. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'rpc' | 'code'>;
  readonly duration: Histogram<'rpc' | 'code'>;
  /** Counted by the daemon when its audit log is found cut, or its chain forked, under it (src/audit/log.ts). */
  readonly auditAlarms: Counter;
  private sources: MetricsSources;

  constructor(sources: MetricsSources = {}) {
    this.sources = { ...sources };
    const registers = [this.registry];
    this.requests = new Counter({
      name: `${METRIC_PREFIX}grpc_requests_total`,
      help: 'gRPC calls handled, by RPC and status code',
      labelNames: ['rpc', 'code'],
      registers,
    });
    this.duration = new Histogram({
      name: `${METRIC_PREFIX}grpc_request_duration_seconds`,
      help: 'gRPC call handling time in seconds, by RPC and status code',
      labelNames: ['rpc', 'code'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.auditAlarms = new Counter({
      name: `${METRIC_PREFIX}audit_alarms_total`,
      help: 'the audit log was found cut (records removed), or its chain continued by another writer, under the running daemon (ALARM)',
      registers,
    });
    const read = () => this.sources;
    new Gauge({
      name: `${METRIC_PREFIX}open_sessions`,
      help: 'round-1 sessions holding a secret nonce in memory',
      registers,
      collect() {
        this.set(read().openSessions?.() ?? 0);
      },
    });

    const signer = (pick: (c: SignerCounterSource) => number) => () => {
      const c = read().signerCounters?.();
      return c === undefined ? undefined : pick(c);
    };
    const keystore = (pick: (s: KeystoreStatsSource) => number) => () => {
      const s = read().keystoreStats?.();
      return s === undefined ? undefined : pick(s);
    };
    mirroredCounter(registers, 'nonce_reuse_attempts_total', 'requests refused because the nonce was already used for another signing context (ALARM)', signer((c) => c.nonceReuseAttempts));
    mirroredCounter(registers, 'nonce_collisions_total', 'NonceGen drew a pubnonce the ledger already had: the RNG failed (ALARM)', signer((c) => c.nonceCollisions));
    mirroredCounter(registers, 'ledger_errors_total', 'ledger failures (unavailable or refused writes); nothing was signed', signer((c) => c.ledgerErrors));
    mirroredCounter(registers, 'self_verify_failures_total', 'partial signatures that failed self-verification and were withheld', signer((c) => c.selfVerifyFailures));
    mirroredCounter(registers, 'sessions_expired_total', 'round-1 sessions whose TTL passed before Sign', signer((c) => c.sessionsExpired));
    mirroredCounter(registers, 'session_binding_mismatches_total', 'Sign calls whose pubkeys, tweaks or message differ from the session NonceGen bound', signer((c) => c.bindingMismatches));
    mirroredCounter(registers, 'token_errors_total', 'token operations that failed because the token was unreachable, gone or refused the PIN', keystore((s) => s.tokenErrors));
    mirroredCounter(registers, 'token_reconnects_total', 'PKCS#11 library re-initializations after a lost session or connection', keystore((s) => s.reconnects));

    new Gauge({
      name: `${METRIC_PREFIX}token_decrypt_on_event_loop`,
      help: '1 while key decrypts run on the event loop (a fast token), 0 once the token was slow and they moved to the libuv pool',
      registers,
      collect() {
        const on = read().keystoreStats?.().decryptOnEventLoop;
        if (on !== undefined) this.set(on ? 1 : 0);
      },
    });

    new Gauge({
      name: `${METRIC_PREFIX}health_status`,
      help: 'last health check: 1 serving, 0 not serving; component is signer (gRPC health), keystore or ledger',
      labelNames: ['component'],
      registers,
      collect() {
        const h = read().health?.();
        for (const component of ['signer', 'keystore', 'ledger'] as const) this.set({ component }, h?.[component] ? 1 : 0);
      },
    });

    // Reasons come from src/policy's fixed set, so the label stays bounded.
    const seenRefusals = new Map<string, number>();
    new Counter({
      name: `${METRIC_PREFIX}policy_refusals_total`,
      help: 'calls the signing policy refused, by reason (POLICY_*)',
      labelNames: ['reason'],
      registers,
      collect() {
        for (const [reason, n] of read().policyRefusals?.() ?? []) {
          const seen = seenRefusals.get(reason) ?? 0;
          if (n > seen) this.inc({ reason }, n - seen);
          seenRefusals.set(reason, Math.max(seen, n));
        }
      },
    });

    new Gauge({
      name: `${METRIC_PREFIX}curve_backend_info`,
      help: 'the curve backend the arithmetic runs on (1 for the one in use): native (libsecp256k1) or noble (JavaScript)',
      labelNames: ['backend'],
      registers,
      collect() {
        this.reset();
        const backend = read().curveBackend?.();
        if (backend === 'native' || backend === 'noble') this.set({ backend }, 1);
      },
    });

    if (sources.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Adds or replaces sources, e.g. health once the server has its monitor. */
  wire(sources: Omit<MetricsSources, 'defaultMetrics'>): void {
    this.sources = { ...this.sources, ...sources };
  }

  /** Starts timing one call; the returned function records it with its final status code name. */
  startCall(rpc: string): (code: string) => void {
    const end = this.duration.startTimer({ rpc });
    return (code) => {
      end({ code });
      this.requests.inc({ rpc, code });
    };
  }

  /** Serves GET /metrics on HOST:PORT (404 for anything else); resolves with the bound address. */
  async listen(address: string): Promise<{ address: string; close: () => Promise<void> }> {
    const { host, port } = parseListenAddress(address);
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method !== 'GET' || path !== '/metrics') {
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
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        }),
    };
  }
}

/**
 * A counter whose value is owned elsewhere: at each scrape it advances by however much the
 * source grew. A source that is not wired yet, or that went backwards, leaves it unchanged.
 */
function mirroredCounter(registers: Registry[], name: string, help: string, source: () => number | undefined): void {
  let seen = 0;
  new Counter({
    name: `${METRIC_PREFIX}${name}`,
    help,
    registers,
    collect() {
      const now = source();
      if (now === undefined) return;
      if (now > seen) this.inc(now - seen);
      seen = Math.max(seen, now);
    },
  });
}
