// Keystore round trips against a real SoftHSM2 token: create, import, list, sign through
// withSecretKey, the BIP327 vector key, blob authentication, KEK attributes, concurrency.
import { schnorr } from '@noble/curves/secp256k1.js';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BlobAuthenticationError,
  DEFAULT_KEK_LABEL,
  DuplicateLabelError,
  InvalidLabelError,
  InvalidSecretError,
  KEY_OBJECT_APPLICATION,
  KeyNotFoundError,
  Keystore,
  SECP256K1_ORDER,
} from '../../src/keystore/index.js';
import { individualPubkey } from '../../src/musig2/index.js';
import { bip327SignVector, findObjects, hex, rawPkcs11, rawSession, setUpToken } from './helpers.js';
import type { TestToken } from './helpers.js';

let token: TestToken;
let ks: Keystore;
let raw: pkcs11js.PKCS11;
let rawSess: Buffer;

beforeAll(async () => {
  token = await setUpToken('round-trips');
  ks = await Keystore.open(token.options);
  raw = rawPkcs11(token.modulePath);
  rawSess = rawSession(raw, token.label);
});

afterAll(async () => {
  raw.C_CloseSession(rawSess);
  await ks.close();
});

/** The CKO_DATA object of a key, as PKCS#11 sees it. */
function keyObject(label: string): Buffer {
  const [obj] = findObjects(raw, rawSess, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
    { type: pkcs11js.CKA_LABEL, value: label },
  ]);
  if (!obj) throw new Error(`no object ${label}`);
  return obj;
}

function keyObjectValue(label: string): Buffer {
  return raw.C_GetAttributeValue(rawSess, keyObject(label), [{ type: pkcs11js.CKA_VALUE }])[0]!.value;
}

/** Plants a key object the way the keystore would, but with a value of our choosing. */
function plantKeyObject(label: string, value: Buffer): void {
  raw.C_CreateObject(rawSess, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_APPLICATION, value: KEY_OBJECT_APPLICATION },
    { type: pkcs11js.CKA_VALUE, value },
  ]);
}

