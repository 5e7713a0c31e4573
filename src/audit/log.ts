// The audit log writer: append-only JSON lines chained by a MAC under the token's audit key
// (keyed.ts), durable before append() resolves.
//
// One writer: open() first takes the lock beside the file (lock.ts); a second daemon on the
// same log is refused before it reads or writes anything.
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
// On open, the last complete line of an existing file is parsed and its mac checked in the
// token, and the chain goes on from it; a garbled or forged last line refuses the open (run
// `audit verify`). Bytes after the last newline are a torn write: a batch that never became
// durable, so no reply waited on it. They are moved to FILE.torn-<time>, an `audit_torn_tail`
// record says so, and the daemon starts. A file of unkeyed (v1) records is never continued.
//
// Anchor: after each durable batch the head (chain, seq, mac) is handed to the anchor store
// (the nonce ledger), at most one write in flight and always the latest head, so it costs a
// ledger write per ledger commit at most, not per record, and never delays a reply. open()
// refuses a log whose last record is before the head the anchor store knows for its chain
// (lines cut from the end), or at that head with another mac (another chain put in its place).
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { chainKeyedRecord, checkKeyedRecord, KEYED_GENESIS, newChainId } from './keyed.js';
import type { AuditHead, AuditKey, KeyedRecord } from './keyed.js';
import { lockAuditLog } from './lock.js';
import type { AuditLock } from './lock.js';
import { checkFields } from './record.js';
import type { AuditFields } from './record.js';

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

/**
 * The log ends before the head the anchor store (the ledger) knows: lines were cut from the
 * end, or another chain was put in its place. Raised by AuditLog.open; the daemon refuses to
 * start and raises an alarm.
 */
export class AuditAnchorError extends Error {
  constructor(
    message: string,
    readonly file: AuditHead | undefined,
    readonly anchor: AuditHead,
  ) {
    super(message);
    this.name = 'AuditAnchorError';
  }
}

/** Where the audit head is recorded as the log commits: the nonce ledger implements it. */
export interface AuditAnchorStore {
  /** The last head recorded for this chain, or null. */
  auditHead(chain: string): Promise<{ seq: number; mac: string } | null>;
  /** Records a head; true when recorded, false when the stored one is as far or further. */
  recordAuditHead(head: AuditHead): Promise<boolean>;
}

export interface AuditLogOptions {
  /** The token's audit MAC key. */
  key: AuditKey;
  /** Where heads are anchored and checked at open (the ledger). */
  anchor?: AuditAnchorStore;
  /**
   * Called when the file is found cut under the running daemon (durable records gone), or when
   * the ledger already holds a head of this chain as far as ours or further: another writer
   * continues the same chain (a copy of the log elsewhere: a fork). Either way the log stops.
   */
  onAlarm?: (event: 'audit_log_cut' | 'audit_chain_forked', details: Record<string, string | number>) => void;
  /** Called when an anchor write fails (the anchor stays behind until the next one succeeds). */
  onAnchorError?: (err: unknown) => void;
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
  resolve: (r: KeyedRecord | undefined) => void;
  reject: (err: unknown) => void;
}

