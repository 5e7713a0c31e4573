// The messages between the compute pool (compute-pool.ts, main thread) and its workers
// (compute-worker.ts), and the error round trip. Shared by both sides, so it imports nothing
// but musig2: a worker must not load the keystore or the ledger (native modules).
//
// A request is one ArrayBuffer, moved through the transfer list (never structured-cloned),
// holding its byte inputs back to back: first the secret ones (if any), then the public ones,
// their lengths in `lens`. One buffer instead of one per input keeps the hand-off cheap (each
// transferred buffer costs a detach here and a new object there). Whichever side holds the
// buffer last wipes its secret prefix: the worker in `finally`, this side if posting fails.
// Outputs come back as transferred ArrayBuffers. The public operations (the Aggregator's
// arithmetic) carry no secret bytes at all.

import { InvalidContributionError, InvalidInputError, Musig2Error } from '../musig2/index.js';
import type { BackendName, Contribution } from '../musig2/index.js';

/** The secret-bearing operations the pool runs. */
export type ComputeOp = 'nonceGen' | 'sign' | 'deterministicSign';

/** The public operations the pool runs (the Aggregator's arithmetic): no secret input or output. */
export type ComputePublicOp = 'keyAgg' | 'nonceAgg' | 'partialSigVerify' | 'partialSigAgg';

/**
 * Operations a worker accepts only when started for tests: die of an uncaught exception
 * ('crash') or process.exit ('exit'), or block until released ('block': sets sab[1] to 1 and
 * waits while sab[0] is 0).
 */
export type ComputeTestOp = 'crash' | 'exit' | 'block';

export const SK_BYTES = 32;
export const RAND_BYTES = 32;
export const SECNONCE_BYTES = 97;

/**
 * A request for any operation but the test ones. `buf` holds the inputs in this order (an
 * absent optional input has length -1; `secretBytes` is the length of the secret prefix):
 * - nonceGen: secret [sk?, rand'?]; public [pk, aggpk?, msg?, extraIn?]
 * - sign: secret [sk, secnonce (97)]; public [aggnonce, msg, pubkeys..., tweaks...]
 * - deterministicSign: secret [sk, rand?]; public [aggothernonce, msg, pubkeys..., tweaks...]
 * - keyAgg: [pubkeys..., tweaks...]
 * - nonceAgg: [pubnonces...]
 * - partialSigVerify: [psig, msg, pubnonces..., pubkeys..., tweaks...] (i in `i`)
 * - partialSigAgg: [aggnonce, msg, psigs..., pubkeys..., tweaks...]
 * `counts` gives the lengths of the lists in that order but the last; `xonly` has one entry
 * per tweak (so the tweak count).
 */
export interface OpRequest {
  id: number;
  op: ComputeOp | ComputePublicOp;
  buf: ArrayBuffer;
  lens: number[];
  secretBytes: number;
  counts: number[];
  xonly: boolean[];
  i?: number;
}

/** The inputs as consecutive parts of one fresh ArrayBuffer (secret parts first). */
export function packRequest(
  secretParts: readonly (Uint8Array | undefined)[],
  publicParts: readonly (Uint8Array | undefined)[],
): { buf: ArrayBuffer; lens: number[]; secretBytes: number } {
  let total = 0;
  let secretBytes = 0;
  const lens: number[] = [];
  for (const [k, parts] of [secretParts, publicParts].entries()) {
    for (const p of parts) {
      lens.push(p === undefined ? -1 : p.byteLength);
      total += p?.byteLength ?? 0;
    }
    if (k === 0) secretBytes = total;
  }
  const buf = new ArrayBuffer(total);
  const bytes = new Uint8Array(buf);
  let off = 0;
  for (const p of [...secretParts, ...publicParts]) {
    if (p === undefined) continue;
    bytes.set(p, off);
    off += p.byteLength;
  }
  return { buf, lens, secretBytes };
}

