// `musig2-signer policy hash FILE` as a real process.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/policy/index.js';

const BIN = join(import.meta.dirname, '../../bin/musig2-signer.js');
const run = promisify(execFile);

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const dir = mkdtempSync(join(tmpdir(), 'cli-policy-'));
const GOOD = JSON.stringify({ version: 1, network: 'bitcoin', keys: { hot: { rules: [{ name: 'small', max_amount: 100_000 }] } } }, null, 2);

describe('policy hash', () => {
  it('prints the hash, and with --canonical the text whose SHA-256 it is', async () => {
    const file = join(dir, 'good.json');
    writeFileSync(file, GOOD);
    const hash = await cli(['policy', 'hash', file]);
    expect(hash).toEqual({ code: 0, stdout: `${parsePolicy(GOOD).hashHex}\n`, stderr: '' });
    const canonical = await cli(['policy', 'hash', '--canonical', file]);
    expect(canonical.code).toBe(0);
    expect(`${createHash('sha256').update(canonical.stdout.trimEnd()).digest('hex')}\n`).toBe(hash.stdout);
  });

  it('exits 2 naming the bad field', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, GOOD.replace('"max_amount"', '"max_amont"'));
    expect(await cli(['policy', 'hash', file])).toEqual({
      code: 2,
      stdout: '',
      stderr: `musig2-signer policy: ${file}: keys["hot"].rules[0].max_amont: unknown field\n`,
    });
  });

  it('exits 2 with the usage for a bad command line', async () => {
    const r = await cli(['policy', 'check', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/usage: musig2-signer policy hash \[--canonical\] FILE/);
  });
});
