// A pool of worker threads for the curve arithmetic of the secret-bearing operations (BIP327
// NonceGen, Sign, DeterministicSign) and of the Aggregator's public ones (KeyAgg, NonceAgg,
// PartialSigVerify, PartialSigAgg), so one daemon uses every core and the event loop stays
// free for I/O. Size 0 runs the same operations inline on the calling thread.
//
// Secrets cross threads only inside a fresh ArrayBuffer that is moved through the transfer
// list (never structured-cloned): the pool copies sk (and rand', and for Sign the secnonce)
// into its prefix, the public inputs after them, and posts it, which detaches it here; the
// worker zeroes the secret prefix in `finally` after use.
// The caller's own buffers stay the caller's to wipe (withSecretKey, the session's secnonce);
// like musig2.sign, `sign` zeroes the secret half of the caller's secnonce before it returns.
// Outputs come back transferred; the worker keeps no copy of a secret output.
//
// Dispatch: a call waits for a permit (at most `depth` calls per worker outstanding), and each
// call goes to the least busy worker. Open the key inside the lease, so at most size x depth
// plaintext keys wait for a worker at any time.
//
// The queue is bounded and shared fairly (quotas against one client starving the others):
// - Past `maxQueued` waiting calls, a call is refused at once with RESOURCE_EXHAUSTED.
// - Each client may have at most `maxPerClient` calls waiting or running; past it,
//   RESOURCE_EXHAUSTED at once. The client is the `caller` argument of `lease` and of each
//   operation (the gRPC call's identity), passed explicitly so that no async_hooks run per
//   promise; without one (tests, tools) no per-client quota applies.
// - Waiting calls are served round-robin across clients, so a client with a deep queue gets
//   its turn like any other instead of holding the head of one FIFO.
// - Signing (lease: NonceGen, Sign, DeterministicSign) goes before Aggregator work (the public
//   operations), and Aggregator work holds at most size x (depth - 1) permits (at least one),
//   leaving a permit per worker to signing. So a signing call never waits behind queued
//   Aggregator work: at most behind one Aggregator operation already running on its worker.
//
// A worker that dies fails its in-flight calls with a SignerError (INTERNAL: a bug or a
// resource failure, never "retry") and is replaced. Musig2 errors come back as the same
// classes with the same public fields, so toSignerError maps them as before.

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import * as musig2 from '../musig2/index.js';
import type { NonceGenInput, NonceGenOutput, SessionContext, Tweak } from '../musig2/index.js';
import { RAND_BYTES, SECNONCE_BYTES, SK_BYTES, isPublicOp, isSecretOp, packRequest, rebuildError } from './compute-protocol.js';
import type {
  ComputeOp,
  ComputePublicOp,
  ComputeRequest,
  ComputeResponse,
  ComputeTestOp,
  ComputeWorkerData,
} from './compute-protocol.js';
import { SignerError } from './errors.js';

export type { ComputeOp, ComputePublicOp } from './compute-protocol.js';

/** The secret-bearing operations, with musig2's signatures made asynchronous. */
export interface Compute {
  nonceGen(input: NonceGenInput): Promise<NonceGenOutput>;
  /** Zeroes secnonce[0..64) before it returns, as musig2.sign does. */
  sign(secnonce: Uint8Array, sk: Uint8Array, ctx: SessionContext): Promise<Uint8Array>;
  deterministicSign(
    sk: Uint8Array,
    aggothernonce: Uint8Array,
    pubkeys: readonly Uint8Array[],
    tweaks: readonly Tweak[],
    msg: Uint8Array,
    rand?: Uint8Array,
  ): Promise<{ pubnonce: Uint8Array; psig: Uint8Array }>;
}

/**
 * The Aggregator's public operations (no secret input or output), with musig2's results made
 * asynchronous. Errors are musig2's own classes, as if musig2 had been called here.
 */
export interface PublicCompute {
  /** KeyAgg then ApplyTweak for each tweak: GetXonlyPubkey (32) and GetPlainPubkey (33). */
  keyAgg(pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[]): Promise<{ xonly: Uint8Array; plain: Uint8Array }>;
  nonceAgg(pubnonces: readonly Uint8Array[]): Promise<Uint8Array>;
  partialSigVerify(
    psig: Uint8Array,
    pubnonces: readonly Uint8Array[],
    pubkeys: readonly Uint8Array[],
    tweaks: readonly Tweak[],
    msg: Uint8Array,
    i: number,
  ): Promise<boolean>;
  partialSigAgg(psigs: readonly Uint8Array[], ctx: SessionContext): Promise<Uint8Array>;
}

