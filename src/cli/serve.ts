// `musig2-signer serve`: the signer daemon. Opens the token and the ledger, serves gRPC until
// SIGTERM or SIGINT, then drains in-flight calls, wipes every open session and closes the
// token and the ledger. Logs are JSON lines on stderr; the one that says "listening on ADDR"
// carries the bound address (useful with port 0).
import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { AuditAnchorError, AuditLockedError, AuditLog, AuditLogCorruptError, AuditUnavailableError } from '../audit/index.js';
import type { AuditKey } from '../audit/index.js';
import { Keystore } from '../keystore/index.js';
import { Musig2Error, selectBackend } from '../musig2/index.js';
import { NoLedger, openLedger } from '../ledger/index.js';
import type { NonceLedger } from '../ledger/index.js';
import {
  AccessRules,
  AclError,
  DaemonServer,
  InsecureListenError,
  isLoopbackHost,
  ListenAddressError,
  Metrics,
  parseListenAddress,
} from '../server/index.js';
import type { TlsMaterial } from '../server/index.js';
import { loadPolicy, PolicyError } from '../policy/index.js';
import type { Policy } from '../policy/index.js';
import { ComputePool, PolicyGate, SignerService } from '../signer/index.js';
import { PsbtSignerService } from '../signer/psbt-service.js';
import { CliError, wantsHelp } from './errors.js';
import { parseServeArgs, serveUsage } from './serve-config.js';
import type { ServeConfig } from './serve-config.js';

async function readTls(tls: NonNullable<ServeConfig['tls']>): Promise<TlsMaterial> {
  const read = async (file: string, what: string) => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new CliError(`cannot read TLS ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? 'read failed'}`);
    }
  };
  return {
    cert: await read(tls.certFile, 'certificate'),
    key: await read(tls.keyFile, 'key'),
    ...(tls.clientCaFile ? { clientCa: await read(tls.clientCaFile, 'client CA') } : {}),
  };
}

export interface RunningDaemon {
  /** The bound gRPC address (with the real port when 0 was asked for). */
  address: string;
  logger: Logger;
  /** Drains in-flight calls, wipes open sessions, closes everything. */
  stop(): Promise<{ forced: boolean; sessionsWiped: number }>;
  /**
   * Reads the policy file again (SIGHUP). A file that loads replaces the policy; one that does
   * not keeps the old policy and says why. Logged and audited either way. Undefined without --policy.
   */
  reloadPolicy?: () => Promise<{ loaded: boolean; policyHash: string; error?: string }>;
}

/** Loads the policy file for serve: a bad file refuses to start (exit 2), naming the field. */
async function loadPolicyForServe(file: string): Promise<Policy> {
  try {
    return await loadPolicy(file);
  } catch (err) {
    if (err instanceof PolicyError) throw new CliError(`signing policy refused: ${err.message}`, 2);
    throw err;
  }
}

export function daemonLogger(level: string): Logger {
  return pino({ name: 'musig2-signer', level, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));
}

/** Checks the listen addresses before anything is opened; CliError (exit 2) when refused. */
function checkAddresses(config: ServeConfig): void {
  try {
    const { host } = parseListenAddress(config.listen);
    if (!config.tls && !config.insecure && !isLoopbackHost(host)) throw new InsecureListenError(config.listen);
    // Off loopback, access rules and the audit log are not optional (DESIGN.md section 4).
    if (!config.insecure && !isLoopbackHost(host)) {
      if (!config.acl) throw new CliError(`refusing to serve ${config.listen} without access rules: pass --acl FILE (or --insecure)`, 2);
      if (!config.auditLog) throw new CliError(`refusing to serve ${config.listen} without an audit log: pass --audit-log FILE (or --insecure)`, 2);
    }
    // /metrics is plain, unauthenticated HTTP. It carries no secrets, but it does show signing
    // activity, so a non-loopback address needs the same explicit --insecure as plaintext gRPC.
    if (config.metricsListen && !config.insecure && !isLoopbackHost(parseListenAddress(config.metricsListen).host)) {
      throw new CliError(
        `refusing /metrics on non-loopback address ${config.metricsListen}: it is plain HTTP; bind it to loopback (and scrape through a proxy) or pass --insecure`,
        2,
      );
    }
  } catch (err) {
    if (err instanceof ListenAddressError || err instanceof InsecureListenError) throw new CliError(err.message, 2);
    throw err;
  }
}