/** The parts of a packed request, as views into its buffer (undefined for an absent one). */
export function unpackRequest(buf: ArrayBuffer, lens: readonly number[]): (Uint8Array | undefined)[] {
  let off = 0;
  return lens.map((len) => {
    if (len < 0) return undefined;
    const view = new Uint8Array(buf, off, len);
    off += len;
    return view;
  });
}

/** Tests only. */
export type TestRequest = { id: number; op: ComputeTestOp; sab?: SharedArrayBuffer };

export type ComputeRequest = OpRequest | TestRequest;

const SECRET_OPS: ReadonlySet<string> = new Set<ComputeOp>(['nonceGen', 'sign', 'deterministicSign']);
const PUBLIC_OPS: ReadonlySet<string> = new Set<ComputePublicOp>(['keyAgg', 'nonceAgg', 'partialSigVerify', 'partialSigAgg']);
const TEST_OPS: ReadonlySet<string> = new Set<ComputeTestOp>(['crash', 'exit', 'block']);

export const isSecretOp = (op: string): op is ComputeOp => SECRET_OPS.has(op);
export const isPublicOp = (op: string): op is ComputePublicOp => PUBLIC_OPS.has(op);
export const isTestOp = (op: string): op is ComputeTestOp => TEST_OPS.has(op);
export const isTestRequest = (r: ComputeRequest): r is TestRequest => isTestOp(r.op);

/**
 * A worker's answer. `out` per op: nonceGen [secnonce (97), pubnonce (66)], sign [psig (32)],
 * deterministicSign [pubnonce (66), psig (32)], keyAgg [xonly (32), plain (33)], nonceAgg
 * [aggnonce (66)], partialSigVerify [valid (1): 1 or 0], partialSigAgg [signature (64)].
 * `wiped` (test workers only, secret ops only) is the request's buffer after the worker zeroed
 * its secret prefix, sent back so a test can inspect that prefix.
 */
export type ComputeResponse =
  | { type: 'ready' }
  | { type: 'result'; id: number; ok: true; out: ArrayBuffer[]; wiped?: ArrayBuffer }
  | { type: 'result'; id: number; ok: false; error: SerializedError; wiped?: ArrayBuffer };

/** What a worker sends of a failure: the class and the public fields of musig2 errors, no bytes. */
export interface SerializedError {
  name: string;
  message: string;
  signer?: number | null;
  contrib?: Contribution;
  argument?: string;
}

/** The data a worker is started with. */
export interface ComputeWorkerData {
  /** The curve backend the main thread runs on: the worker must run the same one. */
  backend: BackendName;
  /** Accept test ops and send wiped secret buffers back. */
  test: boolean;
  /** Tests only: throw while starting, before saying ready. */
  failStart?: boolean;
}

/**
 * musig2 errors keep their class and fields (their messages never carry secret bytes, see
 * musig2/errors.ts). Anything else is reduced to its class name: a foreign message might quote
 * a value.
 */
export function serializeError(err: unknown): SerializedError {
  if (err instanceof InvalidContributionError) {
    return { name: 'InvalidContributionError', message: err.message, signer: err.signer, contrib: err.contrib };
  }
  if (err instanceof InvalidInputError) {
    return {
      name: 'InvalidInputError',
      message: err.message,
      ...(err.argument === undefined ? {} : { argument: err.argument }),
    };
  }
  if (err instanceof Musig2Error) return { name: 'Musig2Error', message: err.message };
  const name = err instanceof Error ? err.name : typeof err;
  return { name: 'Error', message: `unexpected ${name} in a compute worker` };
}

/** The same typed error on this side of the thread boundary. */
export function rebuildError(e: SerializedError): Error {
  let err: Error;
  switch (e.name) {
    case 'InvalidContributionError':
      err = new InvalidContributionError(e.signer ?? null, e.contrib ?? 'pubkey');
      break;
    case 'InvalidInputError':
      err = new InvalidInputError(e.message, e.argument);
      break;
    case 'Musig2Error':
      err = new Musig2Error(e.message);
      break;
    default:
      err = new Error(e.message);
  }
  err.message = e.message;
  return err;
}
