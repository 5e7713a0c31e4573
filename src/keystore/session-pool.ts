// A small pool of logged-in read-write sessions on one token, with reconnect-and-retry.
//
// A PKCS#11 session runs one operation at a time (C_DecryptInit ... C_Decrypt), and the
// *Async calls yield to the event loop in between, so each operation leases a session of its
// own. Opening a session and logging in costs about 0.7 ms on SoftHSM, hence the pool.
import { PinLockedError, TokenNotFoundError, TokenUnavailableError, WrongPinError, KeystoreError } from './errors.js';
import type { Pkcs11Module } from './module.js';
import { ckrName, hasCkr, isConnectionLost, pkcs11js, trimPadded } from './pkcs11.js';
import type { Handle } from './pkcs11.js';

interface Lease {
  readonly handle: Handle;
  readonly generation: number;
}

/** A leased session whose library was re-initialized before its operation could start. */
class StaleSessionError extends Error {}

/** Everything a pooled operation may need: the session and the token's slot. */
export interface SessionContext {
  readonly session: Handle;
  readonly slot: Handle;
  readonly generation: number;
}

/** Finds the slot whose token carries `label`. */
export function findSlot(api: Pkcs11Module['api'], label: string): Handle {
  const matches: Handle[] = [];
  const seen: string[] = [];
  for (const slot of api.C_GetSlotList(true)) {
    const info = api.C_GetTokenInfo(slot);
    if ((info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0) continue;
    const tokenLabel = trimPadded(info.label);
    seen.push(tokenLabel);
    if (tokenLabel === label) matches.push(slot);
  }
  if (matches.length === 0) throw new TokenNotFoundError(label, seen);
  if (matches.length > 1) {
    throw new KeystoreError('TOKEN_AMBIGUOUS', `${matches.length} tokens are labelled "${label}"; labels must be unique`);
  }
  return matches[0]!;
}

/**
 * Running counts for monitoring (the keystore never depends on a metrics library; the server
 * layer reads these). Both only ever grow.
 */
export interface KeystoreStats {
  /** Operations that failed because the token could not be reached or refused us (unavailable, gone, wrong or locked PIN). */
  tokenErrors: number;
  /** Library re-initializations (C_Finalize + C_Initialize) this pool went through after a lost session or connection. */
  reconnects: number;
}

/** Errors that say the token itself is unreachable or refusing us, as opposed to a bad request. */
function isTokenError(err: unknown): boolean {
  return (
    err instanceof TokenUnavailableError ||
    err instanceof TokenNotFoundError ||
    err instanceof WrongPinError ||
    err instanceof PinLockedError
  );
}

export class SessionPool {
  private readonly counts: KeystoreStats = { tokenErrors: 0, reconnects: 0 };
  private idle: Lease[] = [];
  private open = 0;
  private waiters: Array<() => void> = [];
  private leased = 0;
  private drained: Array<() => void> = [];
  private generation: number;
  private slot: Handle | undefined;
  private connectedOnce = false;
  private closed = false;
  // Set once the token refuses our PIN. HSMs lock a PIN after a few failures, so a pool that
  // keeps reconnecting must not keep guessing: it stays refused until it is re-created.
  private loginRefused: KeystoreError | undefined;

  constructor(
    private readonly mod: Pkcs11Module,
    private readonly tokenLabel: string,
    private readonly pin: string,
    private readonly size: number,
  ) {
    this.generation = mod.generation;
  }

  /**
   * Runs `fn` on a leased session. If the session, the library or the token went away, it
   * re-initializes the library, logs in again and retries once; a second loss becomes
   * TokenUnavailableError. `fn` must therefore be safe to run twice.
   */
  async run<T>(fn: (ctx: SessionContext) => T | Promise<T>): Promise<T> {
    try {
      return await this.runRetrying(fn);
    } catch (err) {
      if (isTokenError(err)) this.counts.tokenErrors++;
      throw err;
    }
  }

  /** A snapshot of the running counts. */
  get stats(): KeystoreStats {
    return { ...this.counts };
  }

  private async runRetrying<T>(fn: (ctx: SessionContext) => T | Promise<T>): Promise<T> {
    const seen = this.mod.generation;
    try {
      return await this.use(fn);
    } catch (err) {
      if (!this.isLoss(err)) throw err;
      await this.reconnect(seen);
      try {
        return await this.use(fn);
      } catch (err2) {
        if (!this.isLoss(err2)) throw err2;
        throw this.unavailable(err2);
      }
    }
  }

  /** Closes the idle sessions, then waits for leased ones to come back and closes them. */
  async close(): Promise<void> {
    this.closed = true;
    this.syncGeneration();
    for (const lease of this.idle.splice(0)) this.closeSession(lease);
    for (const wake of this.waiters.splice(0)) wake();
    if (this.leased > 0) await new Promise<void>((done) => this.drained.push(done));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private async use<T>(fn: (ctx: SessionContext) => T | Promise<T>): Promise<T> {
    const lease = await this.acquire();
    this.leased++;
    let healthy = false;
    try {
      const result = await this.mod.run(() => {
        if (lease.generation !== this.mod.generation) throw new StaleSessionError();
        return fn({ session: lease.handle, slot: this.slot!, generation: lease.generation });
      });
      healthy = true;
      return result;
    } finally {
      // After a failed call the session may still hold an active operation: never reuse it.
      this.release(lease, healthy);
    }
  }

  private async acquire(): Promise<Lease> {
    for (;;) {
      if (this.closed) throw new KeystoreError('CLOSED', 'keystore is closed');
      if (this.loginRefused) throw this.loginRefused;
      this.syncGeneration();
      const lease = this.idle.pop();
      if (lease) return lease;
      if (this.open < this.size) {
        this.open++;
        try {
          return this.openSession();
        } catch (err) {
          this.open--;
          throw err;
        }
      }
      await new Promise<void>((wake) => this.waiters.push(wake));
    }
  }

  private release(lease: Lease, healthy: boolean): void {
    this.leased--;
    if (lease.generation === this.generation) {
      if (healthy && !this.closed) {
        this.idle.push(lease);
      } else {
        this.closeSession(lease);
        this.open--;
      }
    }
    this.waiters.shift()?.();
    if (this.closed && this.leased === 0) for (const done of this.drained.splice(0)) done();
  }

  /** Forgets sessions from before a re-initialization; their handles must not be touched. */
  private syncGeneration(): void {
    if (this.generation === this.mod.generation) return;
    this.counts.reconnects += this.mod.generation - this.generation;
    this.generation = this.mod.generation;
    this.idle = [];
    this.open = 0;
    this.slot = undefined;
    for (const wake of this.waiters.splice(0)) wake();
  }

  private openSession(): Lease {
    const api = this.mod.api;
    if (this.slot === undefined) {
      try {
        this.slot = findSlot(api, this.tokenLabel);
      } catch (err) {
        // A token we have already used that is no longer listed has gone away.
        if (err instanceof TokenNotFoundError && this.connectedOnce) {
          throw new TokenUnavailableError(this.tokenLabel, 'token not present', { cause: err });
        }
        throw err;
      }
    }
    const handle = api.C_OpenSession(this.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    const lease = { handle, generation: this.generation };
    try {
      this.login(handle);
    } catch (err) {
      this.closeSession(lease);
      throw err;
    }
    this.connectedOnce = true;
    return lease;
  }

  private login(session: Handle): void {
    const key = `${this.tokenLabel}`;
    try {
      this.mod.api.C_Login(session, pkcs11js.CKU_USER, this.pin);
      this.mod.recordLogin(key, this.pin);
    } catch (err) {
      // Login state is per process: the token is already logged in, by us or by another
      // Keystore in this process; accept only if it was with this same PIN.
      if (hasCkr(err, pkcs11js.CKR_USER_ALREADY_LOGGED_IN)) {
        if (this.mod.loggedInWith(key, this.pin) === false) throw new WrongPinError(this.tokenLabel);
        return;
      }
      if (hasCkr(err, pkcs11js.CKR_PIN_INCORRECT, pkcs11js.CKR_PIN_INVALID, pkcs11js.CKR_PIN_LEN_RANGE)) {
        throw (this.loginRefused = new WrongPinError(this.tokenLabel, { cause: err }));
      }
      if (hasCkr(err, pkcs11js.CKR_PIN_LOCKED)) throw (this.loginRefused = new PinLockedError(this.tokenLabel, { cause: err }));
      throw err;
    }
  }

  private closeSession(lease: Lease): void {
    if (lease.generation !== this.mod.generation) return;
    try {
      this.mod.api.C_CloseSession(lease.handle);
    } catch {
      // The session is already gone, which is what we wanted.
    }
  }

  private isLoss(err: unknown): boolean {
    return err instanceof StaleSessionError || err instanceof TokenUnavailableError || isConnectionLost(err);
  }

  private async reconnect(seenGeneration: number): Promise<void> {
    try {
      await this.mod.reinitialize(seenGeneration);
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  private unavailable(err: unknown): TokenUnavailableError {
    if (err instanceof TokenUnavailableError) return err;
    const reason = err instanceof StaleSessionError ? 'library re-initialized repeatedly' : (ckrName(err) ?? 'connection lost');
    return new TokenUnavailableError(this.tokenLabel, reason, { cause: err });
  }
}
