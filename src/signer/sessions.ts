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

export interface Session {
  readonly idHex: string;
  readonly sessionId: Uint8Array;
  readonly keyId: string;
  readonly pubnonce: Uint8Array;
  /** bindingDigest(key, pubkeys, tweaks, message-if-given) from NonceGen. */
  readonly binding: Uint8Array;
  /** True when NonceGen was given a message (and `binding` covers it). */
  readonly messageBound: boolean;
  readonly expiresAt: number;
  state: SessionState;
  secnonce: Uint8Array | null;
  /** Context digest of the first Sign attempt. */
  digest: Uint8Array | null;
  psig: Uint8Array | null;
  psigStored: boolean;
  retainUntil: number;
}

export interface SessionStoreOptions {
  /** Cap on open sessions (with reservations for NonceGen calls in progress). */
  readonly maxOpen: number;
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

  constructor(private readonly opts: SessionStoreOptions) {}

  /** Sessions holding a secnonce. */
  openCount(): number {
    return this.open.size;
  }

  /** Claim a slot under the cap before the (async) NonceGen work; false when full. */
  tryReserve(): boolean {
    if (this.open.size + this.reserved >= this.opts.maxOpen) return false;
    this.reserved++;
    return true;
  }

  cancelReservation(): void {
    this.reserved--;
  }

  /** Turn a reservation into an open session. */
  addReserved(session: Session): void {
    this.reserved--;
    this.open.set(session.idHex, session);
  }

  get(idHex: string): Session | undefined {
    return this.open.get(idHex) ?? this.retired.get(idHex);
  }

  /**
   * Take the secnonce out of an open session for signing. Synchronous, so two concurrent
   * Sign calls can never both obtain it. The caller must wipe the returned buffer.
   */
  take(session: Session, digest: Uint8Array): Uint8Array {
    const secnonce = session.secnonce;
    if (session.state !== 'open' || secnonce === null) throw new Error('session is not open');
    session.secnonce = null;
    session.state = 'signing';
    session.digest = digest;
    this.retire(session);
    return secnonce;
  }

  /** Wipe an open session's secnonce and mark it expired. */
  expire(session: Session): void {
    if (session.state !== 'open') return;
    session.secnonce?.fill(0);
    session.secnonce = null;
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
      s.secnonce?.fill(0);
      s.secnonce = null;
      s.state = 'expired';
    }
    this.open.clear();
    this.retired.clear();
  }

  private retire(session: Session): void {
    this.open.delete(session.idHex);
    session.retainUntil = Math.max(session.expiresAt, this.opts.now()) + this.opts.retentionMs;
    this.retired.set(session.idHex, session);
    // Maps iterate in insertion order: the first entries are the longest retired.
    for (const id of this.retired.keys()) {
      if (this.retired.size <= this.opts.maxRetired) break;
      this.retired.delete(id);
    }
  }
}
