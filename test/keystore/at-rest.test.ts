// The secret never reaches the disk: after importing a known key, no file under the token
// folder holds its 32 bytes raw, in hex or in base64.
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Keystore } from '../../src/keystore/index.js';
import { hex, setUpToken } from './helpers.js';
import type { TestToken } from './helpers.js';

// A recognisable, valid secret (below n), unlikely to occur by chance.
const SECRET = Uint8Array.from(Buffer.from('5eC2e7a1b0d4c3f29e8a7b6c5d4e3f201f2e3d4c5b6a79881726354453627180'.toLowerCase(), 'hex'));

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((rel) => join(dir, rel))
    .filter((p) => statSync(p).isFile());
}

/** Every byte pattern that would reveal `secret`: raw (both byte orders), hex, base64. */
function encodings(secret: Uint8Array): Array<[string, Buffer]> {
  const raw = Buffer.from(secret);
  const out: Array<[string, Buffer]> = [
    ['raw', raw],
    ['raw reversed', Buffer.from(raw).reverse()],
    ['hex', Buffer.from(raw.toString('hex'), 'latin1')],
    ['HEX', Buffer.from(raw.toString('hex').toUpperCase(), 'latin1')],
  ];
  // Inside a longer base64 text the secret may start at any of three byte alignments; keep
  // only the characters that depend on secret bytes alone.
  for (const alphabet of ['base64', 'base64url'] as const) {
    for (let shift = 0; shift < 3; shift++) {
      const text = Buffer.concat([Buffer.alloc(shift), raw]).toString(alphabet);
      const from = shift === 0 ? 0 : 4;
      const to = 4 * Math.floor((shift + raw.length) / 3);
      out.push([`${alphabet} (alignment ${shift})`, Buffer.from(text.slice(from, to), 'latin1')]);
    }
  }
  return out;
}

function findSecret(dir: string, secret: Uint8Array): string[] {
  const hits: string[] = [];
  const patterns = encodings(secret);
  for (const file of filesUnder(dir)) {
    const content = readFileSync(file);
    for (const [name, pattern] of patterns) if (content.includes(pattern)) hits.push(`${file}: ${name}`);
  }
  return hits;
}

let token: TestToken;

beforeAll(async () => {
  token = await setUpToken('at-rest-token');
});

describe('the secret at rest', () => {
  it('the search finds each encoding when it is there (control)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'at-rest-control-'));
    const patterns = encodings(SECRET);
    patterns.forEach(([, pattern], i) => writeFileSync(join(dir, `f${i}`), Buffer.concat([Buffer.from('xx'), pattern, Buffer.from('yy')])));
    // A base64 text of a longer record with the secret in the middle is also caught.
    writeFileSync(join(dir, 'b64-record'), Buffer.concat([Buffer.from('head:'), Buffer.from(SECRET), Buffer.from(':tail')]).toString('base64'));
    const hits = findSecret(dir, SECRET);
    for (let i = 0; i < patterns.length; i++) expect(hits.some((h) => h.includes(`f${i}:`))).toBe(true);
    expect(hits.some((h) => h.includes('b64-record'))).toBe(true);
  });

  it('appears in no file under the token folder after import, use and close', async () => {
    const ks = await Keystore.open(token.options);
    try {
      const key = await ks.importKey('known-secret', SECRET);
      expect(await ks.withSecretKey('known-secret', (sk) => hex(sk))).toBe(hex(SECRET));
      expect((await ks.listKeys()).map((k) => k.label)).toEqual(['known-secret']);
      expect(key.publicKey).toHaveLength(33);
    } finally {
      await ks.close();
    }
    const files = filesUnder(token.dir);
    expect(files.filter((f) => f.endsWith('.object')).length).toBeGreaterThanOrEqual(3); // token, KEK, key
    expect(findSecret(token.dir, SECRET)).toEqual([]);
  });
});
