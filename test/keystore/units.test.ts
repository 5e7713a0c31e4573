// The keystore's pure parts, without a token: scalar range check, blob format and AAD,
// entropy mixing, PIN resolution.
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BLOB_LEN, blobAad, decodeBlob, encodeBlob } from '../../src/keystore/blob.js';
import { resolvePin } from '../../src/keystore/pin.js';
import { mixEntropy } from '../../src/keystore/random.js';
import { SECP256K1_ORDER, checkSecretKey, isValidSecretScalar, validateLabel } from '../../src/keystore/validation.js';

const N = BigInt(`0x${Buffer.from(SECP256K1_ORDER).toString('hex')}`);
const toBytes = (x: bigint) => Uint8Array.from(Buffer.from(x.toString(16).padStart(64, '0'), 'hex'));

describe('isValidSecretScalar', () => {
  it('holds the secp256k1 group order', () => {
    expect(N).toBe(0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n);
  });

  it('accepts exactly [1, n-1] at the edges', () => {
    const cases: Array<[bigint, boolean]> = [
      [0n, false],
      [1n, true],
      [2n, true],
      [N - 1n, true],
      [N, false],
      [N + 1n, false],
      [2n ** 256n - 1n, false],
      [N - 2n ** 128n, true],
      [N + 2n ** 128n, false],
    ];
    for (const [x, ok] of cases) expect([x, isValidSecretScalar(toBytes(x))]).toEqual([x, ok]);
  });

  it('agrees with bigint comparison on random and near-n values', () => {
    for (let i = 0; i < 2000; i++) {
      const bytes = Uint8Array.from(randomBytes(32));
      // Half the cases share a long prefix with n, where a byte-wise compare can go wrong.
      if (i % 2 === 0) bytes.set(SECP256K1_ORDER.subarray(0, 1 + (i % 31)));
      const x = BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
      expect(isValidSecretScalar(bytes)).toBe(x > 0n && x < N);
    }
  });

  it('rejects wrong lengths, and checkSecretKey says why', () => {
    expect(isValidSecretScalar(new Uint8Array(31).fill(1))).toBe(false);
    expect(isValidSecretScalar(new Uint8Array(33).fill(1))).toBe(false);
    expect(() => checkSecretKey(new Uint8Array(31).fill(1))).toThrow(/32 bytes, got 31/);
    expect(() => checkSecretKey(new Uint8Array(32))).toThrow(/\[1, n-1\]/);
  });
});

describe('labels', () => {
  it('accepts ordinary labels and refuses the rest', () => {
    for (const ok of ['a', 'key-1', 'Signer_2.prod:eu', 'x'.repeat(64)]) expect(() => validateLabel(ok)).not.toThrow();
    for (const bad of ['', '.hidden', 'a b', 'x'.repeat(65), 'ключ', 'a/b', 'tab\t']) {
      expect(() => validateLabel(bad)).toThrow(expect.objectContaining({ code: 'INVALID_LABEL' }));
    }
  });
});

describe('key blob', () => {
  const blob = {
    publicKey: Buffer.alloc(33, 2),
    iv: Buffer.alloc(12, 3),
    sealed: Buffer.alloc(48, 4),
  };

  it('round-trips and has a fixed length', () => {
    const bytes = encodeBlob(blob);
    expect(bytes).toHaveLength(BLOB_LEN);
    const back = decodeBlob(bytes, 'k');
    expect(back.publicKey.equals(blob.publicKey) && back.iv.equals(blob.iv) && back.sealed.equals(blob.sealed)).toBe(true);
  });

  it('refuses a wrong length, magic or version', () => {
    const bytes = encodeBlob(blob);
    expect(() => decodeBlob(bytes.subarray(1), 'k')).toThrow(expect.objectContaining({ code: 'BLOB_MALFORMED' }));
    const badMagic = Buffer.from(bytes);
    badMagic[0] = 0;
    expect(() => decodeBlob(badMagic, 'k')).toThrow(/does not hold/);
    const badVersion = Buffer.from(bytes);
    badVersion[4] = 2;
    expect(() => decodeBlob(badVersion, 'k')).toThrow(/does not hold/);
  });

  it('binds label and public key into the AAD without ambiguity', () => {
    const pk = Buffer.alloc(33, 2);
    expect(blobAad('a', pk).equals(blobAad('b', pk))).toBe(false);
    expect(blobAad('a', pk).equals(blobAad('a', Buffer.alloc(33, 3)))).toBe(false);
    expect(blobAad('a', pk).equals(blobAad('A', pk))).toBe(false);
    expect(blobAad('a', pk).toString('latin1')).toContain('musig2-signer/key-blob/v1');
  });
});

