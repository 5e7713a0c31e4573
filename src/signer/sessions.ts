// In-memory NonceGen sessions (DESIGN.md section 3). The secnonce lives here and nowhere
// else: never logged, never written, wiped when taken for signing, on expiry and on close.
//
// Two maps: `open` holds sessions that still carry a secnonce, and is what the cap counts;
// `retired` holds consumed or expired sessions, which carry no secret, so an identical
// retry gets its answer (or a precise refusal) without a ledger round trip. Retired
// sessions are dropped after a retention period, or oldest-first beyond a size bound; the
// ledger still answers for them after that.

export type SessionState =
  /** Holds its secnonce; Sign may use it. */
  | 'open'
  /** The secnonce was taken by a Sign call that is still running. */
  | 'signing'
  /** Signed: `psig` is the answer to an identical retry. */
  | 'signed'
  /** A Sign attempt failed after taking the secnonce; the session can never sign. */
  | 'failed'
  /** The TTL passed before Sign; the secnonce was wiped. */
  | 'expired';

/** Sizes of a session's fixed-size fields. */
export const SECNONCE_BYTES = 97;
export const SESSION_ID_BYTES = 32;
export const PUBNONCE_BYTES = 66;
export const BINDING_BYTES = 32;

// Where each field lives in a session's one buffer.
const SECNONCE_AT = 0;
const SESSION_ID_AT = SECNONCE_AT + SECNONCE_BYTES;
const PUBNONCE_AT = SESSION_ID_AT + SESSION_ID_BYTES;
const BINDING_AT = PUBNONCE_AT + PUBNONCE_BYTES;
export const SESSION_BUFFER_BYTES = BINDING_AT + BINDING_BYTES;

export interface NewSession {
  readonly sessionId: Uint8Array;
  readonly keyId: string;
  readonly pubnonce: Uint8Array;
  /** bindingDigest(key, pubkeys, tweaks, message-if-given) from NonceGen. */
  readonly binding: Uint8Array;
  /** True when NonceGen was given a message (and `binding` covers it). */
  readonly messageBound: boolean;
  readonly expiresAt: number;
  /** Moved in: copied into the session, then this buffer is zeroed. */
  readonly secnonce: Uint8Array;
  /** The client that opened it (for the per-client cap), if known. */
  readonly owner?: string;
}

const isBytes = (b: Uint8Array, n: number): boolean => b instanceof Uint8Array && b.length === n;

/**
 * One NonceGen session. Its fixed-size bytes share ONE buffer (secnonce || session id ||
 * pubnonce || binding, 227 bytes): each small Uint8Array of its own would cost an ArrayBuffer,
 * a view and a backing store, several times its bytes, and the cap allows many open sessions
 * (issue 5: at most 1 KiB each). The getters hand out views of that buffer, made on demand.
 */
export class Session {
  /** The session id in hex: the store's key, and what logs show. */
  readonly idHex: string;
  readonly keyId: string;
  /** True when NonceGen was given a message (and `binding` covers it). */
  readonly messageBound: boolean;
  readonly expiresAt: number;
  readonly owner: string | undefined;
  state: SessionState = 'open';
  /** Context digest of the first Sign attempt. */
  digest: Uint8Array | null = null;
  psig: Uint8Array | null = null;
  psigStored = false;
  retainUntil: number;
  /**
   * secnonce || sessionId || pubnonce || binding. The secnonce part is live only while the
   * state is 'open' (and, after take(), until the taker wipes it); it is zeroed otherwise.
   * Exposed for tests; nothing else reads it.
   */
  readonly buffer: Uint8Array;

  constructor(s: NewSession) {
    if (
      !isBytes(s.secnonce, SECNONCE_BYTES) ||
      !isBytes(s.sessionId, SESSION_ID_BYTES) ||
      !isBytes(s.pubnonce, PUBNONCE_BYTES) ||
      !isBytes(s.binding, BINDING_BYTES)
    ) {
      if (s.secnonce instanceof Uint8Array) s.secnonce.fill(0);
      throw new RangeError('session fields have the wrong sizes');
    }
    const buf = new Uint8Array(SESSION_BUFFER_BYTES);
    buf.set(s.secnonce, SECNONCE_AT);
    s.secnonce.fill(0);
    buf.set(s.sessionId, SESSION_ID_AT);
    buf.set(s.pubnonce, PUBNONCE_AT);
    buf.set(s.binding, BINDING_AT);
    this.buffer = buf;
    this.idHex = Buffer.from(buf.buffer, SESSION_ID_AT, SESSION_ID_BYTES).toString('hex');
    this.keyId = s.keyId;
    this.messageBound = s.messageBound;
    this.expiresAt = s.expiresAt;
    this.owner = s.owner;
    this.retainUntil = s.expiresAt;
  }

  get sessionId(): Uint8Array {
    return this.buffer.subarray(SESSION_ID_AT, SESSION_ID_AT + SESSION_ID_BYTES);
  }

