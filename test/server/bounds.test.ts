// Bounds on what callers control: key patterns match in linear time (checked against a
// regular expression on random cases, and on a 60k-character id against a many-star pattern),
// audit values and status messages are capped, and key_id / session_id are checked in the
// server layer with messages that never quote the value.
import { describe, expect, it } from 'vitest';
import { chainRecord, recordLine } from '../../src/audit/index.js';
import { MAX_AUDIT_VALUE_CHARS } from '../../src/audit/record.js';
import { AccessRules, KeyPattern, LOCAL } from '../../src/server/acl.js';
import { MAX_STATUS_MESSAGE_CHARS, toServiceError } from '../../src/server/errors.js';
import { checkIdentifiers } from '../../src/server/validate.js';
import { SignerError } from '../../src/signer/index.js';

const regexOf = (glob: string) =>
  new RegExp(`^${glob.split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');

describe('key patterns', () => {
  it('agree with the equivalent regular expression', () => {
    let seed = 10;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % 1000;
    const pick = (alphabet: string[], max: number) => Array.from({ length: next() % (max + 1) }, () => alphabet[next() % alphabet.length]).join('');
    for (let i = 0; i < 5000; i++) {
      const g = pick(['a', 'b', '*', 'ba'], 8);
      const t = pick(['a', 'b', 'ab'], 12);
      expect([g, t, new KeyPattern(g).test(t)]).toEqual([g, t, regexOf(g).test(t)]);
    }
  });

  it('match a 60,000-character id against a pattern of many stars (linear time, so this returns)', () => {
    const glob = `${'a*'.repeat(40)}b`;
    const rules = AccessRules.parse(JSON.stringify({ rules: [{ client: 'local', keys: [glob], rpcs: ['NonceGen'] }] }));
    expect(rules.allowsKey(LOCAL, 'NonceGen', 'a'.repeat(60_000)).allowed).toBe(false);
    expect(rules.allowsKey(LOCAL, 'NonceGen', `${'a'.repeat(60_000)}b`).allowed).toBe(true);
    expect(new KeyPattern(`*${'ab*'.repeat(50)}c`).test('ab'.repeat(30_000))).toBe(false);
  });

  it('name the key in a refusal only up to 64 characters', () => {
    const rules = AccessRules.parse(JSON.stringify({ rules: [{ client: 'local', keys: ['k1'], rpcs: ['NonceGen'] }] }));
    const d = rules.allowsKey(LOCAL, 'NonceGen', 'x'.repeat(100_000));
    expect(d.allowed).toBe(false);
    expect(d.allowed ? '' : d.reason.length).toBeLessThan(200);
  });
});

describe('caps', () => {
  it('cut every audit string value, so a record has a known maximum size', () => {
    const r = chainRecord({ seq: 0, hash: '0'.repeat(64) }, new Date(0), 'call', { key_id: 'x'.repeat(1_000_000), peer: 'p' });
    expect((r.key_id as string).length).toBe(MAX_AUDIT_VALUE_CHARS);
    expect(recordLine(r).length).toBeLessThan(MAX_AUDIT_VALUE_CHARS + 300);
  });

  it('cut status messages', () => {
    const e = toServiceError({ code: 7, message: `permission denied: ${'x'.repeat(100_000)}` });
    expect(e.details!.length).toBe(MAX_STATUS_MESSAGE_CHARS);
  });
});

describe('identifiers checked in the server layer', () => {
  const invalid = (method: string, req: unknown) => {
    try {
      checkIdentifiers(method, req);
    } catch (err) {
      expect(err).toBeInstanceOf(SignerError);
      expect((err as SignerError).code).toBe('INVALID_ARGUMENT');
      return (err as SignerError).message;
    }
    return undefined;
  };

  it('refuse a key_id that no key label could be, without quoting it', () => {
    for (const keyId of ['x'.repeat(65), 'has space', 'ünï', '-lead', 'a\nb', '']) {
      const msg = invalid('NonceGen', { keyId });
      expect(msg).toMatch(/^key_id: /);
      if (keyId.length > 3) expect(msg).not.toContain(keyId);
      expect(invalid('DeterministicSign', { keyId })).toMatch(/^key_id: /);
    }
    expect(invalid('NonceGen', { keyId: `k.1_a:b-${'z'.repeat(56)}` })).toBeUndefined();
  });

  it('refuse a session_id that is not 32 bytes', () => {
    expect(invalid('Sign', { sessionId: new Uint8Array(1 << 20) })).toMatch(/^session_id: must be 32 bytes, got 1048576$/);
    expect(invalid('Sign', { sessionId: new Uint8Array(31) })).toMatch(/^session_id/);
    expect(invalid('Sign', { sessionId: new Uint8Array(32) })).toBeUndefined();
  });
});