describe('create, import, list', () => {
  it('creates a key whose public key matches the scalar it unseals', async () => {
    const key = await ks.createKey('created-1');
    expect(key.label).toBe('created-1');
    expect(key.publicKey).toHaveLength(33);
    expect([2, 3]).toContain(key.publicKey[0]);
    const derived = await ks.withSecretKey('created-1', (sk) => hex(individualPubkey(sk)));
    expect(derived).toBe(hex(key.publicKey));
  });

  it('creates distinct keys', async () => {
    const a = await ks.createKey('created-2');
    const b = await ks.createKey('created-3');
    expect(hex(a.publicKey)).not.toBe(hex(b.publicKey));
  });

  it('imports the BIP327 vector key and gives the vector public key', async () => {
    const v = bip327SignVector();
    const key = await ks.importKey('bip327-vector', v.sk);
    expect(hex(key.publicKey)).toBe(v.pk);
    expect(await ks.withSecretKey('bip327-vector', (sk) => hex(sk))).toBe(hex(v.sk));
  });

  it('neither keeps nor wipes the caller buffer on import', async () => {
    const secret = Uint8Array.from(Buffer.from('11'.repeat(32), 'hex'));
    await ks.importKey('imported-caller-buffer', secret);
    expect(hex(secret)).toBe('11'.repeat(32));
    secret.fill(0x22); // the keystore must not have kept a reference
    expect(await ks.withSecretKey('imported-caller-buffer', (sk) => hex(sk))).toBe('11'.repeat(32));
  });

  it('lists every key, sorted, with its compressed public key', async () => {
    const keys = await ks.listKeys();
    const labels = keys.map((k) => k.label);
    expect(labels).toEqual([...labels].sort());
    expect(labels).toEqual(expect.arrayContaining(['bip327-vector', 'created-1', 'created-2', 'created-3']));
    expect(hex(keys.find((k) => k.label === 'bip327-vector')!.publicKey)).toBe(bip327SignVector().pk);
    for (const k of keys) expect(k.publicKey).toHaveLength(33);
  });

  it('gets a key by label and refuses an unknown one', async () => {
    expect(hex((await ks.getKey('bip327-vector')).publicKey)).toBe(bip327SignVector().pk);
    await expect(ks.getKey('no-such-key')).rejects.toBeInstanceOf(KeyNotFoundError);
    await expect(ks.withSecretKey('no-such-key', () => 1)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
  });

  it('re-scans on an unknown label: a key added by another keystore is found', async () => {
    const other = await Keystore.open(token.options);
    try {
      await other.createKey('added-elsewhere');
    } finally {
      await other.close();
    }
    const key = await ks.getKey('added-elsewhere');
    expect(key.publicKey).toHaveLength(33);
    expect(await ks.withSecretKey('added-elsewhere', (sk) => hex(individualPubkey(sk)))).toBe(hex(key.publicKey));
  });

  it('refuses a duplicate label, leaving the first key intact', async () => {
    const before = await ks.getKey('created-1');
    await expect(ks.createKey('created-1')).rejects.toBeInstanceOf(DuplicateLabelError);
    await expect(ks.importKey('created-1', bip327SignVector().sk)).rejects.toMatchObject({ code: 'DUPLICATE_LABEL' });
    expect(findObjects(raw, rawSess, [{ type: pkcs11js.CKA_LABEL, value: 'created-1' }])).toHaveLength(1);
    expect(hex((await ks.getKey('created-1')).publicKey)).toBe(hex(before.publicKey));
  });

  it('refuses invalid secrets: 0, n, above n, wrong length', async () => {
    const n = Uint8Array.from(SECP256K1_ORDER);
    const aboveN = Uint8Array.from(n);
    aboveN[31]! += 1;
    const cases: Uint8Array[] = [new Uint8Array(32), n, aboveN, new Uint8Array(32).fill(0xff), new Uint8Array(31).fill(1), new Uint8Array(33).fill(1)];
    for (const sk of cases) {
      await expect(ks.importKey('invalid-secret', sk)).rejects.toBeInstanceOf(InvalidSecretError);
    }
    await expect(ks.getKey('invalid-secret')).rejects.toBeInstanceOf(KeyNotFoundError);
  });

  it('accepts the extremes 1 and n-1', async () => {
    const one = new Uint8Array(32);
    one[31] = 1;
    const nMinus1 = Uint8Array.from(SECP256K1_ORDER);
    nMinus1[31]! -= 1;
    expect(hex((await ks.importKey('scalar-one', one)).publicKey)).toBe(hex(individualPubkey(one)));
    expect(hex((await ks.importKey('scalar-n-minus-1', nMinus1)).publicKey)).toBe(hex(individualPubkey(nMinus1)));
  });

  it('refuses labels it could not store safely', async () => {
    for (const label of ['', ' lead', 'has space', 'x'.repeat(65), 'new\nline', '-dash-first']) {
      await expect(ks.createKey(label)).rejects.toBeInstanceOf(InvalidLabelError);
    }
  });
});

describe('signing through withSecretKey', () => {
  it('signs a BIP340 signature that verifies under the listed public key', async () => {
    const key = await ks.getKey('created-1');
    const msg = new Uint8Array(32).fill(7);
    const sig = await ks.withSecretKey('created-1', (sk) => schnorr.sign(msg, sk));
    expect(schnorr.verify(sig, msg, key.publicKey.subarray(1))).toBe(true);
    expect(schnorr.verify(sig, new Uint8Array(32).fill(8), key.publicKey.subarray(1))).toBe(false);
  });

  it('passes fn the key info and returns its async result', async () => {
    const out = await ks.withSecretKey('bip327-vector', async (_sk, info) => {
      await new Promise((r) => setTimeout(r, 1));
      return info;
    });
    expect(out.label).toBe('bip327-vector');
    expect(hex(out.publicKey)).toBe(bip327SignVector().pk);
  });

  it('wipes the scalar when fn throws, and passes the error on', async () => {
    let seen: Uint8Array | undefined;
    await expect(
      ks.withSecretKey('created-1', (sk) => {
        seen = sk;
        expect(sk.some((b) => b !== 0)).toBe(true);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(seen!.every((b) => b === 0)).toBe(true);
  });

  it('runs 1,000 concurrent calls that all succeed and leave every scalar zeroed', async () => {
    const v = bip327SignVector();
    const seen: Uint8Array[] = [];
    const results = await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        ks.withSecretKey(i % 2 === 0 ? 'bip327-vector' : 'created-1', async (sk, info) => {
          seen.push(sk);
          if (i % 10 === 0) await new Promise((r) => setImmediate(r)); // interleave
          return info.label === 'bip327-vector' ? hex(sk) === hex(v.sk) : sk.length === 32 && sk.some((b) => b !== 0);
        }),
      ),
    );
    expect(results).toHaveLength(1000);
    expect(results.every((ok) => ok === true)).toBe(true);
    expect(seen).toHaveLength(1000);
    expect(new Set(seen.map((s) => s.buffer)).size).toBe(1000); // each call had its own buffer
    expect(seen.every((sk) => sk.every((b) => b === 0))).toBe(true);
  });
});

describe('blob authentication', () => {
  it('stores one CKO_DATA object per key carrying label, public key and a blob without the secret', async () => {
    const v = bip327SignVector();
    const obj = keyObject('bip327-vector');
    const attrs = raw.C_GetAttributeValue(rawSess, obj, [
      { type: pkcs11js.CKA_LABEL },
      { type: pkcs11js.CKA_APPLICATION },
      { type: pkcs11js.CKA_PRIVATE },
      { type: pkcs11js.CKA_TOKEN },
      { type: pkcs11js.CKA_VALUE },
    ]);
    expect(attrs[0]!.value.toString()).toBe('bip327-vector');
    expect(attrs[1]!.value.toString()).toBe(KEY_OBJECT_APPLICATION);
    expect(attrs[2]!.value[0]).toBe(1);
    expect(attrs[3]!.value[0]).toBe(1);
    const value = attrs[4]!.value;
    expect(value.includes(Buffer.from(v.pk, 'hex'))).toBe(true);
    expect(value.includes(Buffer.from(v.sk))).toBe(false);
  });

  it('fails authentication for a blob copied onto another label', async () => {
    plantKeyObject('copied-blob', keyObjectValue('bip327-vector'));
    const info = await ks.getKey('copied-blob'); // the public key inside the blob still parses
    expect(hex(info.publicKey)).toBe(bip327SignVector().pk);
    let called = false;
    const err = await ks
      .withSecretKey('copied-blob', () => {
        called = true;
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobAuthenticationError);
    expect((err as Error).message).toContain('key blob failed authentication');
    expect(called).toBe(false);
    // The original is unaffected.
    expect(await ks.withSecretKey('bip327-vector', (sk) => hex(sk))).toBe(hex(bip327SignVector().sk));
  });

  it('fails authentication for a tampered ciphertext', async () => {
    const value = Buffer.from(keyObjectValue('created-2'));
    value[value.length - 20]! ^= 0x01; // inside the ciphertext
    plantKeyObject('tampered-ciphertext', value);
    await expect(ks.withSecretKey('tampered-ciphertext', () => 1)).rejects.toMatchObject({ code: 'BLOB_AUTH_FAILED' });
  });

  it('fails authentication for a blob whose public key was swapped', async () => {
    const value = Buffer.from(keyObjectValue('created-2'));
    const otherPk = Buffer.from(bip327SignVector().pk, 'hex');
    otherPk.copy(value, 5); // the public key follows the 5-byte header
    plantKeyObject('swapped-pubkey', value);
    await expect(ks.withSecretKey('swapped-pubkey', () => 1)).rejects.toBeInstanceOf(BlobAuthenticationError);
  });

  it('reports a malformed blob rather than decrypting it', async () => {
    plantKeyObject('malformed-blob', Buffer.from('not a blob'));
    await expect(ks.withSecretKey('malformed-blob', () => 1)).rejects.toMatchObject({ code: 'BLOB_MALFORMED' });
    await expect(ks.listKeys()).rejects.toMatchObject({ code: 'BLOB_MALFORMED' });
    raw.C_DestroyObject(rawSess, keyObject('malformed-blob'));
    await expect(ks.listKeys()).resolves.toBeInstanceOf(Array);
  });
});

describe('the sealed blob cache', () => {
  // A short TTL: the blob is reused for this long, then read from the token again.
  const ttlMs = 150;
  let cached: Keystore;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  beforeAll(async () => {
    cached = await Keystore.open({ ...token.options, sealedBlobTtlMs: ttlMs });
  });
  afterAll(async () => {
    await cached.close();
  });

  it('notices a key object deleted by another session once the TTL has passed', async () => {
    const info = await cached.createKey('cache-deleted');
    const open = () => cached.withSecretKey('cache-deleted', (sk) => hex(individualPubkey(sk)));
    expect(await open()).toBe(hex(info.publicKey));
    raw.C_DestroyObject(rawSess, keyObject('cache-deleted'));
    await sleep(ttlMs + 50);
    await expect(open()).rejects.toBeInstanceOf(KeyNotFoundError);
  });

  it('reads a replaced key object after the TTL, and at once after a failure', async () => {
    await cached.createKey('cache-replaced');
    const good = Buffer.from(keyObjectValue('cache-replaced'));
    const open = () => cached.withSecretKey('cache-replaced', () => 'opened');
    expect(await open()).toBe('opened');
    const tampered = Buffer.from(good);
    tampered[tampered.length - 20]! ^= 0x01;
    // Key objects are not modifiable: another process would replace the object.
    raw.C_DestroyObject(rawSess, keyObject('cache-replaced'));
    plantKeyObject('cache-replaced', tampered);
    await sleep(ttlMs + 50);
    await expect(open()).rejects.toBeInstanceOf(BlobAuthenticationError);
    // Put back at once: the failure dropped the cached blob, so no TTL wait is needed.
    raw.C_DestroyObject(rawSess, keyObject('cache-replaced'));
    plantKeyObject('cache-replaced', good);
    expect(await open()).toBe('opened');
  });

  it('reuses the blob within the TTL: no token read per signature', async () => {
    const long = await Keystore.open({ ...token.options, sealedBlobTtlMs: 60_000 });
    try {
      const info = await long.createKey('cache-reused');
      const open = () => long.withSecretKey('cache-reused', (sk) => hex(individualPubkey(sk)));
      expect(await open()).toBe(hex(info.publicKey));
      raw.C_DestroyObject(rawSess, keyObject('cache-reused'));
      // The object is gone, but the blob read a moment ago still opens under the KEK.
      expect(await open()).toBe(hex(info.publicKey));
    } finally {
      await long.close();
    }
  });

  it('refuses a negative TTL', async () => {
    await expect(Keystore.open({ ...token.options, sealedBlobTtlMs: -1 })).rejects.toThrow(/sealedBlobTtlMs/);
  });
});

describe('where C_Decrypt runs', () => {
  it('on the event loop while the token is fast, then on the libuv pool once it is slow: same keys either way', async () => {
    // A threshold of 0 ms: the first timed decrypt counts as slow.
    const slow = await Keystore.open({ ...token.options, slowDecryptMs: 0 });
    try {
      expect(slow.stats.decryptOnEventLoop).toBe(true);
      const info = await slow.getKey('bip327-vector');
      const open = () => slow.withSecretKey('bip327-vector', (sk) => hex(individualPubkey(sk)));
      expect(await open()).toBe(hex(info.publicKey)); // on the loop, timed
      expect(slow.stats.decryptOnEventLoop).toBe(false);
      expect(await open()).toBe(hex(info.publicKey)); // on the pool
      expect(await open()).toBe(hex(info.publicKey));
      // A blob that fails authentication is refused on the pool path too.
      const value = Buffer.from(keyObjectValue('created-2'));
      value[value.length - 20]! ^= 0x01;
      plantKeyObject('tampered-on-pool', value);
      await expect(slow.withSecretKey('tampered-on-pool', () => 1)).rejects.toBeInstanceOf(BlobAuthenticationError);
    } finally {
      await slow.close();
    }
  });

  it('refuses a negative threshold', async () => {
    await expect(Keystore.open({ ...token.options, slowDecryptMs: -1 })).rejects.toThrow(/slowDecryptMs/);
  });
});

describe('the key-encryption key', () => {
  it('is one AES-256 token key: sensitive, not extractable, encrypt/decrypt only', () => {
    const keks = findObjects(raw, rawSess, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_LABEL, value: DEFAULT_KEK_LABEL },
    ]);
    expect(keks).toHaveLength(1);
    const want: Array<[number, number]> = [
      [pkcs11js.CKA_TOKEN, 1],
      [pkcs11js.CKA_SENSITIVE, 1],
      [pkcs11js.CKA_EXTRACTABLE, 0],
      [pkcs11js.CKA_ALWAYS_SENSITIVE, 1],
      [pkcs11js.CKA_NEVER_EXTRACTABLE, 1],
      [pkcs11js.CKA_ENCRYPT, 1],
      [pkcs11js.CKA_DECRYPT, 1],
      [pkcs11js.CKA_WRAP, 0],
      [pkcs11js.CKA_UNWRAP, 0],
      [pkcs11js.CKA_SIGN, 0],
      [pkcs11js.CKA_DERIVE, 0],
    ];
    const attrs = raw.C_GetAttributeValue(rawSess, keks[0]!, want.map(([type]) => ({ type })));
    for (const [type, value] of want) expect([type, attrs.find((a) => a.type === type)!.value[0]]).toEqual([type, value]);
    const [keyType, valueLen] = raw.C_GetAttributeValue(rawSess, keks[0]!, [{ type: pkcs11js.CKA_KEY_TYPE }, { type: pkcs11js.CKA_VALUE_LEN }]);
    expect(keyType!.value.readUInt32LE(0)).toBe(pkcs11js.CKK_AES);
    expect(valueLen!.value.readUInt32LE(0)).toBe(32);
  });

  it('cannot be read out: CKA_VALUE is refused', () => {
    const [kek] = findObjects(raw, rawSess, [{ type: pkcs11js.CKA_LABEL, value: DEFAULT_KEK_LABEL }]);
    let code: number | undefined;
    try {
      raw.C_GetAttributeValue(rawSess, kek!, [{ type: pkcs11js.CKA_VALUE }]);
    } catch (err) {
      code = (err as pkcs11js.Pkcs11Error).code;
    }
    expect(code).toBe(pkcs11js.CKR_ATTRIBUTE_SENSITIVE);
  });

  it('cannot wrap a key out of the token', () => {
    const [kek] = findObjects(raw, rawSess, [{ type: pkcs11js.CKA_LABEL, value: DEFAULT_KEK_LABEL }]);
    const victim = raw.C_GenerateKey(rawSess, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_EXTRACTABLE, value: true },
    ]);
    expect(() =>
      raw.C_WrapKey(rawSess, { mechanism: pkcs11js.CKM_AES_KEY_WRAP }, kek!, victim, Buffer.alloc(64)),
    ).toThrow(/CKR_KEY_FUNCTION_NOT_PERMITTED|CKR_WRAPPING_KEY/);
  });
});