/** The token's audit MAC key, as the audit log uses it. */
export function auditKeyOf(keystore: Keystore): AuditKey {
  return { ensure: (create) => keystore.ensureAuditKey(create), withMac: (fn) => keystore.withAuditMac(fn) };
}

/**
 * Opens the audit log: its lock, its keyed chain, its tail checked against the ledger's anchor.
 * A log that ends before the anchored head is an alarm (records were cut) and a refusal.
 * With --ledger none there is nowhere to anchor: the chain is still keyed and locked, but a log
 * cut at its end is not caught at start (said in the start log).
 */
async function openAuditLog(
  config: ServeConfig,
  keystore: Keystore,
  anchor: NonceLedger | undefined,
  policy: Policy | undefined,
  logger: Logger,
  metrics: Metrics,
): Promise<AuditLog> {
  const path = config.auditLog!;
  if (!anchor) {
    logger.warn(
      { event: 'audit_log_unanchored', file: path },
      'audit log not anchored (--ledger none): a log cut at its end is not caught at start; keep it on append-only storage or ship it off the host',
    );
  }
  try {
    return await AuditLog.open(path, {
      key: auditKeyOf(keystore),
      ...(anchor ? { anchor } : {}),
      openFields: { pid: process.pid, listen: config.listen, acl: config.acl ?? null, ...(policy ? { policy_hash: policy.hashHex } : {}) },
      onStateChange: (healthy, err) =>
        healthy ? logger.warn('audit log writable again: signing resumes') : logger.error({ err }, 'audit log write failed: signing stops'),
      onAlarm: (event, details) => {
        metrics.auditAlarms.inc();
        const what = event === 'audit_log_cut' ? 'the audit log was cut under the daemon' : 'another writer continues this audit chain (a fork)';
        logger.error({ event, alarm: true, ...details }, `ALARM ${event}: ${what}; signing stops until a restart`);
      },
      onAnchorError: (err) => logger.warn({ err }, 'audit head could not be anchored in the ledger (retried with each new record; said once)'),
    });
  } catch (err) {
    if (err instanceof AuditAnchorError) {
      logger.error(
        {
          event: 'audit_log_behind_ledger',
          alarm: true,
          file: path,
          chain: err.anchor.chain,
          fileSeq: err.file?.seq ?? 0,
          ledgerSeq: err.anchor.seq,
        },
        'ALARM audit_log_behind_ledger',
      );
      throw new CliError(err.message);
    }
    if (err instanceof AuditLogCorruptError || err instanceof AuditUnavailableError || err instanceof AuditLockedError) {
      throw new CliError(err.message);
    }
    throw err;
  }
}

