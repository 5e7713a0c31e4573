// softhsm/init-token.sh through initSoftHsmToken: a project-local token, idempotent, never the
// system-wide token directory.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pkcs11js from 'pkcs11js';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_KEK_LABEL, initSoftHsmToken } from '../../src/keystore/index.js';
import { SO_PIN, USER_PIN, findObjects, rawPkcs11, rawSession } from './helpers.js';

const SCRIPT = join(import.meta.dirname, '../../softhsm/init-token.sh');
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'softhsm-init-'));
const spec = { dir, label: 'init-test', soPin: SO_PIN, userPin: USER_PIN };

function snapshot(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const rel of readdirSync(join(dir, 'tokens'), { recursive: true, encoding: 'utf8' })) {
    const st = statSync(join(dir, 'tokens', rel));
    if (st.isFile()) out[rel] = st.size;
  }
  return out;
}

let first: { conf: string; modulePath: string };

beforeAll(async () => {
  first = await initSoftHsmToken(spec);
  process.env.SOFTHSM2_CONF = first.conf;
});

describe('softhsm/init-token.sh', () => {
  it('writes a config that points at the folder, never at the system token directory', () => {
    expect(first.conf).toBe(join(dir, 'softhsm2.conf'));
    const conf = readFileSync(first.conf, 'utf8');
    expect(conf).toMatch(new RegExp(`^directories.tokendir = ${join(dir, 'tokens')}$`, 'm'));
    expect(conf).toMatch(/^objectstore.backend = file$/m);
    expect(conf).toMatch(/^log.level = ERROR$/m);
    const settings = conf.split('\n').filter((l) => !l.startsWith('#'));
    expect(settings.join('\n')).not.toContain('/var/lib/softhsm');
    expect(first.modulePath).toMatch(/libsofthsm2\.so$/);
  });

  it('is idempotent: a second run changes no file and creates no second KEK', async () => {
    const before = snapshot();
    const confBefore = statSync(first.conf).mtimeMs;
    const again = await initSoftHsmToken(spec);
    expect(again).toEqual(first);
    expect(snapshot()).toEqual(before);
    expect(statSync(first.conf).mtimeMs).toBe(confBefore);
    const raw = rawPkcs11(first.modulePath);
    const session = rawSession(raw, spec.label);
    const keks = findObjects(raw, session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_LABEL, value: DEFAULT_KEK_LABEL },
    ]);
    expect(keks).toHaveLength(1);
    raw.C_CloseSession(session);
  });

  it('fails on a rerun with another user PIN, naming the cause', async () => {
    await expect(initSoftHsmToken({ ...spec, userPin: 'different-pin' })).rejects.toThrow(/wrong PIN/);
  });

  it('refuses the system-wide token directory before touching it', async () => {
    const err = await run('bash', [SCRIPT, '/var/lib/softhsm', 'x'], {
      env: { ...process.env, SOFTHSM_SO_PIN: SO_PIN, SOFTHSM_USER_PIN: USER_PIN },
    }).catch((e: { code: number; stderr: string }) => e);
    expect(err).toMatchObject({ code: 1 });
    expect((err as { stderr: string }).stderr).toContain('refusing to use the system-wide token directory');
  });

  it('needs both PINs in its environment, never as arguments', async () => {
    const env = { ...process.env };
    delete env.SOFTHSM_SO_PIN;
    delete env.SOFTHSM_USER_PIN;
    const err = await run('bash', [SCRIPT, join(dir, 'other'), 'x'], { env }).catch((e: { stderr: string }) => e);
    expect((err as { stderr: string }).stderr).toContain('SOFTHSM_SO_PIN is not set');
  });
});
