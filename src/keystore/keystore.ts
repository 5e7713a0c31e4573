// Signing keys sealed by a key-encryption key inside a PKCS#11 token (DESIGN.md section 2).
//
// No PKCS#11 mechanism computes BIP340 or MuSig2, so the scalar must reach process memory to
// sign. The token keeps it at rest, sealed with AES-256-GCM under a KEK that never leaves the
// token; withSecretKey() opens it for the length of one callback and then overwrites it.
import { randomBytes } from 'node:crypto';
import {
  BLOB_LEN,
  IV_LEN,
  KEY_OBJECT_APPLICATION,
  SEALED_LEN,
  SECRET_LEN,
  blobAad,
  decodeBlob,
  encodeBlob,
} from './blob.js';
import type { KeyBlob } from './blob.js';
import {
  BlobAuthenticationError,
  DuplicateLabelError,
  InvalidSecretError,
  KeyNotFoundError,
  KeystoreError,
} from './errors.js';
import { DEFAULT_AUDIT_KEY_LABEL, checkAuditKeyPolicy, createAuditKey, findAuditKeys, hmacSha256 } from './audit-key.js';
import { DEFAULT_KEK_LABEL, checkKekPolicy, createKek, findKeks } from './kek.js';
import { Pkcs11Module } from './module.js';
import { resolvePin } from './pin.js';
import { hasCkr, mayBeAuthFailure, pkcs11js } from './pkcs11.js';
import type { GcmParams, Handle, Mechanism, Template } from './pkcs11.js';
import { derivePublicKey } from './pubkey.js';
import { MAX_RANDOM_BYTES, mixEntropy } from './random.js';
import { SessionPool } from './session-pool.js';
import type { KeystoreStats, SessionContext } from './session-pool.js';
import { checkSecretKey, isValidSecretScalar, validateLabel } from './validation.js';

export interface KeystoreOptions {
  /** Path of the PKCS#11 library (.so). */
  modulePath: string;
  /** Label of the token that holds the KEK and the key objects. */
  tokenLabel: string;
  /** The user PIN; exactly one of pin and pinFile. */
  pin?: string;
  /** A file holding the user PIN (one trailing newline is ignored). */
  pinFile?: string;
  /** Sessions kept open on the token (default 4). */
  poolSize?: number;
  /** Label of the key-encryption key (default "musig2-signer-kek"). */
  kekLabel?: string;
  /** How long a sealed blob is reused before it is read from the token again (default SEALED_BLOB_TTL_MS). */
  sealedBlobTtlMs?: number;
  /** The decrypt time (moving average, ms) past which decrypts leave the event loop (default SLOW_DECRYPT_MS). */
  slowDecryptMs?: number;
}

export interface KeyInfo {
  readonly label: string;
  /** 33-byte compressed secp256k1 public key. */
  readonly publicKey: Uint8Array;
}

/** Where a key object was last seen; handles are only valid within one library generation. */
interface KeyEntry {
  readonly info: KeyInfo;
  readonly handle: Handle;
  readonly generation: number;
  /** The sealed blob as last read from the token (ciphertext under the KEK: public), and when. */
  blob?: KeyBlob;
  readAt?: number;
}

/**
 * How long a sealed blob read from the token is reused before it is read again (ms). Reading
 * it is a synchronous C_GetAttributeValue on the event loop, about an eighth of the main
 * thread's time per signature; the blob is ciphertext that only the token's KEK opens, so
 * holding it changes nothing about custody. A key object deleted or replaced by another
 * process is noticed at the next read: at most this long later.
 */
export const SEALED_BLOB_TTL_MS = 1000;

/**
 * C_Decrypt of a sealed key runs on the event loop while the token answers it quickly
 * (SoftHSM, a local HSM: tens of µs), like C_DecryptInit and C_GenerateRandom already do: a
 * hand-off to the libuv pool and back costs more than that. Once the decrypts' moving average
 * (weight 1/16 per call, so one stall alone must pass 16x this) exceeds this many ms, later
 * decrypts go to the libuv pool for good, so a network-attached HSM does not hold the loop.
 */
