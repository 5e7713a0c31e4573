// Each way of failing to open the keystore gives its own error, which names the cause and
// never the PIN.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  Keystore,
  KeystoreError,
  ModuleLoadError,
  PinMissingError,
  TokenNotFoundError,
  WrongPinError,
} from '../../src/keystore/index.js';
import pkcs11js from 'pkcs11js';
import { USER_PIN, rawPkcs11, rawSession, setUpToken } from './helpers.js';
import type { TestToken } from './helpers.js';

let token: TestToken;
let scratch: string;

beforeAll(async () => {
  token = await setUpToken('errors-token');
  scratch = mkdtempSync(join(tmpdir(), 'keystore-errors-'));
});

async function openError(opts: Parameters<typeof Keystore.open>[0]): Promise<KeystoreError> {
  const err = await Keystore.open(opts).then(
    async (ks) => {
      await ks.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(KeystoreError);
  return err as KeystoreError;
}

describe('opening', () => {
  it('refuses a wrong PIN, without echoing it', async () => {
    const err = await openError({ ...token.options, pin: 'not-the-pin-9999' });
    expect(err).toBeInstanceOf(WrongPinError);
    expect(err.code).toBe('WRONG_PIN');
    expect(err.message).toContain('errors-token');
    expect(err.message).not.toContain('not-the-pin-9999');
    expect(String(err.stack)).not.toContain('not-the-pin-9999');
  });

  it('refuses a wrong PIN even while this process is logged in with the right one', async () => {
    const good = await Keystore.open(token.options);
    try {
      const err = await openError({ ...token.options, pin: 'another-wrong-pin' });
      expect(err).toBeInstanceOf(WrongPinError);
      expect(await good.healthy()).toBe(true);
    } finally {
      await good.close();
    }
  });

  it('reports a module that does not load', async () => {
    const missing = await openError({ ...token.options, modulePath: join(scratch, 'no-such-module.so') });
    expect(missing).toBeInstanceOf(ModuleLoadError);
    expect(missing.code).toBe('MODULE_LOAD');
    expect(missing.message).toContain('no-such-module.so');

    const notALibrary = join(scratch, 'not-a-library.so');
    writeFileSync(notALibrary, 'this is not an ELF file');
    const bad = await openError({ ...token.options, modulePath: notALibrary });
    expect(bad).toBeInstanceOf(ModuleLoadError);
    expect(bad.message).toContain('not-a-library.so');
  });

  it('reports a token that is not there, naming the ones that are', async () => {
    const err = await openError({ ...token.options, tokenLabel: 'no-such-token' });
    expect(err).toBeInstanceOf(TokenNotFoundError);
    expect(err.code).toBe('TOKEN_NOT_FOUND');
    expect(err.message).toContain('"no-such-token"');
    expect(err.message).toContain('"errors-token"');
  });

  it('needs exactly one of PIN and PIN file', async () => {
    const none = await openError({ modulePath: token.modulePath, tokenLabel: token.label });
    expect(none).toBeInstanceOf(PinMissingError);
    expect(none.code).toBe('PIN_MISSING');
    const pinFile = join(scratch, 'pin');
    writeFileSync(pinFile, `${USER_PIN}\n`, { mode: 0o600 });
    const both = await openError({ ...token.options, pinFile });
    expect(both.code).toBe('PIN_CONFLICT');
  });

  it('reads the PIN from a file, ignoring one trailing newline', async () => {
    const pinFile = join(scratch, 'pin-ok');
    writeFileSync(pinFile, `${USER_PIN}\n`, { mode: 0o600 });
    const ks = await Keystore.open({ modulePath: token.modulePath, tokenLabel: token.label, pinFile });
    try {
      expect(await ks.healthy()).toBe(true);
    } finally {
      await ks.close();
    }
  });

  it('reports a wrong, empty or missing PIN file without printing its content', async () => {
    const wrong = join(scratch, 'pin-wrong');
    writeFileSync(wrong, "wrong-pin-in-file\n", { mode: 0o600 });
    const err = await openError({ modulePath: token.modulePath, tokenLabel: token.label, pinFile: wrong });
    expect(err).toBeInstanceOf(WrongPinError);
    expect(err.message).not.toContain('wrong-pin-in-file');

    const empty = join(scratch, 'pin-empty');
    writeFileSync(empty, "\n", { mode: 0o600 });
    expect((await openError({ modulePath: token.modulePath, tokenLabel: token.label, pinFile: empty })).code).toBe('PIN_MISSING');

    const absent = await openError({ modulePath: token.modulePath, tokenLabel: token.label, pinFile: join(scratch, 'absent') });
    expect(absent.code).toBe('PIN_FILE');
    expect(absent.message).toContain('ENOENT');
  });

  it('refuses an invalid pool size', async () => {
    await expect(Keystore.open({ ...token.options, poolSize: 0 })).rejects.toThrow(RangeError);
  });
});

describe('after close', () => {
  it('refuses work and reports unhealthy', async () => {
    const ks = await Keystore.open(token.options);
    await ks.close();
    await ks.close(); // idempotent
    await expect(ks.random(8)).rejects.toMatchObject({ code: 'CLOSED' });
    expect(await ks.healthy()).toBe(false);
  });
});


describe('KEK policy', () => {
  it('refuses a KEK that could leave the token', async () => {
    const raw = rawPkcs11(token.modulePath);
    const session = rawSession(raw, token.label);
    raw.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: 'weak-kek' },
      { type: pkcs11js.CKA_SENSITIVE, value: false },
      { type: pkcs11js.CKA_EXTRACTABLE, value: true },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      { type: pkcs11js.CKA_WRAP, value: true },
    ]);
    raw.C_CloseSession(session);
    const err = await openError({ ...token.options, kekLabel: 'weak-kek' });
    expect(err.code).toBe('KEK_POLICY');
    expect(err.message).toMatch(/not sensitive, extractable, allowed to wrap/);
  });

  it('will not create a new KEK while key objects exist without one', async () => {
    const ks = await Keystore.open(token.options);
    try {
      await ks.createKey('sealed-under-default-kek');
    } finally {
      await ks.close();
    }
    const orphaned = await Keystore.open({ ...token.options, kekLabel: 'absent-kek' });
    try {
      expect((await orphaned.listKeys()).map((k) => k.label)).toContain('sealed-under-default-kek');
      await expect(orphaned.createKey('another')).rejects.toMatchObject({ code: 'KEK_MISSING' });
      await expect(orphaned.withSecretKey('sealed-under-default-kek', () => 1)).rejects.toMatchObject({ code: 'KEK_MISSING' });
    } finally {
      await orphaned.close();
    }
  });
});
