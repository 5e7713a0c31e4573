// runSession: one full MuSig2 signing session driven by the coordinator.
//
// Every signer but the last uses random nonces (NonceGen, then Sign); the last one uses
// DeterministicSign and keeps no state. A single-signer session has nobody to aggregate
// "other" nonces from (BIP327 rejects an aggothernonce at infinity), so its only signer uses
// the random path.
//
// Round 2 goes over the very client object that served round 1, so it reaches the daemon that
// holds the secret nonce. If a Sign answers NOT_FOUND (the daemon restarted and lost its
// sessions, which is fail-safe), the whole session restarts from round 1 with fresh nonces,
// at most once. Every partial signature is verified here too, naming any culprit, and the
// final BIP340 signature is verified before it is returned.
import type { ChannelCredentials } from '@grpc/grpc-js';
import { status as Status } from '@grpc/grpc-js';
import { schnorr } from '@noble/curves/secp256k1.js';
import {
  getPlainPk,
  getXonlyPk,
  InvalidContributionError,
  keyAggAndTweak,
  nonceAgg,
  partialSigAgg,
  partialSigVerify,
} from '../musig2/index.js';
import type { Tweak } from './clients.js';
import { SignerClient } from './clients.js';
import { ClientError, CulpritError, SessionError } from './errors.js';
import type { Contribution } from './errors.js';

export interface SessionSigner {
  /** Which key on that daemon signs. */
  keyId: string;
  /** HOST:PORT of the daemon; ignored when `client` is given. */
  endpoint?: string;
  credentials?: ChannelCredentials;
  /** An existing client to use (and leave open); otherwise one is created and closed. */
  client?: SignerClient;
}

export type SessionEvent =
  | { kind: 'round1'; attempt: number; pubnonces: Uint8Array[] }
  | { kind: 'restart'; signerIndex: number; reason: string };

export interface RunSessionOptions {
  /** The signers in session order; the last one signs deterministically. */
  signers: readonly SessionSigner[];
  message: Uint8Array;
  tweaks?: readonly Tweak[];
  /** Per-call deadline for clients this function creates. */
  deadlineMs?: number;
  /** Observes progress; awaited, so a caller can act between rounds. */
  onEvent?: (event: SessionEvent) => void | Promise<void>;
}

export interface SessionResult {
  /** The 64-byte BIP340 signature, verified against `aggregatePubkeyXonly`. */
  signature: Uint8Array;
  /** 32-byte x-only tweaked aggregate key. */
  aggregatePubkeyXonly: Uint8Array;
  /** 33-byte compressed tweaked aggregate key. */
  aggregatePubkey: Uint8Array;
  pubkeys: Uint8Array[];
  pubnonces: Uint8Array[];
  partialSigs: Uint8Array[];
  /** How many times round 1 was restarted (0 or 1). */
  restarts: number;
}

const PUBNONCE_BYTES = 66;
const PSIG_BYTES = 32;

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** A restartable round-2 failure: the daemon no longer knows the session. */
class SessionLost extends Error {
  constructor(
    readonly signerIndex: number,
    readonly lostBy: ClientError,
  ) {
    super(lostBy.message);
  }
}

interface Party {
  index: number;
  keyId: string;
  client: SignerClient;
  label: string;
}

