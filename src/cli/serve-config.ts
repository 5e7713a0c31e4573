// Configuration of `musig2-signer serve`: each setting from a flag, else the environment, else
// a default, through the shared settings machinery of config.ts (PKCS#11 settings included).
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { KeystoreOptions } from '../keystore/index.js';
import { BACKEND_CHOICES } from '../musig2/index.js';
import type { BackendChoice } from '../musig2/index.js';
import { MAX_WORKERS, defaultPoolSize } from '../signer/compute-pool.js';
import { DEFAULT_PSBT_LIMITS } from '../psbt/index.js';
import { keystoreOptions, PKCS11_SETTINGS, resolveSettings, settingOptions, settingsHelp } from './config.js';
import type { Setting } from './config.js';
import { CliError } from './errors.js';

/** The project-local data folder (git-ignored), for `npm start` and the default ledger. */
export const PROJECT_DATA_DIR = fileURLToPath(new URL('../../.local/data/', import.meta.url));
export const DEFAULT_LISTEN = '127.0.0.1:50051';
export const DEFAULT_LEDGER = `sqlite:${PROJECT_DATA_DIR}ledger.sqlite`;

export const SERVE_SETTINGS = {
  listen: {
    flag: 'listen',
    env: 'MUSIG2_LISTEN',
    description: `gRPC HOST:PORT (default ${DEFAULT_LISTEN}; port 0 picks one)`,
    default: () => DEFAULT_LISTEN,
  },
  ledger: {
    flag: 'ledger',
    env: 'MUSIG2_LEDGER',
    description: 'nonce ledger: sqlite:PATH (default under .local/data/) or postgres://URL; none (final signer only, policy without per_period)',
    default: () => DEFAULT_LEDGER,
  },
  role: {
    flag: 'role',
    env: 'MUSIG2_ROLE',
    description: 'signer (default: every Signer RPC) or final-signer (DeterministicSign and PsbtDeterministicSign only)',
    default: () => 'signer',
  },
  tlsCert: { flag: 'tls-cert', env: 'MUSIG2_TLS_CERT', description: 'server certificate, PEM' },
  tlsKey: { flag: 'tls-key', env: 'MUSIG2_TLS_KEY', description: 'server private key, PEM' },
  tlsClientCa: {
    flag: 'tls-client-ca',
    env: 'MUSIG2_TLS_CLIENT_CA',
    description: 'require client certificates signed by this CA (mTLS)',
  },
  acl: {
    flag: 'acl',
    env: 'MUSIG2_ACL',
    description: 'access-rule file, JSON (required on a non-loopback address unless --insecure)',
  },
  auditLog: {
    flag: 'audit-log',
    env: 'MUSIG2_AUDIT_LOG',
    description: 'audit log: JSON lines chained by a MAC in the token, anchored in the ledger, one daemon per file (required on a non-loopback address unless --insecure)',
  },
  policy: {
    flag: 'policy',
    env: 'MUSIG2_POLICY',
    description: 'signing-policy file, JSON (README "Signing policy"); reloaded on SIGHUP',
  },
  metricsListen: {
    flag: 'metrics-listen',
    env: 'MUSIG2_METRICS_LISTEN',
    description: 'Prometheus /metrics HOST:PORT (off by default)',
  },
  sessionTtlMs: {
    flag: 'session-ttl-ms',
    env: 'MUSIG2_SESSION_TTL_MS',
    description: 'round-1 session lifetime in ms (default 300000)',
    default: () => '300000',
  },
  maxSessions: {
    flag: 'max-sessions',
    env: 'MUSIG2_MAX_SESSIONS',
    description: 'cap on open round-1 sessions (default 10000)',
    default: () => '10000',
  },
  maxSessionsPerClient: {
    flag: 'max-sessions-per-client',
    env: 'MUSIG2_MAX_SESSIONS_PER_CLIENT',
    description: 'cap on the open round-1 sessions of one client identity (default: a quarter of --max-sessions)',
  },
  maxCallsPerClient: {
    flag: 'max-calls-per-client',
    env: 'MUSIG2_MAX_CALLS_PER_CLIENT',
    description: 'calls one client identity may have in flight, and HTTP/2 streams per connection (default 256)',
    default: () => '256',
  },
  maxComputePerClient: {
    flag: 'max-compute-per-client',
    env: 'MUSIG2_MAX_COMPUTE_PER_CLIENT',
    description: 'signing and Aggregator computations one client identity may have queued or running (default 128)',
    default: () => '128',
  },
  maxComputeQueue: {
    flag: 'max-compute-queue',
    env: 'MUSIG2_MAX_COMPUTE_QUEUE',
    description: 'computations waiting for a worker, all clients together; past it RESOURCE_EXHAUSTED at once (default 1024)',
    default: () => '1024',
  },
  maxMessageBytes: {
    flag: 'max-message-bytes',
    env: 'MUSIG2_MAX_MESSAGE_BYTES',
    description: 'longest message accepted (default 65536)',
    default: () => '65536',
  },
  maxSigners: {
    flag: 'max-signers',
    env: 'MUSIG2_MAX_SIGNERS',
    description: 'most public keys in one request (default 100)',
    default: () => '100',
  },
  maxPsbtBytes: {
    flag: 'max-psbt-bytes',
    env: 'MUSIG2_MAX_PSBT_BYTES',
    description: `largest PSBT accepted, in bytes (default ${DEFAULT_PSBT_LIMITS.maxPsbtBytes})`,
    default: () => String(DEFAULT_PSBT_LIMITS.maxPsbtBytes),
  },
  maxPsbtInputs: {
    flag: 'max-psbt-inputs',
    env: 'MUSIG2_MAX_PSBT_INPUTS',
    description: `most inputs in one PSBT (default ${DEFAULT_PSBT_LIMITS.maxInputs})`,
    default: () => String(DEFAULT_PSBT_LIMITS.maxInputs),
  },
  shutdownGraceMs: {
    flag: 'shutdown-grace-ms',
    env: 'MUSIG2_SHUTDOWN_GRACE_MS',
    description: 'on SIGTERM, how long in-flight calls may finish (default 10000)',
    default: () => '10000',
  },
  workers: {
    flag: 'workers',
    env: 'MUSIG2_WORKERS',
    description: 'worker threads for the curve arithmetic of signing and the Aggregator (default: one per core; 0 = on the event loop)',
    default: () => String(defaultPoolSize()),
  },
  curveBackend: {
    flag: 'curve-backend',
    env: 'MUSIG2_CURVE_BACKEND',
    description: 'curve arithmetic: native (libsecp256k1; refuse to start without it), noble (JavaScript) or auto (native if it loads; default)',
    default: () => 'auto',
  },
  logLevel: { flag: 'log-level', env: 'MUSIG2_LOG_LEVEL', description: 'pino log level (default info)', default: () => 'info' },
} as const satisfies Record<string, Setting>;

