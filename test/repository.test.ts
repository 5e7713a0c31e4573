// The repository stands on its own: a user's clone has nothing beside it, so no tracked file may
// point outside it, and the vectors it carries are the bytes its README names.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { vectorPath } from './vectors/load.js';

const ROOT = join(import.meta.dirname, '..');

/** Tracked files (git ls-files), or every file but node_modules and .git outside a git checkout. */
function projectFiles(): string[] {
  try {
    return execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' }).split('\0').filter(Boolean);
  } catch {
    const out: string[] = [];
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        if (name === 'node_modules' || name === '.git') continue;
        const p = join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else out.push(relative(ROOT, p));
      }
    };
    walk(ROOT);
    return out;
  }
}

// Written in pieces so this file does not match itself.
const OUTSIDE = new RegExp(
  [String.raw`\.\./` + 'shared\\b', String.raw`/work/` + '(main|shared|steering)\\b', String.raw`/home/` + '[a-z]', '/Us' + 'ers/'].join('|'),
);

describe('the repository stands on its own', () => {
  it('no tracked file refers to a path outside the repository', () => {
    const offenders: string[] = [];
    for (const file of projectFiles()) {
      if (file === 'package-lock.json') continue;
      let text: string;
      try {
        text = readFileSync(join(ROOT, file), 'utf8');
      } catch {
        continue; // deleted in the work tree, or not a regular file
      }
      text.split('\n').forEach((line, i) => {
        if (OUTSIDE.test(line)) offenders.push(`${file}:${i + 1}: ${line.trim().slice(0, 120)}`);
      });
    }
    expect(offenders).toEqual([]);
  });

  it('the guard pattern catches what it is for', () => {
    expect(OUTSIDE.test('see ../' + 'shared/specs/bip-0327.mediawiki')).toBe(true);
    expect(OUTSIDE.test('/work/' + 'shared/bip327-vectors')).toBe(true);
    expect(OUTSIDE.test('https://github.com/bitcoin/bips/blob/master/bip-0327.mediawiki')).toBe(false);
  });

  it('every vector file matches the SHA-256 its README gives', () => {
    const readme = readFileSync(vectorPath('README.md'), 'utf8');
    const rows = [...readme.matchAll(/^([0-9a-f]{64}) {2}(\S+)$/gm)];
    expect(rows.length).toBeGreaterThanOrEqual(10);
    for (const [, digest, file] of rows) {
      const actual = createHash('sha256').update(readFileSync(vectorPath(file!))).digest('hex');
      expect(actual, file).toBe(digest);
    }
  });
});
