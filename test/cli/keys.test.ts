// `musig2-signer keys ...` as a real process against a real SoftHSM2 token.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeHexSecret } from '../../src/cli/keys.js';
import { keystoreOptions, resolveSettings, PKCS11_SETTINGS, settingOptions } from '../../src/cli/config.js';
import { initSoftHsmToken } from '../../src/keystore/index.js';
import { individualPubkey } from '../../src/musig2/index.js';

const BIN = join(import.meta.dirname, '../../bin/musig2-signer.js');
const LABEL = 'cli-token';
const USER_PIN = 'cli-user-pin-4321';
const VECTOR_SK = '7fb9e0e687ada1eebf7ecfe2f21e73ebdb51a7d450948dfe8d76d7f2d1007671';
const VECTOR_PK = '03935f972da013f80ae011890fa89b67a27b7be6ccb24d3274d18b2d4067f261a9';
const N_HEX = 'fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141';

let env: NodeJS.ProcessEnv;
let dir: string;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], opts: { stdin?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: opts.env ?? env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.stdin ?? '');
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cli-keys-'));
  const t = await initSoftHsmToken({ dir, label: LABEL, soPin: 'cli-so-pin-8765', userPin: USER_PIN });
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    SOFTHSM2_CONF: t.conf,
    MUSIG2_PKCS11_MODULE: t.modulePath,
    MUSIG2_PKCS11_TOKEN: LABEL,
    MUSIG2_PKCS11_PIN: USER_PIN,
  };
});

describe('keys create, import, list', () => {
  it('creates a key and prints its label and compressed public key', async () => {
    const r = await cli(['keys', 'create', '--label', 'alpha']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^alpha {2}0[23][0-9a-f]{64}\n$/);
  });

  it('imports the BIP327 vector key from stdin and prints the vector public key', async () => {
    const r = await cli(['keys', 'import', '--label', 'vector', '--json'], { stdin: `${VECTOR_SK.toUpperCase()}\n` });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ label: 'vector', publicKey: VECTOR_PK });
    expect(r.stdout + r.stderr).not.toContain(VECTOR_SK);
  });

  it('lists the keys as text and as JSON', async () => {
    const text = await cli(['keys', 'list']);
    expect(text.code).toBe(0);
    const lines = text.stdout.trim().split('\n');
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(['alpha', 'vector']);
    expect(lines[1]).toBe(`vector  ${VECTOR_PK}`);
    const json = await cli(['keys', 'list', '--json']);
    const keys = JSON.parse(json.stdout) as Array<{ label: string; publicKey: string }>;
    expect(keys.map((k) => k.label)).toEqual(['alpha', 'vector']);
    expect(keys[1]!.publicKey).toBe(VECTOR_PK);
    expect(keys[0]!.publicKey).toBe(lines[0]!.split(/\s+/)[1]);
  });

  it('takes the PIN from a file given by flag', async () => {
    const pinFile = join(dir, 'pin');
    writeFileSync(pinFile, `${USER_PIN}\n`, { mode: 0o600 });
    const r = await cli(['keys', 'list', '--pkcs11-pin-file', pinFile], { env: { ...env, MUSIG2_PKCS11_PIN: '' } });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('vector');
  });
});

