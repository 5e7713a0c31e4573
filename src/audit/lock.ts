// One writer per audit log: the daemon holds an exclusive lock on FILE.lock for as long as it
// has the log open, and a second daemon pointed at the same log refuses to start.
//
// The lock is a POSIX record lock (fcntl), taken through SQLite, which the ledger already
// ships: FILE.lock is a small SQLite database opened in EXCLUSIVE locking mode, and its first
// write takes SQLite's exclusive lock and keeps it until the connection closes. Why not a pid
// file created with O_EXCL: it outlives a crash, so it needs a liveness check by pid, and a pid
// says nothing across PID namespaces (every container's daemon is pid 1) or after pid reuse.
// A record lock belongs to the open file: the kernel drops it when the process dies, however
// it dies, so there is never a stale lock to clear. It works between processes and, through
// SQLite's own per-inode bookkeeping, between two opens in one process. It is advisory and
// only as good as the file system's fcntl locks (local file systems are fine; NFS depends on
// its lock manager).
import Database from 'better-sqlite3';

export class AuditLockedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuditLockedError';
  }
}

export interface AuditLock {
  readonly path: string;
  release(): void;
}

export function lockAuditLog(logPath: string, pid = process.pid): AuditLock {
  const path = `${logPath}.lock`;
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { timeout: 0 });
    db.pragma('busy_timeout = 0');
    db.pragma('locking_mode = EXCLUSIVE');
    // The write takes the exclusive lock; EXCLUSIVE locking mode keeps it after COMMIT.
    db.exec('BEGIN EXCLUSIVE');
    db.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL, since TEXT NOT NULL)');
    db.exec('DELETE FROM holder');
    db.prepare('INSERT INTO holder (pid, since) VALUES (?, ?)').run(pid, new Date().toISOString());
    db.exec('COMMIT');
  } catch (err) {
    db?.close();
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
      throw new AuditLockedError(
        `audit log ${logPath} is in use by another process, which holds the lock on ${path} ` +
          `(one daemon per audit log; 'fuser ${path}' names it)`,
        { cause: err },
      );
    }
    throw new AuditLockedError(
      `cannot lock audit log ${logPath} (${path}): ${code || (err as Error).message}` +
        (code.startsWith('SQLITE_NOTADB') || code.startsWith('SQLITE_CORRUPT') ? `; if no daemon runs, ${path} may be removed` : ''),
      { cause: err },
    );
  }
  const held = db;
  let released = false;
  return {
    path,
    release() {
      if (released) return;
      released = true;
      held.close();
    },
  };
}
