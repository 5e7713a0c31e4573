// The signing service for transactions (BIP373 PSBTs): PsbtNonceGen, PsbtSign and
// PsbtDeterministicSign over the keystore, the nonce ledger and the compute pool, independent of
// gRPC. src/psbt finds the inputs the key takes part in, checks their fields and computes each
// sighash; this file keeps the nonce rules of service.ts, per input and across inputs:
//
// - PsbtNonceGen makes one nonce per input (the input's sighash is the BIP327 message, its tweaked
//   key the aggregate key) and records every pubnonce in the ledger before any leaves.
// - One session holds the secnonces of all its inputs, bound to the plan (per input: index,
//   participants, tweaks and sighash). PsbtSign recomputes the plan; if it differs, the whole
//   session is burned (secnonces wiped, never usable again) and the call refused.
// - PsbtSign takes every secnonce out of memory synchronously (before its first await), marks
//   EVERY nonce used in the ledger before computing ANY partial signature, and releases the
//   partial signatures only when all are computed, self-verified and stored. A failure at any
//   step leaves the session failed: no nonce can ever sign a second, different context, because
//   each one is marked used with its context before it signs and is wiped afterwards.
// - PsbtDeterministicSign records every (pubnonce, context, psig) before replying.
//
// Ledger rows: position k of a session's inputs (ascending input index) is recorded under the
// session id itself for k = 0 and under a tagged hash of (session id, k) otherwise (the ledger
// keeps session ids unique). Row 0 tells the session's key (access rules on PsbtSign) and the rows
// answer an identical retry after the session left memory.

import { sha256 } from '@noble/hashes/sha2.js';
import { pino, type Logger } from 'pino';
import * as musig2 from '../musig2/index.js';
import type { NonceGenOutput, Tweak } from '../musig2/index.js';
import {
  DEFAULT_PSBT_LIMITS,
  PsbtError,
  allNonces,
  decodePsbt,
  minimalPsbtWith,
  otherNonces,
  planSigning,
  type MusigInputPlan,
  type PsbtLimits,
  type SigningPlan,
} from '../psbt/index.js';
import { LedgerError, NonceCollisionError, NonceReuseError, VelocityExceededError, type MarkUsedResult, type NonceLedger, type RecordDeterministicResult } from '../ledger/index.js';
import type { Approval } from '../policy/index.js';
import { allowedAuditFields } from './policy-gate.js';
import type { PolicyGate, PsbtAllowed } from './policy-gate.js';
import { ComputePool } from './compute-pool.js';
import { bindingDigest, contextDigest } from './digest.js';
import { SignerError, toSignerError } from './errors.js';
import type { AlarmKind, SignerCounters, SignerKeystore } from './service.js';
import { DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_TTL_MS } from './service.js';
import type { SessionState } from './sessions.js';
import { checkKeyId, checkSessionId } from './validate.js';

export interface PsbtServiceOptions {
  keystore: SignerKeystore;
  ledger: NonceLedger;
  /** Caps on a PSBT (size, inputs, outputs). Default DEFAULT_PSBT_LIMITS. */
  limits?: Partial<PsbtLimits>;
  /** How long a PsbtNonceGen session may wait for PsbtSign. Default 300_000 (5 min). */
  sessionTtlMs?: number;
  /**
   * Cap on secret nonces held by open PSBT sessions (one per input): PsbtNonceGen past it gets
   * RESOURCE_EXHAUSTED. Default 10_000.
   */
  maxOpenNonces?: number;
  sweepIntervalMs?: number;
  logger?: Logger;
  now?: () => number;
  /** Shared with SignerService, so metrics count both kinds of call together. */
  counters?: SignerCounters;
  onAlarm?: (kind: AlarmKind, details: Record<string, string>) => void;
  compute?: ComputePool;
  /**
   * The signing policy: run on PsbtNonceGen (no nonce for a refused transaction) and again on
   * PsbtSign and PsbtDeterministicSign; a velocity charge is made in the ledger transaction
   * that marks the nonces used or records the deterministic signatures.
   */
  policy?: PolicyGate;
}

export interface PsbtNonceGenRequest {
  keyId: string;
  psbt: Uint8Array;
  /** Approver signatures for the policy (approvalMessage(txid, policy hash)). */
  approvals?: readonly Approval[];
}
export interface PsbtNonceGenResult {
  sessionId: Uint8Array;
  /** Minimal PSBT: this key's 0x1b per input it takes part in. */
  psbt: Uint8Array;
  expiresAtUnixMs: number;
  inputs: number[];
  /** Under a policy: the rule that allowed the transaction and its amounts, for the audit record. */
  policy?: Record<string, string>;
}
export interface PsbtSignRequest {
  sessionId: Uint8Array;
  psbt: Uint8Array;
  approvals?: readonly Approval[];
}
export interface PsbtSignResult {
  /** Minimal PSBT: this key's 0x1c per input. */
  psbt: Uint8Array;
  inputs: number[];
  /** Under a policy: the rule that allowed the transaction and its amounts, for the audit record. */
  policy?: Record<string, string>;
}
export interface PsbtDeterministicSignRequest {
  keyId: string;
  psbt: Uint8Array;
  approvals?: readonly Approval[];
}
export type PsbtDeterministicSignResult = PsbtSignResult;

const SECNONCE_BYTES = 97;
const PUBNONCE_BYTES = 66;
const BINDING_BYTES = 32;
const SLOT_BYTES = SECNONCE_BYTES + PUBNONCE_BYTES + BINDING_BYTES;
/** keystore.random() hands out at most this many bytes per call. */
const RANDOM_CHUNK_BYTES = 1 << 15;

/** Most computations one PSBT call has queued or running at once: a PSBT of any size stays within
 * the per-client compute quota, and leaves room for the client's other calls. */
