// The audit log writer: append-only, hash-chained JSON lines (see record.ts), durable before
// append() resolves.
//
// Group commit: appends that arrive in the same event-loop turn are chained, written with one
// write and made durable with one fdatasync; appends arriving while that batch is on disk wait
// for the next one. So concurrent calls share fsyncs instead of queueing one fsync each.
//
// Fail closed: when a batch cannot be written (disk full, file-size limit, the file or its
// directory gone or replaced), every append in it rejects with AuditUnavailableError, the
// chain head stays at the last durable record and the log is marked failed. The next append
// (or ensureWritable(), which the health check calls) first cuts the file back to its last good
// length, then writes an `audit_resumed` record; only when that is durable does it accept
// records again. A file that was unlinked or replaced under us is never resumed: that needs a
// restart, which verifies the tail of whatever file is at the path.
//
// On open, the last line of an existing file is parsed and its hash checked, and the chain goes
// on from it; a garbled or incomplete last line refuses the open (run `audit verify`).
import { constants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { chainRecord, checkFields, GENESIS_HASH, recordLine } from './record.js';
import type { AuditFields, AuditRecord } from './record.js';
import { checkRecordShape } from './verify.js';

export class AuditUnavailableError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'AuditUnavailableError';
  }
}

/** The existing file cannot be continued (bad tail); raised by AuditLog.open. */
export class AuditLogCorruptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuditLogCorruptError';
  }
}

export interface AuditLogOptions {
  /** For tests: the time stamped on records. */
  clock?: () => Date;
  /** Fields of the `audit_open` record written on open (e.g. version, pid); no secrets. */
  openFields?: AuditFields;
  /** Called when the log starts or stops failing. */
  onStateChange?: (healthy: boolean, err?: unknown) => void;
}

interface Pending {
  /** undefined: a resume request, written as the batch's `audit_resumed` record if one is needed. */
  event: string | undefined;
  fields: AuditFields;
  resolve: (r: AuditRecord | undefined) => void;
  reject: (err: unknown) => void;
}

/** Tail bytes read on open to find the last line; records are far shorter. */
const TAIL_BYTES = 64 * 1024;

const errCode = (err: unknown) => (err as NodeJS.ErrnoException)?.code ?? (err as Error)?.message ?? 'unknown error';

