#!/usr/bin/env node
// Installs whatever `npm start` and `npm test` need and is missing: npm packages (from the
// lockfile), SoftHSM2 from Debian and, for the tests, Debian's PostgreSQL server and protoc. Plain
// JavaScript, because it runs before node_modules exists.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SOFTHSM_MODULE_CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
];

function run(cmd, args, opts = {}) {
  console.error(`[ensure-deps] ${cmd} ${args.join(' ')}`);
  execFileSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
}

function mtime(p) {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return 0;
  }
}

function ensureNpmPackages() {
  const installed = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  const pkg = join(root, 'package.json');
  const stamp = mtime(installed);
  if (stamp > 0 && stamp >= mtime(lock) && stamp >= mtime(pkg)) return;
  if (existsSync(lock)) run('npm', ['ci', '--no-audit', '--no-fund']);
  else run('npm', ['install', '--no-audit', '--no-fund']);
}

function aptInstall(packages) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !existsSync('/usr/bin/apt-get')) {
    console.error(`[ensure-deps] missing Debian packages: ${packages.join(' ')}; install them with apt-get as root`);
    process.exit(1);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    run('apt-get', ['install', '-y', '--no-install-recommends', ...packages], { env });
  } catch {
    run('apt-get', ['update'], { env });
    run('apt-get', ['install', '-y', '--no-install-recommends', ...packages], { env });
  }
}

export function findSoftHsmModule() {
  return SOFTHSM_MODULE_CANDIDATES.find((p) => existsSync(p));
}

function ensureSoftHsm() {
  if (findSoftHsmModule() && existsSync('/usr/bin/softhsm2-util')) return;
  aptInstall(['softhsm2']);
}

/** Debian's PostgreSQL server binaries (any major version): the tests run their own cluster. */
function hasPostgres() {
  try {
    return readdirSync('/usr/lib/postgresql').some((v) => existsSync(join('/usr/lib/postgresql', v, 'bin', 'initdb')));
  } catch {
    return false;
  }
}

// `npm test` (pretest) and `npm run bench` (--postgres) need PostgreSQL for the shared-ledger
// tests and benchmark; `npm start` does not. build, lint and typecheck need only npm packages.
const npmOnly = process.argv.includes('--npm-only');
const wantPostgres = process.argv.includes('--postgres') || process.env.npm_lifecycle_event === 'pretest';
if (!npmOnly) ensureSoftHsm();
// The tests also compile the contract with protoc, the oracle for server reflection.
const wantTestTools = process.env.npm_lifecycle_event === 'pretest';
const testPackages = [];
if (!npmOnly && wantPostgres && !hasPostgres()) testPackages.push('postgresql');
if (!npmOnly && wantTestTools && !existsSync('/usr/bin/protoc')) testPackages.push('protobuf-compiler');
if (testPackages.length > 0) aptInstall(testPackages);
ensureNpmPackages();