describe('refusals', () => {
  it('refuses a duplicate label', async () => {
    const r = await cli(['keys', 'import', '--label', 'vector'], { stdin: VECTOR_SK });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('a key labelled "vector" already exists');
    expect(r.stderr).not.toContain(VECTOR_SK);
  });

  const badSecrets: Array<[string, string, RegExp]> = [
    ['zero', '0'.repeat(64), /\[1, n-1\]/],
    ['n', N_HEX, /\[1, n-1\]/],
    ['above n', 'f'.repeat(64), /\[1, n-1\]/],
    ['too short', VECTOR_SK.slice(0, 62), /expected 64 hex digits \(32 bytes\), got 62/],
    ['too long', `${VECTOR_SK}00`, /got 66/],
    ['not hex', `${VECTOR_SK.slice(0, 62)}zz`, /not hexadecimal/],
    ['empty', '', /stdin is empty/],
  ];
  for (const [name, input, message] of badSecrets) {
    it(`refuses an invalid secret: ${name}`, async () => {
      const r = await cli(['keys', 'import', '--label', `bad-${name.replace(/ /g, '-')}`], { stdin: `${input}\n` });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/invalid secret key/);
      expect(r.stderr).toMatch(message);
      if (input.length > 8) expect(r.stderr).not.toContain(input.slice(0, 16));
    });
  }

  it('never takes the secret as an argument, and does not echo it', async () => {
    const r = await cli(['keys', 'import', '--label', 'arg', VECTOR_SK]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('never from the command line');
    expect(r.stderr).not.toContain(VECTOR_SK);
  });

  it('refuses an unknown token, naming it', async () => {
    const r = await cli(['keys', 'list'], { env: { ...env, MUSIG2_PKCS11_TOKEN: 'no-such-token' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no token labelled "no-such-token"');
  });

  it('refuses a wrong PIN without printing it', async () => {
    const r = await cli(['keys', 'list'], { env: { ...env, MUSIG2_PKCS11_PIN: 'wrong-pin-0000' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('wrong PIN for token "cli-token"');
    expect(r.stderr).not.toContain('wrong-pin-0000');
  });

  it('refuses a module that does not load', async () => {
    const r = await cli(['keys', 'list', '--pkcs11-module', join(dir, 'missing.so')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('cannot load PKCS#11 module');
  });

  it('needs a label, a token and a PIN, with usage errors exiting 2', async () => {
    expect((await cli(['keys', 'create'])).code).toBe(2);
    const noToken = await cli(['keys', 'list'], { env: { ...env, MUSIG2_PKCS11_TOKEN: undefined } });
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain('MUSIG2_PKCS11_TOKEN');
    const unknown = await cli(['keys', 'rotate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown subcommand 'rotate'");
  });
});

describe('in-process helpers', () => {
  it('decodes 64 hex digits with surrounding whitespace, upper or lower case', () => {
    const sk = decodeHexSecret(Buffer.from(`  ${VECTOR_SK.toUpperCase()}\r\n`));
    expect(Buffer.from(individualPubkey(sk)).toString('hex')).toBe(VECTOR_PK);
    expect(() => decodeHexSecret(Buffer.from(`${VECTOR_SK.slice(0, 31)} ${VECTOR_SK.slice(32)}`))).toThrow(/not hexadecimal/);
  });

  it('resolves settings from flag, then environment, then default', () => {
    const env = { MUSIG2_PKCS11_TOKEN: 'from-env', MUSIG2_PKCS11_MODULE: '' };
    const s = resolveSettings(PKCS11_SETTINGS, { 'pkcs11-token': 'from-flag' }, env);
    expect(s.token).toBe('from-flag');
    expect(s.module).toMatch(/libsofthsm2\.so$/); // empty variable falls back to the default
    expect(resolveSettings(PKCS11_SETTINGS, {}, env).token).toBe('from-env');
    expect(Object.keys(settingOptions(PKCS11_SETTINGS))).toEqual(['pkcs11-module', 'pkcs11-token', 'pkcs11-pin-file']);
  });

  it('lets a PIN file flag win over a PIN variable, but refuses two PIN variables', () => {
    const base = { MUSIG2_PKCS11_TOKEN: 't', MUSIG2_PKCS11_PIN: '1234' };
    expect(keystoreOptions({ 'pkcs11-pin-file': '/p' }, base)).toMatchObject({ pin: undefined, pinFile: '/p' });
    expect(() => keystoreOptions({}, { ...base, MUSIG2_PKCS11_PIN_FILE: '/p' })).toThrow(/only one/);
    expect(() => keystoreOptions({}, { MUSIG2_PKCS11_TOKEN: 't' })).toThrow(/no PIN/);
  });

  it('takes MUSIG2_PKCS11_PIN out of the environment once read', () => {
    const saved = process.env.MUSIG2_PKCS11_PIN;
    process.env.MUSIG2_PKCS11_PIN = '97531';
    try {
      expect(keystoreOptions({}, { ...process.env, MUSIG2_PKCS11_TOKEN: 't' }).pin).toBe('97531');
      expect(process.env.MUSIG2_PKCS11_PIN).toBeUndefined();
    } finally {
      if (saved === undefined) delete process.env.MUSIG2_PKCS11_PIN;
      else process.env.MUSIG2_PKCS11_PIN = saved;
    }
  });
});
