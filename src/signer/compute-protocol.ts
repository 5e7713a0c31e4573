// The messages between the compute pool (compute-pool.ts, main thread) and its workers
// (compute-worker.ts), and the error round trip. Shared by both sides, so it imports nothing
// but musig2: a worker must not load the keystore or the ledger (native modules).
//
// Secrets cross the thread boundary only inside `secret`, an ArrayBuffer that is moved (in
// the transfer list, never structured-cloned) and wiped by whichever side holds it last.
// Public inputs travel as compact copies, also transferred. Outputs come back as transferred
// ArrayBuffers.

import { InvalidContributionError, InvalidInputError, Musig2Error } from '../musig2/index.js';
import type { Contribution, Tweak } from '../musig2/index.js';

/** The secret-bearing operations the pool runs. */
export type ComputeOp = 'nonceGen' | 'sign' | 'deterministicSign';

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
 * A request to a worker. `secret` layouts:
 * - nonceGen: [sk (32) if hasSk] [rand' (32) if hasRand]
 * - sign: sk (32) || secnonce (97)
 * - deterministicSign: sk (32) [|| rand (32) if hasRand]
 */
export type ComputeRequest =
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
    }
  /** Tests only. */
  | { id: number; op: ComputeTestOp; sab?: SharedArrayBuffer };

/**
 * A worker's answer. `out` per op: nonceGen [secnonce (97), pubnonce (66)], sign [psig (32)],
 * deterministicSign [pubnonce (66), psig (32)]. `wiped` (test workers only) is the request's
 * secret buffer after the worker zeroed it, sent back so a test can inspect it.
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
  return { name: 'Error', message: `unexpected ${name} in a signing worker` };
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