export class AuditLog {
  private queue: Pending[] = [];
  private scheduled = false;
  private flushing = false;
  private closed = false;
  private failure: unknown;
  private failedAt: Date | undefined;
  private replaced = false;
  private resuming: Promise<void> | undefined;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly ino: { dev: number; ino: number },
    private head: { seq: number; hash: string },
    /** Length of the file up to the end of the last durable record. */
    private goodSize: number,
    private readonly clock: () => Date,
    private readonly onStateChange?: (healthy: boolean, err?: unknown) => void,
  ) {}

  static async open(path: string, opts: AuditLogOptions = {}): Promise<AuditLog> {
    let fh: FileHandle;
    try {
      fh = await open(path, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT, 0o640);
    } catch (err) {
      throw new AuditUnavailableError(`cannot open audit log ${path}: ${errCode(err)}`, err);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new AuditUnavailableError(`audit log ${path} is not a regular file`);
      const head = await readHead(fh, st.size, path);
      // Make the file's directory entry durable too (it may have just been created).
      await syncDir(dirname(path));
      const log = new AuditLog(path, fh, { dev: st.dev, ino: st.ino }, head, st.size, opts.clock ?? (() => new Date()), opts.onStateChange);
      await log.append('audit_open', opts.openFields ?? {});
      return log;
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  /** Sequence number and hash of the last durable record. */
  get last(): { seq: number; hash: string } {
    return { ...this.head };
  }

  /** False from a failed write until a resume record is durable. */
  healthy(): boolean {
    return this.failure === undefined && !this.closed;
  }

  /**
   * Appends one record; resolves once it is durable, rejects with AuditUnavailableError when it
   * is not (and then it is not in the file).
   */
  append(event: string, fields: AuditFields): Promise<AuditRecord> {
    if (this.closed) return Promise.reject(new AuditUnavailableError('audit log is closed'));
    try {
      // A caller's mistake must not look like a disk fault: refuse it before it joins a batch.
      checkFields(fields);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return new Promise<AuditRecord | undefined>((resolve, reject) => {
      this.queue.push({ event, fields, resolve, reject });
      this.schedule();
    }) as Promise<AuditRecord>;
  }

  /** Resolves when the log accepts records (resuming it if it had failed); rejects otherwise. */
  async ensureWritable(): Promise<void> {
    if (this.closed) throw new AuditUnavailableError('audit log is closed');
    if (this.failure === undefined) return;
    this.resuming ??= new Promise<void>((resolve, reject) => {
      this.queue.push({ event: undefined, fields: {}, resolve: () => resolve(), reject });
      this.schedule();
    }).finally(() => {
      this.resuming = undefined;
    });
    return this.resuming;
  }

  /** Writes an `audit_close` record (best effort) and closes the file. */
  async close(fields: AuditFields = {}): Promise<void> {
    if (this.closed) return;
    try {
      await this.append('audit_close', fields);
    } catch {
      // Closing anyway: the failure was already reported when it happened.
    }
    this.closed = true;
    await this.fh.close();
  }

  private schedule(): void {
    if (this.scheduled || this.flushing) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.flushing) return;
    const batch = this.queue.splice(0);
    if (batch.length === 0) return;
    this.flushing = true;
    try {
      await this.writeBatch(batch);
    } finally {
      this.flushing = false;
      if (this.queue.length > 0) this.schedule();
    }
  }

  private async writeBatch(batch: Pending[]): Promise<void> {
    const wasFailed = this.failure !== undefined;
    const now = this.clock();
    const records: AuditRecord[] = [];
    let head = this.head;
    try {
      await this.checkSameFile();
      if (wasFailed) {
        // Cut off anything a failed batch may have left half-written, then say so in the chain.
        await this.fh.truncate(this.goodSize);
        const resumed = chainRecord(head, now, 'audit_resumed', {
          failed_at: this.failedAt?.toISOString() ?? null,
          error: String(errCode(this.failure)),
        });
        records.push(resumed);
        head = resumed;
      }
      const chained: (AuditRecord | undefined)[] = [];
      for (const p of batch) {
        if (p.event === undefined) {
          chained.push(records[0]);
          continue;
        }
        const r = chainRecord(head, now, p.event, p.fields);
        records.push(r);
        chained.push(r);
        head = r;
      }
      const bytes = Buffer.from(records.map(recordLine).join(''), 'utf8');
      let off = 0;
      while (off < bytes.length) {
        const { bytesWritten } = await this.fh.write(bytes, off, bytes.length - off);
        off += bytesWritten;
      }
      await this.fh.datasync();
      this.head = head;
      this.goodSize += bytes.length;
      if (wasFailed) {
        this.failure = undefined;
        this.failedAt = undefined;
        this.onStateChange?.(true);
      }
      batch.forEach((p, i) => p.resolve(chained[i]));
    } catch (err) {
      const first = this.failure === undefined;
      this.failure = err;
      this.failedAt ??= now;
      // Best effort now; the next attempt truncates again before writing.
      if (!this.replaced) await this.fh.truncate(this.goodSize).catch(() => undefined);
      if (first) this.onStateChange?.(false, err);
      const unavailable = new AuditUnavailableError(`audit log cannot be written: ${errCode(err)}`, err);
      for (const p of batch) p.reject(unavailable);
    }
  }

  /** The path must still name our file: a file unlinked or replaced under us loses records. */
  private async checkSameFile(): Promise<void> {
    if (this.replaced) throw this.failure ?? new AuditUnavailableError('audit log file was replaced');
    let st;
    try {
      st = await stat(this.path);
    } catch (err) {
      throw new AuditUnavailableError(`audit log path is gone: ${errCode(err)}`, err);
    }
    if (st.dev !== this.ino.dev || st.ino !== this.ino.ino) {
      this.replaced = true;
      throw new AuditUnavailableError('audit log path now names another file (moved or replaced): restart the daemon');
    }
  }
}

async function readHead(fh: FileHandle, size: number, path: string): Promise<{ seq: number; hash: string }> {
  if (size === 0) return { seq: 0, hash: GENESIS_HASH };
  const len = Math.min(size, TAIL_BYTES);
  const buf = Buffer.alloc(len);
  await fh.read(buf, 0, len, size - len);
  const text = buf.toString('utf8');
  const bad = (why: string) =>
    new AuditLogCorruptError(`audit log ${path}: ${why}; run 'musig2-signer audit verify ${path}', then move the file aside`);
  if (!text.endsWith('\n')) throw bad('the last line is incomplete');
  const start = text.lastIndexOf('\n', text.length - 2) + 1;
  if (start === 0 && len < size) throw bad('the last line is too long');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text.slice(start, -1));
  } catch {
    throw bad('the last line is not valid JSON');
  }
  const shape = checkRecordShape(parsed);
  if (shape !== undefined) throw bad(`the last line is bad: ${shape}`);
  const r = parsed as AuditRecord;
  return { seq: r.seq, hash: r.hash };
}

async function syncDir(dir: string): Promise<void> {
  let dh: FileHandle | undefined;
  try {
    dh = await open(dir, constants.O_RDONLY);
    await dh.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the file's own data is still synced.
  } finally {
    await dh?.close();
  }
}
