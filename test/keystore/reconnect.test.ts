// The token or our sessions go away under a live keystore: it reconnects when it can, says
// TokenUnavailableError when it cannot, and recovers once the token is back.
import { mkdirSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keystore, TokenUnavailableError, WrongPinError } from '../../src/keystore/index.js';
import { USER_PIN, bip327SignVector, hex, rawPkcs11, rawSession, setUpToken } from './helpers.js';
import type { TestToken } from './helpers.js';

let token: TestToken;
let ks: Keystore;
const vector = bip327SignVector();

beforeAll(async () => {
  token = await setUpToken('reconnect-token');
  ks = await Keystore.open({ ...token.options, poolSize: 3 });
  await ks.importKey('vector', vector.sk);
});

afterAll(async () => {
  await ks.close();
});

const unseal = () => ks.withSecretKey('vector', (sk) => hex(sk));

describe('sessions lost', () => {
  it('recovers transparently when the library is finalized underneath it', async () => {
    expect(await unseal()).toBe(hex(vector.sk));
    rawPkcs11(token.modulePath).C_Finalize(); // every session and the login are gone
    expect(await unseal()).toBe(hex(vector.sk));
    expect(await ks.healthy()).toBe(true);
  });

  it('recovers many concurrent callers with one reconnect', async () => {
    await Promise.all([unseal(), unseal(), unseal()]); // fill the pool
    rawPkcs11(token.modulePath).C_Finalize();
    const results = await Promise.all(Array.from({ length: 50 }, () => unseal()));
    expect(results.every((r) => r === hex(vector.sk))).toBe(true);
  });

  it('recovers when all its sessions are closed underneath it', async () => {
    await unseal();
    const raw = rawPkcs11(token.modulePath);
    for (const slot of raw.C_GetSlotList(true)) raw.C_CloseAllSessions(slot);
    expect(await unseal()).toBe(hex(vector.sk));
    const created = await ks.createKey('after-close-all');
    expect(created.publicKey).toHaveLength(33);
  });
});

describe('token gone', () => {
  const tokensDir = () => join(token.dir, 'tokens');
  const parked = () => join(token.dir, 'parked');

  it('reports TokenUnavailableError and unhealthy while the token is gone, then recovers', async () => {
    const [uuid] = readdirSync(tokensDir());
    expect(uuid).toBeDefined();
    mkdirSync(parked(), { recursive: true });
    renameSync(join(tokensDir(), uuid!), join(parked(), uuid!));
    try {
      const err = await unseal().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TokenUnavailableError);
      expect((err as TokenUnavailableError).code).toBe('TOKEN_UNAVAILABLE');
      expect((err as Error).message).toContain('reconnect-token');
      expect(await ks.healthy()).toBe(false);
      await expect(ks.random(16)).rejects.toBeInstanceOf(TokenUnavailableError);
      await expect(ks.getKey('never-created')).rejects.toBeInstanceOf(TokenUnavailableError);
      await expect(ks.listKeys()).rejects.toBeInstanceOf(TokenUnavailableError);
      await expect(ks.createKey('while-gone')).rejects.toBeInstanceOf(TokenUnavailableError);
    } finally {
      renameSync(join(parked(), uuid!), join(tokensDir(), uuid!));
    }
    expect(await ks.healthy()).toBe(true);
    expect(await unseal()).toBe(hex(vector.sk));
    expect((await ks.listKeys()).map((k) => k.label)).toEqual(['after-close-all', 'vector']);
  });

  it('does not mistake a vanished token for a tampered blob', async () => {
    const [uuid] = readdirSync(tokensDir());
    renameSync(join(tokensDir(), uuid!), join(parked(), uuid!));
    try {
      // The handles are still cached from the last call; the token answers with errors.
      const err = await unseal().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TokenUnavailableError);
    } finally {
      renameSync(join(parked(), uuid!), join(tokensDir(), uuid!));
    }
    expect(await unseal()).toBe(hex(vector.sk));
  });

  it('closing one keystore leaves the shared library initialized for the others', async () => {
    const other = await Keystore.open(token.options);
    await other.close();
    // A fresh handle on the library, without C_Initialize: works only if nobody finalized it.
    const probe = new pkcs11js.PKCS11();
    probe.load(token.modulePath);
    expect(probe.C_GetSlotList(true).length).toBeGreaterThan(0);
    expect(await unseal()).toBe(hex(vector.sk));
  });
});

describe('PIN changed underneath', () => {
  it('reports the wrong PIN once and stops trying, so an HSM does not lock the PIN', async () => {
    const own = await Keystore.open(token.options);
    const raw = rawPkcs11(token.modulePath);
    const session = rawSession(raw, token.label);
    raw.C_SetPIN(session, USER_PIN, 'changed-pin-1');
    raw.C_Finalize(); // everyone must log in again
    try {
      await expect(own.random(8)).rejects.toBeInstanceOf(WrongPinError);
      const again = rawPkcs11(token.modulePath);
      const s2 = rawSession(again, token.label, 'changed-pin-1');
      again.C_SetPIN(s2, 'changed-pin-1', USER_PIN);
      again.C_CloseSession(s2);
      // The PIN is right again, but this keystore already gave up: no second guess.
      await expect(own.random(8)).rejects.toBeInstanceOf(WrongPinError);
      expect(await own.healthy()).toBe(false);
    } finally {
      await own.close();
    }
    // A keystore opened afresh logs in, and so does the long-lived one (separate pool).
    expect(await unseal()).toBe(hex(vector.sk));
  });
});