describe('mixEntropy', () => {
  it('depends on both inputs, returns n bytes, and wipes its inputs', () => {
    const t = Uint8Array.from(randomBytes(32));
    const o = Uint8Array.from(randomBytes(32));
    const a = mixEntropy(Uint8Array.from(t), Uint8Array.from(o), 32);
    const b = mixEntropy(Uint8Array.from(t), Uint8Array.from(o), 32);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true); // a function of its inputs
    const t2 = Uint8Array.from(t);
    t2[0]! ^= 1;
    expect(Buffer.from(mixEntropy(t2, Uint8Array.from(o), 32)).equals(Buffer.from(a))).toBe(false);
    const o2 = Uint8Array.from(o);
    o2[31]! ^= 1;
    expect(Buffer.from(mixEntropy(Uint8Array.from(t), o2, 32)).equals(Buffer.from(a))).toBe(false);
    expect(mixEntropy(new Uint8Array(5), new Uint8Array(5), 5)).toHaveLength(5);
    const tw = Uint8Array.from(t);
    const ow = Uint8Array.from(o);
    mixEntropy(tw, ow, 32);
    expect(tw.every((x) => x === 0) && ow.every((x) => x === 0)).toBe(true);
  });

  it('does not pass a constant token through: an all-zero token still gives OS-dependent output', () => {
    const x = mixEntropy(new Uint8Array(32), Uint8Array.from(randomBytes(32)), 32);
    const y = mixEntropy(new Uint8Array(32), Uint8Array.from(randomBytes(32)), 32);
    expect(Buffer.from(x).equals(Buffer.from(y))).toBe(false);
  });
});

describe('resolvePin', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pin-'));

  it('takes the PIN directly or from a file, keeping inner whitespace', async () => {
    expect(await resolvePin({ pin: '1234' })).toBe('1234');
    const f = join(dir, 'p');
    writeFileSync(f, ' 12 34\r\n', { mode: 0o600 });
    expect(await resolvePin({ pinFile: f })).toBe(' 12 34');
  });

  it('refuses a PIN file that group or others may access, or that another user owns', async () => {
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      const f = join(dir, `p-${mode.toString(8)}`);
      writeFileSync(f, '1234\n');
      chmodSync(f, mode);
      const err = await resolvePin({ pinFile: f }).then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ code: 'PIN_FILE', message: expect.stringMatching(/accessible by group or others \(mode 0\d{3}\); run chmod 600/) });
      expect((err as Error).message).not.toContain('1234');
    }
    const f = join(dir, 'p-other-owner');
    writeFileSync(f, '1234\n', { mode: 0o600 });
    if (process.getuid?.() === 0) {
      chownSync(f, 65534, 65534);
      await expect(resolvePin({ pinFile: f })).rejects.toMatchObject({ code: 'PIN_FILE', message: expect.stringMatching(/owned by uid 65534, not by the daemon's user/) });
    }
  });

  it('needs exactly one source', async () => {
    await expect(resolvePin({})).rejects.toMatchObject({ code: 'PIN_MISSING' });
    await expect(resolvePin({ pin: '' })).rejects.toMatchObject({ code: 'PIN_MISSING' });
    await expect(resolvePin({ pin: '1', pinFile: join(dir, 'p') })).rejects.toMatchObject({ code: 'PIN_CONFLICT' });
  });
});
