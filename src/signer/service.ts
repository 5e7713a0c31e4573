// The signing service: NonceGen, Sign and DeterministicSign over the keystore and the nonce
// ledger, independent of gRPC (DESIGN.md section 3).
//
// The ordering rules that keep a nonce single-use:
// - NonceGen records the pubnonce in the ledger before releasing it.
// - Sign takes the secnonce out of memory synchronously, before its first await, so no
//   concurrent call can also get it; then marks the nonce used in the ledger (committed);
//   only then signs; then stores the psig; the secnonce is wiped in `finally` whatever happens.
// - DeterministicSign records (pubnonce, digest, psig) before replying.
// - Any ledger failure means no signature: UNAVAILABLE.
//
// The curve arithmetic of the three secret-bearing operations runs in `compute` (a pool of
// worker threads in the daemon, inline by default). Each one takes a worker permit first, then
// opens the key, so decrypted keys never wait in a queue; withSecretKey wipes the key when the
// worker has answered, and the pool moves its own copy to the worker, which wipes it there.

import { pino, type Logger } from 'pino';
import * as musig2 from '../musig2/index.js';
import type { Tweak } from '../musig2/index.js';
import type { Keystore } from '../keystore/index.js';
import { LedgerError, NonceCollisionError, NonceReuseError, type NonceLedger } from '../ledger/index.js';
import { ComputePool } from './compute-pool.js';
import type { AnyCompute } from './compute-pool.js';
import { AcceptedKeySets } from './keyset-memo.js';
import { bindingDigest, contextDigest, deterministicDigest } from './digest.js';
import { SignerError, toSignerError } from './errors.js';
import type { PolicyGate } from './policy-gate.js';
import { Session, SessionStore } from './sessions.js';
import {
  DEFAULT_LIMITS,
  checkLimits,
  checkSessionId,
  validateDeterministicSign,
  validateNonceGen,
  validateSign,
  type RequestLimits,
  type ValidatedSign,
} from './validate.js';

/** What the service needs from the keystore; the real Keystore satisfies it. */
export type SignerKeystore = Pick<Keystore, 'getKey' | 'withSecretKey' | 'random' | 'listKeys' | 'healthy'>;

export type AlarmKind = 'nonce_reuse_attempt' | 'nonce_collision';

export interface SignerServiceOptions {
  keystore: SignerKeystore;
  ledger: NonceLedger;
  /** How long a NonceGen session may wait for Sign. Default 300_000 (5 min). */
  sessionTtlMs?: number;
  /** Cap on open sessions; NonceGen past it gets RESOURCE_EXHAUSTED. Default 10_000. */
  maxSessions?: number;
  /**
   * Cap on the open sessions of one client (the `caller` given to nonceGen); NonceGen past it
   * gets RESOURCE_EXHAUSTED. Default: a quarter of maxSessions (at least 1).
   */
  maxSessionsPerClient?: number;
  /** Longest message accepted. Default 1 MiB (see validate.ts). */
  maxMessageBytes?: number;
  /** Most entries in pubkeys. Default 1000. */
  maxSigners?: number;
  /** Most entries in tweaks. Default 100. */
  maxTweaks?: number;
  /** Longest caller extra_in. Default 1024. */
  maxExtraInBytes?: number;
  /** How often the sweeper wipes expired sessions. Default min(TTL, 5 s). */
  sweepIntervalMs?: number;
  logger?: Logger;
  /** Clock for session expiry (unix ms). Default Date.now. */
  now?: () => number;
  /** Called on every alarm, after it is counted and logged. Must not throw (errors are ignored). */
  onAlarm?: (kind: AlarmKind, details: Record<string, string>) => void;
  /**
   * Where NonceGen, Sign and DeterministicSign run their curve arithmetic. Default: inline on
   * this thread (a pool of size 0). The pool stays the caller's to close.
   */
  compute?: ComputePool;
  /**
   * The signing policy. With one, these raw-message RPCs are refused (PERMISSION_DENIED,
   * POLICY_RAW_MESSAGE or POLICY_NO_KEY) unless the key's policy has allow_raw_message.
   */
  policy?: PolicyGate;
}