/** Both kinds of operation, as a worker or this thread runs them (the permit already held). */
export type AnyCompute = Compute & PublicCompute;

/** Test hooks. Setting any also starts the workers in test mode (test ops, wiped buffers sent back). */
export interface ComputeTestHooks {
  /** Right after a request is posted: its ArrayBuffer (secret prefix included) as this side now holds it, and the worker's threadId. */
  sent?(op: ComputeOp, secret: ArrayBuffer, threadId: number): void;
  /** Right after a public request is posted: the worker's threadId. */
  posted?(op: ComputePublicOp, threadId: number): void;
  /** The secret prefix of the worker's request buffer after its `finally` zeroed it, moved back here. */
  wiped?(op: ComputeOp, secret: Uint8Array): void;
  /** Workers throw while starting. */
  failStart?: boolean;
}

export interface ComputePoolOptions {
  /** Calls outstanding per worker at once (the rest queue here). Default 2. */
  depth?: number;
  /** Most calls waiting for a permit; past it RESOURCE_EXHAUSTED at once. Default 1024. */
  maxQueued?: number;
  /** Most calls one client may have waiting or running; past it RESOURCE_EXHAUSTED at once. Default 128. */
  maxPerClient?: number;
  /** Worker deaths and respawns are logged here. */
  logger?: Logger;
  /** Tests only. */
  testHooks?: ComputeTestHooks;
}

export const DEFAULT_DEPTH = 2;
export const DEFAULT_MAX_COMPUTE_QUEUE = 1024;
export const DEFAULT_MAX_COMPUTE_PER_CLIENT = 128;

type WorkClass = 'sign' | 'public';

interface Waiter {
  owner: string | undefined;
  resolve(): void;
  reject(err: Error): void;
}

/** Waiters served round-robin across owners (FIFO within one owner). */
class FairQueue {
  private readonly byOwner = new Map<string | undefined, Waiter[]>();
  private size = 0;

  get length(): number {
    return this.size;
  }

  push(w: Waiter): void {
    const q = this.byOwner.get(w.owner);
    if (q) q.push(w);
    else this.byOwner.set(w.owner, [w]);
    this.size++;
  }

  /** The head of the first owner in turn; that owner then goes to the back of the turn. */
  shift(): Waiter | undefined {
    for (const [owner, q] of this.byOwner) {
      const w = q.shift()!;
      this.byOwner.delete(owner);
      if (q.length > 0) this.byOwner.set(owner, q); // Map order: re-inserted owners go last
      this.size--;
      return w;
    }
    return undefined;
  }

  drain(): Waiter[] {
    const all = [...this.byOwner.values()].flat();
    this.byOwner.clear();
    this.size = 0;
    return all;
  }
}
export const MAX_WORKERS = 256;

/** The default pool size: the cores this process may use. */
export function defaultPoolSize(): number {
  return availableParallelism();
}

/** Run musig2 on this thread (size 0). */
const inlineCompute: AnyCompute = {
  nonceGen: async (input) => musig2.nonceGen(input),
  sign: async (secnonce, sk, ctx) => musig2.sign(secnonce, sk, ctx),
  deterministicSign: async (sk, aggothernonce, pubkeys, tweaks, msg, rand) =>
    musig2.deterministicSign(sk, aggothernonce, pubkeys, tweaks, msg, rand),
  keyAgg: async (pubkeys, tweaks) => {
    const ctx = musig2.keyAggAndTweak(pubkeys, tweaks);
    return { xonly: musig2.getXonlyPk(ctx), plain: musig2.getPlainPk(ctx) };
  },
  nonceAgg: async (pubnonces) => musig2.nonceAgg(pubnonces),
  partialSigVerify: async (psig, pubnonces, pubkeys, tweaks, msg, i) => musig2.partialSigVerify(psig, pubnonces, pubkeys, tweaks, msg, i),
  partialSigAgg: async (psigs, ctx) => musig2.partialSigAgg(psigs, ctx),
};

interface Pending {
  op: ComputeOp | ComputePublicOp | ComputeTestOp;
  secretBytes: number;
  resolve(out: ArrayBuffer[]): void;
  reject(err: Error): void;
}

interface Handle {
  worker: Worker;
  ready: boolean;
  pending: Map<number, Pending>;
  exited: boolean;
}

/**
 * How to start a worker: the compiled compute-worker.js next to this file, or, when this module
 * is the TypeScript source (run by tsx or vitest), compute-worker.ts through tsx. tsx's own
 * `--import tsx` registers its hooks on the main thread only on Node 20, so the worker
 * registers them itself before importing the source.
 */
