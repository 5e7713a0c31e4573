// Per-client quotas at the server edge: who a call is for (its identity), and how many calls
// one identity may have in flight. The signer applies the other per-client caps (open sessions,
// queued compute work) to the identity each handler is given and passes down (rpc.ts unary).
//
// Identity: the verified client certificate's name (`CN=…` or its first SAN, as access rules
// and audit records name it); without one, the peer's address without the port (`peer:ADDR`),
// so several connections from one host count as one client. On loopback without TLS every
// local client is `peer:127.0.0.1` (or `peer:::1`): one identity, as they are one trust domain.
import type { ServerUnaryCall } from '@grpc/grpc-js';
import { SignerError } from '../signer/index.js';
import { capText, identifyCaller, MAX_CLIENT_NAME_CHARS } from './acl.js';

export const DEFAULT_MAX_CALLS_PER_CLIENT = 256;

/** The quota identity of a call. */
export function quotaIdentity(call: Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext' | 'getPeer'>): string {
  const who = identifyCaller(call, false);
  if (who.authenticated) return who.name;
  const peer = call.getPeer?.() ?? 'unknown';
  const colon = peer.lastIndexOf(':');
  const host = colon > 0 && /^\d+$/.test(peer.slice(colon + 1)) ? peer.slice(0, colon) : peer;
  return `peer:${capText(host.replace(/^\[(.*)\]$/, '$1'), MAX_CLIENT_NAME_CHARS)}`;
}

/** Calls in flight per identity, refused past the cap with RESOURCE_EXHAUSTED. */
export class CallQuota {
  private readonly inFlight = new Map<string, number>();

  constructor(readonly maxPerClient: number = DEFAULT_MAX_CALLS_PER_CLIENT) {
    if (!Number.isInteger(maxPerClient) || maxPerClient < 1) throw new RangeError('maxCallsPerClient must be a positive integer');
  }

  enter(identity: string): void {
    const n = this.inFlight.get(identity) ?? 0;
    if (n >= this.maxPerClient) {
      throw new SignerError(
        'RESOURCE_EXHAUSTED',
        `client '${identity}' already has ${n} calls in flight (cap ${this.maxPerClient} per client); wait for answers before sending more`,
      );
    }
    this.inFlight.set(identity, n + 1);
  }

  leave(identity: string): void {
    const n = (this.inFlight.get(identity) ?? 1) - 1;
    if (n <= 0) this.inFlight.delete(identity);
    else this.inFlight.set(identity, n);
  }
}
