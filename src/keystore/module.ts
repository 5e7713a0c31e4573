// One loaded PKCS#11 library per path per process, shared and reference-counted.
//
// Cryptoki keeps global state per process: every PKCS11 instance that loads the same library
// shares one C_Initialize, one login state per token, and one set of session handles.
// Several Keystores in a process (tests do this) must therefore share the library, and a
// reconnect by one of them (C_Finalize + C_Initialize) invalidates every session of all of
// them. The generation counter lets each pool notice that without touching stale handles,
// whose numbers may already belong to a new session.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { resolve } from 'node:path';
import { ModuleLoadError } from './errors.js';
import { hasCkr, pkcs11js } from './pkcs11.js';
import type { PKCS11 } from './pkcs11.js';

const registry = new Map<string, Pkcs11Module>();

// Keyed per process so the PIN fingerprints below are useless outside it.
const pinFingerprintKey = randomBytes(32);

export class Pkcs11Module {
  /** Bumped by every re-initialization; sessions from an older generation are dead. */
  generation = 0;
  private refs = 0;
  private inFlight = 0;
  private drained: Array<() => void> = [];
  private reinitializing: Promise<void> | undefined;
  // Which PIN logged each token in, as an HMAC: Cryptoki login is per process, so a second
  // Keystore with a wrong PIN would otherwise be let in by CKR_USER_ALREADY_LOGGED_IN.
  private readonly loginFingerprints = new Map<string, Buffer>();

  private constructor(
    readonly path: string,
    readonly api: PKCS11,
  ) {}

  /** Loads and initializes the library at `path`, or shares the instance already loaded. */
  static acquire(path: string): Pkcs11Module {
    const key = resolve(path);
    let mod = registry.get(key);
    if (!mod) {
      const api = new pkcs11js.PKCS11();
      try {
        api.load(key);
      } catch (err) {
        throw new ModuleLoadError(path, firstLine(err), { cause: err });
      }
      mod = new Pkcs11Module(key, api);
      mod.initialize();
      registry.set(key, mod);
    }
    mod.refs++;
    return mod;
  }

  /** Drops one reference; the last one finalizes the library. */
  release(): void {
    if (--this.refs > 0) return;
    registry.delete(this.path);
    try {
      this.api.C_Finalize();
    } catch {
      // Already finalized or the device is gone: nothing left to release.
    }
    try {
      this.api.close();
    } catch {
      // Unloading is best effort.
    }
  }

  /**
   * Runs one PKCS#11 operation, counted so a re-initialization waits for it to finish:
   * finalizing while a worker thread is inside C_Decrypt would pull the library out from
   * under it.
   */
  async run<T>(fn: () => T | Promise<T>): Promise<T> {
    // A failed re-initialization surfaces as CKR_CRYPTOKI_NOT_INITIALIZED inside fn, which
    // the pool treats as a lost connection and retries; its own error is not ours to throw.
    while (this.reinitializing) await this.reinitializing.catch(() => undefined);
    this.inFlight++;
    try {
      return await fn();
    } finally {
      if (--this.inFlight === 0) for (const wake of this.drained.splice(0)) wake();
    }
  }

  /**
   * C_Finalize + C_Initialize, once per lost generation: callers that saw the same dead
   * generation share one re-initialization.
   */
  async reinitialize(seenGeneration: number): Promise<void> {
    if (this.generation !== seenGeneration) return;
    if (!this.reinitializing) {
      this.reinitializing = (async () => {
        if (this.inFlight > 0) await new Promise<void>((wake) => this.drained.push(wake));
        try {
          this.api.C_Finalize();
        } catch {
          // The library may already consider itself finalized.
        }
        this.loginFingerprints.clear();
        this.generation++;
        this.initialize();
      })().finally(() => {
        this.reinitializing = undefined;
      });
    }
    await this.reinitializing;
  }

  private initialize(): void {
    try {
      // OS locking: the *Async calls run on libuv worker threads.
      this.api.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (err) {
      if (hasCkr(err, pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED)) return;
      throw new ModuleLoadError(this.path, `C_Initialize failed: ${firstLine(err)}`, { cause: err });
    }
  }

  recordLogin(tokenKey: string, pin: string): void {
    this.loginFingerprints.set(tokenKey, fingerprint(pin));
  }

  /** For CKR_USER_ALREADY_LOGGED_IN: was the token logged in with this same PIN? */
  loggedInWith(tokenKey: string, pin: string): boolean | undefined {
    const known = this.loginFingerprints.get(tokenKey);
    return known === undefined ? undefined : timingSafeEqual(known, fingerprint(pin));
  }
}

function fingerprint(pin: string): Buffer {
  return createHmac('sha256', pinFingerprintKey).update(pin, 'utf8').digest();
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0] ?? msg;
}