export const SLOW_DECRYPT_MS = 1;

/** Attempts at drawing a scalar below n; each fails with probability below 2^-127. */
const MAX_SCALAR_DRAWS = 16;

export class Keystore {
  private index = new Map<string, KeyEntry>();
  private kek: { handle: Handle; generation: number } | undefined;
  private auditKey: { handle: Handle; generation: number } | undefined;
  private closed = false;
  /** Whether C_Decrypt still runs on the event loop (SLOW_DECRYPT_MS), and its moving average. */
  private decryptOnLoop = true;
  private decryptAvgMs = 0;

  private constructor(
    private readonly mod: Pkcs11Module,
    private readonly pool: SessionPool,
    private readonly kekLabel: string,
    private readonly blobTtlMs: number,
    private readonly slowDecryptMs: number,
  ) {}

  /**
   * Loads the module, finds the token by label, logs in and scans the key objects. If a KEK
   * exists its attributes are checked; keys can be listed without one, and the first
   * createKey/importKey creates it.
   */
  static async open(opts: KeystoreOptions): Promise<Keystore> {
    const pin = await resolvePin(opts);
    const poolSize = opts.poolSize ?? 4;
    if (!Number.isInteger(poolSize) || poolSize < 1) throw new RangeError('poolSize must be a positive integer');
    const mod = Pkcs11Module.acquire(opts.modulePath);
    const pool = new SessionPool(mod, opts.tokenLabel, pin, poolSize);
    const blobTtlMs = opts.sealedBlobTtlMs ?? SEALED_BLOB_TTL_MS;
    if (!Number.isFinite(blobTtlMs) || blobTtlMs < 0) throw new RangeError('sealedBlobTtlMs must be a non-negative number');
    const slowDecryptMs = opts.slowDecryptMs ?? SLOW_DECRYPT_MS;
    if (!Number.isFinite(slowDecryptMs) || slowDecryptMs < 0) throw new RangeError('slowDecryptMs must be a non-negative number');
    const ks = new Keystore(mod, pool, opts.kekLabel ?? DEFAULT_KEK_LABEL, blobTtlMs, slowDecryptMs);
    try {
      await pool.run((ctx) => {
        ks.findKek(ctx);
        ks.scan(ctx);
      });
    } catch (err) {
      await ks.close();
      throw err;
    }
    return ks;
  }

  /**
   * Creates the KEK if the token has none. Refuses when key objects exist without a KEK: a
   * new KEK could not open them, and hiding that would look like the keys still work.
   * Returns true when it created one.
   */
  async ensureKek(): Promise<boolean> {
    return this.pool.run((ctx) => {
      if (this.findKek(ctx)) return false;
      const orphans = this.findKeyObjects(ctx).length;
      if (orphans > 0) {
        throw new KeystoreError(
          'KEK_MISSING',
          `the key-encryption key "${this.kekLabel}" is missing but ${orphans} key object(s) exist; refusing to create a new KEK`,
        );
      }
      const handle = createKek(this.mod.api, ctx.session, this.kekLabel);
      checkKekPolicy(this.mod.api, ctx.session, handle, this.kekLabel);
      this.kek = { handle, generation: ctx.generation };
      return true;
    });
  }

  /** Generates a key inside the keystore: 32 random bytes, rejection-sampled into [1, n-1]. */
  async createKey(label: string): Promise<KeyInfo> {
    validateLabel(label);
    await this.ensureKek();
    const sk = await this.randomScalar();
    try {
      return await this.store(label, sk);
    } finally {
      sk.fill(0);
    }
  }

  /**
   * Seals a known secret key (migration, recovery, test vectors). The caller's buffer is
   * neither kept nor wiped: it stays the caller's to overwrite.
   */
  async importKey(label: string, secret: Uint8Array): Promise<KeyInfo> {
    validateLabel(label);
    checkSecretKey(secret);
    const sk = Uint8Array.from(secret);
    try {
      await this.ensureKek();
      return await this.store(label, sk);
    } finally {
      sk.fill(0);
    }
  }

