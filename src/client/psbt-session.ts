// runPsbtSession: one full MuSig2 signing session over a PSBT (BIP373), driven by the coordinator.
//
// Every signer but the last uses random nonces (PsbtNonceGen, then PsbtSign); the last one, a
// daemon key, uses PsbtDeterministicSign and keeps no state. Each answers a minimal PSBT that is
// merged here with the BIP174 Combiner; the merged PSBT is then finalized: every partial
// signature verified (a bad one names its signer), aggregated, the BIP340 signature verified
// against the spent output's key, the witness written. As in runSession, round 2 goes over the
// very client object that served round 1, and a PsbtSign answering NOT_FOUND (the daemon lost
// its sessions) restarts the whole session from round 1 with fresh nonces, at most once.
//
// A signer may also be any other MuSig2 participant (a hardware wallet, another library) given as
// a PsbtParticipant: two functions that answer PSBTs, like the daemon's round 1 and round 2.
import type { ChannelCredentials } from '@grpc/grpc-js';
import { status as Status } from '@grpc/grpc-js';
import { combinePsbts, decodePsbt, finalizeMusigInputs, PsbtError } from '../psbt/index.js';
import { SignerClient } from './clients.js';
import { ClientError, CulpritError, SessionError } from './errors.js';
import type { Contribution } from './errors.js';
import type { SessionSigner } from './session.js';

/** A participant that is not a daemon key: it answers round 1 and round 2 on PSBTs itself. */
export interface PsbtParticipant {
  /** Its 33-byte compressed public key, as listed in the PSBT's 0x1a fields. */
  readonly publicKey: Uint8Array;
  /** For messages. */
  readonly label: string;
  /** Round 1: a PSBT carrying this participant's public nonces (0x1b). */
  nonceGen(psbt: Uint8Array): Promise<Uint8Array>;
  /** Round 2: given every participant's 0x1b, a PSBT carrying its partial signatures (0x1c). */
  sign(psbt: Uint8Array): Promise<Uint8Array>;
}

export type PsbtSessionSigner = SessionSigner | PsbtParticipant;

export type PsbtSessionEvent =
  | { kind: 'round1'; attempt: number; psbt: Uint8Array }
  | { kind: 'restart'; signerIndex: number; reason: string };

export interface RunPsbtSessionOptions {
  /** The PSBT to sign (binary), with the BIP373 fields of its MuSig2 inputs (0x1a and the Taproot fields). */
  psbt: Uint8Array;
  /**
   * The signers in session order. The last one signs deterministically when it is a daemon key
   * and there is more than one signer; every other signer uses random nonces.
   */
  signers: readonly PsbtSessionSigner[];
  /** Per-call deadline for clients this function creates. */
  deadlineMs?: number;
  /** Observes progress; awaited, so a caller can act between rounds. */
  onEvent?: (event: PsbtSessionEvent) => void | Promise<void>;
}

export interface PsbtSessionResult {
  /** The combined PSBT with every MuSig2 input the signers completed finalized. */
  psbt: Uint8Array;
  /** The signed transaction, ready to broadcast; undefined while some input is not final. */
  rawTx: Uint8Array | undefined;
  /** Its txid in the usual (display) hex, when rawTx is there. */
  txid: string | undefined;
  /** Inputs finalized by this session. */
  finalized: number[];
  /** How many times round 1 was restarted (0 or 1). */
  restarts: number;
}

