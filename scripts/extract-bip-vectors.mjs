#!/usr/bin/env node
// One-off extraction of the test vectors that BIP373 and BIP390 carry only in their mediawiki
// text, into the JSON files under test/vectors/ (the committed JSON is what tests read).
// Usage: node scripts/extract-bip-vectors.mjs BIPS_CHECKOUT_OR_SPEC_FOLDER
//   reads bip-0373.mediawiki and bip-0390.mediawiki from that folder.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Buffer } from 'node:buffer';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node scripts/extract-bip-vectors.mjs FOLDER_WITH_BIP_MEDIAWIKI');
  process.exit(2);
}
const out = new URL('../test/vectors/', import.meta.url);

/** Text of <pre>...</pre> starting on line i (may close on a later line). */
function pre(lines, i) {
  let text = lines[i].slice(lines[i].indexOf('<pre>') + 5);
  while (!text.includes('</pre>')) text += lines[++i];
  return text.slice(0, text.indexOf('</pre>')).trim();
}

function bip373() {
  const lines = readFileSync(join(dir, 'bip-0373.mediawiki'), 'utf8').split('\n');
  const start = lines.findIndex((l) => l.startsWith('==Test Vectors=='));
  const invalidAt = lines.findIndex((l) => l.startsWith('The following are invalid PSBTs'));
  const end = lines.findIndex((l, i) => i > start && l.startsWith('==') && !l.startsWith('==Test'));
  const aggregate = /<tt>([0-9a-f]{66})<\/tt>/i.exec(lines.slice(start, invalidAt).join('\n'))[1];
  const participants = [];
  const valid = [];
  const invalid = [];
  let kase = null;
  let variant = null;
  for (let i = start; i < end; i++) {
    const l = lines[i];
    const p = /^# <tt>([0-9a-fA-F]{66})<\/tt>, <tt>(\w+)<\/tt>, <tt>(\w+)<\/tt>/.exec(l);
    if (p) participants.push({ pubkey: p[1].toLowerCase(), wif: p[2], wifTestnet: p[3] });
    const c = /^\* Case: (.*)$/.exec(l);
    if (c) { kase = c[1].trim(); variant = null; }
    const v = /^\*\* (With .*)$/.exec(l);
    if (v) variant = v[1].trim();
    if (/Bytes in Hex: <pre>/.test(l)) {
      const hex = pre(lines, i).toLowerCase();
      const b64Line = lines.findIndex((x, j) => j > i && /Base64 String: <pre>/.test(x));
      const base64 = pre(lines, b64Line);
      if (Buffer.from(base64, 'base64').toString('hex') !== hex) throw new Error(`hex and base64 differ at line ${i + 1}`);
      const entry = { case: kase, ...(variant ? { variant } : {}), hex, base64 };
      (i < invalidAt ? valid : invalid).push(entry);
    }
  }
  return { aggregate: aggregate.toLowerCase(), participants, valid, invalid };
}

function bip390() {
  const lines = readFileSync(join(dir, 'bip-0390.mediawiki'), 'utf8').split('\n');
  const start = lines.findIndex((l) => l.startsWith('==Test Vectors=='));
  const invalidAt = lines.findIndex((l) => l.startsWith('Invalid descriptors'));
  const end = lines.findIndex((l, i) => i > start && l.startsWith('==') && !l.startsWith('==Test'));
  const valid = [];
  const invalid = [];
  for (let i = start; i < end; i++) {
    const l = lines[i];
    if (i < invalidAt) {
      const d = /^\* <tt>(.*)<\/tt>$/.exec(l);
      if (d) valid.push({ descriptor: d[1], scripts: [] });
      const s = /^\*\* <tt>([0-9a-f]+)<\/tt>$/.exec(l);
      if (s) valid[valid.length - 1].scripts.push(s[1]);
    } else {
      const d = /^\* (.*): <tt>(.*)<\/tt>$/.exec(l);
      if (d) invalid.push({ reason: d[1].replace(/<\/?tt>/g, ''), descriptor: d[2] });
    }
  }
  return { valid, invalid };
}

const write = (rel, obj) => {
  mkdirSync(new URL(rel.split('/')[0] + '/', out), { recursive: true });
  writeFileSync(new URL(rel, out), JSON.stringify(obj, null, 2) + '\n');
};
const a = bip373();
const b = bip390();
write('bip373/vectors.json', a);
write('bip390/vectors.json', b);
console.log(`bip373: ${a.valid.length} valid, ${a.invalid.length} invalid; bip390: ${b.valid.length} valid, ${b.invalid.length} invalid`);
