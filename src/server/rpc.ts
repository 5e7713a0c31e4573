// Plumbing shared by every unary handler: bytes that do not decode become INVALID_ARGUMENT
// instead of grpc-js's INTERNAL, every promise is settled into exactly one callback, nothing
// can throw out of a handler, and each call is counted and timed.
import { status as Status } from '@grpc/grpc-js';
import type { sendUnaryData, ServerUnaryCall, ServiceDefinition, UntypedHandleCall } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { INTERNAL_MESSAGE, mapKnownError, toServiceError } from './errors.js';
import type { MappedStatus } from './errors.js';
import type { Metrics } from './metrics.js';
import { quotaIdentity } from './quotas.js';
import type { CallQuota } from './quotas.js';
import { checkIdentifiers, InvalidRequestError } from './validate.js';

/** Stands in for a request whose bytes are not a valid protobuf message. */
const UNDECODABLE: unique symbol = Symbol('undecodable request');
interface Undecodable {
  [UNDECODABLE]: string;
}

function isUndecodable(value: unknown): value is Undecodable {
  return typeof value === 'object' && value !== null && UNDECODABLE in value;
}

/** A copy of `definition` whose request decoders report failure as a value rather than throwing. */
export function withSafeDecoding(definition: ServiceDefinition): ServiceDefinition {
  const out: Record<string, ServiceDefinition[string]> = {};
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch {
          return { [UNDECODABLE]: name } satisfies Undecodable;
        }
      },
    };
  }
  return out as ServiceDefinition;
}

/** Runs around a handler with the call at hand: access rules and the audit log (access.ts). */
export type CallWrapper = (method: string, call: ServerUnaryCall<unknown, unknown>, next: () => Promise<unknown>) => Promise<unknown>;

export interface CallContext {
  logger: Logger;
  around?: CallWrapper;
  metrics?: Metrics;
  /** Called when a call fails with UNAVAILABLE, so health can be re-checked at once. */
  onUnavailable?: () => void;
  /** Per-client calls in flight; with it, each handler is also given the call's identity for the signer's quotas. */
  quota?: CallQuota;
}

/**
 * A handler: the decoded request, and the identity of the client it is for (quotaIdentity; only
 * with `ctx.quota`, else undefined) to pass to the signer's per-client quotas. Passed explicitly
 * so that no async_hooks run per promise.
 */
export type UnaryHandler<Req, Res> = (req: Req, caller: string | undefined) => Promise<Res>;

export function unary<Req, Res>(method: string, ctx: CallContext, handle: UnaryHandler<Req, Res>): UntypedHandleCall {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const started = performance.now();
    const endCall = ctx.metrics?.startCall(method);
    const finish = (code: Status) => {
      const codeName = Status[code] ?? String(code);
      endCall?.(codeName);
      ctx.logger.debug({ method, code: codeName, ms: Math.round((performance.now() - started) * 100) / 100 }, 'call');
    };
    const request: unknown = call.request;
    const quota = ctx.quota;
    const identity = quota ? quotaIdentity(call) : undefined;
    const run = async (): Promise<Res> => {
      if (isUndecodable(request)) throw new InvalidRequestError('request', `bytes are not a valid ${method} request message`);
      return handle(request as Req, identity);
    };
    const guarded = ctx.around
      ? () => ctx.around!(method, call as ServerUnaryCall<unknown, unknown>, run) as Promise<Res>
      : run;
    // Bounded identifiers first: nothing below (rules, audit, logs) sees an oversized one.
    const checked = async (): Promise<Res> => {
      if (!isUndecodable(request)) checkIdentifiers(method, request);
      return guarded();
    };
    const limited =
      quota && identity !== undefined
        ? async (): Promise<Res> => {
            quota.enter(identity);
            try {
              return await checked();
            } finally {
              quota.leave(identity);
            }
          }
        : checked;
    limited().then(
      (response) => {
        finish(Status.OK);
        callback(null, response);
      },
      (err: unknown) => {
        let mapped: MappedStatus | undefined = mapKnownError(err);
        if (mapped === undefined) {
          // Log the error itself, never the request: keep logs lean and free of caller data.
          ctx.logger.error({ err, method }, 'unexpected error in handler');
          mapped = { code: Status.INTERNAL, message: INTERNAL_MESSAGE };
        }
        if (mapped.code === Status.UNAVAILABLE) ctx.onUnavailable?.();
        finish(mapped.code);
        callback(toServiceError(mapped));
      },
    );
  };
}
