// The messages between the compute pool (compute-pool.ts, main thread) and its workers
// (compute-worker.ts), and the error round trip. Shared by both sides, so it imports nothing
// but musig2: a worker must not load the keystore or the ledger (native modules).
//
// Secrets cross the thread boundary only inside `secret`, an ArrayBuffer that is moved (in
// the transfer list, never structured-cloned) and wiped by whichever side holds it last.
// Public inputs travel as compact copies, also transferred. Outputs come back as transferred
// ArrayBuffers. The public operations (the Aggregator's arithmetic) carry no `secret` at all.

import { InvalidContributionError, InvalidInputError, Musig2Error } from '../musig2/index.js';
import type { BackendName, Contribution, Tweak } from '../musig2/index.js';

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
 * A request for a secret-bearing operation. `secret` layouts:
 * - nonceGen: [sk (32) if hasSk] [rand' (32) if hasRand]
 * - sign: sk (32) || secnonce (97)
 * - deterministicSign: sk (32) [|| rand (32) if hasRand]
 */
export type SecretRequest =
  | {
      id: number;
      op: 'nonceGen';
      secret: ArrayBuffer;
      hasSk: boolean;
      hasRand: boolean;
      pk: Uint8Array;
      aggpk?: Uint8Array;
      msg?: Uint8Array;
      extraIn?: Uint8Array;
    }
  | { id: number; op: 'sign'; secret: ArrayBuffer; aggnonce: Uint8Array; pubkeys: Uint8Array[]; tweaks: Tweak[]; msg: Uint8Array }
  | {
      id: number;
      op: 'deterministicSign';
      secret: ArrayBuffer;
      hasRand: boolean;
      aggothernonce: Uint8Array;
      pubkeys: Uint8Array[];
      tweaks: Tweak[];
      msg: Uint8Array;
    };

/** A request for a public operation: inputs only, all of them public. `i` is 0-based. */
export type PublicRequest =
  | { id: number; op: 'keyAgg'; pubkeys: Uint8Array[]; tweaks: Tweak[] }
  | { id: number; op: 'nonceAgg'; pubnonces: Uint8Array[] }
  | {
      id: number;
      op: 'partialSigVerify';
      psig: Uint8Array;
      pubnonces: Uint8Array[];
      pubkeys: Uint8Array[];
      tweaks: Tweak[];
      msg: Uint8Array;
      i: number;
    }
  | { id: number; op: 'partialSigAgg'; psigs: Uint8Array[]; aggnonce: Uint8Array; pubkeys: Uint8Array[]; tweaks: Tweak[]; msg: Uint8Array };

/** Tests only. */
export type TestRequest = { id: number; op: ComputeTestOp; sab?: SharedArrayBuffer };

export type ComputeRequest = SecretRequest | PublicRequest | TestRequest;

const SECRET_OPS: ReadonlySet<string> = new Set<ComputeOp>(['nonceGen', 'sign', 'deterministicSign']);
const PUBLIC_OPS: ReadonlySet<string> = new Set<ComputePublicOp>(['keyAgg', 'nonceAgg', 'partialSigVerify', 'partialSigAgg']);
const TEST_OPS: ReadonlySet<string> = new Set<ComputeTestOp>(['crash', 'exit', 'block']);

export const isSecretOp = (op: string): op is ComputeOp => SECRET_OPS.has(op);
export const isPublicOp = (op: string): op is ComputePublicOp => PUBLIC_OPS.has(op);
export const isTestOp = (op: string): op is ComputeTestOp => TEST_OPS.has(op);
export const isPublicRequest = (r: ComputeRequest): r is PublicRequest => isPublicOp(r.op);
export const isTestRequest = (r: ComputeRequest): r is TestRequest => isTestOp(r.op);

/**
 * A worker's answer. `out` per op: nonceGen [secnonce (97), pubnonce (66)], sign [psig (32)],
 * deterministicSign [pubnonce (66), psig (32)], keyAgg [xonly (32), plain (33)], nonceAgg
 * [aggnonce (66)], partialSigVerify [valid (1): 1 or 0], partialSigAgg [signature (64)].
 * `wiped` (test workers only, secret ops only) is the request's secret buffer after the worker
 * zeroed it, sent back so a test can inspect it.
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