  /** Every key on the token, sorted by label (a fresh scan). */
  async listKeys(): Promise<KeyInfo[]> {
    await this.pool.run((ctx) => this.scan(ctx, true));
    return [...this.index.values()].map((e) => e.info).sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
  }

  /** The key's public part. An unknown label triggers a re-scan first: another process may have added it. */
  async getKey(label: string): Promise<KeyInfo> {
    const known = this.index.get(label);
    if (known) return known.info;
    return this.pool.run((ctx) => this.locate(ctx, label).info);
  }

  /**
   * Decrypts the key inside the token, runs `fn` with the 32-byte scalar, and overwrites the
   * scalar when `fn` settles, whether it returned or threw. `sk` is valid only until then:
   * `fn` must neither keep it nor copy it anywhere that outlives the call.
   */
  async withSecretKey<T>(label: string, fn: (sk: Uint8Array, key: KeyInfo) => T | Promise<T>): Promise<T> {
    const { plain, info } = await this.pool.run((ctx) => this.unseal(ctx, label));
    try {
      return await fn(new Uint8Array(plain.buffer, plain.byteOffset, SECRET_LEN), info);
    } finally {
      plain.fill(0);
    }
  }

  /** `n` bytes of the token's C_GenerateRandom hashed with as many from the OS CSPRNG. */
  async random(n: number): Promise<Uint8Array> {
    if (!Number.isInteger(n) || n < 1 || n > MAX_RANDOM_BYTES) throw new RangeError(`random(n): n must be in [1, ${MAX_RANDOM_BYTES}]`);
    const token = await this.pool.run((ctx) => {
      // The buffer the token wrote into is wiped here; mixEntropy wipes the copy.
      const raw = Buffer.alloc(n);
      try {
        return Uint8Array.from(this.mod.api.C_GenerateRandom(ctx.session, raw));
      } finally {
        raw.fill(0);
      }
    });
    return mixEntropy(token, randomBytes(n), n);
  }

  /**
   * Finds the audit MAC key (audit-key.ts), checking its attributes; with `create`, generates
   * it in the token when there is none. Returns whether the token has it now.
   */
  async ensureAuditKey(create: boolean): Promise<'found' | 'created' | 'missing'> {
    return this.pool.run((ctx) => {
      if (this.findAuditKey(ctx)) return 'found';
      if (!create) return 'missing';
      const handle = createAuditKey(this.mod.api, ctx.session, DEFAULT_AUDIT_KEY_LABEL);
      checkAuditKeyPolicy(this.mod.api, ctx.session, handle, DEFAULT_AUDIT_KEY_LABEL);
      this.auditKey = { handle, generation: ctx.generation };
      return 'created';
    });
  }

  /**
   * Runs `fn` on one leased session with a synchronous HMAC-SHA256 under the audit MAC key, so
   * a batch of chained records costs one lease. `fn` may run twice (a reconnect retries it).
   */
  async withAuditMac<T>(fn: (mac: (data: Uint8Array) => Buffer) => T): Promise<T> {
    return this.pool.run((ctx) => {
      const key = this.findAuditKey(ctx);
      if (!key) throw new KeystoreError('AUDIT_KEY_MISSING', `the token has no audit MAC key "${DEFAULT_AUDIT_KEY_LABEL}"`);
      return fn((data) => hmacSha256(this.mod.api, ctx.session, key, data));
    });
  }

  /** Whether the token answers (reconnecting if needed). Never throws. */
  async healthy(): Promise<boolean> {
    if (this.closed) return false;
    try {
      await this.pool.run((ctx) => this.probe(ctx));
      return true;
    } catch {
      return false;
    }
  }

  /** Token errors and reconnects so far, for monitoring (a snapshot; the counts only grow). */
  get stats(): KeystoreStats & { decryptOnEventLoop: boolean } {
    return { ...this.pool.stats, decryptOnEventLoop: this.decryptOnLoop };
  }