/** Chunk read backwards on open to find the last newline. */
const TAIL_BYTES = 64 * 1024;
/** The longest last line open() reads; records are far shorter. */
const MAX_LAST_LINE = 4 * 1024 * 1024;
/** The most torn bytes open() sets aside: far more than one batch; beyond it, not a torn write. */
const MAX_TORN_BYTES = 64 * 1024 * 1024;
/** How far back open() looks for the anchored record (the anchor lags by a few records). */
const MAX_ANCHOR_SCAN_LINES = 10_000;
/** Records chained between two yields of the event loop. */
const MAC_YIELD_EVERY = 64;

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

  private readonly anchorWriter: AnchorWriter | undefined;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly lock: AuditLock,
    private readonly ino: { dev: number; ino: number },
    private head: AuditHead,
    /** Length of the file up to the end of the last durable record. */
    private goodSize: number,
    private readonly key: AuditKey,
    private readonly clock: () => Date,
    private readonly onStateChange?: (healthy: boolean, err?: unknown) => void,
    anchor?: AuditAnchorStore,
    onAnchorError?: (err: unknown) => void,
    private readonly onAlarm?: AuditLogOptions['onAlarm'],
  ) {
    this.anchorWriter = anchor ? new AnchorWriter(anchor, onAnchorError, (head) => this.forked(head)) : undefined;
  }

  static async open(path: string, opts: AuditLogOptions): Promise<AuditLog> {
    // The lock first: nothing below may run while another writer has the file.
    const lock = lockAuditLog(path);
    let fh: FileHandle;
    try {
      fh = await open(path, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT, 0o640);
    } catch (err) {
      lock.release();
      throw new AuditUnavailableError(`cannot open audit log ${path}: ${errCode(err)}`, err);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new AuditUnavailableError(`audit log ${path} is not a regular file`);
      const tail = await readTail(fh, st.size, path);
      let head: AuditHead;
      if (tail.lastLine === undefined) {
        // A new chain (an empty file, or nothing but a torn first write).
        await opts.key.ensure(true);
        head = { chain: newChainId(), seq: 0, mac: KEYED_GENESIS };
      } else {
        head = await checkLastLine(tail.lastLine, path, opts.key);
        if (opts.anchor) await checkAnchor(path, head, opts.anchor, (back) => macLinesBack(fh, tail.end, back));
      }
      let torn: AuditFields | undefined;
      if (tail.tornBytes > 0) torn = await moveTornTail(fh, path, tail.end, tail.tornBytes, opts.clock ?? (() => new Date()));
      // Make the file's directory entry durable too (it may have just been created).
      await syncDir(dirname(path));
      const log = new AuditLog(
        path,
        fh,
        lock,
        { dev: st.dev, ino: st.ino },
        head,
        tail.end,
        opts.key,
        opts.clock ?? (() => new Date()),
        opts.onStateChange,
        opts.anchor,
        opts.onAnchorError,
        opts.onAlarm,
      );
      if (torn) await log.append('audit_torn_tail', torn);
      await log.append('audit_open', opts.openFields ?? {});
      return log;
    } catch (err) {
      await fh.close().catch(() => undefined);
      lock.release();
      throw err;
    }
  }

  /** Chain id, sequence number and mac of the last durable record. */
  get last(): AuditHead {
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
  append(event: string, fields: AuditFields): Promise<KeyedRecord> {
    if (this.closed) return Promise.reject(new AuditUnavailableError('audit log is closed'));
    try {
      // A caller's mistake must not look like a disk fault: refuse it before it joins a batch.
      checkFields(fields);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return new Promise<KeyedRecord | undefined>((resolve, reject) => {
      this.queue.push({ event, fields, resolve, reject });
      this.schedule();
    }) as Promise<KeyedRecord>;
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

  /** Writes an `audit_close` record (best effort), anchors it, closes the file and drops the lock. */
  async close(fields: AuditFields = {}): Promise<void> {
    if (this.closed) return;
    try {
      await this.append('audit_close', fields);
    } catch {
      // Closing anyway: the failure was already reported when it happened.
    }
    this.closed = true;
    await this.anchorWriter?.idle();
    try {
      await this.fh.close();
    } finally {
      this.lock.release();
    }
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
    try {
      await this.checkSameFile();
      if (wasFailed) {
        // Cut off anything a failed batch may have left half-written, then say so in the chain.
        await this.fh.truncate(this.goodSize);
      }
      // Chained inside the token, one lease for the whole batch (pure, so safe to retry). Each
      // mac is a synchronous token call (tens of µs): a long batch yields the event loop now and then.
      const { records, chained, head } = await this.key.withMac(async (mac) => {
        const records: KeyedRecord[] = [];
        let head = this.head;
        if (wasFailed) {
          const resumed = chainKeyedRecord(head, now, 'audit_resumed', {
            failed_at: this.failedAt?.toISOString() ?? null,
            error: String(errCode(this.failure)),
          }, mac);
          records.push(resumed);
          head = resumed;
        }
        const chained: (KeyedRecord | undefined)[] = [];
        for (const [i, p] of batch.entries()) {
          if (p.event === undefined) {
            chained.push(records[0]);
            continue;
          }
          if (i > 0 && i % MAC_YIELD_EVERY === 0) await new Promise<void>((resolve) => setImmediate(resolve));
          const r = chainKeyedRecord(head, now, p.event, p.fields, mac);
          records.push(r);
          chained.push(r);
          head = r;
        }
        return { records, chained, head: { chain: head.chain, seq: head.seq, mac: head.mac } };
      });
      const bytes = Buffer.from(records.map((r) => `${JSON.stringify(r)}\n`).join(''), 'utf8');
      let off = 0;
      while (off < bytes.length) {
        const { bytesWritten } = await this.fh.write(bytes, off, bytes.length - off);
        off += bytesWritten;
      }
      await this.fh.datasync();
      this.head = head;
      this.goodSize += bytes.length;
      this.anchorWriter?.note(head);
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

  /**
   * Our heads only grow, so a stored head as far as ours was written by someone else: a copy
   * of this log goes on elsewhere. No record is written after that; a restart runs the start
   * check, which then names the fork.
   */
  private forked(head: AuditHead): void {
    if (this.replaced) return;
    this.replaced = true;
    const err = new AuditUnavailableError(
      `audit chain ${head.chain} is continued by another writer too (the ledger already holds a head at or past record ${head.seq}): ` +
        'a copy of this log goes on elsewhere; keep both, see "When the audit log and the ledger disagree" in the README',
    );
    this.onAlarm?.('audit_chain_forked', { file: this.path, chain: head.chain, seq: head.seq });
    if (this.failure === undefined) {
      this.failure = err;
      this.failedAt = this.clock();
      this.onStateChange?.(false, err);
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
    if (st.size < this.goodSize) {
      // Durable records are gone: someone cut the file under the daemon. Never written again.
      this.replaced = true;
      this.onAlarm?.('audit_log_cut', { file: this.path, size: st.size, written: this.goodSize });
      throw new AuditUnavailableError(
        `audit log was cut under the daemon (${st.size} bytes, ${this.goodSize} written): keep it as evidence, run 'musig2-signer audit verify', restart`,
      );
    }
  }
}

interface Tail {
  /** The last complete line, without its newline; undefined when there is none. */
  lastLine: string | undefined;
  /** Offset just past the last newline: where the complete lines end. */
  end: number;
  /** Bytes after the last newline (a torn write). */
  tornBytes: number;
}

async function readTail(fh: FileHandle, size: number, path: string): Promise<Tail> {
  if (size === 0) return { lastLine: undefined, end: 0, tornBytes: 0 };
  const lastNl = await lastNewline(fh, size, size - MAX_TORN_BYTES - 1);
  if (lastNl < 0 && size > MAX_TORN_BYTES) {
    throw corrupt(path, `no newline in the last ${MAX_TORN_BYTES} bytes, far more than a torn write leaves`);
  }
  const end = lastNl + 1;
  if (lastNl < 0) return { lastLine: undefined, end: 0, tornBytes: size };
  const prev = await lastNewline(fh, lastNl, lastNl - MAX_LAST_LINE);
  if (prev < 0 && lastNl > MAX_LAST_LINE) throw corrupt(path, 'the last line is too long');
  const start = prev + 1;
  const buf = Buffer.alloc(lastNl - start);
  await fh.read(buf, 0, buf.length, start);
  return { lastLine: buf.toString('utf8'), end, tornBytes: size - end };
}

/** Offset of the last newline before `before` (and not before `floor`), or -1. */
async function lastNewline(fh: FileHandle, before: number, floor = 0): Promise<number> {
  const buf = Buffer.alloc(TAIL_BYTES);
  for (let hi = before; hi > Math.max(floor, 0); ) {
    const lo = Math.max(hi - TAIL_BYTES, Math.max(floor, 0));
    const { bytesRead } = await fh.read(buf, 0, hi - lo, lo);
    const at = buf.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (at >= 0) return lo + at;
    hi = lo;
  }
  return -1;
}

const corrupt = (path: string, why: string) =>
  new AuditLogCorruptError(`audit log ${path}: ${why}; run 'musig2-signer audit verify ${path}', then move the file aside`);

/** Parses the last complete line and checks its mac in the token: the head the chain goes on from. */
async function checkLastLine(line: string, path: string, key: AuditKey): Promise<AuditHead> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    throw corrupt(path, 'the last line is not valid JSON');
  }
  const r = parsed as Record<string, unknown>;
  if (typeof r === 'object' && r !== null && r.mac === undefined && r.hash !== undefined) {
    throw new AuditLogCorruptError(
      `audit log ${path} holds unkeyed (v1) records, which this daemon does not continue: check it with ` +
        `'musig2-signer audit verify --legacy-unkeyed ${path}', keep it, and start with a new file (a new keyed chain)`,
    );
  }
  const shape = checkKeyedRecord(parsed);
  if (shape !== undefined) throw corrupt(path, `the last line is bad: ${shape}`);
  if ((await key.ensure(false)) === 'missing') {
    throw new AuditLogCorruptError(
      `audit log ${path} is keyed, but the token has no audit MAC key: it cannot be checked or continued ` +
        '(the wrong token, or the key was deleted); start with a new file only after finding out why',
    );
  }
  const why = await key.withMac((mac) => checkKeyedRecord(parsed, mac));
  if (why !== undefined) throw corrupt(path, `the last line is bad: ${why}`);
  const k = parsed as KeyedRecord;
  return { chain: k.chain, seq: k.seq, mac: k.mac };
}

/**
 * The `seq` and `mac` of the record `back` lines before the last complete one (which ends at
 * `end`), or undefined when that is further back than open() looks.
 */
async function macLinesBack(fh: FileHandle, end: number, back: number): Promise<{ seq: unknown; mac: unknown } | undefined> {
  if (back > MAX_ANCHOR_SCAN_LINES) return undefined;
  let lineEnd = end - 1;
  for (let i = 0; i <= back; i++) {
    const prev = await lastNewline(fh, lineEnd, lineEnd - MAX_LAST_LINE);
    if (prev < 0 && (lineEnd > MAX_LAST_LINE || i < back)) return undefined;
    if (i === back) {
      const buf = Buffer.alloc(lineEnd - prev - 1);
      await fh.read(buf, 0, buf.length, prev + 1);
      try {
        const r = JSON.parse(buf.toString('utf8')) as Record<string, unknown>;
        return { seq: r.seq, mac: r.mac };
      } catch {
        return { seq: undefined, mac: undefined };
      }
    }
    lineEnd = prev;
  }
  return undefined;
}

async function checkAnchor(
  path: string,
  head: AuditHead,
  anchor: AuditAnchorStore,
  linesBack: (back: number) => Promise<{ seq: unknown; mac: unknown } | undefined>,
): Promise<void> {
  const known = await anchor.auditHead(head.chain);
  if (known === null) return;
  const a = { chain: head.chain, ...known };
  if (known.seq > head.seq) {
    throw new AuditAnchorError(
      `audit log ${path} ends at record ${head.seq}, but the ledger saw record ${known.seq} of this chain (${head.chain}) ` +
        'durable: records were cut from the end. Refusing to start. Keep the file as evidence; see "When the audit log and the ledger disagree" in the README',
      head,
      a,
    );
  }
  // The anchor lags the file by the last few records at most: look at the anchored one.
  const there = known.seq === head.seq ? head : await linesBack(head.seq - known.seq);
  if (there !== undefined && (there.seq !== known.seq || there.mac !== known.mac)) {
    throw new AuditAnchorError(
      `audit log ${path}: record ${known.seq} of chain ${head.chain} is not the one the ledger recorded (another mac): ` +
        'the log was replaced or rewritten, or a copy of it went on separately (a fork). Refusing to start. Keep the file as evidence; see "When the audit log and the ledger disagree" in the README',
      head,
      a,
    );
  }
}

/** Moves the torn bytes after the last newline to FILE.torn-<time>, durably; fields for the record saying so. */
async function moveTornTail(fh: FileHandle, path: string, end: number, tornBytes: number, clock: () => Date): Promise<AuditFields> {
  const torn = Buffer.alloc(tornBytes);
  await fh.read(torn, 0, tornBytes, end);
  const aside = `${path}.torn-${clock().toISOString().replace(/[:.]/g, '-')}`;
  const out = await open(aside, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o640);
  try {
    await out.writeFile(torn);
    await out.sync();
  } finally {
    await out.close();
  }
  await syncDir(dirname(path));
  await fh.truncate(end);
  await fh.datasync();
  return { torn_bytes: tornBytes, torn_sha256: createHash('sha256').update(torn).digest('hex'), moved_to: basename(aside) };
}

/** Writes the latest head to the anchor store, one write at a time; a failure waits for the next head. */
class AnchorWriter {
  private latest: AuditHead | undefined;
  private writtenSeq = 0;
  private running: Promise<void> | undefined;
  /** The last write failed: reported once, not for every head until one succeeds. */
  private failing = false;

  constructor(
    private readonly store: AuditAnchorStore,
    private readonly onError: ((err: unknown) => void) | undefined,
    private readonly onForked: (head: AuditHead) => void,
  ) {}

  note(head: AuditHead): void {
    this.latest = head;
    this.running ??= this.loop().finally(() => {
      this.running = undefined;
    });
  }

  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async loop(): Promise<void> {
    while (this.latest !== undefined && this.latest.seq > this.writtenSeq) {
      const head = this.latest;
      try {
        const moved = await this.store.recordAuditHead(head);
        this.writtenSeq = head.seq;
        this.failing = false;
        if (!moved) {
          this.onForked(head);
          return;
        }
      } catch (err) {
        if (!this.failing) this.onError?.(err);
        this.failing = true;
        return;
      }
    }
  }
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