export interface ServeConfig {
  listen: string;
  /** Allow plaintext on a non-loopback address. */
  insecure: boolean;
  /** A ledger URL, or 'none' (final signer only). */
  ledger: string;
  /** final-signer serves DeterministicSign and PsbtDeterministicSign only. */
  role: 'signer' | 'final-signer';
  sessionTtlMs: number;
  maxSessions: number;
  /** Open sessions of one client identity. */
  maxSessionsPerClient: number;
  /** Calls in flight of one client identity (and HTTP/2 streams per connection). */
  maxCallsPerClient: number;
  /** Computations queued or running for one client identity. */
  maxComputePerClient: number;
  /** Computations waiting for a worker, all clients together. */
  maxComputeQueue: number;
  maxMessageBytes: number;
  maxSigners: number;
  /** Largest PSBT accepted, in bytes. */
  maxPsbtBytes: number;
  /** Most inputs in one PSBT. */
  maxPsbtInputs: number;
  metricsListen?: string;
  /** The access-rule file; without it every caller may do everything (loopback only, or --insecure). */
  acl?: string;
  /** The audit log file. */
  auditLog?: string;
  /** The signing-policy file; without it every key signs whatever its access rules allow. */
  policy?: string;
  tls?: { certFile: string; keyFile: string; clientCaFile?: string };
  shutdownGraceMs: number;
  /** Worker threads for the signing arithmetic; 0 runs it on the event loop. */
  workers: number;
  /** Which curve backend runs the arithmetic (main thread and workers alike). */
  curveBackend: BackendChoice;
  logLevel: string;
  keystore: KeystoreOptions;
}