  /** Waits for operations in progress, closes the sessions and releases the module. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.close();
    this.mod.release();
  }

  // ---- inside a leased session -------------------------------------------------------

  private async store(label: string, sk: Uint8Array): Promise<KeyInfo> {
    const publicKey = derivePublicKey(sk);
    const iv = Buffer.from(await this.random(IV_LEN));
    const info: KeyInfo = { label, publicKey: Uint8Array.from(publicKey) };
    await this.pool.run(async (ctx) => {
      // Checked inside the retried unit, so a retry after a reconnect cannot create a twin.
      if (this.findKeyObjects(ctx, label).length > 0) throw new DuplicateLabelError(label);
      const sealed = await this.seal(ctx, sk, iv, label, info.publicKey);
      const value = encodeBlob({ publicKey: Buffer.from(info.publicKey), iv, sealed });
      const handle = this.mod.api.C_CreateObject(ctx.session, keyObjectTemplate(label, value));
      this.index.set(label, { info, handle, generation: ctx.generation });
    });
    // Prove the key opens again before anyone relies on it: a key that cannot be unsealed
    // is lost, together with whatever is sent to it. Such an object is removed at once.
    try {
      await this.withSecretKey(label, (opened) => {
        if (!bytesEqual(derivePublicKey(opened), info.publicKey)) throw new BlobAuthenticationError(label);
      });
    } catch (err) {
      if (err instanceof BlobAuthenticationError) await this.destroyKeyObject(label);
      throw err;
    }
    return info;
  }

  private async destroyKeyObject(label: string): Promise<void> {
    await this.pool.run((ctx) => {
      for (const handle of this.findKeyObjects(ctx, label)) this.mod.api.C_DestroyObject(ctx.session, handle);
      this.index.delete(label);
    });
  }

  private async seal(ctx: SessionContext, sk: Uint8Array, iv: Buffer, label: string, publicKey: Uint8Array): Promise<Buffer> {
    const api = this.mod.api;
    const plain = Buffer.alloc(SECRET_LEN);
    try {
      plain.set(sk);
      api.C_EncryptInit(ctx.session, gcm(iv, blobAad(label, publicKey)), this.requireKek(ctx));
      const sealed = await api.C_EncryptAsync(ctx.session, plain, Buffer.alloc(SEALED_LEN + 16));
      if (sealed.length !== SEALED_LEN) throw new KeystoreError('PKCS11', `AES-GCM returned ${sealed.length} bytes, expected ${SEALED_LEN}`);
      return Buffer.from(sealed);
    } finally {
      plain.fill(0);
    }
  }

  /** Returns the plaintext in a buffer of its own; the caller must wipe it. */
  private async unseal(ctx: SessionContext, label: string): Promise<{ plain: Buffer; info: KeyInfo }> {
    const api = this.mod.api;
    const { blob, info } = this.readKey(ctx, label);
    const kek = this.requireKek(ctx);
    // The output buffer must hold the whole input: a short one leaves the operation active.
    const out = Buffer.alloc(SEALED_LEN);
    try {
      api.C_DecryptInit(ctx.session, gcm(blob.iv, blobAad(label, blob.publicKey)), kek);
      const plain = this.decryptOnLoop ? this.decryptTimed(ctx, blob.sealed, out) : await api.C_DecryptAsync(ctx.session, blob.sealed, out);
      if (plain.length !== SECRET_LEN || !isValidSecretScalar(plain)) throw new BlobAuthenticationError(label);
      return { plain: out, info };
    } catch (err) {
      out.fill(0);
      this.forgetBlob(label); // the next attempt reads the object again
      if (mayBeAuthFailure(err)) {
        // SoftHSM reports a bad tag as CKR_GENERAL_ERROR, which is also what a vanished
        // token looks like: only blame the blob if the token still answers.
        this.probe(ctx);
        throw new BlobAuthenticationError(label, { cause: err });
      }
      throw err;
    }
  }