export async function runSession(opts: RunSessionOptions): Promise<SessionResult> {
  if (opts.signers.length === 0) throw new SessionError('a session needs at least one signer');
  const owned: SignerClient[] = [];
  const parties: Party[] = opts.signers.map((s, index) => {
    let client = s.client;
    if (!client) {
      if (!s.endpoint) throw new SessionError(`signer ${index}: give an endpoint or a client`, index);
      client = new SignerClient(s.endpoint, { credentials: s.credentials, deadlineMs: opts.deadlineMs });
      owned.push(client);
    }
    return { index, keyId: s.keyId, client, label: `${client.endpoint}/${s.keyId}` };
  });
  try {
    const tweaks = [...(opts.tweaks ?? [])];
    const pubkeys = await gatherPubkeys(parties);
    // Key aggregation up front: a bad key or tweak fails here, before any nonce exists.
    const ctx = keyAggAndTweak(pubkeys, tweaks);
    const aggregatePubkeyXonly = getXonlyPk(ctx);
    const aggregatePubkey = getPlainPk(ctx);
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await attemptSession(parties, pubkeys, tweaks, opts.message, attempt, opts.onEvent);
        if (!schnorr.verify(r.signature, opts.message, aggregatePubkeyXonly)) {
          throw new SessionError('the aggregate signature does not verify although every partial signature did');
        }
        return { ...r, aggregatePubkeyXonly, aggregatePubkey, pubkeys, restarts: attempt };
      } catch (err) {
        if (!(err instanceof SessionLost)) throw err;
        const party = parties[err.signerIndex]!;
        if (attempt >= 1) {
          throw new SessionError(`signer ${party.index} (${party.label}) lost the session again after a restart: ${err.message}`, party.index, { cause: err.lostBy });
        }
        await opts.onEvent?.({ kind: 'restart', signerIndex: party.index, reason: err.message });
      }
    }
  } finally {
    for (const c of owned) c.close();
  }
}

async function gatherPubkeys(parties: Party[]): Promise<Uint8Array[]> {
  // One ListKeys per distinct client.
  const listings = new Map<SignerClient, ReturnType<SignerClient['listKeys']>>();
  for (const p of parties) if (!listings.has(p.client)) listings.set(p.client, p.client.listKeys());
  return Promise.all(
    parties.map(async (p) => {
      let keys;
      try {
        keys = await listings.get(p.client)!;
      } catch (err) {
        throw callFailed(p, 'ListKeys', err);
      }
      const key = keys.find((k) => k.keyId === p.keyId);
      if (!key) throw new SessionError(`signer ${p.index}: no key '${p.keyId}' at ${p.client.endpoint}`, p.index);
      if (key.publicKey.length !== 33) throw new CulpritError(p.index, 'pubkey', `expected 33 bytes, got ${key.publicKey.length}`);
      return key.publicKey;
    }),
  );
}

function callFailed(p: Party, method: string, err: unknown): Error {
  if (err instanceof ClientError) {
    // A daemon that blames a signer by index blames a position in our own pubkey list.
    const blame = err.contribution;
    if (blame && blame.signer !== 'aggregator') return new CulpritError(blame.signer, blame.contribution, err.details, { cause: err });
    return new SessionError(`signer ${p.index} (${p.label}): ${method} failed: ${err.codeName}: ${err.details}`, p.index, { cause: err });
  }
  return new SessionError(`signer ${p.index} (${p.label}): ${method} failed: ${(err as Error)?.message ?? String(err)}`, p.index, { cause: err });
}

function checkLength(p: Party, what: Contribution, bytes: Uint8Array, len: number): void {
  if (bytes.length !== len) throw new CulpritError(p.index, what, `expected ${len} bytes, got ${bytes.length}`);
}

/** nonceAgg over a subset of the parties, blaming the right party for a bad pubnonce. */
function aggregateNonces(parties: Party[], pubnonces: Uint8Array[]): Uint8Array {
  try {
    return nonceAgg(pubnonces);
  } catch (err) {
    if (err instanceof InvalidContributionError && err.signer !== null) {
      throw new CulpritError(parties[err.signer]!.index, 'pubnonce', err.message, { cause: err });
    }
    throw err;
  }
}

