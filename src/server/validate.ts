// Structural checks on decoded requests: lengths, counts and ranges, each failure naming the
// proto field and what was expected. Curve and scalar validity is left to the MuSig2 core,
// which reports it as an InvalidContributionError or InvalidInputError.
import type { TweakMsg } from '../protocol/contract.js';
import { checkKeyId, checkSessionId } from '../signer/index.js';
import type { RequestLimits as SignerLimits } from '../signer/index.js';

export const PUBKEY_BYTES = 33;
export const PUBNONCE_BYTES = 66;
export const PSIG_BYTES = 32;
export const TWEAK_BYTES = 32;

/** Per-request size limits, shared with SignerService so both services accept the same sizes. */
export type RequestLimits = Pick<SignerLimits, 'maxSigners' | 'maxTweaks' | 'maxMessageBytes'>;

/** A malformed request: always INVALID_ARGUMENT, with a message that names the field. */
export class InvalidRequestError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'InvalidRequestError';
  }
}

function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array;
}

/** Exactly `len` bytes. An absent field decodes as empty, so it fails here with "got 0". */
export function fixedBytes(value: unknown, field: string, len: number): Uint8Array {
  if (!isBytes(value)) throw new InvalidRequestError(field, `expected ${len} bytes`);
  if (value.length !== len) throw new InvalidRequestError(field, `expected ${len} bytes, got ${value.length}`);
  return value;
}

/** Any length from 0 to `max` bytes. */
export function boundedBytes(value: unknown, field: string, max: number): Uint8Array {
  if (value === undefined || value === null) return new Uint8Array(0);
  if (!isBytes(value)) throw new InvalidRequestError(field, `expected at most ${max} bytes`);
  if (value.length > max) throw new InvalidRequestError(field, `expected at most ${max} bytes, got ${value.length}`);
  return value;
}

/** Between 1 and `max` entries of exactly `len` bytes each. */
export function bytesList(value: unknown, field: string, len: number, max: number): Uint8Array[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new InvalidRequestError(field, `expected 1 to ${max} entries of ${len} bytes, got none`);
  }
  if (value.length > max) throw new InvalidRequestError(field, `expected 1 to ${max} entries, got ${value.length}`);
  return value.map((entry, i) => fixedBytes(entry, `${field}[${i}]`, len));
}

export interface Tweak {
  tweak: Uint8Array;
  xonly: boolean;
}

/** Up to `max` tweaks of 32 bytes each; whether the scalar is below n is the core's check. */
export function tweakList(value: unknown, field: string, max: number): Tweak[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new InvalidRequestError(field, `expected 0 to ${max} tweaks`);
  if (value.length > max) throw new InvalidRequestError(field, `expected 0 to ${max} tweaks, got ${value.length}`);
  return value.map((entry: TweakMsg | null | undefined, i) => {
    if (entry === null || typeof entry !== 'object') throw new InvalidRequestError(`${field}[${i}]`, 'expected a Tweak');
    return {
      tweak: fixedBytes(entry.tweak, `${field}[${i}].tweak`, TWEAK_BYTES),
      xonly: entry.xonly === true,
    };
  });
}

/** An index in [0, count). */
export function index(value: unknown, field: string, count: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= count) {
    throw new InvalidRequestError(field, `expected an index from 0 to ${count - 1}, got ${String(value)}`);
  }
  return value;
}

/** Two repeated fields that must pair up one to one. */
export function sameLength(a: unknown[], fieldA: string, b: unknown[], fieldB: string): void {
  if (a.length !== b.length) {
    throw new InvalidRequestError(fieldB, `expected as many entries as ${fieldA} (${a.length}), got ${b.length}`);
  }
}

/**
 * The identifiers a call carries, checked before access rules, the audit log or a log line see
 * them: `key_id` must be a possible key label (the rule of `keys create --label`, at most 64
 * characters) and `session_id` exactly 32 bytes. Messages state the rule, never the value.
 */
export function checkIdentifiers(method: string, request: unknown): void {
  if (typeof request !== 'object' || request === null) return;
  const req = request as Record<string, unknown>;
  if (method === 'NonceGen' || method === 'DeterministicSign') checkKeyId(req.keyId);
  if (method === 'Sign') checkSessionId(req.sessionId);
}