describe('randomness', () => {
  it('returns n fresh bytes from the token mixed with the OS', async () => {
    const a = await ks.random(32);
    const b = await ks.random(32);
    expect(a).toHaveLength(32);
    expect(hex(a)).not.toBe(hex(b));
    expect(await ks.random(1)).toHaveLength(1);
    expect(await ks.random(1000)).toHaveLength(1000);
    await expect(ks.random(0)).rejects.toThrow(RangeError);
    await expect(ks.random(1.5)).rejects.toThrow(RangeError);
  });

  it("wipes the token's own output buffer, not only the copy it mixes", async () => {
    const api = (ks as unknown as { mod: { api: { C_GenerateRandom(s: Buffer, b: Buffer): Buffer } } }).mod.api;
    const real = api.C_GenerateRandom.bind(api);
    const seen: Buffer[] = [];
    api.C_GenerateRandom = (session, buf) => {
      const out = real(session, buf);
      seen.push(out, buf);
      return out;
    };
    try {
      expect(await ks.random(64)).toHaveLength(64);
    } finally {
      api.C_GenerateRandom = real;
    }
    expect(seen.length).toBe(2);
    for (const b of seen) expect(b.every((x) => x === 0)).toBe(true);
  });

  it('is healthy while the token answers', async () => {
    expect(await ks.healthy()).toBe(true);
  });
});