  get pubnonce(): Uint8Array {
    return this.buffer.subarray(PUBNONCE_AT, PUBNONCE_AT + PUBNONCE_BYTES);
  }

  get binding(): Uint8Array {
    return this.buffer.subarray(BINDING_AT, BINDING_AT + BINDING_BYTES);
  }

  /** The secnonce while the session is open (a view, never a copy); null otherwise. */
  get secnonce(): Uint8Array | null {
    return this.state === 'open' ? this.buffer.subarray(SECNONCE_AT, SECNONCE_AT + SECNONCE_BYTES) : null;
  }

  /** Zero the secnonce part. */
  wipe(): void {
    this.buffer.fill(0, SECNONCE_AT, SECNONCE_AT + SECNONCE_BYTES);
  }
}

export interface SessionStoreOptions {
  /** Cap on open sessions (with reservations for NonceGen calls in progress). */
  readonly maxOpen: number;
  /** Cap on the open sessions (and reservations) of one client. Default: maxOpen. */
  readonly maxOpenPerOwner?: number;
  /** Bound on retired sessions kept for retries. */
  readonly maxRetired: number;
  /** How long a retired session is kept past its expiry. */
  readonly retentionMs: number;
  readonly now: () => number;
}

export class SessionStore {
  private readonly open = new Map<string, Session>();
  private readonly retired = new Map<string, Session>();
  private reserved = 0;
  /** Open sessions and reservations per client. */
  private readonly perOwner = new Map<string, number>();

  constructor(private readonly opts: SessionStoreOptions) {}

  /** Sessions holding a secnonce. */
  openCount(): number {
    return this.open.size;
  }

  /** Open sessions (and reservations) of one client. */
  ownerCount(owner: string): number {
    return this.perOwner.get(owner) ?? 0;
  }

  /**
   * Claim a slot under the caps before the (async) NonceGen work: 'full' when the daemon's cap
   * is reached, 'owner_full' when this client's is.
   */
  tryReserve(owner?: string): 'ok' | 'full' | 'owner_full' {
    if (owner !== undefined && this.ownerCount(owner) >= (this.opts.maxOpenPerOwner ?? this.opts.maxOpen)) return 'owner_full';
    if (this.open.size + this.reserved >= this.opts.maxOpen) return 'full';
    this.reserved++;
    if (owner !== undefined) this.perOwner.set(owner, this.ownerCount(owner) + 1);
    return 'ok';
  }

  cancelReservation(owner?: string): void {
    this.reserved--;
    this.release(owner);
  }

  /** Turn a reservation (made with the session's owner) into an open session. */
  addReserved(session: Session): void {
    this.reserved--;
    this.open.set(session.idHex, session);
  }

  private release(owner: string | undefined): void {
    if (owner === undefined) return;
    const n = this.ownerCount(owner) - 1;
    if (n <= 0) this.perOwner.delete(owner);
    else this.perOwner.set(owner, n);
  }

  get(idHex: string): Session | undefined {
    return this.open.get(idHex) ?? this.retired.get(idHex);
  }

  /**
   * Take the secnonce out of an open session for signing. Synchronous, so two concurrent
   * Sign calls can never both obtain it. The caller must wipe the returned buffer.
   */
  take(session: Session, digest: Uint8Array): Uint8Array {
    const secnonce = session.secnonce; // a view of the session's buffer: the caller's wipe zeroes it there
    if (secnonce === null) throw new Error('session is not open');
    session.state = 'signing';
    session.digest = digest;
    this.retire(session);
    return secnonce;
  }

  /** Wipe an open session's secnonce and mark it expired. */
  expire(session: Session): void {
    if (session.state !== 'open') return;
    session.wipe();
    session.state = 'expired';
    this.retire(session);
  }

  /** Expire open sessions past their TTL and drop retired ones past retention. Returns how many expired. */
  sweep(): number {
    const now = this.opts.now();
    let expired = 0;
    for (const s of this.open.values()) {
      if (now >= s.expiresAt) {
        this.expire(s);
        expired++;
      }
    }
    for (const [id, s] of this.retired) if (now >= s.retainUntil) this.retired.delete(id);
    return expired;
  }

  /** Wipe every secnonce and forget every session. */
  clear(): void {
    for (const s of this.open.values()) {
      s.wipe();
      s.state = 'expired';
    }
    this.open.clear();
    this.retired.clear();
    this.perOwner.clear();
  }

  private retire(session: Session): void {
    if (this.open.delete(session.idHex)) this.release(session.owner);
    session.retainUntil = Math.max(session.expiresAt, this.opts.now()) + this.opts.retentionMs;
    this.retired.set(session.idHex, session);
    // Maps iterate in insertion order: the first entries are the longest retired.
    for (const id of this.retired.keys()) {
      if (this.retired.size <= this.opts.maxRetired) break;
      this.retired.delete(id);
    }
  }
}
