// Request validation, before any key is touched. Each failure is INVALID_ARGUMENT naming the
// proto field and the expected length or range. Validated values are copies, so a caller that
// reuses its buffers cannot change a request (or a bound session) after the fact.

import { isValidLabel, LABEL_RULE, MAX_LABEL_LENGTH } from '../keystore/index.js';
import type { Tweak } from '../musig2/index.js';
import { invalidArgument } from './errors.js';

export interface RequestLimits {
  /** Most entries in `pubkeys`. Key aggregation is linear in it (and cached). */
  readonly maxSigners: number;
  /** Most entries in `tweaks`. */
  readonly maxTweaks: number;
  /** Longest `message`, in bytes. */
  readonly maxMessageBytes: number;
  /** Longest caller-supplied `extra_in`, in bytes. */
  readonly maxExtraInBytes: number;
}

export const DEFAULT_LIMITS: RequestLimits = {
  maxSigners: 1000,
  maxTweaks: 100,
  // BIP327 allows any length. Bitcoin signs 32-byte sighashes; 1 MiB leaves room for other
  // uses and stays well inside gRPC's default 4 MiB frame. Sessions keep only a hash of it.
  maxMessageBytes: 1 << 20,
  maxExtraInBytes: 1024,
};

/** A key id is a key label, so the same rule as `keys create --label`. */
export const MAX_KEY_ID_LENGTH = MAX_LABEL_LENGTH;
export const SESSION_ID_BYTES = 32;

export interface ValidatedNonceGen {
  readonly keyId: string;
  readonly pubkeys: Uint8Array[];
  readonly tweaks: Tweak[];
  readonly message: Uint8Array | undefined;
  readonly extraIn: Uint8Array;
}

export interface ValidatedSign {
  readonly sessionId: Uint8Array;
  readonly aggnonce: Uint8Array;
  readonly pubkeys: Uint8Array[];
  readonly tweaks: Tweak[];
  readonly message: Uint8Array;
}

export interface ValidatedDeterministicSign {
  readonly keyId: string;
  readonly aggothernonce: Uint8Array;
  readonly pubkeys: Uint8Array[];
  readonly tweaks: Tweak[];
  readonly message: Uint8Array;
  readonly rand: Uint8Array | undefined;
}

function requestObject(req: unknown): Record<string, unknown> {
  if (typeof req !== 'object' || req === null) throw invalidArgument('request', 'must be an object');
  return req as Record<string, unknown>;
}

/** A key id that could name a key: the label rule. The message never echoes the value. */
export function checkKeyId(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw invalidArgument('key_id', 'must be a non-empty string');
  if (value.length > MAX_KEY_ID_LENGTH) {
    throw invalidArgument('key_id', `must be at most ${MAX_KEY_ID_LENGTH} characters, got ${value.length}`);
  }
  if (!isValidLabel(value)) throw invalidArgument('key_id', `not a valid key label: ${LABEL_RULE}`);
  return value;
}

function checkBytes(value: unknown, field: string, len: number): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalidArgument(field, `must be ${len} bytes`);
  if (value.length !== len) throw invalidArgument(field, `must be ${len} bytes, got ${value.length}`);
  return Uint8Array.from(value);
}

function checkMaxBytes(value: unknown, field: string, max: number): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalidArgument(field, 'must be bytes');
  if (value.length > max) throw invalidArgument(field, `must be at most ${max} bytes, got ${value.length}`);
  return Uint8Array.from(value);
}

export function checkPubkeys(value: unknown, limits: RequestLimits): Uint8Array[] {
  if (!Array.isArray(value)) throw invalidArgument('pubkeys', 'must be a list of 33-byte compressed public keys');
  if (value.length < 1 || value.length > limits.maxSigners) {
    throw invalidArgument('pubkeys', `must have 1 to ${limits.maxSigners} entries, got ${value.length}`);
  }
  return value.map((pk, i) => checkBytes(pk, `pubkeys[${i}]`, 33));
}

export function checkTweaks(value: unknown, limits: RequestLimits): Tweak[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalidArgument('tweaks', 'must be a list of tweaks');
  if (value.length > limits.maxTweaks) {
    throw invalidArgument('tweaks', `must have at most ${limits.maxTweaks} entries, got ${value.length}`);
  }
  return value.map((tw: unknown, i) => {
    if (typeof tw !== 'object' || tw === null) throw invalidArgument(`tweaks[${i}]`, 'must be a tweak');
    const { tweak, xonly } = tw as { tweak?: unknown; xonly?: unknown };
    const bytes = checkBytes(tweak, `tweaks[${i}].tweak`, 32);
    if (typeof xonly !== 'boolean') throw invalidArgument(`tweaks[${i}].xonly`, 'must be a boolean');
    return { tweak: bytes, xonly };
  });
}

function checkMessage(value: unknown, limits: RequestLimits): Uint8Array {
  return checkMaxBytes(value, 'message', limits.maxMessageBytes);
}

export function validateNonceGen(req: unknown, limits: RequestLimits): ValidatedNonceGen {
  const r = requestObject(req);
  return {
    keyId: checkKeyId(r.keyId),
    pubkeys: checkPubkeys(r.pubkeys, limits),
    tweaks: checkTweaks(r.tweaks, limits),
    message: r.message === undefined ? undefined : checkMessage(r.message, limits),
    extraIn: r.extraIn === undefined ? new Uint8Array(0) : checkMaxBytes(r.extraIn, 'extra_in', limits.maxExtraInBytes),
  };
}

export function validateSign(req: unknown, limits: RequestLimits): ValidatedSign {
  const r = requestObject(req);
  return {
    sessionId: checkBytes(r.sessionId, 'session_id', SESSION_ID_BYTES),
    aggnonce: checkBytes(r.aggnonce, 'aggnonce', 66),
    pubkeys: checkPubkeys(r.pubkeys, limits),
    tweaks: checkTweaks(r.tweaks, limits),
    message: checkMessage(r.message, limits),
  };
}

export function validateDeterministicSign(req: unknown, limits: RequestLimits): ValidatedDeterministicSign {
  const r = requestObject(req);
  return {
    keyId: checkKeyId(r.keyId),
    aggothernonce: checkBytes(r.aggothernonce, 'aggothernonce', 66),
    pubkeys: checkPubkeys(r.pubkeys, limits),
    tweaks: checkTweaks(r.tweaks, limits),
    message: checkMessage(r.message, limits),
    // Absent and all-zero differ (BIP327): only undefined means absent.
    rand: r.rand === undefined ? undefined : checkBytes(r.rand, 'rand', 32),
  };
}

export function checkSessionId(value: unknown): Uint8Array {
  return checkBytes(value, 'session_id', SESSION_ID_BYTES);
}

export function checkLimits(limits: RequestLimits): void {
  const within = (v: number, lo: number, hi: number) => Number.isInteger(v) && v >= lo && v <= hi;
  if (!within(limits.maxSigners, 1, 2 ** 32 - 1)) throw new RangeError('maxSigners must be an integer in [1, 2^32-1]');
  if (!within(limits.maxTweaks, 0, 2 ** 32 - 1)) throw new RangeError('maxTweaks must be an integer in [0, 2^32-1]');
  // The context digest encodes the message length in 8 bytes; keep it a safe integer.
  if (!within(limits.maxMessageBytes, 0, 2 ** 32 - 1)) throw new RangeError('maxMessageBytes must be an integer in [0, 2^32-1]');
  if (!within(limits.maxExtraInBytes, 0, 2 ** 16)) throw new RangeError('maxExtraInBytes must be an integer in [0, 65536]');
}