interface Party {
  index: number;
  label: string;
  publicKey: Uint8Array;
  /** A daemon key, or an in-process participant. */
  daemon?: { client: SignerClient; keyId: string };
  participant?: PsbtParticipant;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** A restartable round-2 failure: the daemon no longer knows the session. */
class SessionLost extends Error {
  constructor(
    readonly signerIndex: number,
    readonly lostBy: ClientError,
  ) {
    super(lostBy.message);
  }
}

const isParticipant = (s: PsbtSessionSigner): s is PsbtParticipant => typeof (s as PsbtParticipant).nonceGen === 'function';

export async function runPsbtSession(opts: RunPsbtSessionOptions): Promise<PsbtSessionResult> {
  if (opts.signers.length === 0) throw new SessionError('a session needs at least one signer');
  const owned: SignerClient[] = [];
  try {
    const parties: Party[] = opts.signers.map((s, index) => {
      if (isParticipant(s)) return { index, label: s.label, publicKey: s.publicKey, participant: s };
      let client = s.client;
      if (!client) {
        if (!s.endpoint) throw new SessionError(`signer ${index}: give an endpoint or a client`, index);
        client = new SignerClient(s.endpoint, { credentials: s.credentials as ChannelCredentials | undefined, deadlineMs: opts.deadlineMs });
        owned.push(client);
      }
      return { index, label: `${client.endpoint}/${s.keyId}`, publicKey: new Uint8Array(0), daemon: { client, keyId: s.keyId } };
    });
    await gatherPubkeys(parties);
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await attemptSession(parties, opts.psbt, attempt, opts.onEvent);
        return { ...r, restarts: attempt };
      } catch (err) {
        if (!(err instanceof SessionLost)) throw err;
        const party = parties[err.signerIndex]!;
        if (attempt >= 1) {
          throw new SessionError(`signer ${party.index} (${party.label}) lost the session again after a restart: ${err.message}`, party.index, {
            cause: err.lostBy,
          });
        }
        await opts.onEvent?.({ kind: 'restart', signerIndex: party.index, reason: err.message });
      }
    }
  } finally {
    for (const c of owned) c.close();
  }
}

async function gatherPubkeys(parties: Party[]): Promise<void> {
  const listings = new Map<SignerClient, ReturnType<SignerClient['listKeys']>>();
  for (const p of parties) if (p.daemon && !listings.has(p.daemon.client)) listings.set(p.daemon.client, p.daemon.client.listKeys());
  await Promise.all(
    parties.map(async (p) => {
      if (!p.daemon) return;
      let keys;
      try {
        keys = await listings.get(p.daemon.client)!;
      } catch (err) {
        throw callFailed(parties, p, 'ListKeys', err);
      }
      const key = keys.find((k) => k.keyId === p.daemon!.keyId);
      if (!key) throw new SessionError(`signer ${p.index}: no key '${p.daemon.keyId}' at ${p.daemon.client.endpoint}`, p.index);
      if (key.publicKey.length !== 33) throw new CulpritError(p.index, 'pubkey', `expected 33 bytes, got ${key.publicKey.length}`);
      p.publicKey = key.publicKey;
    }),
  );
}

/** The signer whose key a daemon or src/psbt blamed (hex participant key), if it is one of ours. */
function blamed(parties: Party[], participantHex: string | undefined): Party | undefined {
  if (participantHex === undefined) return undefined;
  return parties.find((p) => hex(p.publicKey) === participantHex.toLowerCase());
}

function culpritOrSession(parties: Party[], participantHex: string | undefined, contribution: Contribution, detail: string, cause: unknown): Error {
  const who = blamed(parties, participantHex);
  if (who) return new CulpritError(who.index, contribution, detail, { cause });
  return new SessionError(participantHex ? `participant ${participantHex} (not one of the signers): ${detail}` : detail, undefined, { cause });
}

const CONTRIBUTIONS: Record<string, Contribution> = {
  BAD_NONCE: 'pubnonce',
  CONFLICTING_NONCE: 'pubnonce',
  MISSING_NONCE: 'pubnonce',
  BAD_PARTIAL_SIG: 'psig',
  CONFLICTING_PARTIAL_SIG: 'psig',
};

function callFailed(parties: Party[], p: Party, method: string, err: unknown): Error {
  if (err instanceof ClientError) {
    // A daemon that blames a participant's contribution blames a key: map it to our signer.
    const info = err.errorInfo;
    const contribution = info?.metadata.contribution as Contribution | undefined;
    if (info?.metadata.participant && contribution) return culpritOrSession(parties, info.metadata.participant, contribution, err.details, err);
    return new SessionError(`signer ${p.index} (${p.label}): ${method} failed: ${err.codeName}: ${err.details}`, p.index, { cause: err });
  }
  if (err instanceof CulpritError || err instanceof SessionError) return err;
  return new SessionError(`signer ${p.index} (${p.label}): ${method} failed: ${(err as Error)?.message ?? String(err)}`, p.index, { cause: err });
}