const PSBT_COMPUTE_WIDTH = 8;

/** Promise.allSettled over `items`, with at most `width` of `fn` running at a time, in order. */
async function settleBounded<T, R>(items: readonly T[], width: number, fn: (item: T, index: number) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  const out: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const run = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = { status: 'fulfilled', value: await fn(items[i]!, i) };
      } catch (reason) {
        out[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, run));
  return out;
}

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const equal = (a: Uint8Array | null | undefined, b: Uint8Array) => a != null && Buffer.compare(a, b) === 0;

const LEDGER_SESSION_TAG = sha256(new TextEncoder().encode('musig2-signer/psbt-session/v1'));

/** The ledger session id of position k of a PSBT session (k = 0 is the session id itself). */
export function ledgerSessionId(sessionId: Uint8Array, k: number): Uint8Array {
  if (k === 0) return sessionId.slice();
  const pos = new Uint8Array(4);
  new DataView(pos.buffer).setUint32(0, k);
  return sha256.create().update(LEDGER_SESSION_TAG).update(LEDGER_SESSION_TAG).update(sessionId).update(pos).digest();
}

/** What a session's input k is bound to: key, participants, tweaks and sighash (which commits to the index and leaf). */
function inputBinding(keyId: string, p: MusigInputPlan): Uint8Array {
  return bindingDigest(keyId, p.participants, p.tweaks, p.sighash);
}

/** A refusal that names the input (and the participant) at fault, with ErrorInfo. */
export function psbtRefusal(
  code: 'INVALID_ARGUMENT' | 'FAILED_PRECONDITION',
  reason: string,
  message: string,
  where: { input?: number; participant?: Uint8Array | string; contribution?: string } = {},
): SignerError {
  const metadata: Record<string, string> = {};
  if (where.input !== undefined) metadata.input = String(where.input);
  if (where.participant !== undefined) metadata.participant = typeof where.participant === 'string' ? where.participant : hex(where.participant);
  if (where.contribution !== undefined) metadata.contribution = where.contribution;
  const prefix = where.input === undefined ? 'psbt' : `psbt input ${where.input}`;
  return new SignerError(code, `${prefix}: ${message}`, { field: 'psbt', errorInfo: { reason, metadata } });
}

/** The contribution a PsbtError blames its participant for, in the words of INVALID_CONTRIBUTION. */
const CONTRIBUTION: Record<string, string> = {
  BAD_NONCE: 'pubnonce',
  CONFLICTING_NONCE: 'pubnonce',
  MISSING_NONCE: 'pubnonce',
  BAD_PARTIAL_SIG: 'psig',
  CONFLICTING_PARTIAL_SIG: 'psig',
};

/**
 * A PsbtError from src/psbt as an INVALID_ARGUMENT whose ErrorInfo has the reason, the input
 * and, when one participant is to blame, the participant and its contribution. Its message
 * already names the input.
 */
export function fromPsbtError(err: PsbtError): SignerError {
  const metadata: Record<string, string> = {};
  if (err.inputIndex !== undefined) metadata.input = String(err.inputIndex);
  if (err.participant !== undefined) {
    metadata.participant = err.participant;
    const contribution = CONTRIBUTION[err.reason];
    if (contribution) metadata.contribution = contribution;
  }
  return new SignerError('INVALID_ARGUMENT', `psbt: ${err.message}`, { field: 'psbt', errorInfo: { reason: err.reason, metadata } });
}

/** One PsbtNonceGen session: per input a secnonce, its pubnonce and its binding, in one buffer. */
class PsbtSession {
  readonly idHex: string;
  state: SessionState = 'open';
  /** Set when a changed transaction destroyed the nonces. */
  burned = false;
  /** Per-input context digests of the first PsbtSign attempt. */
  digests: Uint8Array[] | null = null;
  psigs: Uint8Array[] | null = null;
  psigStored = false;
  retainUntil: number;
  /** Per input: secnonce (97) || pubnonce (66) || binding (32). */
  private readonly buffer: Uint8Array;

  constructor(
    readonly sessionId: Uint8Array,
    readonly keyId: string,
    readonly publicKey: Uint8Array,
    /** Input indices, ascending: position k in every per-input list is input inputs[k]. */
    readonly inputs: readonly number[],
    secnonces: Uint8Array[],
    pubnonces: Uint8Array[],
    bindings: Uint8Array[],
    readonly expiresAt: number,
  ) {
    this.idHex = hex(sessionId);
    this.buffer = new Uint8Array(inputs.length * SLOT_BYTES);
    inputs.forEach((_, k) => {
      const at = k * SLOT_BYTES;
      this.buffer.set(secnonces[k]!, at);
      secnonces[k]!.fill(0);
      this.buffer.set(pubnonces[k]!, at + SECNONCE_BYTES);
      this.buffer.set(bindings[k]!, at + SECNONCE_BYTES + PUBNONCE_BYTES);
    });
    this.retainUntil = expiresAt;
  }

  get size(): number {
    return this.inputs.length;
  }

  /** A view of input k's secnonce (live only while the session is open or being signed). */
  secnonce(k: number): Uint8Array {
    return this.buffer.subarray(k * SLOT_BYTES, k * SLOT_BYTES + SECNONCE_BYTES);
  }

  pubnonce(k: number): Uint8Array {
    const at = k * SLOT_BYTES + SECNONCE_BYTES;
    return this.buffer.subarray(at, at + PUBNONCE_BYTES);
  }

  binding(k: number): Uint8Array {
    const at = k * SLOT_BYTES + SECNONCE_BYTES + PUBNONCE_BYTES;
    return this.buffer.subarray(at, at + BINDING_BYTES);
  }

  wipe(): void {
    for (let k = 0; k < this.inputs.length; k++) this.secnonce(k).fill(0);
  }
}