export interface NonceGenRequest {
  keyId: string;
  pubkeys: Uint8Array[];
  tweaks: Tweak[];
  message?: Uint8Array;
  extraIn?: Uint8Array;
}
export interface NonceGenResult {
  sessionId: Uint8Array;
  pubnonce: Uint8Array;
  expiresAtUnixMs: number;
}
export interface SignRequest {
  sessionId: Uint8Array;
  aggnonce: Uint8Array;
  pubkeys: Uint8Array[];
  tweaks: Tweak[];
  message: Uint8Array;
}
export interface SignResult {
  partialSig: Uint8Array;
  pubnonce: Uint8Array;
}
export interface DeterministicSignRequest {
  keyId: string;
  aggothernonce: Uint8Array;
  pubkeys: Uint8Array[];
  tweaks: Tweak[];
  message: Uint8Array;
  rand?: Uint8Array;
}
export interface DeterministicSignResult {
  pubnonce: Uint8Array;
  partialSig: Uint8Array;
}

export interface SignerCounters {
  /** Sign or DeterministicSign refused because the nonce was used for another context. */
  nonceReuseAttempts: number;
  /** NonceGen produced a pubnonce the ledger already had (a failed RNG). */
  nonceCollisions: number;
  /** Ledger failures (unavailable or refused writes). */
  ledgerErrors: number;
  /** Partial signatures that failed self-verification and were withheld. */
  selfVerifyFailures: number;
  /** Sign on an open session with pubkeys, tweaks or message other than NonceGen's. */
  bindingMismatches: number;
  /** Sessions whose TTL passed before Sign. */
  sessionsExpired: number;
}

export const DEFAULT_SESSION_TTL_MS = 300_000;
export const DEFAULT_MAX_SESSIONS = 10_000;

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const equal = (a: Uint8Array | null, b: Uint8Array) => a !== null && Buffer.compare(a, b) === 0;

export class SignerService {
  readonly counters: SignerCounters = {
    nonceReuseAttempts: 0,
    nonceCollisions: 0,
    ledgerErrors: 0,
    selfVerifyFailures: 0,
    bindingMismatches: 0,
    sessionsExpired: 0,
  };