  /** C_Decrypt on the event loop, timed; a token that has become slow moves decrypts to the libuv pool. */
  private decryptTimed(ctx: SessionContext, sealed: Buffer, out: Buffer): Buffer {
    const started = performance.now();
    try {
      return this.mod.api.C_Decrypt(ctx.session, sealed, out);
    } finally {
      this.decryptAvgMs += (performance.now() - started - this.decryptAvgMs) / 16;
      if (this.decryptAvgMs > this.slowDecryptMs) this.decryptOnLoop = false;
    }
  }

  private forgetBlob(label: string): void {
    const entry = this.index.get(label);
    if (entry) entry.readAt = undefined;
  }

  /** Cheap liveness check: the token is listed and the KEK handle (if any) still resolves. */
  private probe(ctx: SessionContext): void {
    const api = this.mod.api;
    api.C_GetTokenInfo(ctx.slot);
    api.C_GetSessionInfo(ctx.session);
    const kek = this.findKek(ctx);
    if (kek) api.C_GetAttributeValue(ctx.session, kek, [{ type: pkcs11js.CKA_CLASS }]);
  }

  private findKek(ctx: SessionContext): Handle | undefined {
    if (this.kek?.generation === ctx.generation) return this.kek.handle;
    const found = findKeks(this.mod.api, ctx.session, this.kekLabel);
    if (found.length > 1) throw new KeystoreError('KEK_POLICY', `${found.length} keys are labelled "${this.kekLabel}"; expected one`);
    const handle = found[0];
    if (handle === undefined) return undefined;
    checkKekPolicy(this.mod.api, ctx.session, handle, this.kekLabel);
    this.kek = { handle, generation: ctx.generation };
    return handle;
  }

  private findAuditKey(ctx: SessionContext): Handle | undefined {
    if (this.auditKey?.generation === ctx.generation) return this.auditKey.handle;
    const found = findAuditKeys(this.mod.api, ctx.session, DEFAULT_AUDIT_KEY_LABEL);
    if (found.length > 1) throw new KeystoreError('AUDIT_KEY_POLICY', `${found.length} keys are labelled "${DEFAULT_AUDIT_KEY_LABEL}"; expected one`);
    const handle = found[0];
    if (handle === undefined) return undefined;
    checkAuditKeyPolicy(this.mod.api, ctx.session, handle, DEFAULT_AUDIT_KEY_LABEL);
    this.auditKey = { handle, generation: ctx.generation };
    return handle;
  }

  private requireKek(ctx: SessionContext): Handle {
    const kek = this.findKek(ctx);
    if (!kek) throw new KeystoreError('KEK_MISSING', `the token has no key-encryption key "${this.kekLabel}"`);
    return kek;
  }

  /** The blob of `label`, by its known handle or else by a search. */
  private readKey(ctx: SessionContext, label: string): { blob: KeyBlob; info: KeyInfo } {
    const known = this.index.get(label);
    if (known && known.generation === ctx.generation) {
      const now = performance.now();
      if (known.blob !== undefined && known.readAt !== undefined && now - known.readAt < this.blobTtlMs) {
        return { blob: known.blob, info: known.info };
      }
      try {
        const read = this.readEntry(ctx, label, known.handle);
        known.blob = read.blob;
        known.readAt = now;
        return { blob: read.blob, info: known.info };
      } catch (err) {
        // Deleted behind our back (or by another process): look it up again below.
        if (!hasCkr(err, pkcs11js.CKR_OBJECT_HANDLE_INVALID)) throw err;
        this.index.delete(label);
      }
    }
    const entry = this.locate(ctx, label);
    return { blob: entry.blob!, info: entry.info };
  }

  private readEntry(ctx: SessionContext, label: string, handle: Handle): { blob: KeyBlob; info: KeyInfo } {
    const [value] = this.readAttributes(ctx, handle, [pkcs11js.CKA_VALUE]);
    const blob = decodeBlob(value!, label);
    return { blob, info: { label, publicKey: Uint8Array.from(blob.publicKey) } };
  }

