// grpc.health.v1 status, kept current by polling the signer's own health check (token and
// ledger). The overall service "" and the Signer service go NOT_SERVING as soon as either is
// down; the Aggregator is pure arithmetic and serves whenever the process does.
import { HealthImplementation } from 'grpc-health-check';
import type { ServingStatus } from 'grpc-health-check';
import type { Logger } from 'pino';
import { AGGREGATOR_SERVICE, SIGNER_SERVICE } from '../protocol/contract.js';

export interface HealthSource {
  /** `audit` is present when an audit log is configured: the Signer does not serve while it fails. */
  health(): Promise<{ keystore: boolean; ledger: boolean; audit?: boolean }>;
}

export class HealthMonitor {
  readonly implementation = new HealthImplementation({
    '': 'NOT_SERVING',
    [SIGNER_SERVICE]: 'NOT_SERVING',
    [AGGREGATOR_SERVICE]: 'SERVING',
  });
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private stopped = false;
  private last: ServingStatus = 'NOT_SERVING';
  private lastDetail: { keystore: boolean; ledger: boolean } = { keystore: false, ledger: false };

  constructor(
    private readonly source: HealthSource,
    private readonly logger: Logger,
    private readonly intervalMs = 1500,
  ) {}

  /** Runs a first check, then polls in the background (the timer never keeps the process alive). */
  async start(): Promise<void> {
    await this.check();
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  /** Re-checks now, e.g. after a call failed with UNAVAILABLE. Concurrent requests share one check. */
  check(): Promise<void> {
    this.checking ??= this.runCheck().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  /** Whether the last check found both the token and the ledger up. */
  serving(): boolean {
    return this.last === 'SERVING';
  }

  /** The last check by component, for metrics: `signer` is what gRPC health reports for the Signer. */
  components(): { signer: boolean; keystore: boolean; ledger: boolean } {
    return { signer: !this.stopped && this.serving(), ...this.lastDetail };
  }

  /** Reports NOT_SERVING everywhere from now on: the server is shutting down. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const service of ['', SIGNER_SERVICE, AGGREGATOR_SERVICE]) this.implementation.setStatus(service, 'NOT_SERVING');
  }

  private async runCheck(): Promise<void> {
    let status: ServingStatus = 'NOT_SERVING';
    let detail: { keystore: boolean; ledger: boolean; audit?: boolean } | undefined;
    try {
      detail = await this.source.health();
      if (detail.keystore && detail.ledger && detail.audit !== false) status = 'SERVING';
    } catch (err) {
      this.logger.warn({ err }, 'health check failed');
    }
    if (this.stopped) return;
    if (status !== this.last) {
      this.logger[status === 'SERVING' ? 'info' : 'warn']({ health: status, ...detail }, `health: ${status}`);
    }
    this.last = status;
    this.lastDetail = detail ?? { keystore: false, ledger: false };
    this.implementation.setStatus('', status);
    this.implementation.setStatus(SIGNER_SERVICE, status);
  }
}