/** Opens the token and the ledger and starts serving; logs "listening on ADDR" once bound. */
export async function startDaemon(config: ServeConfig, logger: Logger): Promise<RunningDaemon> {
  // Refuse a bad address before touching the token; DaemonServer.start checks again.
  checkAddresses(config);
  const tls = config.tls ? await readTls(config.tls) : undefined;
  let acl: AccessRules | undefined;
  if (config.acl) {
    try {
      acl = await AccessRules.load(config.acl);
    } catch (err) {
      if (err instanceof AclError) throw new CliError(err.message, 2);
      throw err;
    }
  } else {
    logger.warn('no access rules (--acl): every caller may use every key; development only');
  }
  if (!config.auditLog) logger.warn('no audit log (--audit-log): signing decisions are not recorded');
  const policy = config.policy === undefined ? undefined : await loadPolicyForServe(config.policy);
  const noLedger = config.ledger === 'none';
  if (noLedger && policy?.needsLedger) {
    throw new CliError('the signing policy has a velocity rule (per_period), which needs a ledger: pass --ledger sqlite:PATH or postgres://URL', 2);
  }
  if (config.role === 'final-signer') {
    logger.info({ role: config.role, ledger: noLedger ? 'none' : 'yes' }, `final signer: DeterministicSign and PsbtDeterministicSign only${noLedger ? ', no ledger (stateless)' : ''}`);
  }
  if (policy) {
    logger.info(
      { event: 'policy_loaded', policyHash: policy.hashHex, policyFile: config.policy, keys: [...policy.keys.keys()], needsLedger: policy.needsLedger },
      `signing policy ${policy.hashHex} loaded: keys it does not name sign nothing`,
    );
  } else {
    logger.warn('no signing policy (--policy): every key signs whatever its access rules allow');
  }

  const closers: { name: string; close: () => Promise<void> }[] = [];
  const closeAll = async () => {
    for (const c of closers.reverse()) {
      try {
        await c.close();
      } catch (err) {
        logger.error({ err }, `closing ${c.name} failed`);
      }
    }
  };

  let server: DaemonServer;
  let signer: SignerService;
  let psbt: PsbtSignerService;
  let gate: PolicyGate | undefined;
  let audit: AuditLog | undefined;
  try {
    // The curve backend, before the workers start: they run the one chosen here.
    let chosen: ReturnType<typeof selectBackend>;
    try {
      chosen = selectBackend(config.curveBackend);
    } catch (err) {
      if (err instanceof Musig2Error) throw new CliError(`--curve-backend ${config.curveBackend}: ${err.message}`, 1);
      throw err;
    }
    logger.info(
      { curveBackend: chosen.backend, requested: config.curveBackend, ...(chosen.reason === undefined ? {} : { nativeUnavailable: chosen.reason }) },
      `curve backend ${chosen.backend}` +
        (config.curveBackend === 'auto' ? ` (auto: ${chosen.reason === undefined ? 'the native addon loaded' : `native unavailable, ${chosen.reason}`})` : ''),
    );
    // The signing arithmetic's worker threads (each builds its tables, ~0.2 s, in parallel).
    // Closed after the signer, so nothing is mid-call when the workers go.
    const compute = await ComputePool.start(config.workers, {
      logger,
      maxPerClient: config.maxComputePerClient,
      maxQueued: config.maxComputeQueue,
    });
    closers.push({ name: 'compute pool', close: () => compute.close() });
    logger.info({ workers: compute.size }, `curve arithmetic (signing and Aggregator) on ${compute.size === 0 ? 'the event loop' : `${compute.size} worker thread(s)`}`);
    const keystore = await Keystore.open(config.keystore);
    closers.push({ name: 'keystore', close: () => keystore.close() });
    const ledger: NonceLedger = noLedger ? new NoLedger() : await openLedger(config.ledger);
    closers.push({ name: 'ledger', close: () => ledger.close() });
    if (policy) gate = new PolicyGate(policy, noLedger ? {} : { ledger });

    // Reads everything lazily at scrape time: the signer's counters, the token's errors and
    // reconnects; DaemonServer wires in health.
    const metrics = new Metrics({
      openSessions: () => signer.openSessions() + psbt.openSessions(),
      signerCounters: () => signer.counters,
      keystoreStats: () => keystore.stats,
      ...(gate ? { policyRefusals: () => gate!.refusals } : {}),
      curveBackend: () => chosen.backend,
    });
    signer = new SignerService({
      keystore,
      ledger,
      sessionTtlMs: config.sessionTtlMs,
      maxSessions: config.maxSessions,
      maxSessionsPerClient: config.maxSessionsPerClient,
      maxMessageBytes: config.maxMessageBytes,
      maxSigners: config.maxSigners,
      logger,
      compute,
      ...(gate ? { policy: gate } : {}),
    });
    closers.push({ name: 'signer', close: () => signer.close() });
    // Transactions: the same keystore, ledger, pool and counters (so metrics and alarms cover both).
    psbt = new PsbtSignerService({
      keystore,
      ledger,
      limits: { maxPsbtBytes: config.maxPsbtBytes, maxInputs: config.maxPsbtInputs },
      sessionTtlMs: config.sessionTtlMs,
      maxOpenNonces: config.maxSessions,
      counters: signer.counters,
      logger,
      compute,
      ...(gate ? { policy: gate } : {}),
    });
    closers.push({ name: 'PSBT signer', close: () => psbt.close() });

    if (config.auditLog) {
      audit = await openAuditLog(config, keystore, noLedger ? undefined : ledger, policy, logger, metrics);
      const opened = audit;
      closers.push({ name: 'audit log', close: () => opened.close() });
    }

    if (config.metricsListen) {
      const m = await metrics.listen(config.metricsListen);
      closers.push({ name: 'metrics', close: m.close });
      logger.info({ metricsAddress: m.address }, `metrics listening on ${m.address}`);
    }
    server = await DaemonServer.start({
      signer,
      logger,
      listen: config.listen,
      tls,
      insecure: config.insecure,
      limits: { maxMessageBytes: config.maxMessageBytes, maxSigners: config.maxSigners },
      compute,
      metrics,
      acl,
      audit,
      maxCallsPerClient: config.maxCallsPerClient,
      psbt,
      psbtLimits: { maxPsbtBytes: config.maxPsbtBytes, maxInputs: config.maxPsbtInputs },
      ...(gate ? { policyHash: () => gate!.policy.hashHex } : {}),
      finalSignerOnly: config.role === 'final-signer',
    });
  } catch (err) {
    // Also as a JSON line, for log pipelines that read only those (our messages carry no secret).
    logger.error({ event: 'start_failed', reason: err instanceof Error ? err.message : String(err) }, 'the daemon did not start');
    await closeAll();
    if (err instanceof InsecureListenError) throw new CliError(err.message, 2);
    throw err;
  }
  logger.info({ address: server.address, tls: tls !== undefined, ...(policy ? { policyHash: policy.hashHex } : {}) }, `listening on ${server.address}`);

  const policyGate = gate;
  const policyFile = config.policy;
  const reloadPolicy =
    policyGate && policyFile !== undefined
      ? async () => {
          const before = policyGate.policy.hashHex;
          let next: Policy | undefined;
          let error: string | undefined;
          try {
            next = await loadPolicy(policyFile);
            if (noLedger && next.needsLedger) {
              next = undefined;
              error = 'the new policy has a velocity rule (per_period), which needs a ledger, and this daemon runs with --ledger none';
            }
          } catch (err) {
            error = err instanceof Error ? err.message : String(err);
          }
          if (next) policyGate.replace(next);
          const after = policyGate.policy.hashHex;
          if (next) logger.info({ event: 'policy_reloaded', previousPolicyHash: before, policyHash: after }, `signing policy ${after} loaded (was ${before})`);
          else logger.error({ event: 'policy_reload_failed', policyHash: after, reason: error }, `signing policy not reloaded, ${after} stays in force: ${error}`);
          try {
            await audit?.append('policy_reload', {
              loaded: next !== undefined,
              previous_policy_hash: before,
              policy_hash: after,
              ...(error === undefined ? {} : { error }),
            });
          } catch (err) {
            logger.error({ err }, 'the policy reload could not be audited');
          }
          return { loaded: next !== undefined, policyHash: after, ...(error === undefined ? {} : { error }) };
        }
      : undefined;

  return {
    address: server.address,
    logger,
    ...(reloadPolicy ? { reloadPolicy } : {}),
    async stop() {
      const { forced } = await server.shutdown(config.shutdownGraceMs);
      // SignerService.close() wipes every secret nonce still held; the keystore and ledger follow.
      const sessionsWiped = signer.openSessions() + psbt.openSessions();
      await closeAll();
      logger.info({ forced, sessionsWiped }, 'stopped');
      return { forced, sessionsWiped };
    },
  };
}

/** Resolves with the first SIGTERM or SIGINT. */
export function nextSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolve(signal);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

export async function runServe(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log(serveUsage());
    return 0;
  }
  const config = parseServeArgs(argv);
  checkAddresses(config);
  const logger = daemonLogger(config.logLevel);
  // Listen for signals from the start, so a SIGTERM during startup still shuts down cleanly.
  const signal = nextSignal();
  const daemon = await startDaemon(config, logger);
  // SIGHUP reloads the signing policy (one reload at a time; a burst of signals is one reload more).
  let reloading: Promise<unknown> = Promise.resolve();
  const onHup = () => {
    if (daemon.reloadPolicy) reloading = reloading.then(() => daemon.reloadPolicy!());
    else logger.warn('SIGHUP: no --policy to reload');
  };
  process.on('SIGHUP', onHup);
  const got = await signal;
  process.off('SIGHUP', onHup);
  await reloading;
  logger.info({ signal: got }, 'shutting down: draining in-flight calls');
  await daemon.stop();
  return 0;
}