async function attemptSession(
  parties: Party[],
  pubkeys: Uint8Array[],
  tweaks: Tweak[],
  message: Uint8Array,
  attempt: number,
  onEvent: RunSessionOptions['onEvent'],
): Promise<{ signature: Uint8Array; pubnonces: Uint8Array[]; partialSigs: Uint8Array[] }> {
  const single = parties.length === 1;
  const randomParties = single ? parties : parties.slice(0, -1);
  const lastParty = single ? undefined : parties[parties.length - 1]!;

  // Round 1 on the random-nonce signers, all at once.
  const round1 = await settleAll(
    randomParties.map(async (p) => {
      try {
        const r = await p.client.nonceGen({ keyId: p.keyId, pubkeys, tweaks, message });
        checkLength(p, 'pubnonce', r.pubnonce, PUBNONCE_BYTES);
        return r;
      } catch (err) {
        throw err instanceof CulpritError ? err : callFailed(p, 'NonceGen', err);
      }
    }),
  );
  const pubnonces = round1.map((r) => r.pubnonce);

  // The final signer: one stateless call over the others' aggregate nonce.
  let last: { pubnonce: Uint8Array; partialSig: Uint8Array } | undefined;
  if (lastParty) {
    const aggothernonce = aggregateNonces(randomParties, pubnonces);
    try {
      last = await lastParty.client.deterministicSign({ keyId: lastParty.keyId, aggothernonce, pubkeys, tweaks, message });
    } catch (err) {
      throw callFailed(lastParty, 'DeterministicSign', err);
    }
    checkLength(lastParty, 'pubnonce', last.pubnonce, PUBNONCE_BYTES);
    checkLength(lastParty, 'psig', last.partialSig, PSIG_BYTES);
    pubnonces.push(last.pubnonce);
  }
  await onEvent?.({ kind: 'round1', attempt, pubnonces: [...pubnonces] });
  const aggnonce = aggregateNonces(parties, pubnonces);

  // Round 2 on the random-nonce signers, each over the client that ran its round 1.
  const results = await Promise.allSettled(
    randomParties.map(async (p, i) => {
      const params = { sessionId: round1[i]!.sessionId, aggnonce, pubkeys, tweaks, message };
      try {
        try {
          return await p.client.sign(params);
        } catch (err) {
          // The connection dropped or the daemon asked for a retry. An identical Sign is safe to
          // repeat (the daemon replays the same psig), so retry once, waiting for the connection.
          if (!(err instanceof ClientError && err.code === Status.UNAVAILABLE)) throw err;
          return await p.client.sign(params, { waitForReady: true });
        }
      } catch (err) {
        if (err instanceof ClientError && err.code === Status.NOT_FOUND && err.method === 'sign') throw new SessionLost(p.index, err);
        throw callFailed(p, 'Sign', err);
      }
    }),
  );
  const lost = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && r.reason instanceof SessionLost);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof SessionLost));
  if (failed) throw failed.reason;
  if (lost) throw lost.reason;
  const partialSigs = results.map((r, i) => {
    const res = (r as PromiseFulfilledResult<{ partialSig: Uint8Array; pubnonce: Uint8Array }>).value;
    const p = randomParties[i]!;
    checkLength(p, 'psig', res.partialSig, PSIG_BYTES);
    if (!equal(res.pubnonce, pubnonces[i]!)) throw new CulpritError(p.index, 'pubnonce', `Sign echoed ${hex(res.pubnonce)}, not its round-1 pubnonce`);
    return res.partialSig;
  });
  if (last) partialSigs.push(last.partialSig);

  // Verify every partial signature before aggregating, to name a culprit rather than fail blind.
  partialSigs.forEach((psig, i) => {
    let ok: boolean;
    try {
      ok = partialSigVerify(psig, pubnonces, pubkeys, tweaks, message, i);
    } catch (err) {
      if (err instanceof InvalidContributionError && err.signer !== null) throw new CulpritError(err.signer, err.contrib, err.message, { cause: err });
      throw err;
    }
    if (!ok) throw new CulpritError(i, 'psig', 'partial signature does not verify');
  });
  const signature = partialSigAgg(partialSigs, { aggnonce, pubkeys, tweaks, msg: message });
  return { signature, pubnonces, partialSigs };
}

/** Like Promise.all, but waits for every call to finish before throwing the first failure. */
async function settleAll<T>(promises: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
