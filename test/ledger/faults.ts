// Real ledger faults for tests, no mocks. Both work when running as root:
// - another process holding SQLite's write lock (what a backup tool or a stuck second
//   daemon does): writers get SQLITE_BUSY;
// - a file-size limit (RLIMIT_FSIZE) on this process, which makes the kernel refuse every
//   file write with EFBIG, as a full or failing disk would: SQLite reports an I/O error.

import { spawn, execFileSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';

export interface LockHolder {
  release(): Promise<void>;
}

// Runs in a separate node process: takes the exclusive lock and holds it until stdin closes.
const HOLDER_SCRIPT = `
const Database = require('better-sqlite3');
const db = new Database(process.argv[1]);
db.exec('BEGIN EXCLUSIVE');
process.stdout.write('locked\\n');
process.stdin.resume();
process.stdin.on('end', () => { db.exec('ROLLBACK'); db.close(); process.exit(0); });
`;

/** Start a second process that holds the database's write lock until release(). */
export async function holdWriteLock(dbPath: string): Promise<LockHolder> {
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ['-e', HOLDER_SCRIPT, dbPath], {
    cwd: process.cwd(),
    stdio: 'pipe',
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('locked')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`lock holder exited (${code}): ${err}`)));
  });
  return {
    async release() {
      const exited = once(child, 'exit');
      child.stdin.end();
      await exited;
    },
  };
}

/**
 * Run fn while this process may not write to any file (soft RLIMIT_FSIZE of 1 byte; the hard
 * limit is untouched so it can be raised again). Restores the previous limit afterwards.
 */
export async function withFileWritesFailing<T>(fn: () => Promise<T>): Promise<T> {
  const pid = String(process.pid);
  const before = execFileSync('prlimit', ['--pid', pid, '--fsize', '--raw', '--noheadings', '--output=SOFT,HARD'])
    .toString()
    .trim()
    .split(/\s+/);
  execFileSync('prlimit', ['--pid', pid, `--fsize=1:${before[1]}`]);
  try {
    return await fn();
  } finally {
    execFileSync('prlimit', ['--pid', pid, `--fsize=${before[0]}:${before[1]}`]);
  }
}
