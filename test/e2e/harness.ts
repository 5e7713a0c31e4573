// End-to-end helpers: real SoftHSM2 tokens in temporary folders, the real CLI (bin/musig2-signer.js)
// and real daemon processes, each found through the JSON "listening on ADDR" line it logs.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initSoftHsmToken } from '../../src/keystore/index.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = join(ROOT, 'bin', 'musig2-signer.js');

const TOKEN_LABEL = 'e2e';
const USER_PIN = '246810';

export interface Token {
  dir: string;
  /** Environment for the CLI and the daemon: this token, its PIN, nothing inherited from MUSIG2_*. */
  env: NodeJS.ProcessEnv;
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MUSIG2_') && k !== 'SOFTHSM2_CONF') env[k] = v;
  return env;
}

/** A fresh SoftHSM2 token (with its KEK) in its own temporary folder. */
export async function makeToken(prefix = 'musig2-e2e-'): Promise<Token> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const { conf, modulePath } = await initSoftHsmToken({ dir: join(dir, 'hsm'), label: TOKEN_LABEL, soPin: '13579', userPin: USER_PIN });
  return {
    dir,
    env: {
      ...cleanEnv(),
      SOFTHSM2_CONF: conf,
      MUSIG2_PKCS11_MODULE: modulePath,
      MUSIG2_PKCS11_TOKEN: TOKEN_LABEL,
      MUSIG2_PKCS11_PIN: USER_PIN,
    },
  };
}

export async function removeToken(token: Token | undefined): Promise<void> {
  if (token) await rm(token.dir, { recursive: true, force: true });
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `musig2-signer ARGS` to completion. */
export function runCli(args: string[], opts: { env: NodeJS.ProcessEnv; input?: string }): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: opts.env, cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

/** Creates a key in the token with `keys create`; returns its 33-byte public key. */
export async function createKey(token: Token, label: string): Promise<Uint8Array> {
  const r = await runCli(['keys', 'create', '--label', label, '--json'], { env: token.env });
  if (r.code !== 0) throw new Error(`keys create ${label} failed: ${r.stderr}`);
  return publicKeyOf(r.stdout);
}

/** Imports a known secret with `keys import` (hex on stdin); returns its 33-byte public key. */
export async function importKey(token: Token, label: string, secretHex: string): Promise<Uint8Array> {
  const r = await runCli(['keys', 'import', '--label', label, '--json'], { env: token.env, input: `${secretHex}\n` });
  if (r.code !== 0) throw new Error(`keys import ${label} failed: ${r.stderr}`);
  return publicKeyOf(r.stdout);
}

function publicKeyOf(json: string): Uint8Array {
  const parsed = JSON.parse(json) as Record<string, unknown>;
  const hex = Object.values(parsed).find((v): v is string => typeof v === 'string' && /^0[23][0-9a-f]{64}$/i.test(v));
  if (!hex) throw new Error(`no public key in ${json}`);
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

export interface DaemonOptions {
  /** Default: a fresh sqlite file in the token's folder (the same file across restarts). */
  ledger?: string;
  /** Default 127.0.0.1:0. */
  listen?: string;
  metrics?: boolean;
  args?: string[];
  /** Pin the daemon (every thread) to these CPUs, a taskset list such as "0" or "0,1". */
  cpus?: string;
}

/** One `musig2-signer serve` process. */
export class Daemon {
  private constructor(
    private readonly child: ChildProcess,
    readonly address: string,
    readonly metricsAddress: string | undefined,
    private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
    /** Every stderr line so far (JSON log entries). */
    readonly lines: string[],
  ) {}

  get pid(): number {
    return this.child.pid!;
  }

  static async start(token: Token, opts: DaemonOptions = {}): Promise<Daemon> {
    const args = [
      BIN,
      'serve',
      '--listen',
      opts.listen ?? '127.0.0.1:0',
      '--ledger',
      opts.ledger ?? `sqlite:${join(token.dir, 'ledger.sqlite')}`,
      ...(opts.metrics ? ['--metrics-listen', '127.0.0.1:0'] : []),
      ...(opts.args ?? []),
    ];
    const [cmd, argv] = opts.cpus === undefined ? [process.execPath, args] : ['taskset', ['-c', opts.cpus, process.execPath, ...args]];
    const child = spawn(cmd, argv, { env: token.env, cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    const lines: string[] = [];
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
    let metricsAddress: string | undefined;
    const address = await new Promise<string>((resolve, reject) => {
      let rest = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`daemon did not start in time:\n${lines.join('\n')}`));
      }, 60_000);
      child.stderr!.on('data', (d: Buffer) => {
        rest += d.toString();
        let nl: number;
        while ((nl = rest.indexOf('\n')) >= 0) {
          const line = rest.slice(0, nl);
          rest = rest.slice(nl + 1);
          lines.push(line);
          let entry: { msg?: string; address?: string; metricsAddress?: string };
          try {
            entry = JSON.parse(line) as typeof entry;
          } catch {
            continue;
          }
          if (entry.metricsAddress) metricsAddress = entry.metricsAddress;
          if (entry.msg?.startsWith('listening on ') && entry.address) {
            clearTimeout(timer);
            resolve(entry.address);
          }
        }
      });
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`daemon exited (${code ?? signal}) before listening:\n${lines.join('\n')}`));
      });
    });
    return new Daemon(child, address, metricsAddress, exited, lines);
  }

  get port(): number {
    return Number(this.address.slice(this.address.lastIndexOf(':') + 1));
  }

  /** Sends a signal and waits for the process to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  /** The current value of a Prometheus gauge or counter without labels (needs `metrics: true`). */
  async metric(name: string): Promise<number> {
    if (!this.metricsAddress) throw new Error('daemon started without metrics');
    const body = await new Promise<string>((resolve, reject) => {
      get(`http://${this.metricsAddress}/metrics`, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve(text));
      }).on('error', reject);
    });
    const line = body.split('\n').find((l) => l.startsWith(`${name} `));
    if (line === undefined) throw new Error(`metric ${name} not found`);
    return Number(line.slice(name.length + 1));
  }

  /** Parsed JSON log entries so far. */
  logEntries(): Record<string, unknown>[] {
    return this.lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const fromHex = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));
