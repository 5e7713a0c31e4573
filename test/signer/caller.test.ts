// The client a call is for (the per-client quotas) is passed as an argument, never carried by
// AsyncLocalStorage: no file under src/ loads node's async hooks module, whose promise hooks
// would otherwise run on every promise of the daemon's main thread.
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = join(import.meta.dirname, '..', '..', 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : /\.[cm]?[jt]s$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

// Written in pieces so this file does not match itself.
const HOOKS = new RegExp(`['"\`](node:)?async${'_'}hooks['"\`]|AsyncLocal${''}Storage`);

describe('no async hooks in the daemon', () => {
  it('no source file imports the async hooks module or uses AsyncLocalStorage', () => {
    const files = sources(SRC);
    expect(files.length).toBeGreaterThan(50);
    const offenders = files.filter((f) => HOOKS.test(readFileSync(f, 'utf8'))).map((f) => relative(SRC, f));
    expect(offenders).toEqual([]);
  });

  it('the pattern catches what it is for', () => {
    const mod = 'async' + '_hooks';
    expect(HOOKS.test(`import { X } from 'node:${mod}';`)).toBe(true);
    expect(HOOKS.test(`const h = require("${mod}");`)).toBe(true);
    expect(HOOKS.test('new AsyncLocal' + 'Storage<string>()')).toBe(true);
    expect(HOOKS.test("import { Worker } from 'node:worker_threads';")).toBe(false);
  });
});