/** Open and retired PSBT sessions; the cap counts secret nonces (inputs), not sessions. */
class PsbtSessionStore {
  private readonly open = new Map<string, PsbtSession>();
  private readonly retired = new Map<string, PsbtSession>();
  private held = 0;

  constructor(
    private readonly maxNonces: number,
    private readonly retentionMs: number,
    private readonly now: () => number,
  ) {}

  openNonces(): number {
    return this.held;
  }

  openSessions(): number {
    return this.open.size;
  }

  tryReserve(n: number): boolean {
    if (this.held + n > this.maxNonces) return false;
    this.held += n;
    return true;
  }

  cancelReservation(n: number): void {
    // clear() (on close) may have zeroed the count under a call still in flight.
    this.held = Math.max(0, this.held - n);
  }

  addReserved(s: PsbtSession): void {
    this.open.set(s.idHex, s);
  }

  get(idHex: string): PsbtSession | undefined {
    return this.open.get(idHex) ?? this.retired.get(idHex);
  }

  /** Synchronously move an open session to 'signing'; the caller wipes its secnonces. */
  take(s: PsbtSession, digests: Uint8Array[]): void {
    if (s.state !== 'open') throw new Error('session is not open');
    s.state = 'signing';
    s.digests = digests;
    this.retire(s);
  }

  /** Wipe an open session's secnonces: expired, or burned because the transaction changed. */
  end(s: PsbtSession, state: 'expired' | 'failed'): void {
    if (s.state !== 'open') return;
    s.wipe();
    s.state = state;
    this.retire(s);
  }

  sweep(): number {
    const now = this.now();
    let expired = 0;
    for (const s of this.open.values()) {
      if (now >= s.expiresAt) {
        this.end(s, 'expired');
        expired++;
      }
    }
    for (const [id, s] of this.retired) if (now >= s.retainUntil) this.retired.delete(id);
    return expired;
  }

  clear(): void {
    for (const s of this.open.values()) {
      s.wipe();
      s.state = 'expired';
    }
    this.open.clear();
    this.retired.clear();
    this.held = 0;
  }

  private retire(s: PsbtSession): void {
    if (this.open.delete(s.idHex)) this.held -= s.size;
    s.retainUntil = Math.max(s.expiresAt, this.now()) + this.retentionMs;
    this.retired.set(s.idHex, s);
    for (const id of this.retired.keys()) {
      if (this.retired.size <= this.maxNonces) break;
      this.retired.delete(id);
    }
  }
}

/** What PsbtSign needs per input, computed before any secnonce is taken. */
interface PreparedInput {
  plan: MusigInputPlan;
  aggnonce: Uint8Array;
  digest: Uint8Array;
}

export class PsbtSignerService {
  readonly counters: SignerCounters;
  private readonly keystore: SignerKeystore;
  private readonly ledger: NonceLedger;
  private readonly limits: PsbtLimits;
  private readonly ttlMs: number;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly onAlarm: PsbtServiceOptions['onAlarm'];
  private readonly compute: ComputePool;

