// Access rules and the audit log around every call (hooked in through CallContext.around):
//
// - Signer RPCs: the caller is identified (acl.ts), refused with PERMISSION_DENIED unless a rule
//   grants the RPC on the key (Sign carries no key id: the session's key is looked up), and
//   every decision is written to the audit log before the reply leaves: one record per call,
//   with the outcome and its status code. A successful call whose record cannot be made durable
//   is answered UNAVAILABLE and its result is withheld (fail closed; a consumed nonce stays
//   consumed). While the log is failing, nothing reaches the signer.
// - Aggregator RPCs (public arithmetic): checked against the rules or opened to every
//   authenticated client; only refusals are audited.
//
// Records hold digests (SHA-256 hex) of the message and of the signing context, never the
// message or any secret; `rand` of DeterministicSign is not digested at all. An allowed
// DeterministicSign records the digest its ledger row holds (of the pubnonce and psig released).
// Key and session ids are bounded before this runs (rpc.ts, validate.ts), so records are small.
// With a signing policy, every record carries `policy_hash`, and a policy refusal is recorded
// with outcome `policy_denied` and the facts of its ErrorInfo (`policy_reason`, `policy_rule`,
// `policy_amount_sent`, `policy_fee`, `policy_destinations`, ...).
import { status as Status } from '@grpc/grpc-js';
import type { ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { AuditUnavailableError, sha256Hex } from '../audit/index.js';
import type { AuditFields, AuditLog } from '../audit/index.js';
import type { Tweak } from '../musig2/index.js';
import { bindingDigest, contextDigest, deterministicDigest, SignerError } from '../signer/index.js';
import { capText, identifyCaller, SIGNER_RPCS } from './acl.js';
import type { AccessRules, ClientIdentity } from './acl.js';
import { mapKnownError } from './errors.js';
import type { CallWrapper } from './rpc.js';

export interface AccessControlOptions {
  /** Undefined: every caller may do everything (development on loopback only). */
  rules?: AccessRules;
  audit?: AuditLog;
  /** Plaintext callers are `local` (the server listens on loopback without TLS). */
  plaintextIsLocal: boolean;
  /** The key of a session, for Sign (SignerService.sessionKeyId). */
  sessionKeyId?: (sessionId: Uint8Array) => Promise<string | null>;
  /** The signing policy's hash (hex), written as `policy_hash` in every record (null without a policy). */
  policyHash?: () => string | undefined;
  logger: Logger;
}

/** A signing-policy refusal's facts (ErrorInfo metadata: rule, amounts, destinations, fee), for its audit record. */
function policyFields(err: unknown): AuditFields {
  if (!(err instanceof SignerError) || !err.errorInfo?.reason.startsWith('POLICY_')) return {};
  const out: AuditFields = { policy_reason: err.errorInfo.reason };
  for (const [k, v] of Object.entries(err.errorInfo.metadata)) if (k !== 'policy_hash') out[`policy_${k}`] = v;
  return out;
}

const SIGNER: ReadonlySet<string> = new Set(SIGNER_RPCS);

/**
 * A handler may put audit fields on its response under this key (not a message field, so it is
 * never sent): the policy rule that allowed a transaction and its amounts.
 */
export const AUDIT_FIELDS: unique symbol = Symbol('auditFields');

/** Fields a handler attached for the audit record, prefixed `policy_`. */
function attachedFields(res: unknown): AuditFields {
  const extra = typeof res === 'object' && res !== null ? (res as { [AUDIT_FIELDS]?: Record<string, string> })[AUDIT_FIELDS] : undefined;
  const out: AuditFields = {};
  for (const [k, v] of Object.entries(extra ?? {})) out[`policy_${k}`] = v;
  return out;
}

export const AUDIT_UNAVAILABLE_MESSAGE = 'audit log unavailable: the signer answers nothing until it can be written';

const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;
const bytesList = (v: unknown): Uint8Array[] | undefined => (Array.isArray(v) && v.every(isBytes) ? v : undefined);
const tweakList = (v: unknown): Tweak[] | undefined =>
  Array.isArray(v) && v.every((t) => typeof t === 'object' && t !== null && isBytes((t as Tweak).tweak) && typeof (t as Tweak).xonly === 'boolean')
    ? (v as Tweak[])
    : undefined;
const hexOf = (v: unknown): string | null => (isBytes(v) ? Buffer.from(v).toString('hex') : null);

/** What a request is about: key, session and digests, from whatever fields decoded. */
interface Subject {
  keyId: string | null;
  sessionId: string | null;
  message: string | null;
  context: string | null;
}

function digestOr(f: () => Uint8Array): string | null {
  try {
    return Buffer.from(f()).toString('hex');
  } catch {
    return null;
  }
}

function describe(rpc: string, req: Record<string, unknown>, keyId: string | null): Subject {
  // For the PSBT RPCs the digest is of the PSBT as sent.
  const message = isBytes(req.message) ? sha256Hex(req.message) : isBytes(req.psbt) ? sha256Hex(req.psbt) : null;
  const pubkeys = bytesList(req.pubkeys);
  const tweaks = tweakList(req.tweaks);
  let context: string | null = null;
  if (keyId !== null && pubkeys && tweaks) {
    const msg = isBytes(req.message) ? req.message : undefined;
    if (rpc === 'NonceGen') context = digestOr(() => bindingDigest(keyId, pubkeys, tweaks, msg));
    const nonce = rpc === 'Sign' ? req.aggnonce : rpc === 'DeterministicSign' ? req.aggothernonce : undefined;
    if (isBytes(nonce) && msg) {
      context = digestOr(() =>
        contextDigest({ path: rpc === 'Sign' ? 'random' : 'deterministic', keyId, nonce, pubkeys, tweaks, message: msg }),
      );
    }
  }
  return { keyId, sessionId: rpc === 'Sign' || rpc === 'PsbtSign' ? hexOf(req.sessionId) : null, message, context };
}

export function accessControl(opts: AccessControlOptions): CallWrapper {
  const { rules, audit, logger } = opts;

  const record = async (who: ClientIdentity, peer: string, rpc: string, subject: Subject, outcome: string, code: Status, reason?: string, extra: AuditFields = {}) => {
    if (!audit) return;
    const fields: AuditFields = {
      ...extra,
      ...(opts.policyHash ? { policy_hash: opts.policyHash() ?? null } : {}),
      client: who.name,
      peer,
      rpc,
      key_id: subject.keyId,
      session_id: subject.sessionId,
      message_sha256: subject.message,
      context_sha256: subject.context,
      outcome,
      code: Status[code] ?? String(code),
      ...(reason === undefined ? {} : { reason }),
    };
    try {
      await audit.append('call', fields);
    } catch (err) {
      logger.error({ err, rpc, client: who.name }, 'audit record could not be written: refusing the call');
      throw new SignerError('UNAVAILABLE', AUDIT_UNAVAILABLE_MESSAGE);
    }
  };

  const deny = async (who: ClientIdentity, peer: string, rpc: string, subject: Subject, reason: string): Promise<never> => {
    logger.warn({ rpc, client: who.name, peer, keyId: subject.keyId }, `access denied: ${reason}`);
    await record(who, peer, rpc, subject, 'denied', Status.PERMISSION_DENIED, reason);
    throw new SignerError('PERMISSION_DENIED', `permission denied: ${reason}`);
  };

  return async (rpc: string, call: ServerUnaryCall<unknown, unknown>, next: () => Promise<unknown>) => {
    const who = identifyCaller(call, opts.plaintextIsLocal);
    // Key and session ids were bounded before this runs (rpc.ts); the peer is capped here.
    const peer = capText(call.getPeer?.() ?? 'unknown', 128);
    const req: Record<string, unknown> = typeof call.request === 'object' && call.request !== null ? (call.request as Record<string, unknown>) : {};

    if (!SIGNER.has(rpc)) {
      const d = rules?.allowsRpc(who, rpc);
      if (d && !d.allowed) await deny(who, peer, rpc, { keyId: null, sessionId: null, message: null, context: null }, d.reason);
      return next();
    }

    if (audit && !audit.healthy()) {
      try {
        await audit.ensureWritable();
      } catch (err) {
        if (!(err instanceof AuditUnavailableError)) throw err;
        logger.error({ rpc, client: who.name }, 'audit log is failing: refusing the call');
        throw new SignerError('UNAVAILABLE', AUDIT_UNAVAILABLE_MESSAGE);
      }
    }

    let keyId = typeof req.keyId === 'string' ? req.keyId : null;
    let subject = describe(rpc, req, keyId);
    try {
      if (rules) {
        const d = rules.allowsRpc(who, rpc);
        if (!d.allowed) await deny(who, peer, rpc, subject, d.reason);
      }
      if ((rpc === 'Sign' || rpc === 'PsbtSign') && opts.sessionKeyId && isBytes(req.sessionId)) {
        keyId = await opts.sessionKeyId(req.sessionId);
        subject = describe(rpc, req, keyId);
      }
      if (rules && keyId !== null && rpc !== 'ListKeys') {
        const d = rules.allowsKey(who, rpc, keyId);
        if (!d.allowed) await deny(who, peer, rpc, subject, d.reason);
      }
    } catch (err) {
      if (err instanceof SignerError && (err.code === 'PERMISSION_DENIED' || err.message === AUDIT_UNAVAILABLE_MESSAGE)) throw err;
      // e.g. a malformed session id: an error outcome like any other.
      await record(who, peer, rpc, subject, 'error', mapKnownError(err)?.code ?? Status.INTERNAL);
      throw err;
    }

    let res: unknown;
    try {
      res = await next();
    } catch (err) {
      const policy = policyFields(err);
      const outcome = policy.policy_reason === undefined ? 'error' : 'policy_denied';
      await record(who, peer, rpc, subject, outcome, mapKnownError(err)?.code ?? Status.INTERNAL, undefined, policy);
      throw err;
    }
    const out = res as Record<string, unknown>;
    if (rpc === 'NonceGen' || rpc === 'PsbtNonceGen') subject = { ...subject, sessionId: hexOf(out.sessionId) };
    // What the ledger row holds for a DeterministicSign: the digest of what was released.
    if (rpc === 'DeterministicSign' && isBytes(out.pubnonce) && isBytes(out.partialSig)) {
      subject = { ...subject, context: Buffer.from(deterministicDigest(out.pubnonce, out.partialSig)).toString('hex') };
    }
    if (rpc === 'ListKeys' && rules && Array.isArray(out.keys)) {
      const visible = (out.keys as { keyId: string }[]).filter((k) => rules.allowsKey(who, 'ListKeys', k.keyId).allowed);
      res = { ...out, keys: visible };
    }
    // The record of the decision is durable before the answer leaves; if it cannot be, the
    // answer (a partial signature, a nonce) is withheld.
    await record(who, peer, rpc, subject, 'ok', Status.OK, undefined, attachedFields(res));
    return res;
  };
}