/** Merge a signer's answer into the PSBT, blaming that signer for a PSBT that does not merge. */
function merge(acc: Uint8Array, p: Party, answer: Uint8Array, contribution: Contribution): Uint8Array {
  try {
    return combinePsbts([acc, answer]);
  } catch (err) {
    if (!(err instanceof PsbtError)) throw err;
    throw new CulpritError(p.index, contribution, `its PSBT does not combine: ${err.message}`, { cause: err });
  }
}

async function attemptSession(
  parties: Party[],
  psbt: Uint8Array,
  attempt: number,
  onEvent: RunPsbtSessionOptions['onEvent'],
): Promise<Omit<PsbtSessionResult, 'restarts'>> {
  const last = parties.length > 1 && parties[parties.length - 1]!.daemon ? parties[parties.length - 1]! : undefined;
  const randomParties = last ? parties.slice(0, -1) : parties;

  // Round 1 on the random-nonce signers, all at once, over the PSBT as given.
  const round1 = await settleAll(
    randomParties.map(async (p) => {
      try {
        if (p.participant) return { sessionId: undefined, psbt: await p.participant.nonceGen(psbt) };
        return await p.daemon!.client.psbtNonceGen({ keyId: p.daemon!.keyId, psbt });
      } catch (err) {
        throw callFailed(parties, p, 'PsbtNonceGen', err);
      }
    }),
  );
  let withNonces = psbt;
  randomParties.forEach((p, i) => (withNonces = merge(withNonces, p, round1[i]!.psbt, 'pubnonce')));

  // The final signer: one stateless call over everyone else's nonces.
  if (last) {
    let answer;
    try {
      answer = await last.daemon!.client.psbtDeterministicSign({ keyId: last.daemon!.keyId, psbt: withNonces });
    } catch (err) {
      throw callFailed(parties, last, 'PsbtDeterministicSign', err);
    }
    withNonces = merge(withNonces, last, answer.psbt, 'psig');
  }
  await onEvent?.({ kind: 'round1', attempt, psbt: withNonces });

  // Round 2 on the random-nonce signers, each daemon over the client that ran its round 1.
  const results = await Promise.allSettled(
    randomParties.map(async (p, i) => {
      try {
        if (p.participant) return await p.participant.sign(withNonces);
        const params = { sessionId: round1[i]!.sessionId!, psbt: withNonces };
        const client = p.daemon!.client;
        try {
          return (await client.psbtSign(params)).psbt;
        } catch (err) {
          // An identical PsbtSign is safe to repeat (the daemon replays), so retry once.
          if (!(err instanceof ClientError && err.code === Status.UNAVAILABLE)) throw err;
          return (await client.psbtSign(params, { waitForReady: true })).psbt;
        }
      } catch (err) {
        if (err instanceof ClientError && err.code === Status.NOT_FOUND && err.method === 'psbtSign') throw new SessionLost(p.index, err);
        throw callFailed(parties, p, 'PsbtSign', err);
      }
    }),
  );
  const lost = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && r.reason instanceof SessionLost);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof SessionLost));
  if (failed) throw failed.reason;
  if (lost) throw lost.reason;
  let signed = withNonces;
  randomParties.forEach((p, i) => (signed = merge(signed, p, (results[i] as PromiseFulfilledResult<Uint8Array>).value, 'psig')));

  // Finalize: every partial signature verified (naming a culprit), aggregated and checked.
  let fin;
  try {
    fin = finalizeMusigInputs(decodePsbt(signed));
  } catch (err) {
    if (!(err instanceof PsbtError)) throw err;
    const contribution = CONTRIBUTIONS[err.reason];
    if (contribution) throw culpritOrSession(parties, err.participant, contribution, err.message, err);
    throw new SessionError(`finalizing failed: ${err.message}`, undefined, { cause: err });
  }
  const txid = fin.rawTx ? decodePsbt(fin.psbt).id : undefined;
  return { psbt: fin.psbt, rawTx: fin.rawTx, txid, finalized: fin.finalized };
}

/** Like Promise.all, but waits for every call to finish before throwing the first failure. */
async function settleAll<T>(promises: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
