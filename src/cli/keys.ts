// `musig2-signer keys create|import|list`: manage the signing keys sealed in the PKCS#11 token.
import { parseArgs } from 'node:util';
import { InvalidSecretError, Keystore, KeystoreError } from '../keystore/index.js';
import type { KeyInfo } from '../keystore/index.js';
import { keystoreOptions, PKCS11_SETTINGS, settingOptions, settingsHelp } from './config.js';
import { CliError } from './errors.js';

const USAGE = `usage:
  musig2-signer keys create --label L [--json]   generate a key inside the keystore
  musig2-signer keys import --label L [--json]   seal a known key; the hex secret is read from stdin
  musig2-signer keys list [--json]               print each key's label and compressed public key

settings (flag, else environment):
${settingsHelp(PKCS11_SETTINGS)}`;

/** Longest stdin accepted for `keys import`: 64 hex digits plus generous whitespace. */
const MAX_SECRET_INPUT = 4096;

export async function runKeys(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'create':
    case 'import':
    case 'list':
      return runSubcommand(sub, rest);
    case '--help':
    case '-h':
    case 'help':
      console.log(USAGE);
      return 0;
    case undefined:
      console.error(USAGE);
      return 2;
    default:
      throw new CliError(`unknown subcommand '${sub}'\n\n${USAGE}`, 2);
  }
}

async function runSubcommand(sub: 'create' | 'import' | 'list', argv: string[]): Promise<number> {
  const values = parseFlags(argv, sub !== 'list');
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const label = typeof values.label === 'string' ? values.label : undefined;
  if (sub !== 'list' && !label) throw new CliError(`keys ${sub} needs --label`, 2);
  const json = values.json === true;
  // Read the secret before touching the token, so bad input fails fast and alone.
  const secret = sub === 'import' ? await readSecretFromStdin() : undefined;
  try {
    return await withKeystore(values, async (ks) => {
      if (sub === 'list') {
        const keys = await ks.listKeys();
        console.log(json ? JSON.stringify(keys.map(toJson), null, 2) : formatTable(keys));
        return 0;
      }
      const key = sub === 'create' ? await ks.createKey(label!) : await ks.importKey(label!, secret!);
      // Provisioning a token makes its audit MAC key too, so replicas sharing the token never
      // race to create it on their first start.
      await ks.ensureAuditKey(true);
      console.log(json ? JSON.stringify(toJson(key), null, 2) : formatTable([key]));
      return 0;
    });
  } finally {
    secret?.fill(0);
  }
}

function parseFlags(argv: string[], withLabel: boolean): Record<string, unknown> {
  try {
    return parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        ...(withLabel ? { label: { type: 'string' } } : {}),
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        ...settingOptions(PKCS11_SETTINGS),
      },
    }).values;
  } catch (err) {
    // parseArgs quotes a stray argument back, and a stray argument may be a pasted secret.
    const message =
      (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL'
        ? 'unexpected argument (not shown); a secret is read from stdin, never from the command line'
        : (err as Error).message;
    throw new CliError(`${message}\n\n${USAGE}`, 2);
  }
}

async function withKeystore(flags: Record<string, unknown>, fn: (ks: Keystore) => Promise<number>): Promise<number> {
  let ks: Keystore | undefined;
  try {
    ks = await Keystore.open(keystoreOptions(flags));
    return await fn(ks);
  } catch (err) {
    // Keystore errors already name their cause and never carry secret bytes.
    if (err instanceof KeystoreError) throw new CliError(err.message, 1);
    throw err;
  } finally {
    await ks?.close();
  }
}

function toJson(key: KeyInfo): { label: string; publicKey: string } {
  return { label: key.label, publicKey: Buffer.from(key.publicKey).toString('hex') };
}

function formatTable(keys: readonly KeyInfo[]): string {
  const width = Math.max(0, ...keys.map((k) => k.label.length));
  return keys.map((k) => `${k.label.padEnd(width)}  ${Buffer.from(k.publicKey).toString('hex')}`).join('\n');
}

/**
 * The 32-byte secret as 64 hex digits on stdin, surrounding whitespace allowed. It is decoded
 * straight from the input bytes, never via a string (strings cannot be wiped), and the input
 * buffers are overwritten afterwards. A terminal is refused: it would echo the secret.
 */
export async function readSecretFromStdin(): Promise<Uint8Array> {
  if (process.stdin.isTTY) {
    throw new CliError('keys import reads the hex secret from a pipe or file on stdin, not from a terminal (it would echo)', 2);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      total += chunk.length;
      if (total > MAX_SECRET_INPUT) throw new CliError(new InvalidSecretError('stdin is too long for a hex secret').message, 1);
    }
    const input = Buffer.concat(chunks);
    try {
      return decodeHexSecret(input);
    } catch (err) {
      if (err instanceof KeystoreError) throw new CliError(err.message, 1);
      throw err;
    } finally {
      input.fill(0);
    }
  } finally {
    for (const c of chunks) c.fill(0);
  }
}

/** 64 hex digits, with optional ASCII whitespace around them, to 32 bytes. */
export function decodeHexSecret(input: Uint8Array): Uint8Array {
  let start = 0;
  let end = input.length;
  while (start < end && isSpace(input[start]!)) start++;
  while (end > start && isSpace(input[end - 1]!)) end--;
  const digits = end - start;
  if (digits === 0) throw new InvalidSecretError('stdin is empty; expected 64 hex digits');
  const out = new Uint8Array(32);
  let bad = digits !== 64;
  for (let i = 0; i < digits && !bad; i += 2) {
    const hi = nibble(input[start + i]!);
    const lo = i + 1 < digits ? nibble(input[start + i + 1]!) : -1;
    if (hi < 0 || lo < 0) bad = true;
    else out[i / 2] = (hi << 4) | lo;
  }
  if (bad) {
    out.fill(0);
    let hex = true;
    for (let i = start; i < end; i++) if (nibble(input[i]!) < 0) hex = false;
    throw new InvalidSecretError(hex ? `expected 64 hex digits (32 bytes), got ${digits}` : 'not hexadecimal; expected 64 hex digits');
  }
  return out;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

function nibble(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}
