// The nonce ledger contract (DESIGN.md section 3). One interface, several back ends: the
// embedded SQLite ledger now, a shared PostgreSQL ledger later. Every method is async so a
// networked database fits without changing callers, and every method either commits
// durably before it resolves or rejects: callers sign only after a resolved write.
// An implementation may group-commit concurrent writes, provided each call's outcome is the
// one it would get if the calls had run one at a time in submission order.

/** How a nonce was produced: NonceGen (random) or DeterministicSign. */
export type NoncePath = 'random' | 'deterministic';

/** One ledger row, keyed by its pubnonce. */
export interface NonceRecord {
  readonly keyId: string;
  readonly pubnonce: Uint8Array; // 66 bytes, unique across the ledger
  readonly sessionId: Uint8Array | null; // 32 bytes on the random path, null on the deterministic path
  readonly path: NoncePath;
  readonly createdAtMs: number;
  readonly usedAtMs: number | null;
  readonly digest: Uint8Array | null; // 32-byte signing-context digest, set when used
  readonly psig: Uint8Array | null; // 32 bytes, set once the signature is stored
}

/** An audit chain's head: its 32-hex-digit id, last sequence number and last mac (64 hex digits). */
export interface AuditHeadRecord {
  readonly chain: string;
  readonly seq: number;
  readonly mac: string;
}

/** Outcome of {@link NonceLedger.markUsed}. */
export type MarkUsedResult =
  /** The nonce went from unused to used with this digest, and that is committed. */
  | { readonly outcome: 'marked' }
  /**
   * The nonce was already used with the same digest: a retry. `psig` is the stored partial
   * signature, or null when the earlier attempt has not stored one (in flight, or crashed).
   */
  | { readonly outcome: 'replay'; readonly psig: Uint8Array | null };

/** Outcome of {@link NonceLedger.recordDeterministic}. */
export type RecordDeterministicResult =
  | { readonly outcome: 'recorded' }
  /** The same pubnonce was already recorded with the same digest; `psig` is the stored one. */
  | { readonly outcome: 'replay'; readonly psig: Uint8Array };

/**
 * A velocity charge (signing policy): `amount` sats to the window (keyId, rule, periodStart),
 * at most once per txid, and only if the window's total stays within `limit`.
 */
export interface VelocityChargeEntry {
  readonly keyId: string;
  readonly rule: string;
  /** Start of the window, Unix seconds. */
  readonly periodStart: number;
  /** Sats, 0 to 2^53 - 1. */
  readonly amount: bigint;
  readonly limit: bigint;
  /** 32-byte unsigned transaction id: a retry of the same transaction is not charged again. */
  readonly txid: Uint8Array;
}

export interface NonceLedger {
  /**
   * NonceGen: insert an unused random-path row. Must resolve before the pubnonce is released.
   * @throws NonceCollisionError if the pubnonce already exists (the RNG failed)
   * @throws LedgerUnavailableError on any database failure
   */
  recordNonce(entry: { keyId: string; pubnonce: Uint8Array; sessionId: Uint8Array }): Promise<void>;

  /**
   * Sign: one conditional update from unused to used, recording the context digest, committed
   * before the signature is computed.
   * @throws NonceReuseError if the nonce is already used with another digest
   * @throws NonceNotRecordedError if the pubnonce is unknown
   * @throws LedgerUnavailableError on any database failure
   */
  markUsed(pubnonce: Uint8Array, digest: Uint8Array): Promise<MarkUsedResult>;

  /**
   * Sign: store the partial signature of a nonce marked used with this digest. Idempotent for
   * the same psig.
   * @throws LedgerError if the row is not used with this digest or holds another psig
   * @throws LedgerUnavailableError on any database failure
   */
  storePsig(pubnonce: Uint8Array, digest: Uint8Array, psig: Uint8Array): Promise<void>;

  /**
   * DeterministicSign: record (pubnonce, digest, psig) as used, committed before the reply.
   * @throws NonceReuseError if the pubnonce is recorded with another digest (or on the random path)
   * @throws LedgerUnavailableError on any database failure
   */
  recordDeterministic(entry: {
    keyId: string;
    pubnonce: Uint8Array;
    digest: Uint8Array;
    psig: Uint8Array;
  }): Promise<RecordDeterministicResult>;

  /**
   * Sats charged to a velocity window, leaving out `excludeTxid`'s own charge (so a retry of a
   * transaction already charged is judged as it was the first time).
   * @throws LedgerUnavailableError on any database failure
   */
  spentInPeriod(keyId: string, rule: string, periodStart: number, excludeTxid?: Uint8Array): Promise<bigint>;

  /**
   * PsbtSign under a velocity rule: markUsed for every nonce AND the charge, in ONE transaction,
   * committed before any signature is computed. The charge is checked against its limit in the
   * database (so concurrent calls and replicas cannot overspend) and made once per txid.
   * @throws VelocityExceededError (nothing marked, nothing charged) when the window has no room
   * @throws NonceReuseError / NonceNotRecordedError as markUsed (nothing marked, nothing charged)
   * @throws LedgerUnavailableError on any database failure
   */
  markUsedCharging(marks: readonly { pubnonce: Uint8Array; digest: Uint8Array }[], charge: VelocityChargeEntry): Promise<MarkUsedResult[]>;

  /**
   * PsbtDeterministicSign under a velocity rule: recordDeterministic for every entry AND the
   * charge, in ONE transaction, as markUsedCharging.
   * @throws VelocityExceededError (nothing recorded, nothing charged) when the window has no room
   */
  recordDeterministicCharging(
    entries: readonly { keyId: string; pubnonce: Uint8Array; digest: Uint8Array; psig: Uint8Array }[],
    charge: VelocityChargeEntry,
  ): Promise<RecordDeterministicResult[]>;

  /** The row for a pubnonce, or null. */
  findByPubnonce(pubnonce: Uint8Array): Promise<NonceRecord | null>;

  /** The random-path row for a session id, or null. */
  findBySession(sessionId: Uint8Array): Promise<NonceRecord | null>;

  /**
   * The audit log's anchor: the last head (sequence number and mac) of an audit chain that the
   * daemon saw durable, so a log cut at the end is caught at the next start (src/audit/log.ts).
   * Records `head` unless the stored head of that chain is already as far or further (heads only
   * move forward); resolves true when it recorded it, false when the stored head was as far or
   * further. May ride the ledger's group commit; a lost last write only leaves the anchor
   * behind, which is the safe direction.
   * @throws LedgerUnavailableError on any database failure
   */
  recordAuditHead(head: AuditHeadRecord): Promise<boolean>;

  /** The anchored head of an audit chain, or null. */
  auditHead(chain: string): Promise<{ seq: number; mac: string } | null>;

  /**
   * True when the ledger can take its write lock right now and, if the last write failed
   * (I/O error, disk full), a probe write now succeeds. Cheap and non-blocking: it never
   * waits for a lock held elsewhere. Never throws.
   */
  healthy(): Promise<boolean>;

  /** Flush pending writes and close. Later calls reject with LedgerUnavailableError. */
  close(): Promise<void>;
}