/** The ESM build of `tsx/esm/api`, found through tsx's package.json from this module. */
function tsxEsmApi(from: URL): URL {
  const pkgPath = createRequire(from).resolve('tsx/package.json');
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { exports?: Record<string, { import?: { default?: string } }> };
  const rel = pkg.exports?.['./esm/api']?.import?.default;
  if (typeof rel !== 'string') throw new Error('tsx/esm/api has no ESM entry; build the project (npm run build) to run without tsx');
  return new URL(rel, pathToFileURL(pkgPath));
}

function workerEntry(): { entry: string | URL; eval: boolean; execArgv: string[] } {
  const here = new URL(import.meta.url);
  if (!here.pathname.endsWith('.ts')) {
    return { entry: new URL('./compute-worker.js', here), eval: false, execArgv: process.execArgv };
  }
  const source = new URL('./compute-worker.ts', here).href;
  const code =
    `import(${JSON.stringify(tsxEsmApi(here).href)})\n` +
    `  .then(({ register }) => { register(); return import(${JSON.stringify(source)}); })\n` +
    `  .catch((err) => { setImmediate(() => { throw err; }); });\n`;
  // The parent's tsx flags are dropped (they would register tsx a second time where they work);
  // everything else (--cpu-prof, --enable-source-maps, ...) is kept.
  const execArgv: string[] = [];
  for (let i = 0; i < process.execArgv.length; i++) {
    const arg = process.execArgv[i]!;
    const next = process.execArgv[i + 1];
    if ((arg === '--require' || arg === '--import' || arg === '--loader' || arg === '-r') && next !== undefined && /tsx/.test(next)) {
      i++;
      continue;
    }
    if (/^--(require|import|loader|experimental-loader)=.*tsx/.test(arg)) continue;
    execArgv.push(arg);
  }
  return { entry: code, eval: true, execArgv };
}

/** new Worker() itself failed: there is no thread, and no 'exit' will follow. */
class NoThreadError extends Error {}

function shuttingDown(): SignerError {
  return new SignerError('UNAVAILABLE', 'the signer is shutting down');
}

function workerDied(detail: string): SignerError {
  return new SignerError('INTERNAL', `a compute worker stopped (${detail}) before answering; nothing was released`);
}

const xonlyOf = (tweaks: readonly Tweak[]): boolean[] => tweaks.map((t) => t.xonly);
const tweakBytes = (tweaks: readonly Tweak[]): Uint8Array[] => tweaks.map((t) => t.tweak);

const isBytes = (x: unknown, len?: number): x is Uint8Array => x instanceof Uint8Array && (len === undefined || x.length === len);
const isByteList = (xs: unknown): xs is readonly Uint8Array[] => Array.isArray(xs) && xs.every((x) => isBytes(x));
const isTweakList = (ts: unknown): ts is readonly Tweak[] =>
  Array.isArray(ts) &&
  ts.every((t) => typeof t === 'object' && t !== null && isBytes((t as Tweak).tweak) && typeof (t as Tweak).xonly === 'boolean');

export class ComputePool implements Compute, PublicCompute {
  /** Number of worker threads; 0 means inline. */
  readonly size: number;
  /** The curve backend of musig2 when the pool was made; its workers (respawns too) run the same. */
  readonly backend: musig2.BackendName = musig2.activeBackend();
  /** The operations as `lease` hands them out: straight to a worker, the permit already held. */
  private readonly onWorker: AnyCompute = {
    nonceGen: (input) => this.nonceGenOnWorker(input),
    sign: (secnonce, sk, ctx) => this.signOnWorker(secnonce, sk, ctx),
    deterministicSign: (sk, aggothernonce, pubkeys, tweaks, msg, rand) =>
      this.deterministicSignOnWorker(sk, aggothernonce, pubkeys, tweaks, msg, rand),
    keyAgg: (pubkeys, tweaks) => this.keyAggOnWorker(pubkeys, tweaks),
    nonceAgg: (pubnonces) => this.nonceAggOnWorker(pubnonces),
    partialSigVerify: (psig, pubnonces, pubkeys, tweaks, msg, i) => this.partialSigVerifyOnWorker(psig, pubnonces, pubkeys, tweaks, msg, i),
    partialSigAgg: (psigs, ctx) => this.partialSigAggOnWorker(psigs, ctx),
  };
  private readonly depth: number;
  private readonly log: Logger | undefined;
  private readonly hooks: ComputeTestHooks | undefined;
  private readonly handles: Handle[] = [];
  private readonly waitingSign = new FairQueue();
  private readonly waitingPublic = new FairQueue();
  private readonly maxQueued: number;
  /** Calls one client may have waiting or running (`maxPerClient`). */
  readonly maxPerClient: number;
  /** Calls waiting or running, per client. */
  private readonly perClient = new Map<string, number>();
  /** Permits held by Aggregator work, and the most it may hold. */
  private publicRunning = 0;
  /** The current lease's worker choice, while one of its calls is being posted. */
  private affinity: { h?: Handle } | undefined;
  private readonly maxPublic: number;
  private permits: number;
  private nextId = 1;
  private closed = false;
  /** Consecutive workers that died before becoming ready (a respawn backs off). */
  private startFailures = 0;
  private respawnTimers = new Set<NodeJS.Timeout>();