  /** How many of one call's inputs go to the compute pool at once (within the per-client quota). */
  private computeWidth(): number {
    return Math.max(1, Math.min(PSBT_COMPUTE_WIDTH, this.compute.maxPerClient));
  }
  private readonly policy: PolicyGate | undefined;
  private readonly sessions: PsbtSessionStore;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(opts: PsbtServiceOptions) {
    this.keystore = opts.keystore;
    this.ledger = opts.ledger;
    this.limits = { ...DEFAULT_PSBT_LIMITS, ...opts.limits };
    for (const [name, v] of Object.entries(this.limits)) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`PSBT limit ${name} must be a positive integer`);
    }
    this.ttlMs = opts.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS;
    if (!Number.isInteger(this.ttlMs) || this.ttlMs < 1) throw new RangeError('sessionTtlMs must be a positive integer');
    const maxNonces = opts.maxOpenNonces ?? DEFAULT_MAX_SESSIONS;
    if (!Number.isInteger(maxNonces) || maxNonces < 1) throw new RangeError('maxOpenNonces must be a positive integer');
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'psbt-signer' });
    this.now = opts.now ?? Date.now;
    this.onAlarm = opts.onAlarm;
    this.compute = opts.compute ?? ComputePool.inline();
    this.policy = opts.policy;
    this.counters = opts.counters ?? {
      nonceReuseAttempts: 0,
      nonceCollisions: 0,
      ledgerErrors: 0,
      selfVerifyFailures: 0,
      bindingMismatches: 0,
      sessionsExpired: 0,
    };
    this.sessions = new PsbtSessionStore(maxNonces, this.ttlMs, this.now);
    const sweepMs = opts.sweepIntervalMs ?? Math.min(this.ttlMs, 5_000);
    if (!Number.isInteger(sweepMs) || sweepMs < 1) throw new RangeError('sweepIntervalMs must be a positive integer');
    this.sweeper = setInterval(() => this.sweepExpiredSessions(), sweepMs).unref();
  }

  /** The caps this service applies (the server checks the size before decoding). */
  get psbtLimits(): PsbtLimits {
    return { ...this.limits };
  }

  // `caller` on the signing calls: the client the call is for (the server passes its identity),
  // held to the per-client compute quota; undefined: no per-client quota. Passed explicitly so
  // that no async_hooks run per promise.

  async psbtNonceGen(req: PsbtNonceGenRequest, caller?: string): Promise<PsbtNonceGenResult> {
    return this.guard('psbtNonceGen', () => this.nonceGenImpl(req, caller));
  }

  async psbtSign(req: PsbtSignRequest, caller?: string): Promise<PsbtSignResult> {
    return this.guard('psbtSign', () => this.signImpl(req, caller));
  }

  async psbtDeterministicSign(req: PsbtDeterministicSignRequest, caller?: string): Promise<PsbtDeterministicSignResult> {
    return this.guard('psbtDeterministicSign', () => this.deterministicSignImpl(req, caller));
  }

  /** The key of a PSBT session, or null: memory first, then the ledger (row 0 has the session id). */
  async sessionKeyId(sessionId: Uint8Array): Promise<string | null> {
    return this.guard('psbtSessionKeyId', async () => {
      const id = checkSessionId(sessionId);
      const s = this.sessions.get(hex(id));
      if (s) return s.keyId;
      return (await this.ledger.findBySession(id))?.keyId ?? null;
    });
  }

  /** PSBT sessions holding secret nonces. */
  openSessions(): number {
    return this.sessions.openSessions();
  }

  /** Secret nonces held by open PSBT sessions. */
  openNonces(): number {
    return this.sessions.openNonces();
  }

  sweepExpiredSessions(): number {
    const n = this.sessions.sweep();
    if (n > 0) {
      this.counters.sessionsExpired += n;
      this.log.info({ event: 'sessions_expired', count: n }, 'expired PSBT sessions wiped');
    }
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    this.sessions.clear();
  }

  // ---- shared steps -----------------------------------------------------------------------

  private checkPsbt(value: unknown): Uint8Array {
    if (!(value instanceof Uint8Array)) throw psbtRefusal('INVALID_ARGUMENT', 'MALFORMED', 'must be bytes');
    if (value.length === 0) throw psbtRefusal('INVALID_ARGUMENT', 'MALFORMED', 'is empty');
    if (value.length > this.limits.maxPsbtBytes) {
      throw psbtRefusal('INVALID_ARGUMENT', 'TOO_LARGE', `must be at most ${this.limits.maxPsbtBytes} bytes, got ${value.length}`);
    }
    return Uint8Array.from(value);
  }

  /** Decode and plan for one key; every refusal names its input. Synchronous. */
  private plan(bytes: Uint8Array, publicKey: Uint8Array): { tx: ReturnType<typeof decodePsbt>; plan: SigningPlan } {
    const tx = decodePsbt(bytes, this.limits);
    return { tx, plan: planSigning(tx, publicKey) };
  }

  /** 32 bytes of token randomness per item, drawn in chunks the keystore accepts. */
  private async random32(count: number): Promise<Uint8Array> {
    const out = new Uint8Array(32 * count);
    for (let at = 0; at < out.length; at += RANDOM_CHUNK_BYTES) {
      const n = Math.min(RANDOM_CHUNK_BYTES, out.length - at);
      const chunk = await this.keystore.random(n);
      out.set(chunk, at);
      chunk.fill(0);
    }
    return out;
  }

  // ---- PsbtNonceGen -----------------------------------------------------------------------

  private async nonceGenImpl(req: PsbtNonceGenRequest, caller: string | undefined): Promise<PsbtNonceGenResult> {
    const keyId = checkKeyId(req.keyId);
    const bytes = this.checkPsbt(req.psbt);
    this.assertOpen();
    const key = await this.keystore.getKey(keyId);
    const { tx, plan } = this.plan(bytes, key.publicKey);
    // No nonce is made for a transaction the policy refuses.
    const allowed = this.policy ? await this.policy.checkPsbt(keyId, tx, plan, req.approvals ?? []) : undefined;
    this.assertOpen();
    const inputs = plan.inputs;
    const n = inputs.length;
    if (!this.sessions.tryReserve(n)) {
      throw new SignerError('RESOURCE_EXHAUSTED', 'too many secret nonces held by open PSBT sessions; sign or let sessions expire, then retry');
    }
    const outs: (NonceGenOutput | undefined)[] = [];
    let added = false;
    try {
      // rand' per input (secret) and the session id (public): independent 32-byte draws.
      const random = await this.random32(n + 1);
      const sessionId = random.slice(32 * n);
      try {
        const settled = await settleBounded(inputs, this.computeWidth(), (p, k) =>
          this.compute.lease(
            (c) =>
              this.keystore.withSecretKey(keyId, (sk, kk) => {
                if (!equal(kk.publicKey, key.publicKey)) throw keyChanged();
                return c.nonceGen({
                  sk,
                  pk: kk.publicKey,
                  aggpk: p.signingKey,
                  msg: p.sighash,
                  extraIn: ledgerSessionId(sessionId, k),
                  rand: random.subarray(32 * k, 32 * k + 32),
                });
              }),
            caller,
          ),
        );
        settled.forEach((r) => outs.push(r.status === 'fulfilled' ? r.value : undefined));
        const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      } finally {
        random.fill(0, 0, 32 * n);
      }
      const done = outs as NonceGenOutput[];
      // Every pubnonce is durably recorded before any of them leaves.
      const recorded = await Promise.allSettled(
        done.map((o, k) => this.ledger.recordNonce({ keyId, pubnonce: o.pubnonce, sessionId: ledgerSessionId(sessionId, k) })),
      );
      const failed = recorded.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        recorded.forEach((r, k) => {
          if (r.status === 'rejected' && r.reason instanceof NonceCollisionError) {
            this.alarm('nonce_collision', { keyId, pubnonce: hex(done[k]!.pubnonce), sessionId: hex(sessionId) });
          }
        });
        throw failed.reason;
      }
      this.assertOpen();
      const expiresAt = this.now() + this.ttlMs;
      const session = new PsbtSession(
        sessionId,
        keyId,
        Uint8Array.from(key.publicKey),
        inputs.map((p) => p.index),
        done.map((o) => o.secnonce),
        done.map((o) => o.pubnonce),
        inputs.map((p) => inputBinding(keyId, p)),
        expiresAt,
      );
      this.sessions.addReserved(session);
      added = true;
      const psbt = minimalPsbtWith(
        tx,
        inputs.map((p, k) => ({ index: p.index, plan: p, pubNonce: { participant: key.publicKey, nonce: done[k]!.pubnonce } })),
      );
      this.log.debug({ event: 'psbt_nonce_gen', sessionId: session.idHex, keyId, inputs: n }, 'PSBT session opened');
      return { sessionId: sessionId.slice(), psbt, expiresAtUnixMs: expiresAt, inputs: inputs.map((p) => p.index), ...(allowed ? { policy: allowedAuditFields(allowed, false) } : {}) };
    } finally {
      if (!added) {
        this.sessions.cancelReservation(n);
        for (const o of outs) o?.secnonce.fill(0);
      }
    }
  }

  // ---- PsbtSign ---------------------------------------------------------------------------

  // Everything from the session lookup to take() is synchronous: the state check and the take
  // are atomic, so two concurrent calls can never both obtain the secnonces.
  private async signImpl(req: PsbtSignRequest, caller: string | undefined): Promise<PsbtSignResult> {
    const sessionId = checkSessionId(req.sessionId);
    const bytes = this.checkPsbt(req.psbt);
    this.assertOpen();
    const allowed = await this.policyBeforeSign(sessionId, bytes, req.approvals ?? []);
    const session = this.sessions.get(hex(sessionId));
    if (session === undefined) return this.signWithoutSession(sessionId, bytes);

    if (session.state === 'expired') throw expiredError();
    if (session.burned) throw burnedError();
    const tx = decodePsbt(bytes, this.limits);
    let plan: SigningPlan;
    try {
      plan = planSigning(tx, session.publicKey);
    } catch (err) {
      // The key takes part in nothing any more: its participation changed.
      if (err instanceof PsbtError && err.reason === 'NO_PARTICIPATION') {
        throw this.changed(session, undefined, 'the key no longer takes part in any input');
      }
      throw err;
    }
    const changedAt = firstDifference(session, plan);
    if (changedAt !== null) throw this.changed(session, changedAt.input, changedAt.what);

    const prepared = plan.inputs.map((p, k): PreparedInput => {
      const aggnonce = this.aggnonceFor(tx, p, session.publicKey, session.pubnonce(k));
      const digest = contextDigest({ path: 'random', keyId: session.keyId, nonce: aggnonce, pubkeys: p.participants, tweaks: p.tweaks, message: p.sighash });
      return { plan: p, aggnonce, digest };
    });
    const same = session.digests !== null && prepared.every((x, k) => equal(session.digests![k], x.digest));
    switch (session.state) {
      case 'open':
        break;
      case 'signing':
        if (same) throw new SignerError('UNAVAILABLE', 'an identical PsbtSign for this session is still in progress; retry shortly');
        throw this.reuseAttempt(session.keyId, session.pubnonce(0), session.idHex, 'memory');
      case 'signed':
        if (same) return this.replaySigned(session, tx, plan);
        throw this.reuseAttempt(session.keyId, session.pubnonce(0), session.idHex, 'memory');
      case 'failed':
        if (same) {
          throw new SignerError('FAILED_PRECONDITION', 'this session can no longer sign: an earlier attempt failed after taking its nonces; start a new session');
        }
        throw this.reuseAttempt(session.keyId, session.pubnonce(0), session.idHex, 'memory');
    }
    if (this.now() >= session.expiresAt) {
      this.sessions.end(session, 'expired');
      this.counters.sessionsExpired++;
      throw expiredError();
    }
    // Fail closed: an open session under a policy is signed only after the policy allowed it.
    if (this.policy && (allowed === undefined || allowed.keyId !== session.keyId)) {
      throw new SignerError('UNAVAILABLE', 'the session changed while the policy was checked; retry');
    }
    this.sessions.take(
      session,
      prepared.map((x) => x.digest),
    );
    const signed = await this.signTaken(session, tx, prepared, allowed?.allowed, caller);
    return allowed ? { ...signed, policy: allowedAuditFields(allowed.allowed, true) } : signed;
  }

  /**
   * The policy check of PsbtSign, before the synchronous take: for a session still open whose
   * transaction is unchanged (anything else is refused by the steps after, as without a policy).
   * A refusal leaves the session open.
   */
  private async policyBeforeSign(sessionId: Uint8Array, bytes: Uint8Array, approvals: readonly Approval[]): Promise<{ keyId: string; allowed: PsbtAllowed } | undefined> {
    if (!this.policy) return undefined;
    const s = this.sessions.get(hex(sessionId));
    if (s === undefined || s.state !== 'open' || s.burned) return undefined;
    const tx = decodePsbt(bytes, this.limits);
    let plan: SigningPlan;
    try {
      plan = planSigning(tx, s.publicKey);
    } catch {
      return undefined; // reported (and the session burned) by the steps after
    }
    if (firstDifference(s, plan) !== null) return undefined;
    return { keyId: s.keyId, allowed: await this.policy.checkPsbt(s.keyId, tx, plan, approvals) };
  }

  /** Every nonce marked used, and the velocity charge made, in one ledger transaction. */
  private async markUsedCharging(session: PsbtSession, prepared: PreparedInput[], allowed: PsbtAllowed): Promise<MarkUsedResult[]> {
    try {
      return await this.ledger.markUsedCharging(
        prepared.map((x, k) => ({ pubnonce: session.pubnonce(k), digest: x.digest })),
        allowed.charge!,
      );
    } catch (err) {
      session.state = 'failed';
      if (err instanceof VelocityExceededError) throw this.policy!.velocityExhausted(allowed);
      if (err instanceof NonceReuseError) throw this.reuseAttempt(session.keyId, session.pubnonce(0), session.idHex, 'ledger');
      throw err;
    }
  }

  private async signTaken(
    session: PsbtSession,
    tx: ReturnType<typeof decodePsbt>,
    prepared: PreparedInput[],
    allowed: PsbtAllowed | undefined,
    caller: string | undefined,
  ): Promise<PsbtSignResult> {
    try {
      // 1. Every nonce marked used, committed, before any partial signature is computed.
      let outcomes: MarkUsedResult[];
      if (allowed?.charge) {
        outcomes = await this.markUsedCharging(session, prepared, allowed);
      } else {
        const marks = await Promise.allSettled(prepared.map((x, k) => this.ledger.markUsed(session.pubnonce(k), x.digest)));
        const refused = marks.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (refused) {
          session.state = 'failed';
          if (marks.some((r) => r.status === 'rejected' && r.reason instanceof NonceReuseError)) {
            throw this.reuseAttempt(session.keyId, session.pubnonce(0), session.idHex, 'ledger');
          }
          throw refused.reason;
        }
        outcomes = marks.map((r) => (r as PromiseFulfilledResult<MarkUsedResult>).value);
      }
      if (outcomes.some((o) => o.outcome === 'replay')) {
        // Memory said unused, the ledger says used for this very context (a restored snapshot,
        // or a second daemon): never sign again; answer from the ledger if it holds every psig.
        this.log.error({ event: 'nonce_already_used', sessionId: session.idHex, keyId: session.keyId }, 'PSBT session nonce already marked used in the ledger');
        if (outcomes.every((o) => o.outcome === 'replay' && o.psig !== null)) {
          session.psigs = outcomes.map((o) => (o as { psig: Uint8Array }).psig);
          session.psigStored = true;
          session.state = 'signed';
          return this.answer(session, tx, prepared.map((x) => x.plan));
        }
        session.state = 'failed';
        throw new SignerError('FAILED_PRECONDITION', 'these nonces are already marked used with no stored signature; start a new session');
      }

      // 2. Sign every input; each partial signature is self-verified in the worker.
      const signed = await settleBounded(prepared, this.computeWidth(), (x, k) =>
        this.compute.lease(
          (c) =>
            this.keystore.withSecretKey(session.keyId, (sk) =>
              c.sign(session.secnonce(k), sk, { aggnonce: x.aggnonce, pubkeys: x.plan.participants, tweaks: x.plan.tweaks, msg: x.plan.sighash }),
            ),
          caller,
        ),
      );
      const failed = signed.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        session.state = 'failed';
        for (const r of signed) if (r.status === 'fulfilled') r.value.fill(0);
        throw failed.reason;
      }
      session.psigs = signed.map((r) => (r as PromiseFulfilledResult<Uint8Array>).value);
      session.state = 'signed';
      // 3. Stored, then released.
      await this.storePsigs(session);
      this.log.debug({ event: 'psbt_sign', sessionId: session.idHex, keyId: session.keyId, inputs: session.size }, 'partial signatures released');
      return this.answer(session, tx, prepared.map((x) => x.plan));
    } finally {
      session.wipe();
    }
  }

  private async storePsigs(session: PsbtSession): Promise<void> {
    await Promise.all(session.psigs!.map((psig, k) => this.ledger.storePsig(session.pubnonce(k), session.digests![k]!, psig)));
    session.psigStored = true;
  }

  private async replaySigned(session: PsbtSession, tx: ReturnType<typeof decodePsbt>, plan: SigningPlan): Promise<PsbtSignResult> {
    if (!session.psigStored) await this.storePsigs(session);
    return this.answer(session, tx, plan.inputs);
  }

  private answer(session: PsbtSession, tx: ReturnType<typeof decodePsbt>, plans: readonly MusigInputPlan[]): PsbtSignResult {
    const psbt = minimalPsbtWith(
      tx,
      plans.map((p, k) => ({ index: p.index, plan: p, partialSig: { participant: session.publicKey, sig: session.psigs![k]! } })),
    );
    return { psbt, inputs: plans.map((p) => p.index) };
  }

  /** The session left memory (retention, restart): the ledger may answer an identical retry. */
  private async signWithoutSession(sessionId: Uint8Array, bytes: Uint8Array): Promise<PsbtSignResult> {
    const first = await this.ledger.findBySession(sessionId);
    if (first === null || first.usedAtMs === null) {
      throw new SignerError('NOT_FOUND', 'session_id: unknown session (it expired, the daemon restarted, or another replica holds it)', {
        field: 'session_id',
      });
    }
    const key = await this.keystore.getKey(first.keyId);
    const tx = decodePsbt(bytes, this.limits);
    const plan = planSigning(tx, key.publicKey);
    const rows = await Promise.all(plan.inputs.map((_, k) => (k === 0 ? first : this.ledger.findBySession(ledgerSessionId(sessionId, k)))));
    const extra = await this.ledger.findBySession(ledgerSessionId(sessionId, plan.inputs.length));
    const psigs: Uint8Array[] = [];
    for (let k = 0; k < rows.length; k++) {
      const row = rows[k];
      const p = plan.inputs[k]!;
      if (row === null || row === undefined || extra !== null) throw this.reuseAttempt(first.keyId, first.pubnonce, hex(sessionId), 'ledger');
      // Another nonce of ours in the PSBT: another session's transaction, not a retry of this one.
      const ours = allNonces(tx, p)?.[p.participants.findIndex((pk) => equal(pk, key.publicKey))];
      if (ours !== undefined && !equal(ours, row.pubnonce)) throw this.reuseAttempt(first.keyId, row.pubnonce, hex(sessionId), 'ledger');
      const aggnonce = this.aggnonceFor(tx, p, key.publicKey, row.pubnonce);
      const digest = contextDigest({ path: 'random', keyId: first.keyId, nonce: aggnonce, pubkeys: p.participants, tweaks: p.tweaks, message: p.sighash });
      if (!equal(row.digest, digest)) throw this.reuseAttempt(first.keyId, row.pubnonce, hex(sessionId), 'ledger');
      if (row.psig === null) {
        throw new SignerError('FAILED_PRECONDITION', 'this session was used for this transaction but not every signature was stored; start a new session');
      }
      psigs.push(row.psig);
    }
    const psbt = minimalPsbtWith(
      tx,
      plan.inputs.map((p, k) => ({ index: p.index, plan: p, partialSig: { participant: key.publicKey, sig: psigs[k]! } })),
    );
    return { psbt, inputs: plan.inputs.map((p) => p.index) };
  }

  /**
   * Every participant's pubnonce for input p, aggregated; our own must be the one round 1 gave.
   * Refusals name the input and, for a bad nonce, the participant.
   */
  private aggnonceFor(tx: ReturnType<typeof decodePsbt>, p: MusigInputPlan, publicKey: Uint8Array, ours: Uint8Array): Uint8Array {
    const nonces = allNonces(tx, p);
    if (nonces === undefined) {
      throw psbtRefusal('INVALID_ARGUMENT', 'MISSING_NONCE', 'the public nonce (0x1b) of a participant is missing', { input: p.index });
    }
    p.participants.forEach((pk, j) => {
      if (equal(pk, publicKey) && !equal(nonces[j], ours)) {
        throw psbtRefusal('INVALID_ARGUMENT', 'BAD_NONCE', "this key's public nonce differs from the one PsbtNonceGen returned", {
          input: p.index,
          participant: pk,
          contribution: 'pubnonce',
        });
      }
    });
    return this.aggregate(p, nonces, p.participants);
  }

  /** NonceAgg over the nonces of `who`, blaming a participant by public key. */
  private aggregate(p: MusigInputPlan, nonces: Uint8Array[], who: readonly Uint8Array[]): Uint8Array {
    try {
      const agg = musig2.nonceAgg(nonces);
      if (!musig2.isValidAggnonce(agg)) throw new musig2.InvalidContributionError(null, 'aggnonce', 'not a valid pair of points');
      return agg;
    } catch (err) {
      if (err instanceof musig2.InvalidContributionError) {
        const participant = err.signer === null ? undefined : who[err.signer];
        throw psbtRefusal('INVALID_ARGUMENT', 'BAD_NONCE', `invalid public nonce${participant ? ` of participant ${hex(participant)}` : 's'}`, {
          input: p.index,
          participant,
          contribution: 'pubnonce',
        });
      }
      throw err;
    }
  }

  /** The transaction or the participation changed between rounds: burn the nonces and refuse. */
  private changed(session: PsbtSession, input: number | undefined, what: string): SignerError {
    if (session.state === 'open') {
      this.sessions.end(session, 'failed');
      session.burned = true;
      this.counters.bindingMismatches++;
      this.log.error(
        { event: 'psbt_transaction_changed', sessionId: session.idHex, keyId: session.keyId, input },
        'PsbtSign refused: the transaction changed since PsbtNonceGen; the session nonces are destroyed',
      );
      return psbtRefusal('FAILED_PRECONDITION', 'TRANSACTION_CHANGED', `${what} since PsbtNonceGen; the session's nonces are destroyed, start a new session`, { input });
    }
    // A session that already signed (or failed) asked to sign something else.
    return this.reuseAttempt(session.keyId, session.pubnonce(0), session.idHex, 'memory');
  }

  // ---- PsbtDeterministicSign ------------------------------------------------------------------

  private async deterministicSignImpl(req: PsbtDeterministicSignRequest, caller: string | undefined): Promise<PsbtDeterministicSignResult> {
    const keyId = checkKeyId(req.keyId);
    const bytes = this.checkPsbt(req.psbt);
    this.assertOpen();
    const key = await this.keystore.getKey(keyId);
    const { tx, plan } = this.plan(bytes, key.publicKey);
    const allowed = this.policy ? await this.policy.checkPsbt(keyId, tx, plan, req.approvals ?? []) : undefined;
    this.assertOpen();
    const prepared = plan.inputs.map((p): PreparedInput => {
      const others = otherNonces(tx, p, key.publicKey);
      const who = p.participants.filter((pk) => !equal(pk, key.publicKey));
      if (who.length === 0) {
        throw psbtRefusal('INVALID_ARGUMENT', 'NO_OTHER_PARTICIPANT', 'the final signer needs at least one other participant; use PsbtNonceGen and PsbtSign', { input: p.index });
      }
      const nonces = who.map((pk) => {
        const nonce = others.get(hex(pk));
        if (nonce === undefined) {
          throw psbtRefusal('INVALID_ARGUMENT', 'MISSING_NONCE', `the public nonce (0x1b) of participant ${hex(pk)} is missing`, { input: p.index, participant: pk });
        }
        return nonce;
      });
      const aggothernonce = this.aggregate(p, nonces, who);
      const digest = contextDigest({ path: 'deterministic', keyId, nonce: aggothernonce, pubkeys: p.participants, tweaks: p.tweaks, message: p.sighash });
      return { plan: p, aggnonce: aggothernonce, digest };
    });

    const settled = await settleBounded(prepared, this.computeWidth(), (x) =>
      this.compute.lease(
        (c) =>
          this.keystore.withSecretKey(keyId, (sk, k) => {
            if (!equal(k.publicKey, key.publicKey)) throw keyChanged();
            return c.deterministicSign(sk, x.aggnonce, x.plan.participants, x.plan.tweaks as Tweak[], x.plan.sighash);
          }),
        caller,
      ),
    );
    const outs = settled.map((r) => (r.status === 'fulfilled' ? r.value : undefined));
    const wipe = () => outs.forEach((o) => o?.psig.fill(0));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      wipe();
      throw failed.reason;
    }
    const done = outs as { pubnonce: Uint8Array; psig: Uint8Array }[];
    // Every (pubnonce, context, psig) recorded before the reply; under a velocity rule, with
    // the charge in the same ledger transaction.
    const entries = done.map((o, k) => ({ keyId, pubnonce: o.pubnonce, digest: prepared[k]!.digest, psig: o.psig }));
    let recorded: PromiseSettledResult<RecordDeterministicResult>[];
    if (allowed?.charge) {
      try {
        recorded = (await this.ledger.recordDeterministicCharging(entries, allowed.charge)).map((value) => ({ status: 'fulfilled', value }));
      } catch (err) {
        if (err instanceof VelocityExceededError) {
          wipe();
          throw this.policy!.velocityExhausted(allowed);
        }
        recorded = entries.map(() => ({ status: 'rejected', reason: err }));
      }
    } else {
      recorded = await Promise.allSettled(entries.map((e) => this.ledger.recordDeterministic(e)));
    }
    const refused = recorded.findIndex((r) => r.status === 'rejected');
    if (refused >= 0) {
      wipe();
      const reuse = recorded.findIndex((r) => r.status === 'rejected' && r.reason instanceof NonceReuseError);
      if (reuse >= 0) throw this.reuseAttempt(keyId, done[reuse]!.pubnonce, null, 'ledger');
      throw (recorded[refused] as PromiseRejectedResult).reason;
    }
    recorded.forEach((r, k) => {
      const v = (r as PromiseFulfilledResult<Awaited<ReturnType<NonceLedger['recordDeterministic']>>>).value;
      if (v.outcome === 'replay' && !equal(v.psig, done[k]!.psig)) {
        wipe();
        this.log.error({ event: 'deterministic_mismatch', keyId, pubnonce: hex(done[k]!.pubnonce) }, 'recorded deterministic partial signature differs from the recomputed one');
        throw new SignerError('INTERNAL', 'the recomputed partial signature differs from the recorded one; not released');
      }
    });
    const psbt = minimalPsbtWith(
      tx,
      prepared.map((x, k) => ({
        index: x.plan.index,
        plan: x.plan,
        pubNonce: { participant: key.publicKey, nonce: done[k]!.pubnonce },
        partialSig: { participant: key.publicKey, sig: done[k]!.psig },
      })),
    );
    return { psbt, inputs: plan.inputs.map((p) => p.index), ...(allowed ? { policy: allowedAuditFields(allowed, true) } : {}) };
  }

  // ---- shared -------------------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closed) throw new SignerError('UNAVAILABLE', 'the signer is shutting down');
  }

  private reuseAttempt(keyId: string, pubnonce: Uint8Array, sessionIdHex: string | null, source: string): SignerError {
    const details: Record<string, string> = { keyId, pubnonce: hex(pubnonce), source };
    if (sessionIdHex !== null) details.sessionId = sessionIdHex;
    this.alarm('nonce_reuse_attempt', details);
    return new SignerError(
      'FAILED_PRECONDITION',
      sessionIdHex === null
        ? 'this nonce is already recorded for a different signing context; refused'
        : 'session already used for a different transaction or different nonces; refused',
    );
  }

  private alarm(kind: AlarmKind, details: Record<string, string>): void {
    if (kind === 'nonce_reuse_attempt') this.counters.nonceReuseAttempts++;
    else this.counters.nonceCollisions++;
    this.log.error({ event: kind, alarm: true, ...details }, `ALARM ${kind}`);
    try {
      this.onAlarm?.(kind, details);
    } catch (err) {
      this.log.error({ event: 'alarm_handler_failed', err }, 'onAlarm threw');
    }
  }

  private async guard<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const mapped = err instanceof PsbtError ? fromPsbtError(err) : toSignerError(err);
      if (err instanceof LedgerError && !(err instanceof NonceReuseError) && !(err instanceof NonceCollisionError)) {
        this.counters.ledgerErrors++;
        this.log.error({ event: 'ledger_error', op, err }, 'ledger failure; nothing signed');
      } else if (err instanceof musig2.Musig2Error && mapped.code === 'INTERNAL') {
        this.counters.selfVerifyFailures++;
        this.log.error({ event: 'self_verify_failed', op }, 'partial signature failed self-verification');
      } else if (mapped.code === 'INTERNAL' || mapped.code === 'UNAVAILABLE') {
        this.log.error({ event: 'request_failed', op, code: mapped.code, err }, mapped.message);
      } else {
        this.log.debug({ event: 'request_refused', op, code: mapped.code, reason: mapped.errorInfo?.reason }, mapped.message);
      }
      throw mapped;
    }
  }
}

/** The first input whose participation or binding differs from the session's, or null. */
function firstDifference(session: PsbtSession, plan: SigningPlan): { input: number | undefined; what: string } | null {
  const now = plan.inputs;
  const before = session.inputs;
  for (let k = 0; k < Math.max(now.length, before.length); k++) {
    const p = now[k];
    const was = before[k];
    if (p === undefined || was === undefined || p.index !== was) {
      const input = Math.min(p?.index ?? Infinity, was ?? Infinity);
      return { input, what: `the key's participation in input ${input} changed` };
    }
    if (!equal(session.binding(k), inputBinding(session.keyId, p))) {
      return { input: p.index, what: `input ${p.index}'s sighash or signing keys changed` };
    }
  }
  return null;
}

function expiredError(): SignerError {
  return new SignerError('FAILED_PRECONDITION', 'session expired; start a new session');
}

function burnedError(): SignerError {
  return psbtRefusal(
    'FAILED_PRECONDITION',
    'TRANSACTION_CHANGED',
    "this session's nonces were destroyed when a changed transaction was presented; start a new session",
  );
}

function keyChanged(): SignerError {
  return new SignerError('FAILED_PRECONDITION', 'key_id: the key changed during the request; retry', { field: 'key_id' });
}