  /** Finds exactly one key object by label and records it, or throws KeyNotFoundError. */
  private locate(ctx: SessionContext, label: string): KeyEntry {
    const handles = this.findKeyObjects(ctx, label);
    if (handles.length === 0) {
      this.index.delete(label);
      this.probe(ctx); // an empty answer from a vanished token must not read as "no such key"
      throw new KeyNotFoundError(label);
    }
    if (handles.length > 1) {
      throw new KeystoreError('DUPLICATE_LABEL', `${handles.length} key objects are labelled "${label}"; remove all but one`);
    }
    const handle = handles[0]!;
    const { info, blob } = this.readEntry(ctx, label, handle);
    const entry: KeyEntry = { info, handle, generation: ctx.generation, blob, readAt: performance.now() };
    this.index.set(label, entry);
    return entry;
  }

  /** Rebuilds the index from the token. With `strict`, a malformed key object is an error. */
  private scan(ctx: SessionContext, strict = false): void {
    const next = new Map<string, KeyEntry>();
    const seen = new Set<string>();
    for (const handle of this.findKeyObjects(ctx)) {
      const [labelBytes, value] = this.readAttributes(ctx, handle, [pkcs11js.CKA_LABEL, pkcs11js.CKA_VALUE]);
      const label = labelBytes!.toString('utf8');
      if (seen.has(label)) {
        if (strict) throw new KeystoreError('DUPLICATE_LABEL', `several key objects are labelled "${label}"; remove all but one`);
        next.delete(label); // ambiguous: leave it to locate() to report on use
        continue;
      }
      seen.add(label);
      let blob: KeyBlob;
      try {
        blob = decodeBlob(value!, label);
      } catch (err) {
        if (strict) throw err;
        continue;
      }
      next.set(label, { info: { label, publicKey: Uint8Array.from(blob.publicKey) }, handle, generation: ctx.generation, blob, readAt: performance.now() });
    }
    this.index = next;
  }

  private findKeyObjects(ctx: SessionContext, label?: string): Handle[] {
    const api = this.mod.api;
    const template: Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
      { type: pkcs11js.CKA_APPLICATION, value: KEY_OBJECT_APPLICATION },
    ];
    if (label !== undefined) template.push({ type: pkcs11js.CKA_LABEL, value: label });
    api.C_FindObjectsInit(ctx.session, template);
    try {
      const all: Handle[] = [];
      for (;;) {
        const batch = api.C_FindObjects(ctx.session, 256);
        if (batch.length === 0) return all;
        all.push(...batch);
      }
    } finally {
      api.C_FindObjectsFinal(ctx.session);
    }
  }

  private readAttributes(ctx: SessionContext, handle: Handle, types: number[]): Buffer[] {
    const attrs = this.mod.api.C_GetAttributeValue(
      ctx.session,
      handle,
      types.map((type) => ({ type })),
    );
    return types.map((type) => attrs.find((a) => a.type === type)?.value ?? Buffer.alloc(0));
  }

  private async randomScalar(): Promise<Uint8Array> {
    for (let i = 0; i < MAX_SCALAR_DRAWS; i++) {
      const candidate = await this.random(SECRET_LEN);
      if (isValidSecretScalar(candidate)) return candidate;
      candidate.fill(0);
    }
    throw new InvalidSecretError(`no scalar below n in ${MAX_SCALAR_DRAWS} draws: the random source is broken`);
  }
}

function gcm(iv: Buffer, aad: Buffer): Mechanism {
  // CK_GCM_PARAMS as in PKCS#11 2.40 and 3.0 (with ulIvBits), which SoftHSM 2.6 expects.
  const parameter: GcmParams = { type: pkcs11js.CK_PARAMS_GCM, iv, ivBits: iv.length * 8, aad, tagBits: 128 };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}

function keyObjectTemplate(label: string, value: Buffer): Template {
  if (value.length !== BLOB_LEN) throw new Error('internal: blob length');
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_MODIFIABLE, value: false },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_APPLICATION, value: KEY_OBJECT_APPLICATION },
    { type: pkcs11js.CKA_VALUE, value },
  ];
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
