// The PSBT RPCs: Signer's PsbtNonceGen, PsbtSign and PsbtDeterministicSign (passed to
// PsbtSignerService, which validates and decides), and the Aggregator's PsbtCombine and
// PsbtFinalize (public, pure work in src/psbt). The size cap is applied here, before anything
// reads a PSBT; the input and output caps while it is decoded. The Signer handlers pass the
// call's identity (`caller`, from rpc.ts unary) on for the per-client compute quota.
import type * as pb from '../protocol/contract.js';
import { combinePsbts, decodePsbt, finalizeMusigInputs, PsbtError } from '../psbt/index.js';
import type { PsbtLimits } from '../psbt/index.js';
import type { PsbtSignerService } from '../signer/psbt-service.js';
import { fromPsbtError } from '../signer/psbt-service.js';
import { SignerError } from '../signer/index.js';
import { AUDIT_FIELDS } from './access.js';
import { InvalidRequestError } from './validate.js';

const buf = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);

/** The part of PsbtSignerService the gRPC layer uses. */
export type PsbtBackend = Pick<PsbtSignerService, 'psbtNonceGen' | 'psbtSign' | 'psbtDeterministicSign' | 'sessionKeyId'>;

export interface PsbtSignerHandlers {
  psbtNonceGen(req: pb.PsbtNonceGenRequest, caller?: string): Promise<pb.PsbtNonceGenResponse>;
  psbtSign(req: pb.PsbtSignRequest, caller?: string): Promise<pb.PsbtSignResponse>;
  psbtDeterministicSign(req: pb.PsbtDeterministicSignRequest, caller?: string): Promise<pb.PsbtDeterministicSignResponse>;
}

export interface PsbtAggregatorHandlers {
  psbtCombine(req: pb.PsbtCombineRequest): Promise<pb.PsbtCombineResponse>;
  psbtFinalize(req: pb.PsbtFinalizeRequest): Promise<pb.PsbtFinalizeResponse>;
}

/** Most PSBTs one PsbtCombine merges. */
export const MAX_COMBINE_PSBTS = 64;

/** A PSBT field within the size cap; refused before anything parses it. */
export function psbtBytes(value: unknown, field: string, limits: PsbtLimits): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length === 0) throw new InvalidRequestError(field, 'expected a PSBT (binary), got none');
  if (value.length > limits.maxPsbtBytes) {
    throw new InvalidRequestError(field, `expected at most ${limits.maxPsbtBytes} bytes (the daemon's PSBT cap), got ${value.length}`);
  }
  return value;
}

/** The approvals as sent; their lengths are checked by the policy (only when a policy is loaded). */
function approvals(list: pb.ApprovalMsg[] | undefined): { pubkey: Uint8Array; signature: Uint8Array }[] {
  return Array.isArray(list) ? list.map((a) => ({ pubkey: a.pubkey, signature: a.signature })) : [];
}

/** The response, carrying the policy's audit fields under AUDIT_FIELDS (never serialized). */
function withAudit<T extends object>(res: T, fields: Record<string, string> | undefined): T {
  if (fields) Object.defineProperty(res, AUDIT_FIELDS, { value: fields, enumerable: false });
  return res;
}

function unavailable(): never {
  throw new SignerError('UNAVAILABLE', 'PSBT signing is not configured on this daemon');
}

export function psbtSignerHandlers(backend: PsbtBackend | undefined, limits: PsbtLimits): PsbtSignerHandlers {
  return {
    async psbtNonceGen(req, caller) {
      const psbt = psbtBytes(req.psbt, 'psbt', limits);
      if (!backend) unavailable();
      const res = await backend.psbtNonceGen({ keyId: req.keyId, psbt, approvals: approvals(req.approvals) }, caller);
      return withAudit({ sessionId: buf(res.sessionId), psbt: buf(res.psbt), expiresAtUnixMs: res.expiresAtUnixMs, inputs: res.inputs }, res.policy);
    },

    async psbtSign(req, caller) {
      const psbt = psbtBytes(req.psbt, 'psbt', limits);
      if (!backend) unavailable();
      const res = await backend.psbtSign({ sessionId: req.sessionId, psbt, approvals: approvals(req.approvals) }, caller);
      return withAudit({ psbt: buf(res.psbt), inputs: res.inputs }, res.policy);
    },

    async psbtDeterministicSign(req, caller) {
      const psbt = psbtBytes(req.psbt, 'psbt', limits);
      if (!backend) unavailable();
      const res = await backend.psbtDeterministicSign({ keyId: req.keyId, psbt, approvals: approvals(req.approvals) }, caller);
      return withAudit({ psbt: buf(res.psbt), inputs: res.inputs }, res.policy);
    },
  };
}

/** src/psbt's refusals as statuses that name the input (and the culprit participant). */
function refusing<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof PsbtError) throw fromPsbtError(err);
    throw err;
  }
}

export function psbtAggregatorHandlers(limits: PsbtLimits): PsbtAggregatorHandlers {
  return {
    async psbtCombine(req) {
      const list = Array.isArray(req.psbts) ? req.psbts : [];
      if (list.length < 1 || list.length > MAX_COMBINE_PSBTS) {
        throw new InvalidRequestError('psbts', `expected 1 to ${MAX_COMBINE_PSBTS} PSBTs, got ${list.length}`);
      }
      const psbts = list.map((p, i) => psbtBytes(p, `psbts[${i}]`, limits));
      return { psbt: buf(refusing(() => combinePsbts(psbts, limits))) };
    },

    async psbtFinalize(req) {
      const psbt = psbtBytes(req.psbt, 'psbt', limits);
      const out = refusing(() => finalizeMusigInputs(decodePsbt(psbt, limits)));
      return { psbt: buf(out.psbt), rawTx: buf(out.rawTx ?? new Uint8Array(0)), finalized: out.finalized };
    },
  };
}
