// Error mapping and the context digest, without a token or a database.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { InvalidContributionError, InvalidInputError, Musig2Error } from '../../src/musig2/index.js';
import { KeyNotFoundError, KeystoreError, TokenUnavailableError } from '../../src/keystore/index.js';
import {
  LedgerError,
  LedgerUnavailableError,
  NonceCollisionError,
  NonceReuseError,
} from '../../src/ledger/index.js';
import { SignerError, bindingDigest, contextDigest, toSignerError } from '../../src/signer/index.js';

describe('toSignerError', () => {
  it('turns invalid contributions into INVALID_ARGUMENT with ErrorInfo', () => {
    const cases: [InvalidContributionError, string, Record<string, string>][] = [
      [new InvalidContributionError(2, 'pubkey'), 'pubkeys[2]', { signer: '2', contribution: 'pubkey' }],
      [new InvalidContributionError(0, 'pubnonce'), 'pubnonces[0]', { signer: '0', contribution: 'pubnonce' }],
      [new InvalidContributionError(null, 'aggnonce'), 'aggnonce', { signer: 'aggregator', contribution: 'aggnonce' }],
      [new InvalidContributionError(null, 'aggothernonce'), 'aggothernonce', { signer: 'aggregator', contribution: 'aggothernonce' }],
      [new InvalidContributionError(1, 'psig'), 'partial_sigs[1]', { signer: '1', contribution: 'psig' }],
    ];
    for (const [err, field, metadata] of cases) {
      const e = toSignerError(err);
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.field).toBe(field);
      expect(e.message.startsWith(`${field}: `)).toBe(true);
      expect(e.errorInfo).toEqual({ reason: 'INVALID_CONTRIBUTION', metadata });
    }
  });

  it('names the request field for invalid inputs, and keeps secret-input failures internal', () => {
    expect(toSignerError(new InvalidInputError('The tweak must be less than n.', 'tweaks[1]'))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'tweaks[1]',
      message: 'tweaks[1]: The tweak must be less than n.',
    });
    // musig2 names the argument itself; the field prefix must not repeat it.
    expect(toSignerError(new InvalidInputError('tweaks[0]: The tweak must be less than n.', 'tweaks[0]')).message).toBe(
      'tweaks[0]: The tweak must be less than n.',
    );
    expect(toSignerError(new InvalidInputError('aggnonce must be 66 bytes, got 3 bytes', 'aggnonce')).message).toBe(
      'aggnonce: must be 66 bytes, got 3 bytes',
    );
    expect(toSignerError(new InvalidInputError('msg must be a Uint8Array', 'msg')).field).toBe('message');
    expect(toSignerError(new InvalidInputError('the aggregate public key is infinity')).field).toBe('pubkeys');
    const internal = toSignerError(new InvalidInputError('secnonce reused', 'secnonce'));
    expect(internal.code).toBe('INTERNAL');
    expect(internal.message).not.toMatch(/secnonce reused/);
    expect(toSignerError(new Musig2Error('partial signature failed self-verification')).code).toBe('INTERNAL');
  });

  it('maps keystore and ledger failures to NOT_FOUND, UNAVAILABLE, FAILED_PRECONDITION, INTERNAL', () => {
    expect(toSignerError(new KeyNotFoundError('k'))).toMatchObject({ code: 'NOT_FOUND', field: 'key_id' });
    expect(toSignerError(new TokenUnavailableError('t', 'gone')).code).toBe('UNAVAILABLE');
    expect(toSignerError(new KeystoreError('BLOB_AUTH_FAILED', 'x')).code).toBe('INTERNAL');
    expect(toSignerError(new LedgerUnavailableError('disk', 'SQLITE_IOERR')).code).toBe('UNAVAILABLE');
    expect(toSignerError(new NonceReuseError(new Uint8Array(66))).code).toBe('FAILED_PRECONDITION');
    expect(toSignerError(new NonceCollisionError(new Uint8Array(66))).code).toBe('INTERNAL');
    expect(toSignerError(new LedgerError('constraint')).code).toBe('INTERNAL');
  });

  it('never echoes an unknown error, and passes SignerErrors through', () => {
    const e = toSignerError(new Error('deadbeef secret material'));
    expect(e).toMatchObject({ code: 'INTERNAL', message: 'internal error' });
    const own = new SignerError('NOT_FOUND', 'x');
    expect(toSignerError(own)).toBe(own);
    expect(toSignerError('a string').code).toBe('INTERNAL');
  });
});

describe('context digest', () => {
  const pk = (b: number) => new Uint8Array(33).fill(b);
  const base = {
    path: 'random' as const,
    keyId: 'alice',
    nonce: new Uint8Array(66).fill(7),
    pubkeys: [pk(2), pk(3)],
    tweaks: [{ tweak: new Uint8Array(32).fill(9), xonly: true }],
    message: new Uint8Array([1, 2, 3]),
  };

  it('matches the encoding documented in digest.ts', () => {
    const u32 = (v: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(v);
      return b;
    };
    const lp = (b: Uint8Array) => Buffer.concat([u32(b.length), b]);
    const msgLen = Buffer.alloc(8);
    msgLen.writeBigUInt64BE(3n);
    const data = Buffer.concat([
      Buffer.from([1]),
      lp(Buffer.from('alice')),
      lp(base.nonce),
      u32(2),
      lp(pk(2)),
      lp(pk(3)),
      u32(1),
      Buffer.from([1]),
      lp(new Uint8Array(32).fill(9)),
      msgLen,
      Buffer.from([1, 2, 3]),
    ]);
    const tag = createHash('sha256').update('musig2-signer/context/v1').digest();
    const expected = createHash('sha256').update(tag).update(tag).update(data).digest();
    expect(Buffer.from(contextDigest(base))).toEqual(expected);
  });

  it('changes with every part of the context', () => {
    const d0 = Buffer.from(contextDigest(base)).toString('hex');
    const variants = [
      { ...base, path: 'deterministic' as const },
      { ...base, keyId: 'alicf' },
      { ...base, nonce: new Uint8Array(66).fill(8) },
      { ...base, pubkeys: [pk(3), pk(2)] },
      { ...base, pubkeys: [pk(2)] },
      { ...base, tweaks: [] },
      { ...base, tweaks: [{ tweak: new Uint8Array(32).fill(9), xonly: false }] },
      { ...base, message: new Uint8Array([1, 2]) },
      { ...base, message: new Uint8Array(0) },
    ];
    const all = new Set([d0, ...variants.map((v) => Buffer.from(contextDigest(v)).toString('hex'))]);
    expect(all.size).toBe(variants.length + 1);
  });

  it('binds sessions with "no message" apart from "empty message"', () => {
    const a = bindingDigest('alice', base.pubkeys, base.tweaks, undefined);
    const b = bindingDigest('alice', base.pubkeys, base.tweaks, new Uint8Array(0));
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
  });
});