  private constructor(size: number, opts: ComputePoolOptions) {
    if (!Number.isInteger(size) || size < 0 || size > MAX_WORKERS) {
      throw new RangeError(`compute pool size must be an integer in [0, ${MAX_WORKERS}]`);
    }
    const depth = opts.depth ?? DEFAULT_DEPTH;
    if (!Number.isInteger(depth) || depth < 1) throw new RangeError('compute pool depth must be a positive integer');
    this.size = size;
    this.depth = depth;
    this.maxQueued = opts.maxQueued ?? DEFAULT_MAX_COMPUTE_QUEUE;
    this.maxPerClient = opts.maxPerClient ?? DEFAULT_MAX_COMPUTE_PER_CLIENT;
    if (!Number.isInteger(this.maxQueued) || this.maxQueued < 0) throw new RangeError('maxQueued must be a non-negative integer');
    if (!Number.isInteger(this.maxPerClient) || this.maxPerClient < 1) throw new RangeError('maxPerClient must be a positive integer');
    this.maxPublic = Math.max(1, size * (depth - 1));
    this.log = opts.logger?.child({ component: 'compute' });
    this.hooks = opts.testHooks;
    this.permits = size * depth;
  }

  /** A pool of size 0: every operation runs on the calling thread. */
  static inline(): ComputePool {
    return new ComputePool(0, {});
  }