  private readonly keystore: SignerKeystore;
  private readonly ledger: NonceLedger;
  private readonly ttlMs: number;
  private readonly maxSessions: number;
  private readonly maxSessionsPerClient: number;
  private readonly limits: RequestLimits;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly onAlarm: SignerServiceOptions['onAlarm'];
  private readonly sessions: SessionStore;
  private readonly compute: ComputePool;
  /** Key lists already aggregated, so a signature with a known list skips that worker round trip. */
  private readonly keySets = new AcceptedKeySets();
  private readonly policy: PolicyGate | undefined;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(opts: SignerServiceOptions) {
    this.keystore = opts.keystore;
    this.ledger = opts.ledger;
    this.ttlMs = opts.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS;
    this.maxSessions = opts.maxSessions ?? DEFAULT_MAX_SESSIONS;
    if (!Number.isInteger(this.ttlMs) || this.ttlMs < 1) throw new RangeError('sessionTtlMs must be a positive integer');
    if (!Number.isInteger(this.maxSessions) || this.maxSessions < 1) {
      throw new RangeError('maxSessions must be a positive integer');
    }
    this.maxSessionsPerClient = opts.maxSessionsPerClient ?? Math.max(1, Math.floor(this.maxSessions / 4));
    if (!Number.isInteger(this.maxSessionsPerClient) || this.maxSessionsPerClient < 1) {
      throw new RangeError('maxSessionsPerClient must be a positive integer');
    }
    this.limits = {
      maxSigners: opts.maxSigners ?? DEFAULT_LIMITS.maxSigners,
      maxTweaks: opts.maxTweaks ?? DEFAULT_LIMITS.maxTweaks,
      maxMessageBytes: opts.maxMessageBytes ?? DEFAULT_LIMITS.maxMessageBytes,
      maxExtraInBytes: opts.maxExtraInBytes ?? DEFAULT_LIMITS.maxExtraInBytes,
    };
    checkLimits(this.limits);
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'signer' });
    this.now = opts.now ?? Date.now;
    this.onAlarm = opts.onAlarm;
    this.compute = opts.compute ?? ComputePool.inline();
    this.policy = opts.policy;
    this.sessions = new SessionStore({
      maxOpen: this.maxSessions,
      maxOpenPerOwner: this.maxSessionsPerClient,
      maxRetired: this.maxSessions,
      retentionMs: this.ttlMs,
      now: this.now,
    });
    const sweepMs = opts.sweepIntervalMs ?? Math.min(this.ttlMs, 5_000);
    if (!Number.isInteger(sweepMs) || sweepMs < 1) throw new RangeError('sweepIntervalMs must be a positive integer');
    // unref: the sweeper alone must not keep the process alive.
    this.sweeper = setInterval(() => this.sweepExpiredSessions(), sweepMs).unref();
  }

  async listKeys(): Promise<{ keyId: string; publicKey: Uint8Array }[]> {
    return this.guard('listKeys', async () => {
      this.assertOpen();
      const keys = await this.keystore.listKeys();
      return keys.map((k) => ({ keyId: k.label, publicKey: Uint8Array.from(k.publicKey) }));
    });
  }

  // `caller` on the signing calls: the client the call is for (the server passes its identity),
  // held to the per-client caps on open sessions and compute work; undefined: no per-client cap.
  // Passed explicitly so that no async_hooks run per promise.

  /** BIP327 NonceGen: a fresh session whose secnonce stays in memory, pubnonce in the ledger. */
  async nonceGen(req: NonceGenRequest, caller?: string): Promise<NonceGenResult> {
    return this.guard('nonceGen', () => this.nonceGenImpl(req, caller));
  }

  /** BIP327 Sign with the secnonce of a NonceGen session; at most one signing context per session. */
  async sign(req: SignRequest, caller?: string): Promise<SignResult> {
    return this.guard('sign', () => this.signImpl(req, caller));
  }

  /** BIP327 DeterministicSign (stateless, for the last signer); recorded before replying. */
  async deterministicSign(req: DeterministicSignRequest, caller?: string): Promise<DeterministicSignResult> {
    return this.guard('deterministicSign', () => this.deterministicSignImpl(req, caller));
  }

  /**
   * The key a session belongs to, or null when unknown: for per-key access rules on Sign,
   * which carries no key_id. Looks in memory, then in the ledger.
   */
  async sessionKeyId(sessionId: Uint8Array): Promise<string | null> {
    return this.guard('sessionKeyId', async () => {
      const id = checkSessionId(sessionId);
      const session = this.sessions.get(hex(id));
      if (session) return session.keyId;
      return (await this.ledger.findBySession(id))?.keyId ?? null;
    });
  }

  /** Sessions currently holding a secnonce. */
  openSessions(): number {
    return this.sessions.openCount();
  }

  /** Wipe expired sessions now (the sweeper calls this periodically). Returns how many expired. */
  sweepExpiredSessions(): number {
    const n = this.sessions.sweep();
    if (n > 0) {
      this.counters.sessionsExpired += n;
      this.log.info({ event: 'sessions_expired', count: n }, 'expired sessions wiped');
    }
    return n;
  }

  async health(): Promise<{ keystore: boolean; ledger: boolean }> {
    const safe = (p: () => Promise<boolean>) => p().catch(() => false);
    const [keystore, ledger] = await Promise.all([safe(() => this.keystore.healthy()), safe(() => this.ledger.healthy())]);
    return { keystore, ledger };
  }

  /** Stop the sweeper and wipe every open secnonce. The keystore and ledger stay the caller's to close. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    this.sessions.clear();
  }

  // ---- NonceGen ---------------------------------------------------------------------------

  private async nonceGenImpl(req: NonceGenRequest, owner: string | undefined): Promise<NonceGenResult> {
    const v = validateNonceGen(req, this.limits);
    this.assertOpen();
    this.policy?.checkRawMessage(v.keyId);
    const key = await this.keystore.getKey(v.keyId);
    assertOwnKey(key.publicKey, v.pubkeys);
    const reserved = this.sessions.tryReserve(owner);
    if (reserved === 'owner_full') {
      throw new SignerError(
        'RESOURCE_EXHAUSTED',
        `client '${owner}' has too many open sessions (cap ${this.maxSessionsPerClient} per client); sign or let them expire, then retry`,
      );
    }
    if (reserved === 'full') {
      throw new SignerError(
        'RESOURCE_EXHAUSTED',
        `too many open sessions (cap ${this.maxSessions}); sign or let sessions expire, then retry`,
      );
    }
    let secnonce: Uint8Array | undefined;
    let added = false;
    try {
      // 64 bytes of the token's RNG hashed with the OS CSPRNG: rand' (secret) and the session
      // id (public). They are independent halves of one hash output, so showing one reveals
      // nothing of the other. The session id also goes into extra_in, so even a repeated
      // rand' would give a fresh nonce.
      const random = await this.keystore.random(64);
      const rand = random.subarray(0, 32);
      const sessionId = random.slice(32, 64);
      const extraIn = new Uint8Array(32 + v.extraIn.length);
      extraIn.set(sessionId, 0);
      extraIn.set(v.extraIn, 32);
      let out: musig2.NonceGenOutput;
      try {
        // Key aggregation (which also validates the keys and tweaks) runs on a worker, not on
        // the event loop: tens of ms for a fresh list of 100 keys. The key is opened only once
        // it has passed, under the same permit, and wiped when the worker answers. A list
        // accepted before is not aggregated again here (keyset-memo.ts).
        const accepted = this.keySets.lookup(v.pubkeys, v.tweaks);
        out = await this.compute.lease(async (c) => {
          const aggpk = accepted ?? (await this.acceptKeySet(c, v.pubkeys, v.tweaks));
          return this.keystore.withSecretKey(v.keyId, (sk, k) => {
            if (!equal(k.publicKey, key.publicKey)) throw keyChanged();
            return c.nonceGen({ sk, pk: k.publicKey, aggpk, msg: v.message, extraIn, rand });
          });
        }, owner);
      } finally {
        random.fill(0, 0, 32);
      }
      secnonce = out.secnonce;
      try {
        await this.ledger.recordNonce({ keyId: v.keyId, pubnonce: out.pubnonce, sessionId });
      } catch (err) {
        if (err instanceof NonceCollisionError) {
          this.alarm('nonce_collision', { keyId: v.keyId, pubnonce: hex(out.pubnonce), sessionId: hex(sessionId) });
        }
        throw err;
      }
      this.assertOpen();
      const expiresAt = this.now() + this.ttlMs;
      // The session packs its bytes into one buffer; the secnonce is moved in (this copy zeroed).
      const session = new Session({
        sessionId,
        keyId: v.keyId,
        pubnonce: out.pubnonce,
        binding: bindingDigest(v.keyId, v.pubkeys, v.tweaks, v.message),
        messageBound: v.message !== undefined,
        expiresAt,
        secnonce,
        ...(owner === undefined ? {} : { owner }),
      });
      this.sessions.addReserved(session);
      added = true;
      this.log.debug({ event: 'nonce_gen', sessionId: session.idHex, keyId: v.keyId }, 'session opened');
      return { sessionId: sessionId.slice(), pubnonce: out.pubnonce.slice(), expiresAtUnixMs: expiresAt };
    } finally {
      if (!added) {
        this.sessions.cancelReservation(owner);
        secnonce?.fill(0);
      }
    }
  }

  // ---- Sign -------------------------------------------------------------------------------

  // No await may come before sessions.take(): that is what makes the take atomic.
  private async signImpl(req: SignRequest, caller: string | undefined): Promise<SignResult> {
    const v = validateSign(req, this.limits);
    this.assertOpen();
    const session = this.sessions.get(hex(v.sessionId));
    if (session === undefined) return this.signWithoutSession(v);
    // Synchronous, so the take below stays atomic; a refusal leaves the session as it was.
    if (session.state === 'open') this.policy?.checkRawMessage(session.keyId);

    const digest = contextDigest({
      path: 'random',
      keyId: session.keyId,
      nonce: v.aggnonce,
      pubkeys: v.pubkeys,
      tweaks: v.tweaks,
      message: v.message,
    });
    switch (session.state) {
      case 'open':
        break;
      case 'signing':
        if (equal(session.digest, digest)) {
          throw new SignerError('UNAVAILABLE', 'an identical Sign for this session is still in progress; retry shortly');
        }
        throw this.reuseAttempt(session.keyId, session.pubnonce, session.idHex, 'memory');
      case 'signed':
        if (equal(session.digest, digest)) return this.replaySigned(session);
        throw this.reuseAttempt(session.keyId, session.pubnonce, session.idHex, 'memory');
      case 'failed':
        if (equal(session.digest, digest)) {
          throw new SignerError(
            'FAILED_PRECONDITION',
            'this session can no longer sign: an earlier attempt failed after taking its nonce; start a new session',
          );
        }
        throw this.reuseAttempt(session.keyId, session.pubnonce, session.idHex, 'memory');
      case 'expired':
        throw expiredError();
    }

    if (this.now() >= session.expiresAt) {
      this.sessions.expire(session);
      this.counters.sessionsExpired++;
      throw expiredError();
    }
    const binding = bindingDigest(session.keyId, v.pubkeys, v.tweaks, session.messageBound ? v.message : undefined);
    if (!equal(binding, session.binding)) {
      this.counters.bindingMismatches++;
      this.log.error(
        { event: 'session_binding_mismatch', sessionId: session.idHex, keyId: session.keyId },
        'Sign refused: request differs from the session binding',
      );
      throw new SignerError(
        'FAILED_PRECONDITION',
        'session bound to different pubkeys/tweaks' + (session.messageBound ? '/message' : '') + ' (those given to NonceGen)',
      );
    }
    checkAggnonce(v.aggnonce);

    const secnonce = this.sessions.take(session, digest);
    return this.signTaken(session, secnonce, v, digest, caller);
  }

  private async signTaken(session: Session, secnonce: Uint8Array, v: ValidatedSign, digest: Uint8Array, caller: string | undefined): Promise<SignResult> {
    try {
      let marked: Awaited<ReturnType<NonceLedger['markUsed']>>;
      try {
        marked = await this.ledger.markUsed(session.pubnonce, digest);
      } catch (err) {
        session.state = 'failed';
        if (err instanceof NonceReuseError) throw this.reuseAttempt(session.keyId, session.pubnonce, session.idHex, 'ledger');
        throw err;
      }
      if (marked.outcome === 'replay') {
        // Memory said unused, the ledger says used for this very context (a restored
        // snapshot, or a second daemon): never sign again, answer from the ledger.
        this.log.error(
          { event: 'nonce_already_used', sessionId: session.idHex, keyId: session.keyId },
          'session nonce already marked used in the ledger',
        );
        if (marked.psig !== null) {
          session.psig = marked.psig;
          session.psigStored = true;
          session.state = 'signed';
          return result(session);
        }
        session.state = 'failed';
        throw new SignerError(
          'FAILED_PRECONDITION',
          'this nonce is already marked used with no stored signature; start a new session',
        );
      }

      let psig: Uint8Array;
      try {
        // musig2 self-verifies the psig (in the worker) before it is returned.
        psig = await this.compute.lease(
          (c) =>
            this.keystore.withSecretKey(session.keyId, (sk) =>
              c.sign(secnonce, sk, { aggnonce: v.aggnonce, pubkeys: v.pubkeys, tweaks: v.tweaks, msg: v.message }),
            ),
          caller,
        );
      } catch (err) {
        session.state = 'failed';
        throw err;
      }
      session.psig = psig;
      session.state = 'signed';
      await this.storePsig(session);
      this.log.debug({ event: 'sign', sessionId: session.idHex, keyId: session.keyId }, 'partial signature released');
      return result(session);
    } finally {
      secnonce.fill(0);
    }
  }

  /** An identical retry of a signed session: the same psig, once it is durably stored. */
  private async replaySigned(session: Session): Promise<SignResult> {
    if (!session.psigStored) await this.storePsig(session);
    return result(session);
  }

  private async storePsig(session: Session): Promise<void> {
    await this.ledger.storePsig(session.pubnonce, session.digest!, session.psig!);
    session.psigStored = true;
  }

  /** The session is not in memory: the ledger may still know it (retry after retention, or a restart). */
  private async signWithoutSession(v: ValidatedSign): Promise<SignResult> {
    const row = await this.ledger.findBySession(v.sessionId);
    if (row === null || row.usedAtMs === null) {
      throw new SignerError(
        'NOT_FOUND',
        'session_id: unknown session (it expired, the daemon restarted, or another replica holds it)',
        { field: 'session_id' },
      );
    }
    const digest = contextDigest({
      path: 'random',
      keyId: row.keyId,
      nonce: v.aggnonce,
      pubkeys: v.pubkeys,
      tweaks: v.tweaks,
      message: v.message,
    });
    if (!equal(row.digest, digest)) throw this.reuseAttempt(row.keyId, row.pubnonce, hex(v.sessionId), 'ledger');
    if (row.psig === null) {
      throw new SignerError(
        'FAILED_PRECONDITION',
        'this session was used for this context but no signature was stored; start a new session',
      );
    }
    return { partialSig: row.psig, pubnonce: row.pubnonce };
  }

  // ---- DeterministicSign --------------------------------------------------------------------

  private async deterministicSignImpl(req: DeterministicSignRequest, caller: string | undefined): Promise<DeterministicSignResult> {
    const v = validateDeterministicSign(req, this.limits);
    this.assertOpen();
    this.policy?.checkRawMessage(v.keyId);
    const key = await this.keystore.getKey(v.keyId);
    assertOwnKey(key.publicKey, v.pubkeys);
    // Key aggregation validates the keys and tweaks on a worker (never on the event loop),
    // before the key is opened under the same permit; once per list (keyset-memo.ts).
    const accepted = this.keySets.lookup(v.pubkeys, v.tweaks) !== undefined;
    const out = await this.compute.lease(async (c) => {
      if (!accepted) await this.acceptKeySet(c, v.pubkeys, v.tweaks);
      return this.keystore.withSecretKey(v.keyId, (sk, k) => {
        if (!equal(k.publicKey, key.publicKey)) throw keyChanged();
        return c.deterministicSign(sk, v.aggothernonce, v.pubkeys, v.tweaks, v.message, v.rand);
      });
    }, caller);
    // The row's digest binds what this nonce releases (deterministicDigest): a request written
    // differently that releases the same psig is a replay, never an alarm.
    const digest = deterministicDigest(out.pubnonce, out.psig);
    let recorded: Awaited<ReturnType<NonceLedger['recordDeterministic']>>;
    try {
      recorded = await this.ledger.recordDeterministic({ keyId: v.keyId, pubnonce: out.pubnonce, digest, psig: out.psig });
    } catch (err) {
      let released = false;
      try {
        if (!(err instanceof NonceReuseError)) throw err;
        // A row from an earlier version holds the request's context digest: compare the stored
        // partial signature itself. Same psig: a replay. Another one: never released.
        const row = await this.ledger.findByPubnonce(out.pubnonce);
        if (row?.path === 'deterministic' && row.psig !== null && equal(row.psig, out.psig)) {
          this.log.info({ event: 'deterministic_replay', keyId: v.keyId }, 'replay of a DeterministicSign recorded by an earlier version');
          released = true;
          return { pubnonce: out.pubnonce, partialSig: out.psig };
        }
        throw this.reuseAttempt(v.keyId, out.pubnonce, null, 'ledger');
      } finally {
        if (!released) out.psig.fill(0);
      }
    }
    if (recorded.outcome === 'replay' && !equal(recorded.psig, out.psig)) {
      // Same nonce, same context, another signature: the arithmetic or the ledger is broken.
      out.psig.fill(0);
      this.log.error(
        { event: 'deterministic_mismatch', keyId: v.keyId, pubnonce: hex(out.pubnonce) },
        'recorded deterministic partial signature differs from the recomputed one',
      );
      throw new SignerError('INTERNAL', 'the recomputed partial signature differs from the recorded one; not released');
    }
    return { pubnonce: out.pubnonce, partialSig: out.psig };
  }

  // ---- shared -----------------------------------------------------------------------------

  /** Aggregates (so validates) a key list on the worker and remembers it; its x-only aggregate key. */
  private async acceptKeySet(c: AnyCompute, pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[]): Promise<Uint8Array> {
    const { xonly } = await c.keyAgg(pubkeys, tweaks);
    this.keySets.remember(pubkeys, tweaks, xonly);
    return xonly;
  }

  private assertOpen(): void {
    if (this.closed) throw new SignerError('UNAVAILABLE', 'the signer is shutting down');
  }

  /** Count, log and alarm a nonce-reuse attempt; returns the refusal to throw. */
  private reuseAttempt(keyId: string, pubnonce: Uint8Array, sessionIdHex: string | null, source: string): SignerError {
    const details: Record<string, string> = { keyId, pubnonce: hex(pubnonce), source };
    if (sessionIdHex !== null) details.sessionId = sessionIdHex;
    this.alarm('nonce_reuse_attempt', details);
    return new SignerError(
      'FAILED_PRECONDITION',
      sessionIdHex === null
        ? 'this nonce is already recorded for a different signing context; refused'
        : 'session already used for a different signing context (aggnonce, message, pubkeys or tweaks); refused',
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

  /** Run an operation; whatever escapes leaves as a SignerError, with counters and logs. */
  private async guard<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const mapped = toSignerError(err);
      if (err instanceof LedgerError && !(err instanceof NonceReuseError) && !(err instanceof NonceCollisionError)) {
        this.counters.ledgerErrors++;
        this.log.error({ event: 'ledger_error', op, err }, 'ledger failure; nothing signed');
      } else if (err instanceof musig2.Musig2Error && mapped.code === 'INTERNAL') {
        this.counters.selfVerifyFailures++;
        this.log.error({ event: 'self_verify_failed', op }, 'partial signature failed self-verification');
      } else if (mapped.code === 'INTERNAL' || mapped.code === 'UNAVAILABLE') {
        this.log.error({ event: 'request_failed', op, code: mapped.code, err }, mapped.message);
      } else {
        this.log.debug({ event: 'request_refused', op, code: mapped.code, field: mapped.field }, mapped.message);
      }
      throw mapped;
    }
  }
}

function result(session: Session): SignResult {
  return { partialSig: session.psig!.slice(), pubnonce: session.pubnonce.slice() };
}

function expiredError(): SignerError {
  return new SignerError('FAILED_PRECONDITION', 'session expired; start a new session');
}

function keyChanged(): SignerError {
  return new SignerError('FAILED_PRECONDITION', 'key_id: the key changed during the request; retry', {
    field: 'key_id',
  });
}

function assertOwnKey(publicKey: Uint8Array, pubkeys: readonly Uint8Array[]): void {
  if (!pubkeys.some((pk) => equal(pk, publicKey))) {
    throw new SignerError('INVALID_ARGUMENT', "pubkeys: the public key of key_id is not in the list", {
      field: 'pubkeys',
    });
  }
}

/** Decode both halves of aggnonce before the nonce is consumed, so a bad one costs nothing. */
function checkAggnonce(aggnonce: Uint8Array): void {
  if (!musig2.isValidAggnonce(aggnonce)) {
    throw toSignerError(new musig2.InvalidContributionError(null, 'aggnonce', 'not a valid pair of points'));
  }
}
