// The gRPC server: Signer and Aggregator services, grpc.health.v1 and server reflection on one
// port. Plaintext is refused on non-loopback addresses unless the caller explicitly allows it.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { ServiceDefinition } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { AGGREGATOR_SERVICE, loadPackageDefinition, SIGNER_SERVICE } from '../protocol/contract.js';
import type { AuditLog } from '../audit/index.js';
import { accessControl } from './access.js';
import type { AccessRules } from './acl.js';
import { aggregatorHandlers } from './aggregator.js';
import type { AggregatorCompute } from './aggregator.js';
import { HealthMonitor } from './health.js';
import { contractReflectionService } from './reflection.js';
import type { HealthSource } from './health.js';
import { formatListenAddress, isLoopbackHost, parseListenAddress } from './listen.js';
import type { Metrics } from './metrics.js';
import { unary, withSafeDecoding } from './rpc.js';
import type { CallContext, UnaryHandler } from './rpc.js';
import { CallQuota } from './quotas.js';
import { signerHandlers } from './signer.js';
import type { PolicyHashSource, SignerBackend } from './signer.js';
import { psbtAggregatorHandlers, psbtSignerHandlers } from './psbt.js';
import type { PsbtBackend } from './psbt.js';
import { DEFAULT_PSBT_LIMITS } from '../psbt/index.js';
import type { PsbtLimits } from '../psbt/index.js';
import { ComputePool, DEFAULT_LIMITS, SignerError } from '../signer/index.js';
import type { SignerService } from '../signer/index.js';
import type { RequestLimits } from './validate.js';

export { Metrics, METRIC_PREFIX } from './metrics.js';
export type { MetricsSources } from './metrics.js';
export { HealthMonitor } from './health.js';
export { isLoopbackHost, parseListenAddress, formatListenAddress, ListenAddressError } from './listen.js';
export { InvalidRequestError } from './validate.js';
export { AccessRules, AclError } from './acl.js';
export { CallQuota, DEFAULT_MAX_CALLS_PER_CLIENT, quotaIdentity } from './quotas.js';
export type { ClientIdentity } from './acl.js';
export type { RequestLimits } from './validate.js';
export type { PsbtBackend } from './psbt.js';

/** PEM-encoded TLS material; with a client CA the server requires client certificates (mTLS). */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  clientCa?: Buffer;
}

export interface DaemonServerOptions {
  signer: SignerBackend & HealthSource & Partial<Pick<SignerService, 'sessionKeyId'>>;
  logger: Logger;
  /** HOST:PORT; port 0 picks a free port (see `address` afterwards). */
  listen: string;
  tls?: TlsMaterial;
  /** Allow plaintext on a non-loopback address. */
  insecure?: boolean;
  /** Size limits for the Aggregator; pass the ones SignerService was given (default: its defaults). */
  limits?: Partial<RequestLimits>;
  /**
   * Where the Aggregator's curve arithmetic runs: pass the signer's ComputePool so it stays off
   * the event loop. Default: inline on the event loop.
   */
  compute?: AggregatorCompute;
  metrics?: Metrics;
  healthIntervalMs?: number;
  /**
   * Access rules (no rule, no access). Without them every caller may do everything, which is
   * allowed on a loopback address only, unless `insecure`.
   */
  acl?: AccessRules;
  /** Every Signer decision is recorded here, durably, before its reply leaves. */
  audit?: AuditLog;
  /** Calls one client may have in flight (and the HTTP/2 streams per connection). Default 256. */
  maxCallsPerClient?: number;
  /** The PSBT signing service; without it the Signer's PSBT RPCs answer UNAVAILABLE. */
  psbt?: PsbtBackend;
  /** Caps on PSBTs, checked before anything reads one (default: src/psbt's defaults). */
  psbtLimits?: Partial<PsbtLimits>;
  /** The signing policy's hash (hex) now, or undefined without a policy: in ListKeys and every audit record. */
  policyHash?: PolicyHashSource;
  /** Final-signer role: the Signer answers only ListKeys, DeterministicSign and PsbtDeterministicSign. */
  finalSignerOnly?: boolean;
}