  /**
   * Starts `size` workers (default: the number of cores) and resolves once every one has built
   * its tables; size 0 builds them on this thread instead. Rejects if a worker fails to start.
   */
  static async start(size: number = defaultPoolSize(), opts: ComputePoolOptions = {}): Promise<ComputePool> {
    const pool = new ComputePool(size, opts);
    if (size === 0) {
      musig2.warmUp();
      return pool;
    }
    const started = Array.from({ length: size }, () => pool.spawn());
    try {
      await Promise.all(started);
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  /**
   * Runs `fn` with a permit: waits (FIFO) until a worker has room, so anything opened inside
   * `fn` (a decrypted key) is not held while the call queues. Inline pools run `fn` at once.
   * `caller`: the client the work is for, counted against its quota (`maxPerClient`).
   */
  lease<T>(fn: (compute: AnyCompute) => Promise<T>, caller?: string): Promise<T> {
    return this.withPermit(fn, 'sign', caller);
  }

  /** `lease` for any operation: signing first, then Aggregator (public) work. */
  private async withPermit<T>(fn: (compute: AnyCompute) => Promise<T>, kind: WorkClass, owner: string | undefined): Promise<T> {
    if (this.closed) throw shuttingDown();
    this.admit(owner);
    try {
      if (this.size === 0) return await fn(inlineCompute);
      await this.acquire(kind, owner);
      try {
        return await fn(this.leased());
      } finally {
        this.release(kind);
      }
    } finally {
      this.leave(owner);
    }
  }

  /**
   * The operations for one lease: every call of the lease goes to the worker its first call
   * went to, so work that aggregates the key list twice (validation, then signing) finds it in
   * that worker's cache. `dispatch` reads the lease's choice from `affinity`, set only while a
   * call posts its request (synchronously).
   */
  private leased(): AnyCompute {
    const sticky: { h?: Handle } = {};
    const on = this.onWorker;
    const bind =
      <A extends unknown[], R>(f: (...args: A) => R) =>
      (...args: A): R => {
        this.affinity = sticky;
        try {
          return f(...args);
        } finally {
          this.affinity = undefined;
        }
      };
    return {
      nonceGen: bind(on.nonceGen),
      sign: bind(on.sign),
      deterministicSign: bind(on.deterministicSign),
      keyAgg: bind(on.keyAgg),
      nonceAgg: bind(on.nonceAgg),
      partialSigVerify: bind(on.partialSigVerify),
      partialSigAgg: bind(on.partialSigAgg),
    };
  }

  /** Calls waiting for a permit (for tests and diagnostics). */
  queued(): number {
    return this.waitingSign.length + this.waitingPublic.length;
  }

  /** In-flight calls per worker (for tests and diagnostics). */
  load(): number[] {
    return this.handles.map((h) => h.pending.size);
  }

  /** The live worker threads (for tests and diagnostics). */
  workers(): readonly Worker[] {
    return this.handles.map((h) => h.worker);
  }

  // ---- the operations, each under its own permit -----------------------------------------
  // Each takes a trailing `caller` (the client it is for, as `lease` does).

  nonceGen(input: NonceGenInput, caller?: string): Promise<NonceGenOutput> {
    return this.lease((c) => c.nonceGen(input), caller);
  }

  sign(secnonce: Uint8Array, sk: Uint8Array, ctx: SessionContext, caller?: string): Promise<Uint8Array> {
    return this.lease((c) => c.sign(secnonce, sk, ctx), caller);
  }

  deterministicSign(
    sk: Uint8Array,
    aggothernonce: Uint8Array,
    pubkeys: readonly Uint8Array[],
    tweaks: readonly Tweak[],
    msg: Uint8Array,
    rand?: Uint8Array,
    caller?: string,
  ): Promise<{ pubnonce: Uint8Array; psig: Uint8Array }> {
    return this.lease((c) => c.deterministicSign(sk, aggothernonce, pubkeys, tweaks, msg, rand), caller);
  }

  keyAgg(pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[], caller?: string): Promise<{ xonly: Uint8Array; plain: Uint8Array }> {
    return this.withPermit((c) => c.keyAgg(pubkeys, tweaks), 'public', caller);
  }

  nonceAgg(pubnonces: readonly Uint8Array[], caller?: string): Promise<Uint8Array> {
    return this.withPermit((c) => c.nonceAgg(pubnonces), 'public', caller);
  }

  partialSigVerify(
    psig: Uint8Array,
    pubnonces: readonly Uint8Array[],
    pubkeys: readonly Uint8Array[],
    tweaks: readonly Tweak[],
    msg: Uint8Array,
    i: number,
    caller?: string,
  ): Promise<boolean> {
    return this.withPermit((c) => c.partialSigVerify(psig, pubnonces, pubkeys, tweaks, msg, i), 'public', caller);
  }

  partialSigAgg(psigs: readonly Uint8Array[], ctx: SessionContext, caller?: string): Promise<Uint8Array> {
    return this.withPermit((c) => c.partialSigAgg(psigs, ctx), 'public', caller);
  }

  // ---- the operations on a worker (under a permit) ------------------------------------------

  private nonceGenOnWorker(input: NonceGenInput): Promise<NonceGenOutput> {
    // Malformed secret inputs: musig2 refuses them before any arithmetic, with the same error.
    if (typeof input !== 'object' || input === null || (input.sk !== undefined && !isBytes(input.sk, SK_BYTES)) ||
      (input.rand !== undefined && !isBytes(input.rand, RAND_BYTES)) || !isBytes(input.pk) ||
      (input.aggpk !== undefined && !isBytes(input.aggpk)) || (input.msg !== undefined && !isBytes(input.msg)) ||
      (input.extraIn !== undefined && !isBytes(input.extraIn))) {
      return inlineCompute.nonceGen(input);
    }
    const packed = packRequest([input.sk, input.rand], [input.pk, input.aggpk, input.msg, input.extraIn]);
    const req: ComputeRequest = { id: 0, op: 'nonceGen', ...packed, counts: [], xonly: [] };
    return this.dispatch(req, [packed.buf]).then(([sec, pn]) => ({ secnonce: new Uint8Array(sec!), pubnonce: new Uint8Array(pn!) }));
  }

  private signOnWorker(secnonce: Uint8Array, sk: Uint8Array, ctx: SessionContext): Promise<Uint8Array> {
    if (!isBytes(secnonce, SECNONCE_BYTES) || !isBytes(sk, SK_BYTES) || typeof ctx !== 'object' || ctx === null ||
      !isBytes(ctx.aggnonce) || !isByteList(ctx.pubkeys) || !isTweakList(ctx.tweaks) || !isBytes(ctx.msg)) {
      return inlineCompute.sign(secnonce, sk, ctx);
    }
    const packed = packRequest([sk, secnonce], [ctx.aggnonce, ctx.msg, ...ctx.pubkeys, ...tweakBytes(ctx.tweaks)]);
    secnonce.fill(0, 0, 64); // as musig2.sign: a used secnonce is zeroed at once
    const req: ComputeRequest = { id: 0, op: 'sign', ...packed, counts: [ctx.pubkeys.length], xonly: xonlyOf(ctx.tweaks) };
    return this.dispatch(req, [packed.buf]).then(([psig]) => new Uint8Array(psig!));
  }

  private deterministicSignOnWorker(
    sk: Uint8Array,
    aggothernonce: Uint8Array,
    pubkeys: readonly Uint8Array[],
    tweaks: readonly Tweak[],
    msg: Uint8Array,
    rand?: Uint8Array,
  ): Promise<{ pubnonce: Uint8Array; psig: Uint8Array }> {
    if (!isBytes(sk, SK_BYTES) || (rand !== undefined && !isBytes(rand, RAND_BYTES)) || !isBytes(aggothernonce) ||
      !isByteList(pubkeys) || !isTweakList(tweaks) || !isBytes(msg)) {
      return inlineCompute.deterministicSign(sk, aggothernonce, pubkeys, tweaks, msg, rand);
    }
    const packed = packRequest([sk, rand], [aggothernonce, msg, ...pubkeys, ...tweakBytes(tweaks)]);
    const req: ComputeRequest = { id: 0, op: 'deterministicSign', ...packed, counts: [pubkeys.length], xonly: xonlyOf(tweaks) };
    return this.dispatch(req, [packed.buf]).then(([pn, psig]) => ({ pubnonce: new Uint8Array(pn!), psig: new Uint8Array(psig!) }));
  }

  // Public operations: an input of the wrong type (one that cannot be copied) is left to musig2
  // on this thread, which refuses it with the same error. The Aggregator's shape checks let
  // none through, so its arithmetic always runs on a worker.

  private keyAggOnWorker(pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[]): Promise<{ xonly: Uint8Array; plain: Uint8Array }> {
    if (!isByteList(pubkeys) || !isTweakList(tweaks)) return inlineCompute.keyAgg(pubkeys, tweaks);
    const packed = packRequest([], [...pubkeys, ...tweakBytes(tweaks)]);
    const req: ComputeRequest = { id: 0, op: 'keyAgg', ...packed, counts: [pubkeys.length], xonly: xonlyOf(tweaks) };
    return this.dispatch(req, [packed.buf]).then(([x, p]) => ({ xonly: new Uint8Array(x!), plain: new Uint8Array(p!) }));
  }

  private nonceAggOnWorker(pubnonces: readonly Uint8Array[]): Promise<Uint8Array> {
    if (!isByteList(pubnonces)) return inlineCompute.nonceAgg(pubnonces);
    const packed = packRequest([], pubnonces);
    const req: ComputeRequest = { id: 0, op: 'nonceAgg', ...packed, counts: [], xonly: [] };
    return this.dispatch(req, [packed.buf]).then(([aggnonce]) => new Uint8Array(aggnonce!));
  }

  private partialSigVerifyOnWorker(
    psig: Uint8Array,
    pubnonces: readonly Uint8Array[],
    pubkeys: readonly Uint8Array[],
    tweaks: readonly Tweak[],
    msg: Uint8Array,
    i: number,
  ): Promise<boolean> {
    if (!isBytes(psig) || !isByteList(pubnonces) || !isByteList(pubkeys) || !isTweakList(tweaks) || !isBytes(msg) ||
      typeof i !== 'number') {
      return inlineCompute.partialSigVerify(psig, pubnonces, pubkeys, tweaks, msg, i);
    }
    const packed = packRequest([], [psig, msg, ...pubnonces, ...pubkeys, ...tweakBytes(tweaks)]);
    const req: ComputeRequest = { id: 0, op: 'partialSigVerify', ...packed, counts: [pubnonces.length, pubkeys.length], xonly: xonlyOf(tweaks), i };
    return this.dispatch(req, [packed.buf]).then(([valid]) => new Uint8Array(valid!)[0] === 1);
  }

  private partialSigAggOnWorker(psigs: readonly Uint8Array[], ctx: SessionContext): Promise<Uint8Array> {
    if (!isByteList(psigs) || typeof ctx !== 'object' || ctx === null || !isBytes(ctx.aggnonce) || !isByteList(ctx.pubkeys) ||
      !isTweakList(ctx.tweaks) || !isBytes(ctx.msg)) {
      return inlineCompute.partialSigAgg(psigs, ctx);
    }
    const packed = packRequest([], [ctx.aggnonce, ctx.msg, ...psigs, ...ctx.pubkeys, ...tweakBytes(ctx.tweaks)]);
    const req: ComputeRequest = { id: 0, op: 'partialSigAgg', ...packed, counts: [psigs.length, ctx.pubkeys.length], xonly: xonlyOf(ctx.tweaks) };
    return this.dispatch(req, [packed.buf]).then(([sig]) => new Uint8Array(sig!));
  }

  /**
   * Tests only (pools started with testHooks): run a test op on the least busy worker, under a
   * permit. 'crash' and 'exit' kill it; 'block' holds it until sab[0] is set (see ComputeTestOp).
   */
  testOp(op: ComputeTestOp, sab?: SharedArrayBuffer): Promise<void> {
    if (this.hooks === undefined || this.size === 0) return Promise.reject(new Error('testOp needs a test pool with workers'));
    return this.lease(async () => {
      await this.dispatch({ id: 0, op, ...(sab === undefined ? {} : { sab }) }, []);
    });
  }

  /** Terminates every worker; calls still in flight or queued fail with UNAVAILABLE. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.respawnTimers) clearTimeout(t);
    this.respawnTimers.clear();
    for (const w of [...this.waitingSign.drain(), ...this.waitingPublic.drain()]) w.reject(shuttingDown());
    await Promise.all(this.handles.map((h) => h.worker.terminate()));
  }

  // ---- permits ------------------------------------------------------------------------------

  /** Counts a call against its client's quota, or refuses it at once. */
  private admit(owner: string | undefined): void {
    if (owner === undefined) return;
    const n = this.perClient.get(owner) ?? 0;
    if (n >= this.maxPerClient) {
      throw new SignerError(
        'RESOURCE_EXHAUSTED',
        `client '${owner}' already has ${n} signing or Aggregator computations queued or running (cap ${this.maxPerClient} per client); retry when some finish`,
      );
    }
    this.perClient.set(owner, n + 1);
  }

  private leave(owner: string | undefined): void {
    if (owner === undefined) return;
    const n = (this.perClient.get(owner) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(owner);
    else this.perClient.set(owner, n);
  }

  private acquire(kind: WorkClass, owner: string | undefined): Promise<void> {
    if (this.closed) return Promise.reject(shuttingDown());
    const queue = kind === 'sign' ? this.waitingSign : this.waitingPublic;
    if (queue.length === 0 && this.permits > 0 && (kind === 'sign' || this.publicRunning < this.maxPublic)) {
      this.take(kind);
      return Promise.resolve();
    }
    if (this.queued() >= this.maxQueued) {
      return Promise.reject(
        new SignerError('RESOURCE_EXHAUSTED', `the compute queue is full (${this.maxQueued} calls waiting); retry shortly`),
      );
    }
    return new Promise((resolve, reject) => queue.push({ owner, resolve, reject }));
  }

  private take(kind: WorkClass): void {
    this.permits--;
    if (kind === 'public') this.publicRunning++;
  }

  private release(kind: WorkClass): void {
    this.permits++;
    if (kind === 'public') this.publicRunning--;
    // Hand free permits on: signing first, then Aggregator work within its share.
    while (this.permits > 0) {
      let next: Waiter | undefined;
      if (this.waitingSign.length > 0) {
        next = this.waitingSign.shift();
        this.take('sign');
      } else if (this.waitingPublic.length > 0 && this.publicRunning < this.maxPublic) {
        next = this.waitingPublic.shift();
        this.take('public');
      } else {
        break;
      }
      next!.resolve();
    }
  }

  // ---- workers ------------------------------------------------------------------------------

  private dispatch(req: ComputeRequest, transfer: ArrayBuffer[]): Promise<ArrayBuffer[]> {
    const secretBytes = 'buf' in req ? req.secretBytes : 0;
    const wipe = () => {
      if ('buf' in req && req.buf.byteLength > 0) new Uint8Array(req.buf, 0, secretBytes).fill(0);
    };
    if (this.closed) {
      wipe();
      return Promise.reject(shuttingDown());
    }
    // The worker this lease used before (its key-aggregation cache is warm for this call);
    // else the least busy, a ready worker before one still starting.
    const sticky = this.affinity;
    let best: Handle | undefined = sticky?.h !== undefined && sticky.h.ready && !sticky.h.exited ? sticky.h : undefined;
    for (const h of best === undefined ? this.handles : []) {
      if (h.exited) continue;
      if (
        best === undefined ||
        (h.ready && !best.ready) ||
        (h.ready === best.ready && h.pending.size < best.pending.size)
      ) {
        best = h;
      }
    }
    if (best === undefined) {
      wipe();
      return Promise.reject(new SignerError('UNAVAILABLE', 'no compute worker is running; nothing was signed'));
    }
    const h = best;
    if (sticky !== undefined) sticky.h = h;
    const id = this.nextId++;
    req.id = id;
    return new Promise<ArrayBuffer[]>((resolve, reject) => {
      try {
        h.worker.postMessage(req, transfer);
      } catch (err) {
        wipe(); // postMessage failed before the transfer: the secret is still here
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if ('buf' in req && isSecretOp(req.op)) this.hooks?.sent?.(req.op, req.buf, h.worker.threadId);
      else if (isPublicOp(req.op)) this.hooks?.posted?.(req.op, h.worker.threadId);
      h.pending.set(id, { op: req.op, secretBytes, resolve, reject });
      if (h.pending.size === 1) h.worker.ref();
    });
  }

  private onMessage(h: Handle, msg: ComputeResponse): void {
    if (msg.type === 'ready') return;
    const p = h.pending.get(msg.id);
    if (p === undefined) return;
    h.pending.delete(msg.id);
    if (h.pending.size === 0) h.worker.unref();
    if (msg.wiped !== undefined && isSecretOp(p.op)) this.hooks?.wiped?.(p.op, new Uint8Array(msg.wiped, 0, p.secretBytes));
    if (msg.ok) p.resolve(msg.out);
    else p.reject(rebuildError(msg.error));
  }

  /** Starts one worker; resolves when it is ready, rejects if it dies first. */
  private spawn(): Promise<void> {
    let worker: Worker;
    try {
      const { entry, eval: isEval, execArgv } = workerEntry();
      const data: ComputeWorkerData = {
        backend: this.backend,
        test: this.hooks !== undefined,
        failStart: this.hooks?.failStart === true,
      };
      // env {}: the worker gets no copy of the environment (and so of anything secret in it).
      worker = new Worker(entry, { eval: isEval, execArgv, workerData: data, stdout: false, stderr: false, env: {} });
    } catch (err) {
      // No thread, so no 'exit' to trigger a replacement: the caller decides (start fails; a
      // respawn tries again later).
      const why = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      this.log?.error({ event: 'compute_worker_start_failed', error: why }, 'compute worker failed to start');
      return Promise.reject(new NoThreadError(`a compute worker failed to start: ${why}`));
    }
    const h: Handle = { worker, ready: false, pending: new Map(), exited: false };
    this.handles.push(h);
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (msg: ComputeResponse) => {
        if (msg.type === 'ready' && !h.ready) {
          h.ready = true;
          this.startFailures = 0;
          if (h.pending.size === 0) worker.unref();
          resolve();
          return;
        }
        this.onMessage(h, msg);
      });
      // An uncaught exception in the worker; 'exit' follows. Once the worker has taken calls
      // only the class is logged (a foreign message could quote a value); a failure to start
      // (loading the module, building tables) has seen no secret and is logged in full.
      let startError: string | undefined;
      worker.on('error', (err: unknown) => {
        const name = err instanceof Error ? err.name : typeof err;
        if (!h.ready && h.pending.size === 0) {
          startError = err instanceof Error ? `${err.name}: ${err.message}` : name;
          this.log?.error({ event: 'compute_worker_start_failed', error: startError }, 'compute worker failed to start');
        } else {
          this.log?.error({ event: 'compute_worker_error', error: name }, 'compute worker failed');
        }
      });
      worker.on('messageerror', () => {
        this.log?.error({ event: 'compute_worker_messageerror' }, 'a compute worker message could not be read');
      });
      worker.on('exit', (code) => {
        h.exited = true;
        const i = this.handles.indexOf(h);
        if (i >= 0) this.handles.splice(i, 1);
        const err = this.closed ? shuttingDown() : workerDied(`exit code ${code}`);
        for (const p of h.pending.values()) p.reject(err);
        h.pending.clear();
        if (!h.ready) {
          reject(this.closed ? err : new Error(`a compute worker failed to start: ${startError ?? `exit code ${code}`}`));
        }
        if (this.closed) return;
        this.log?.error({ event: 'compute_worker_exit', code, ready: h.ready }, 'compute worker stopped; starting another');
        this.replace(h.ready);
      });
    });
  }

  /** A new worker for one that died: at once if it had been serving, else with a backoff. */
  private replace(hadStarted: boolean): void {
    if (hadStarted) {
      this.respawn();
      return;
    }
    this.startFailures++;
    const delay = Math.min(100 * 2 ** Math.min(this.startFailures, 10), 30_000);
    const t = setTimeout(() => {
      this.respawnTimers.delete(t);
      if (!this.closed) this.respawn();
    }, delay).unref();
    this.respawnTimers.add(t);
  }

  /** Spawns a replacement; one whose thread could not even be created is retried with the backoff. */
  private respawn(): void {
    this.spawn().catch((err: unknown) => {
      // A thread that started and died is replaced from its 'exit' handler; this is the other case.
      if (err instanceof NoThreadError && !this.closed) this.replace(false);
    });
  }
}