export function serveUsage(): string {
  return [
    'usage: musig2-signer serve [options]',
    '',
    `  ${'--insecure'.padEnd(46)} allow plaintext gRPC, no --acl or no --audit-log on a non-loopback address`,
    settingsHelp(SERVE_SETTINGS),
    settingsHelp(PKCS11_SETTINGS),
  ].join('\n');
}

function positiveInt(flag: string, text: string): number {
  if (!/^\d{1,12}$/.test(text) || Number(text) < 1) throw new CliError(`--${flag} must be a positive whole number, got '${text}'`, 2);
  return Number(text);
}

function workerCount(text: string): number {
  const flag = SERVE_SETTINGS.workers.flag;
  if (!/^\d{1,3}$/.test(text) || Number(text) > MAX_WORKERS) {
    throw new CliError(`--${flag} must be a whole number from 0 to ${MAX_WORKERS}, got '${text}'`, 2);
  }
  return Number(text);
}

function curveBackend(text: string): BackendChoice {
  if (!(BACKEND_CHOICES as readonly string[]).includes(text)) {
    throw new CliError(`--${SERVE_SETTINGS.curveBackend.flag} must be one of ${BACKEND_CHOICES.join(', ')}, got '${text}'`, 2);
  }
  return text as BackendChoice;
}

export function parseServeArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ServeConfig {
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: { ...settingOptions(SERVE_SETTINGS), ...settingOptions(PKCS11_SETTINGS), insecure: { type: 'boolean' } },
    }));
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n\n${serveUsage()}`, 2);
  }
  const s = resolveSettings(SERVE_SETTINGS, values, env);
  const { tlsCert, tlsKey, tlsClientCa } = s;
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new CliError('TLS needs both a certificate and a key', 2);
  if (tlsClientCa !== undefined && tlsCert === undefined) throw new CliError('a client CA needs a server certificate and key', 2);
  const int = (key: keyof typeof SERVE_SETTINGS) => positiveInt(SERVE_SETTINGS[key].flag, s[key]!);
  const role = s.role!;
  if (role !== 'signer' && role !== 'final-signer') throw new CliError(`--role must be signer or final-signer, got '${role}'`, 2);
  if (s.ledger === 'none' && role !== 'final-signer') {
    throw new CliError('--ledger none is only for --role final-signer: random nonces must be recorded before they leave', 2);
  }

  return {
    listen: s.listen!,
    insecure: values.insecure === true,
    ledger: s.ledger!,
    role,
    sessionTtlMs: int('sessionTtlMs'),
    maxSessions: int('maxSessions'),
    maxSessionsPerClient:
      s.maxSessionsPerClient === undefined ? Math.max(1, Math.floor(int('maxSessions') / 4)) : int('maxSessionsPerClient'),
    maxCallsPerClient: int('maxCallsPerClient'),
    maxComputePerClient: int('maxComputePerClient'),
    maxComputeQueue: int('maxComputeQueue'),
    maxMessageBytes: int('maxMessageBytes'),
    maxSigners: int('maxSigners'),
    maxPsbtBytes: int('maxPsbtBytes'),
    maxPsbtInputs: int('maxPsbtInputs'),
    metricsListen: s.metricsListen,
    acl: s.acl,
    auditLog: s.auditLog,
    ...(s.policy === undefined ? {} : { policy: s.policy }),
    tls: tlsCert && tlsKey ? { certFile: tlsCert, keyFile: tlsKey, ...(tlsClientCa ? { clientCaFile: tlsClientCa } : {}) } : undefined,
    shutdownGraceMs: int('shutdownGraceMs'),
    workers: workerCount(s.workers!),
    curveBackend: curveBackend(s.curveBackend!),
    logLevel: s.logLevel!,
    keystore: keystoreOptions(values, env),
  };
}