export class MissingAccessRulesError extends Error {
  constructor(address: string) {
    super(`refusing to serve non-loopback address ${address} without access rules (--acl): every client could use every key; pass --insecure to allow it`);
    this.name = 'MissingAccessRulesError';
  }
}

export class InsecureListenError extends Error {
  constructor(address: string) {
    super(`refusing plaintext gRPC on non-loopback address ${address}: configure TLS or pass --insecure`);
    this.name = 'InsecureListenError';
  }
}

/**
 * The largest request the caps allow (PartialSigVerify: a message, and per signer a pubnonce
 * and a public key; or PartialSigAgg: a psig and a public key), with protobuf framing: each
 * entry costs its bytes plus 2 to 3 bytes of tag and length, each tweak 40 bytes. Larger
 * frames are refused by grpc-js before they are decoded.
 */
export function maxRequestBytes(limits: RequestLimits): number {
  return limits.maxMessageBytes + 8 + limits.maxSigners * (66 + 3 + 33 + 3) + limits.maxTweaks * 40 + 4096;
}

/** The transport's frame limit: the largest request the caps allow, PSBT RPCs included. */
export function maxReceiveBytes(limits: RequestLimits, psbtLimits: Pick<PsbtLimits, 'maxPsbtBytes'>): number {
  // PsbtCombine carries several PSBTs: room for four at the PSBT cap.
  return Math.max(maxRequestBytes(limits), 4 * psbtLimits.maxPsbtBytes + 4096);
}

export class DaemonServer {
  private constructor(
    private readonly server: Server,
    readonly health: HealthMonitor,
    /** The bound address, with the real port when 0 was asked for. */
    readonly address: string,
    private readonly logger: Logger,
  ) {}

