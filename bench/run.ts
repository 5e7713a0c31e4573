// `npm run bench`: the core section, then every other section whose file exists (sections are
// written by different people and land at different times; a missing one is skipped with a note).
// BENCH_TIME_MS scales every section; BENCH_ONLY=core,keystore picks sections.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchCore } from './core.js';

interface Section {
  readonly name: string;
  /** Module next to this file, without extension. */
  readonly file: string;
  /** The exported async function that prints the section. */
  readonly entry: string;
}

const SECTIONS: readonly Section[] = [
  { name: 'core', file: 'core', entry: 'benchCore' },
  { name: 'keystore', file: 'keystore', entry: 'benchKeystore' },
  { name: 'ledger', file: 'ledger', entry: 'benchLedger' },
  { name: 'daemon', file: 'daemon', entry: 'benchDaemon' },
  { name: 'memory', file: 'memory', entry: 'benchMemory' },
  { name: 'psbt', file: 'psbt', entry: 'benchPsbt' },
  { name: 'policy', file: 'policy', entry: 'benchPolicy' },
];

const here = dirname(fileURLToPath(import.meta.url));
const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim()).filter((s) => s !== '');

async function runSection(s: Section): Promise<void> {
  if (s.file === 'core') return benchCore();
  if (!existsSync(join(here, `${s.file}.ts`)) && !existsSync(join(here, `${s.file}.js`))) {
    console.log(`## ${s.name}: skipped (bench/${s.file}.ts does not exist yet)\n`);
    return;
  }
  // A computed specifier, so the type checker does not demand files that may not exist yet.
  const specifier = `./${s.file}.js`;
  const mod = (await import(specifier)) as Record<string, unknown>;
  const fn = mod[s.entry];
  if (typeof fn !== 'function') throw new Error(`bench/${s.file}.ts does not export ${s.entry}()`);
  await (fn as () => Promise<void>)();
}

for (const name of only ?? []) {
  if (!SECTIONS.some((s) => s.name === name)) {
    console.log(`BENCH_ONLY: no section named ${name} (known: ${SECTIONS.map((s) => s.name).join(', ')})\n`);
  }
}

for (const s of SECTIONS) {
  if (only !== undefined && !only.includes(s.name)) continue;
  await runSection(s);
}
