#!/usr/bin/env node
// Installs whatever `npm start` and `npm test` need and is missing: npm packages (from the
// lockfile), SoftHSM2 and libsecp256k1-dev from Debian, the project's libsecp256k1 addon
// (native/, built with the node-gyp that ships with npm) and, for the tests, Debian's
// PostgreSQL server and protoc. Plain JavaScript, because it runs before node_modules exists.
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

/** Debian's libsecp256k1 headers and the linker's libsecp256k1.so (libsecp256k1-dev). */
function hasSecp256k1Dev() {
  return existsSync('/usr/include/secp256k1.h') && existsSync('/usr/include/secp256k1_extrakeys.h') &&
    ['/usr/lib/x86_64-linux-gnu/libsecp256k1.so', '/usr/lib/aarch64-linux-gnu/libsecp256k1.so', '/usr/lib/libsecp256k1.so'].some((p) => existsSync(p));
}

/** npm's own node-gyp (npm ships one), so nothing more is downloaded. */
function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_execpath) candidates.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const prefix = dirname(dirname(process.execPath));
  candidates.push(join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((p) => existsSync(p));
}

const ADDON = join(root, 'native', 'build', 'Release', 'musig2_secp256k1.node');

/** Builds native/ when its output is missing or older than its sources. */
function ensureAddon() {
  const built = mtime(ADDON);
  const sources = [join(root, 'native', 'binding.gyp'), ...readdirSync(join(root, 'native', 'src')).map((f) => join(root, 'native', 'src', f))];
  if (built > 0 && sources.every((f) => mtime(f) <= built)) return;
  const gyp = findNodeGyp();
  if (gyp === undefined) {
    console.error('[ensure-deps] cannot find node-gyp (it ships with npm); the native curve backend is not built');
    process.exit(1);
  }
  // Node's own headers when they are installed (Debian's nodejs, the official tarball), so
  // node-gyp downloads nothing.
  const prefix = dirname(dirname(process.execPath));
  const nodedir = existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
  run(process.execPath, [gyp, 'rebuild', ...nodedir], { cwd: join(root, 'native') });
}

// `npm test` (pretest) and `npm run bench` (--postgres) need PostgreSQL for the shared-ledger
// tests and benchmark; `npm start` does not. build, lint and typecheck need only npm packages
// (the TypeScript compiles without the addon).
const npmOnly = process.argv.includes('--npm-only');
const wantPostgres = process.argv.includes('--postgres') || process.env.npm_lifecycle_event === 'pretest';
if (!npmOnly) ensureSoftHsm();
// The tests also compile the contract with protoc, the oracle for server reflection.
const wantTestTools = process.env.npm_lifecycle_event === 'pretest';
const debPackages = [];
if (!npmOnly && !hasSecp256k1Dev()) debPackages.push('libsecp256k1-dev');
if (!npmOnly && wantPostgres && !hasPostgres()) debPackages.push('postgresql');
if (!npmOnly && wantTestTools && !existsSync('/usr/bin/protoc')) debPackages.push('protobuf-compiler');
if (debPackages.length > 0) aptInstall(debPackages);
ensureNpmPackages();
if (!npmOnly) ensureAddon();