  static async start(opts: DaemonServerOptions): Promise<DaemonServer> {
    const requested = parseListenAddress(opts.listen);
    if (!opts.tls && !opts.insecure && !isLoopbackHost(requested.host)) throw new InsecureListenError(opts.listen);
    if (!opts.acl && !opts.insecure && !isLoopbackHost(requested.host)) throw new MissingAccessRulesError(opts.listen);
    const limits: RequestLimits = { ...DEFAULT_LIMITS, ...opts.limits };
    const psbtLimits: PsbtLimits = { ...DEFAULT_PSBT_LIMITS, ...opts.psbtLimits };
    const psbtBackend = opts.psbt;
    const signerSessionKeyId = opts.signer.sessionKeyId?.bind(opts.signer);
    // PsbtSign carries no key id either: the PSBT service knows its sessions, then the signer.
    const sessionKeyId =
      psbtBackend || signerSessionKeyId
        ? async (id: Uint8Array) => (psbtBackend ? await psbtBackend.sessionKeyId(id) : null) ?? (await signerSessionKeyId?.(id)) ?? null
        : undefined;

    const audit = opts.audit;
    const healthSource: HealthSource = audit
      ? {
          health: async () => {
            // A failed audit log is retried here, so the Signer serves again once it can write.
            const auditOk = await audit.ensureWritable().then(
              () => true,
              () => false,
            );
            return { ...(await opts.signer.health()), audit: auditOk };
          },
        }
      : opts.signer;
    const health = new HealthMonitor(healthSource, opts.logger, opts.healthIntervalMs);
    opts.metrics?.wire({ health: () => health.components() });
    const quota = new CallQuota(opts.maxCallsPerClient);
    const ctx: CallContext = {
      logger: opts.logger,
      quota,
      metrics: opts.metrics,
      onUnavailable: () => void health.check(),
      ...(opts.acl || audit
        ? {
            around: accessControl({
              rules: opts.acl,
              audit,
              plaintextIsLocal: !opts.tls && isLoopbackHost(requested.host),
              sessionKeyId,
              policyHash: opts.policyHash,
              logger: opts.logger,
            }),
          }
        : {}),
    };
    const server = new Server({
      'grpc.max_receive_message_length': maxReceiveBytes(limits, psbtLimits),
      // One connection may not open more streams than one client may have calls in flight.
      'grpc.max_concurrent_streams': quota.maxPerClient,
      // No channelz: nothing here serves it, and it counts and tracks every call.
      'grpc.enable_channelz': 0,
    });

    const packageDefinition = loadPackageDefinition();
    const signer = signerHandlers(opts.signer, opts.policyHash);
    const psbtSigner = psbtSignerHandlers(psbtBackend, psbtLimits);
    const psbtAggregator = psbtAggregatorHandlers(psbtLimits);
    // A final signer keeps no nonce state: the random-nonce RPCs are refused before anything runs.
    const randomPath = <Req, Res>(rpc: string, handle: UnaryHandler<Req, Res>): UnaryHandler<Req, Res> =>
      opts.finalSignerOnly
        ? async () => {
            throw new SignerError('FAILED_PRECONDITION', `${rpc}: this daemon is a final signer (--role final-signer); it serves DeterministicSign and PsbtDeterministicSign only`, {
              errorInfo: { reason: 'FINAL_SIGNER_ONLY', metadata: {} },
            });
          }
        : handle;
    server.addService(withSafeDecoding(packageDefinition[SIGNER_SERVICE] as ServiceDefinition), {
      ListKeys: unary('ListKeys', ctx, signer.listKeys),
      NonceGen: unary('NonceGen', ctx, randomPath('NonceGen', signer.nonceGen)),
      Sign: unary('Sign', ctx, randomPath('Sign', signer.sign)),
      DeterministicSign: unary('DeterministicSign', ctx, signer.deterministicSign),
      PsbtNonceGen: unary('PsbtNonceGen', ctx, randomPath('PsbtNonceGen', psbtSigner.psbtNonceGen)),
      PsbtSign: unary('PsbtSign', ctx, randomPath('PsbtSign', psbtSigner.psbtSign)),
      PsbtDeterministicSign: unary('PsbtDeterministicSign', ctx, psbtSigner.psbtDeterministicSign),
    });
    const aggregator = aggregatorHandlers(limits, opts.compute ?? ComputePool.inline());
    server.addService(withSafeDecoding(packageDefinition[AGGREGATOR_SERVICE] as ServiceDefinition), {
      KeySort: unary('KeySort', ctx, aggregator.keySort),
      KeyAgg: unary('KeyAgg', ctx, aggregator.keyAgg),
      NonceAgg: unary('NonceAgg', ctx, aggregator.nonceAgg),
      PartialSigVerify: unary('PartialSigVerify', ctx, aggregator.partialSigVerify),
      PartialSigAgg: unary('PartialSigAgg', ctx, aggregator.partialSigAgg),
      PsbtCombine: unary('PsbtCombine', ctx, psbtAggregator.psbtCombine),
      PsbtFinalize: unary('PsbtFinalize', ctx, psbtAggregator.psbtFinalize),
    });
    health.implementation.addToServer(server);
    contractReflectionService().addToServer(server);

    const credentials = opts.tls
      ? ServerCredentials.createSsl(
          opts.tls.clientCa ?? null,
          [{ cert_chain: opts.tls.cert, private_key: opts.tls.key }],
          opts.tls.clientCa !== undefined,
        )
      : ServerCredentials.createInsecure();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(formatListenAddress(requested), credentials, (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    await health.start();
    return new DaemonServer(server, health, formatListenAddress({ host: requested.host, port }), opts.logger);
  }

  /**
   * Stops accepting calls, lets in-flight calls finish for up to `graceMs`, then cancels what is
   * left. Returns whether anything had to be cancelled.
   */
  async shutdown(graceMs: number): Promise<{ forced: boolean }> {
    this.health.stop();
    let timer: NodeJS.Timeout | undefined;
    const drained = new Promise<boolean>((resolve) => this.server.tryShutdown(() => resolve(true)));
    const deadline = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), graceMs);
    });
    const clean = await Promise.race([drained, deadline]);
    clearTimeout(timer);
    if (!clean) {
      this.logger.warn({ graceMs }, 'in-flight calls did not finish in time; cancelling them');
      this.server.forceShutdown();
    }
    return { forced: !clean };
  }
}
