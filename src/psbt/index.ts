/**
 * BIP373 MuSig2 PSBTs, pure over bytes: find where a key takes part, check every field against
 * what it claims (KeyAgg of the 0x1a participants, BIP328 derivation and TapTweak up to the
 * spent output key or the tapleaf key), compute the BIP341 sighash from the PSBT, read and write
 * the 0x1b/0x1c fields, combine (BIP174) and finalize.
 * https://github.com/bitcoin/bips/blob/master/bip-0373.mediawiki
 *
 * As bips PR 1695 settled, the second key in 0x1b/0x1c key data is the key that actually signs
 * (the tweaked output key for a key-path spend, the leaf key for a script path), not the 0x1a
 * aggregate. Entries are matched on its x coordinate, since the output key is x-only.
 */
import { Transaction } from '@scure/btc-signer';
import { PSBTInput, PSBTOutput } from '@scure/btc-signer/psbt.js';
import { tapLeafHash } from '@scure/btc-signer/payment.js';
import { sha256x2, tagSchnorr, taprootTweakPubkey, compareBytes, equalBytes } from '@scure/btc-signer/utils.js';
import { schnorr } from '@noble/curves/secp256k1.js';
import { bytesToHex, concatBytes } from '@noble/hashes/utils.js';
import {
  InvalidContributionError, getPlainPk, getXonlyPk, isValidAggnonce, keyAgg,
  keyAggAndTweak, nonceAgg, partialSigAgg, partialSigVerify,
} from '../musig2/index.js';
import type { Tweak } from '../musig2/index.js';
import { deriveMusig, keyFingerprint } from '../descriptor/bip328.js';
import { PsbtError, describe } from './errors.js';
import { TaprootSighasher } from './sighash.js';

export { PsbtError } from './errors.js';
export type { PsbtErrorReason } from './errors.js';
export { Transaction };

/** Caps checked before (and again after) parsing. */
export interface PsbtLimits {
  readonly maxPsbtBytes: number;
  readonly maxInputs: number;
  readonly maxOutputs: number;
}

export const DEFAULT_PSBT_LIMITS: PsbtLimits = Object.freeze({ maxPsbtBytes: 4 * 1024 * 1024, maxInputs: 1000, maxOutputs: 1000 });

/**
 * How scure opens every PSBT here: keep unknown and proprietary fields, accept any script (an
 * output script scure cannot decode is still a valid output; the inputs we sign are checked here).
 */
const TX_OPTS = {
  unknown: 'ignore',
  disableScriptCheck: true,
  proprietary: 'ignore',
  allowUnknownOutputs: true,
  allowUnknownInputs: true,
  allowUnknownVersion: true,
} as const;

/** Work caps per 0x1a entry, so a small PSBT cannot ask for a huge KeyAgg or derivation. */
export const MAX_PARTICIPANTS = 1000;
export const MAX_DERIVATION_DEPTH = 255; // BIP32 depth is one byte

const SIGHASH_DEFAULT = 0;
const SIGHASH_ALL = 1;
const TAPROOT_LEAF_VERSION = 0xc0;

type Input = ReturnType<Transaction['getInput']>;

// ---------------------------------------------------------------------------------------------
// Decoding with limits

/** Read a Bitcoin CompactSize at `pos`; returns [value, next position] or throws RangeError. */
function readCompactSize(b: Uint8Array, pos: number): [number, number] {
  if (pos >= b.length) throw new RangeError('truncated');
  const first = b[pos] as number;
  const need = first < 0xfd ? 0 : first === 0xfd ? 2 : first === 0xfe ? 4 : 8;
  if (pos + 1 + need > b.length) throw new RangeError('truncated');
  if (need === 0) return [first, pos + 1];
  let v = 0;
  for (let i = need; i >= 1; i--) v = v * 256 + (b[pos + i] as number);
  return [v, pos + 1 + need];
}

/**
 * Input and output counts read from the global map without parsing the rest, so that a huge
 * PSBT is refused before scure builds its objects. Undefined when the prefix is not readable
 * (the full parse then reports the problem).
 */
function peekCounts(b: Uint8Array): { inputs: number; outputs: number } | undefined {
  let inputs: number | undefined;
  let outputs: number | undefined;
  try {
    let pos = 5;
    for (;;) {
      let keyLen: number;
      [keyLen, pos] = readCompactSize(b, pos);
      if (keyLen === 0) break;
      const keyType = b[pos];
      let valLen: number;
      [valLen, pos] = readCompactSize(b, pos + keyLen);
      const val = b.subarray(pos, pos + valLen);
      pos += valLen;
      if (keyLen !== 1) continue;
      if (keyType === 0x04) inputs = readCompactSize(val, 0)[0];
      if (keyType === 0x05) outputs = readCompactSize(val, 0)[0];
      if (keyType === 0x00) {
        // PSBTv0 unsigned transaction: version, input count, inputs, output count.
        const [n, afterCount] = readCompactSize(val, 4);
        inputs = n;
        let p = afterCount;
        for (let i = 0; i < n && p < val.length; i++) {
          let sl: number;
          [sl, p] = readCompactSize(val, p + 36);
          p += sl + 4;
        }
        if (p < val.length) outputs = readCompactSize(val, p)[0];
      }
    }
  } catch {
    // A truncated or malformed map: keep the counts read so far; the full parse reports the rest.
  }
  return inputs === undefined && outputs === undefined ? undefined : { inputs: inputs ?? 0, outputs: outputs ?? 0 };
}

function checkLimits(inputs: number, outputs: number, limits: PsbtLimits): void {
  if (inputs > limits.maxInputs) throw new PsbtError('TOO_MANY_INPUTS', `${inputs} inputs, at most ${limits.maxInputs} allowed`);
  if (outputs > limits.maxOutputs) throw new PsbtError('TOO_MANY_OUTPUTS', `${outputs} outputs, at most ${limits.maxOutputs} allowed`);
}

/**
 * Parse a PSBT (v0 or v2), keeping unknown and proprietary fields. Size and (where readable)
 * input/output counts are checked before the full parse. Every failure is a PsbtError.
 */
export function decodePsbt(bytes: Uint8Array, limits: PsbtLimits = DEFAULT_PSBT_LIMITS): Transaction {
  if (!(bytes instanceof Uint8Array)) throw new PsbtError('MALFORMED', 'a PSBT must be bytes');
  if (bytes.length > limits.maxPsbtBytes) throw new PsbtError('TOO_LARGE', `${bytes.length} bytes, at most ${limits.maxPsbtBytes} allowed`);
  if (bytes.length < 5 || bytes[0] !== 0x70 || bytes[1] !== 0x73 || bytes[2] !== 0x62 || bytes[3] !== 0x74 || bytes[4] !== 0xff) {
    throw new PsbtError('MALFORMED', 'missing the PSBT magic bytes "psbt\\xff"');
  }
  const peek = peekCounts(bytes);
  if (peek !== undefined) checkLimits(peek.inputs, peek.outputs, limits);
  let tx: Transaction;
  try {
    tx = Transaction.fromPSBT(bytes, TX_OPTS);
  } catch (e) {
    throw new PsbtError('MALFORMED', describe(e));
  }
  checkLimits(tx.inputsLength, tx.outputsLength, limits);
  return tx;
}

/** Serialise in the PSBT version it was read in (unknown fields kept). */
export function encodePsbt(tx: Transaction): Uint8Array {
  try {
    return tx.toPSBT();
  } catch (e) {
    throw new PsbtError('MALFORMED', `cannot serialise: ${describe(e)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Signing plans

/** What one MuSig2 signature on one input needs, all recomputed from the PSBT. */
export interface MusigInputPlan {
  readonly index: number;
  /** 33-byte participant keys, in the 0x1a order (KeyAgg order). */
  readonly participants: Uint8Array[];
  /** 33-byte plain aggregate from the 0x1a key data (checked = KeyAgg(participants)). */
  readonly aggregateKey: Uint8Array;
  /** 32-byte x-only key that signs: the output key (key path) or the leaf key (script path). */
  readonly signingKey: Uint8Array;
  /** The second key of 0x1b/0x1c key data: the plain (33-byte) tweaked key, x = signingKey (as BIP373's vectors write it). */
  readonly keyDataKey: Uint8Array;
  /** BIP341 tapleaf hash, script path only. */
  readonly leafHash?: Uint8Array;
  /** The leaf script (script path only), for finalizing. */
  readonly leafScript?: Uint8Array;
  /** BIP328 plain tweaks, then (key path with an internal key) the x-only TapTweak. */
  readonly tweaks: Tweak[];
  /** 0 (DEFAULT) or 1 (ALL). */
  readonly sighashType: number;
  /** 32-byte BIP341 sighash: the message to sign. */
  readonly sighash: Uint8Array;
}

export interface SigningPlan {
  /** 32-byte txid of the unsigned transaction, in internal byte order (as in the PSBT). */
  readonly unsignedTxid: Uint8Array;
  readonly inputs: MusigInputPlan[];
}

/** The unsigned transaction's txid, internal byte order. */
export function unsignedTxid(tx: Transaction): Uint8Array {
  return sha256x2(tx.unsignedTx);
}

interface Prevouts { scripts: Uint8Array[]; amounts: bigint[] }

function prevoutOf(input: Input): { script: Uint8Array; amount: bigint } | undefined {
  if (input.witnessUtxo) return input.witnessUtxo;
  const nw = input.nonWitnessUtxo;
  if (nw && input.index !== undefined) return nw.outputs[input.index];
  return undefined;
}

/** Every input's spent script and amount (BIP341 commits to all of them). */
function allPrevouts(inputs: readonly Input[]): Prevouts {
  const scripts: Uint8Array[] = [];
  const amounts: bigint[] = [];
  inputs.forEach((input, i) => {
    const prev = prevoutOf(input);
    if (prev === undefined) throw new PsbtError('MISSING_UTXO', 'neither witnessUtxo nor nonWitnessUtxo is present (BIP341 signs every input\'s amount and script)', { inputIndex: i });
    scripts.push(prev.script);
    amounts.push(prev.amount);
  });
  return { scripts, amounts };
}

function fail(reason: ConstructorParameters<typeof PsbtError>[0], inputIndex: number, detail: string, participant?: Uint8Array): never {
  throw new PsbtError(reason, detail, { inputIndex, participant: participant === undefined ? undefined : bytesToHex(participant) });
}

/** A musig2 (or any) failure as a PsbtError for input `index`, blaming a participant when it can. */
function fromMusig(e: unknown, index: number, reason: ConstructorParameters<typeof PsbtError>[0], participants?: readonly Uint8Array[]): never {
  if (e instanceof PsbtError) throw e;
  if (e instanceof InvalidContributionError && e.signer !== null && participants !== undefined) {
    const r = e.contrib === 'pubnonce' ? 'BAD_NONCE' : e.contrib === 'psig' ? 'BAD_PARTIAL_SIG' : reason;
    fail(r, index, describe(e), participants[e.signer]);
  }
  fail(reason, index, describe(e));
}

const tapTweakHash = (internal: Uint8Array, root?: Uint8Array): Uint8Array =>
  tagSchnorr('TapTweak', internal, root ?? new Uint8Array(0));

const hex = bytesToHex;

/** The BIP328 path of `xonly` below the aggregate (fingerprint of the aggregate), if any. */
function derivationPath(input: Input, xonly: Uint8Array, aggregate: Uint8Array, aggFp: number): number[] | undefined {
  for (const [key, { der }] of input.tapBip32Derivation ?? []) {
    if (equalBytes(key, xonly) && der.fingerprint === aggFp) return der.path;
  }
  return equalBytes(aggregate.subarray(1), xonly) ? [] : undefined;
}

function pathText(path: readonly number[]): string {
  return ['m', ...path.map(String)].join('/');
}

/** BIP328 derivation of `target` (x-only) from the aggregate; throws DERIVATION_MISMATCH. */
function derive(index: number, participants: Uint8Array[], aggregate: Uint8Array, path: number[], target: Uint8Array, what: string): Tweak[] {
  if (path.length > MAX_DERIVATION_DEPTH) fail('DERIVATION_MISMATCH', index, `${what}: a derivation path of ${path.length} steps (at most ${MAX_DERIVATION_DEPTH})`);
  let derived;
  try {
    derived = deriveMusig(participants, path);
  } catch (e) {
    fail('DERIVATION_MISMATCH', index, `${what}: ${describe(e)}`);
  }
  if (!equalBytes(derived.publicKey.subarray(1), target)) {
    fail('DERIVATION_MISMATCH', index, `${what}: ${pathText(path)} from aggregate ${hex(aggregate)} gives ${hex(derived.publicKey.subarray(1))}, not ${hex(target)}`);
  }
  return derived.tweaks;
}

/** The merkle root a control block proves for a leaf, and whether it matches the output key. */
function controlBlockCommits(cb: { version: number; internalKey: Uint8Array; merklePath: Uint8Array[] }, leafHash: Uint8Array, outputKey: Uint8Array): boolean {
  let h = leafHash;
  for (const step of cb.merklePath) {
    h = compareBytes(h, step) < 0 ? tagSchnorr('TapBranch', h, step) : tagSchnorr('TapBranch', step, h);
  }
  try {
    const [x, parity] = taprootTweakPubkey(cb.internalKey, h);
    return equalBytes(x, outputKey) && parity === (cb.version & 1);
  } catch {
    return false;
  }
}

interface PlanContext { tx: Transaction; inputs: Input[]; sighasher?: TaprootSighasher }

function sighashFor(ctx: PlanContext, index: number, type: number, leaf?: { script: Uint8Array }): Uint8Array {
  if (ctx.sighasher === undefined) {
    const prevouts = allPrevouts(ctx.inputs);
    try {
      ctx.sighasher = new TaprootSighasher(ctx.tx.unsignedTx, prevouts.scripts, prevouts.amounts);
    } catch (e) {
      fail('MALFORMED', index, `cannot compute the BIP341 sighash: ${describe(e)}`);
    }
  }
  try {
    return ctx.sighasher.sighash(index, type, leaf?.script, TAPROOT_LEAF_VERSION);
  } catch (e) {
    fail(VALID_SIGHASH_TYPES.has(type) ? 'MALFORMED' : 'UNSUPPORTED_SIGHASH', index, `cannot compute the BIP341 sighash: ${describe(e)}`);
  }
}

const VALID_SIGHASH_TYPES = new Set([0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83]);

/**
 * The BIP341 signature hash of input `index` for any hash type, from the PSBT's own UTXOs
 * (every input needs one). `leafScript` selects a script-path spend (leaf version 0xc0).
 * Signing plans allow only DEFAULT and ALL; this is the general computation they use.
 */
export function taprootSighash(tx: Transaction, index: number, sighashType: number, leafScript?: Uint8Array): Uint8Array {
  if (!Number.isInteger(index) || index < 0 || index >= tx.inputsLength) throw new PsbtError('MALFORMED', `no input ${index}`);
  return sighashFor(newContext(tx), index, sighashType, leafScript === undefined ? undefined : { script: leafScript });
}

/**
 * Every MuSig2 signature the 0x1a entry (aggregate, participants) of input `index` allows: the
 * key path when the internal key (or, without one, the output key) derives from the aggregate,
 * and each `pk(K)` leaf whose K derives from it. Throws when a claimed link does not hold, or
 * when the aggregate reaches neither.
 */
function planEntry(ctx: PlanContext, index: number, aggregate: Uint8Array, participants: Uint8Array[]): MusigInputPlan[] {
  const input = ctx.inputs[index] as Input;
  if (participants.length > MAX_PARTICIPANTS) fail('TOO_MANY_PARTICIPANTS', index, `${participants.length} participants in one 0x1a list, at most ${MAX_PARTICIPANTS}`);
  let plain: Uint8Array;
  try {
    plain = getPlainPk(keyAgg(participants));
  } catch (e) {
    fromMusig(e, index, 'AGGREGATE_MISMATCH');
  }
  if (!equalBytes(plain, aggregate)) {
    fail('AGGREGATE_MISMATCH', index, `0x1a aggregate ${hex(aggregate)} is not KeyAgg of its ${participants.length} participants (${hex(plain)})`);
  }
  const prev = prevoutOf(input);
  if (prev === undefined) fail('MISSING_UTXO', index, 'neither witnessUtxo nor nonWitnessUtxo is present');
  const spk = prev.script;
  if (spk.length !== 34 || spk[0] !== 0x51 || spk[1] !== 0x20) fail('NOT_TAPROOT', index, `the spent output is not P2TR (${hex(spk)})`);
  const outputKey = spk.subarray(2);
  const sighashType = input.sighashType ?? SIGHASH_DEFAULT;
  const aggFp = keyFingerprint(aggregate);
  const plans: MusigInputPlan[] = [];
  const checkSighash = (): void => {
    if (sighashType !== SIGHASH_DEFAULT && sighashType !== SIGHASH_ALL) {
      fail('UNSUPPORTED_SIGHASH', index, `sighash type ${sighashType} (only DEFAULT 0 and ALL 1 are signed)`);
    }
  };

  // Key path.
  const internal = input.tapInternalKey;
  const keyPathSource = internal ?? outputKey;
  const path = derivationPath(input, keyPathSource, aggregate, aggFp);
  if (path !== undefined) {
    const tweaks = derive(index, participants, aggregate, path, keyPathSource, internal ? 'internal key' : 'output key');
    if (internal) tweaks.push({ tweak: tapTweakHash(internal, input.tapMerkleRoot), xonly: true });
    let finalCtx;
    try {
      finalCtx = keyAggAndTweak(participants, tweaks);
    } catch (e) {
      fromMusig(e, index, 'DERIVATION_MISMATCH');
    }
    if (!equalBytes(getXonlyPk(finalCtx), outputKey)) {
      fail('DERIVATION_MISMATCH', index, `aggregate ${hex(aggregate)} with ${pathText(path)}${internal ? ' and TapTweak' : ''} gives ${hex(getXonlyPk(finalCtx))}, not the output key ${hex(outputKey)}`);
    }
    checkSighash();
    plans.push({
      index, participants, aggregateKey: aggregate, signingKey: outputKey.slice(), keyDataKey: getPlainPk(finalCtx),
      tweaks, sighashType, sighash: sighashFor(ctx, index, sighashType),
    });
  }

  // Script path: pk(K) leaves whose K derives from the aggregate.
  const seen = new Set<string>();
  for (const [cb, scriptVer] of input.tapLeafScript ?? []) {
    const ver = scriptVer[scriptVer.length - 1];
    const script = scriptVer.subarray(0, -1);
    if (ver !== TAPROOT_LEAF_VERSION || script.length !== 34 || script[0] !== 0x20 || script[33] !== 0xac) continue;
    const leafKey = script.subarray(1, 33);
    const leafPath = derivationPath(input, leafKey, aggregate, aggFp);
    if (leafPath === undefined) continue;
    const leafHash = tapLeafHash(script, ver);
    if (seen.has(hex(leafHash))) continue;
    seen.add(hex(leafHash));
    const tweaks = derive(index, participants, aggregate, leafPath, leafKey, 'leaf key');
    if (!controlBlockCommits(cb, leafHash, outputKey)) {
      fail('DERIVATION_MISMATCH', index, `the control block of leaf ${hex(leafHash)} does not commit to the output key ${hex(outputKey)}`);
    }
    let leafCtx;
    try {
      leafCtx = keyAggAndTweak(participants, tweaks);
    } catch (e) {
      fromMusig(e, index, 'DERIVATION_MISMATCH');
    }
    checkSighash();
    plans.push({
      index, participants, aggregateKey: aggregate, signingKey: leafKey.slice(), keyDataKey: getPlainPk(leafCtx),
      leafHash, leafScript: script.slice(), tweaks, sighashType, sighash: sighashFor(ctx, index, sighashType, { script }),
    });
  }
  if (plans.length === 0) {
    fail('DERIVATION_MISMATCH', index, `aggregate ${hex(aggregate)} reaches neither the output key ${hex(outputKey)} nor a pk() leaf key`);
  }
  return plans;
}

function newContext(tx: Transaction): PlanContext {
  const inputs: Input[] = [];
  for (let i = 0; i < tx.inputsLength; i++) inputs.push(tx.getInput(i));
  return { tx, inputs };
}

/** Every MuSig2 signature that 0x1a entries of the PSBT allow, for all participants. */
export function planAll(tx: Transaction): MusigInputPlan[] {
  const ctx = newContext(tx);
  const plans: MusigInputPlan[] = [];
  ctx.inputs.forEach((input, index) => {
    for (const [aggregate, participants] of input.musig2ParticipantPubkeys ?? []) plans.push(...planEntry(ctx, index, aggregate, participants));
  });
  return plans;
}

/**
 * The signatures `ourPubkey` (33 bytes) takes part in: every input where it is in a 0x1a list,
 * each checked (aggregate, derivation, output/leaf key, sighash type) with its sighash.
 * Throws NO_PARTICIPATION when there is none, MISSING_UTXO when any input lacks its UTXO.
 */
export function planSigning(tx: Transaction, ourPubkey: Uint8Array): SigningPlan {
  if (!(ourPubkey instanceof Uint8Array) || ourPubkey.length !== 33) throw new PsbtError('MALFORMED', 'our public key must be 33 bytes (compressed)');
  const ctx = newContext(tx);
  const plans: MusigInputPlan[] = [];
  ctx.inputs.forEach((input, index) => {
    for (const [aggregate, participants] of input.musig2ParticipantPubkeys ?? []) {
      const count = participants.filter((p) => equalBytes(p, ourPubkey)).length;
      if (count === 0) continue;
      if (count > 1) fail('DUPLICATE_PARTICIPANT', index, 'our key is listed more than once in the 0x1a participants; BIP373 has one nonce per participant', ourPubkey);
      plans.push(...planEntry(ctx, index, aggregate, participants));
    }
  });
  if (plans.length === 0) throw new PsbtError('NO_PARTICIPATION', `key ${hex(ourPubkey)} is a MuSig2 participant in no input`);
  if (ctx.sighasher === undefined) allPrevouts(ctx.inputs); // every input's UTXO, even when no plan hashed yet
  return { unsignedTxid: unsignedTxid(tx), inputs: plans };
}

// ---------------------------------------------------------------------------------------------
// Reading 0x1b / 0x1c

type MusigKey = { participantPubkey: Uint8Array; aggregatePubkey: Uint8Array; leafHash?: Uint8Array };

function sameTarget(key: MusigKey, plan: MusigInputPlan): boolean {
  if (!equalBytes(key.aggregatePubkey.subarray(1), plan.signingKey)) return false;
  if (plan.leafHash === undefined) return key.leafHash === undefined || key.leafHash.length === 0;
  return key.leafHash !== undefined && equalBytes(key.leafHash, plan.leafHash);
}

/** participant hex → value, for the entries of `plan`'s signing key; conflicts throw. */
function collect(
  entries: readonly [MusigKey, Uint8Array][] | undefined, plan: MusigInputPlan, len: number,
  bad: 'BAD_NONCE' | 'BAD_PARTIAL_SIG', conflict: 'CONFLICTING_NONCE' | 'CONFLICTING_PARTIAL_SIG',
): Map<string, Uint8Array> {
  const found = new Map<string, Uint8Array>();
  const members = new Set(plan.participants.map((p) => hex(p)));
  for (const [key, value] of entries ?? []) {
    if (!sameTarget(key, plan)) continue;
    const who = hex(key.participantPubkey);
    if (!members.has(who)) continue;
    if (!(value instanceof Uint8Array) || value.length !== len) {
      fail(bad, plan.index, `${bad === 'BAD_NONCE' ? 'public nonce' : 'partial signature'} of ${value?.length ?? 0} bytes, ${len} expected`, key.participantPubkey);
    }
    const prior = found.get(who);
    if (prior !== undefined && !equalBytes(prior, value)) {
      fail(conflict, plan.index, `two different ${bad === 'BAD_NONCE' ? 'public nonces' : 'partial signatures'} for signing key ${hex(plan.signingKey)}`, key.participantPubkey);
    }
    found.set(who, value);
  }
  return found;
}

function checkNonce(plan: MusigInputPlan, who: string, nonce: Uint8Array): void {
  const ok = (nonce[0] === 2 || nonce[0] === 3) && (nonce[33] === 2 || nonce[33] === 3) && isValidAggnonce(nonce);
  if (!ok) throw new PsbtError('BAD_NONCE', 'public nonce is not two valid compressed points', { inputIndex: plan.index, participant: who });
}

function noncesOf(tx: Transaction, plan: MusigInputPlan): Map<string, Uint8Array> {
  const found = collect(tx.getInput(plan.index).musig2PubNonce as [MusigKey, Uint8Array][] | undefined, plan, 66, 'BAD_NONCE', 'CONFLICTING_NONCE');
  for (const [who, nonce] of found) checkNonce(plan, who, nonce);
  return found;
}

/** The 0x1b public nonces of the other participants for this input and signing key. */
export function otherNonces(tx: Transaction, plan: MusigInputPlan, ourPubkey: Uint8Array): Map<string, Uint8Array> {
  const found = noncesOf(tx, plan);
  found.delete(hex(ourPubkey));
  return found;
}

/** Every participant's 0x1b nonce in participant order, or undefined if one is missing. */
export function allNonces(tx: Transaction, plan: MusigInputPlan): Uint8Array[] | undefined {
  const found = noncesOf(tx, plan);
  const out = plan.participants.map((p) => found.get(hex(p)));
  return out.every((n) => n !== undefined) ? (out as Uint8Array[]) : undefined;
}

/** Every participant's 0x1c partial signature in participant order, or undefined if one is missing. */
export function partialSigs(tx: Transaction, plan: MusigInputPlan): Uint8Array[] | undefined {
  const found = collect(tx.getInput(plan.index).musig2PartialSig as [MusigKey, Uint8Array][] | undefined, plan, 32, 'BAD_PARTIAL_SIG', 'CONFLICTING_PARTIAL_SIG');
  const out = plan.participants.map((p) => found.get(hex(p)));
  return out.every((s) => s !== undefined) ? (out as Uint8Array[]) : undefined;
}

// ---------------------------------------------------------------------------------------------
// Writing: minimal PSBTs, Combiner, Finalizer

export interface PsbtAddition {
  readonly index: number;
  readonly plan: MusigInputPlan;
  readonly pubNonce?: { participant: Uint8Array; nonce: Uint8Array };
  readonly partialSig?: { participant: Uint8Array; sig: Uint8Array };
}

function musigKey(participant: Uint8Array, plan: MusigInputPlan): MusigKey {
  return plan.leafHash === undefined
    ? { participantPubkey: participant, aggregatePubkey: plan.keyDataKey }
    : { participantPubkey: participant, aggregatePubkey: plan.keyDataKey, leafHash: plan.leafHash };
}

type MusigFields = { musig2PubNonce?: [MusigKey, Uint8Array][]; musig2PartialSig?: [MusigKey, Uint8Array][] };

/** A PSBT of the same unsigned transaction with no fields beyond what defines it, plus `extra`. */
function skeleton(tx: Transaction, extra: ReadonlyMap<number, MusigFields>): Transaction {
  const version = tx.opts.PSBTVersion ?? 0;
  const out = new Transaction({ ...TX_OPTS, version: tx.version, lockTime: tx.lockTime, PSBTVersion: version });
  for (let i = 0; i < tx.inputsLength; i++) {
    const inp = tx.getInput(i);
    try {
      out.addInput({
        txid: inp.txid, index: inp.index, sequence: inp.sequence,
        ...(version === 2 && inp.requiredTimeLocktime !== undefined ? { requiredTimeLocktime: inp.requiredTimeLocktime } : {}),
        ...(version === 2 && inp.requiredHeightLocktime !== undefined ? { requiredHeightLocktime: inp.requiredHeightLocktime } : {}),
        ...extra.get(i),
      }, true);
    } catch (e) {
      fail('MALFORMED', i, `cannot add MuSig2 fields: ${describe(e)}`);
    }
  }
  for (let i = 0; i < tx.outputsLength; i++) {
    const o = tx.getOutput(i);
    out.addOutput({ script: o.script, amount: o.amount }, true);
  }
  if (!equalBytes(out.unsignedTx, tx.unsignedTx)) throw new PsbtError('MALFORMED', 'cannot rebuild the unsigned transaction for a minimal PSBT');
  return out;
}

/**
 * A PSBT of the same unsigned transaction holding ONLY the given 0x1b/0x1c fields, for the
 * BIP174 Combiner (what BitGo's HSM answers).
 */
export function minimalPsbtWith(tx: Transaction, additions: readonly PsbtAddition[]): Uint8Array {
  const extra = new Map<number, MusigFields>();
  for (const a of additions) {
    if (!Number.isInteger(a.index) || a.index < 0 || a.index >= tx.inputsLength) throw new PsbtError('MALFORMED', `no input ${a.index}`);
    const f = extra.get(a.index) ?? {};
    if (a.pubNonce) {
      if (!(a.pubNonce.nonce instanceof Uint8Array) || a.pubNonce.nonce.length !== 66) fail('MALFORMED', a.index, 'a public nonce must be 66 bytes');
      (f.musig2PubNonce ??= []).push([musigKey(a.pubNonce.participant, a.plan), a.pubNonce.nonce]);
    }
    if (a.partialSig) {
      if (!(a.partialSig.sig instanceof Uint8Array) || a.partialSig.sig.length !== 32) fail('MALFORMED', a.index, 'a partial signature must be 32 bytes');
      (f.musig2PartialSig ??= []).push([musigKey(a.partialSig.participant, a.plan), a.partialSig.sig]);
    }
    extra.set(a.index, f);
  }
  if ((tx.opts.PSBTVersion ?? 0) === 0) return minimalV0(tx, extra);
  return encodePsbt(skeleton(tx, extra));
}

function compactSize(n: number): Uint8Array {
  if (n < 0xfd) return Uint8Array.of(n);
  if (n <= 0xffff) return Uint8Array.of(0xfd, n & 0xff, n >>> 8);
  return Uint8Array.of(0xfe, n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
}

function keyValue(key: Uint8Array, value: Uint8Array): Uint8Array {
  return concatBytes(compactSize(key.length), key, compactSize(value.length), value);
}

/**
 * PSBTv0 minimal PSBT written directly: the unsigned transaction and the 0x1b/0x1c records,
 * sorted by key. Its keys come from checked plans, so the point validation scure would repeat
 * on every record (the bulk of the cost on a large PSBT) is not needed here.
 */
function minimalV0(tx: Transaction, extra: ReadonlyMap<number, MusigFields>): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(0x70, 0x73, 0x62, 0x74, 0xff), keyValue(Uint8Array.of(0x00), tx.unsignedTx), Uint8Array.of(0)];
  for (let i = 0; i < tx.inputsLength; i++) {
    const f = extra.get(i);
    const records: [Uint8Array, Uint8Array][] = [];
    for (const [type, entries] of [[0x1b, f?.musig2PubNonce], [0x1c, f?.musig2PartialSig]] as const) {
      for (const [k, v] of entries ?? []) {
        records.push([concatBytes(Uint8Array.of(type), k.participantPubkey, k.aggregatePubkey, k.leafHash ?? new Uint8Array(0)), v]);
      }
    }
    records.sort((a, b) => compareBytes(a[0], b[0]));
    for (let r = 1; r < records.length; r++) {
      if (equalBytes((records[r - 1] as [Uint8Array, Uint8Array])[0], (records[r] as [Uint8Array, Uint8Array])[0])) fail('CONFLICT', i, 'the same MuSig2 record added twice');
    }
    for (const [k, v] of records) parts.push(keyValue(k, v));
    parts.push(Uint8Array.of(0));
  }
  for (let o = 0; o < tx.outputsLength; o++) parts.push(Uint8Array.of(0));
  return concatBytes(...parts);
}

type KeyedInfo = readonly [number, { encode(v: unknown): Uint8Array } | false, { encode(v: unknown): Uint8Array }, ...unknown[]];

/** BIP174: a key present in both maps must have the same value. */
function checkKeyedConflicts(table: Record<string, KeyedInfo>, a: Record<string, unknown>, b: Record<string, unknown>, where: string, inputIndex?: number): void {
  for (const [name, info] of Object.entries(table)) {
    const [, keyCoder, valueCoder] = info;
    const av = a[name];
    const bv = b[name];
    if (!keyCoder || !Array.isArray(av) || !Array.isArray(bv)) continue;
    const seen = new Map<string, string>();
    for (const [k, v] of av as [unknown, unknown][]) seen.set(hex(keyCoder.encode(k)), hex(valueCoder.encode(v)));
    for (const [k, v] of bv as [unknown, unknown][]) {
      const prior = seen.get(hex(keyCoder.encode(k)));
      if (prior !== undefined && prior !== hex(valueCoder.encode(v))) {
        throw new PsbtError(name === 'musig2PubNonce' ? 'CONFLICTING_NONCE' : name === 'musig2PartialSig' ? 'CONFLICTING_PARTIAL_SIG' : 'CONFLICT',
          `${where}: field ${name} has two different values for one key`, { inputIndex });
      }
    }
  }
}

/** BIP174 Combiner over PSBTs of one unsigned transaction; conflicting values are refused. */
export function combinePsbts(psbts: readonly Uint8Array[], limits: PsbtLimits = DEFAULT_PSBT_LIMITS): Uint8Array {
  if (!Array.isArray(psbts) || psbts.length === 0) throw new PsbtError('MALFORMED', 'nothing to combine');
  const txs = psbts.map((b) => decodePsbt(b, limits));
  const acc = txs[0] as Transaction;
  const txid = unsignedTxid(acc);
  for (const [n, other] of txs.slice(1).entries()) {
    if (!equalBytes(unsignedTxid(other), txid)) {
      throw new PsbtError('DIFFERENT_TRANSACTION', `PSBT ${n + 1} has unsigned txid ${hex(unsignedTxid(other))}, not ${hex(txid)}`);
    }
    for (let i = 0; i < acc.inputsLength; i++) {
      checkKeyedConflicts(PSBTInput as unknown as Record<string, KeyedInfo>, acc.getInput(i) as Record<string, unknown>, other.getInput(i) as Record<string, unknown>, `PSBT ${n + 1}`, i);
    }
    for (let i = 0; i < acc.outputsLength; i++) {
      checkKeyedConflicts(PSBTOutput as unknown as Record<string, KeyedInfo>, acc.getOutput(i) as Record<string, unknown>, other.getOutput(i) as Record<string, unknown>, `PSBT ${n + 1} output ${i}`);
    }
    try {
      acc.combine(other);
    } catch (e) {
      throw new PsbtError('CONFLICT', `PSBT ${n + 1}: ${describe(e)}`);
    }
  }
  const out = encodePsbt(acc);
  if (out.length > limits.maxPsbtBytes) throw new PsbtError('TOO_LARGE', `combined PSBT of ${out.length} bytes, at most ${limits.maxPsbtBytes} allowed`);
  return out;
}

export interface FinalizeResult {
  /** The PSBT with every completed input finalized. */
  readonly psbt: Uint8Array;
  /** The network serialisation, when every input is final. */
  readonly rawTx?: Uint8Array;
  /** Indices of the inputs finalized by this call. */
  readonly finalized: number[];
}

/**
 * For each input whose MuSig2 signature has every partial signature: verify each one (a bad
 * one names its participant), PartialSigAgg, verify the BIP340 signature against the signing
 * key and sighash, write PSBT_IN_TAP_KEY_SIG / TAP_SCRIPT_SIG and finalize the witness.
 * The transaction passed in is not modified.
 */
export function finalizeMusigInputs(tx: Transaction): FinalizeResult {
  const out = tx.clone();
  const plans = planAll(out);
  const finalized: number[] = [];
  const done = new Set<number>();
  // Key-path plans first: one finalized witness per input.
  const ordered = [...plans].sort((a, b) => a.index - b.index || Number(a.leafHash !== undefined) - Number(b.leafHash !== undefined));
  for (const plan of ordered) {
    const i = plan.index;
    const input = out.getInput(i);
    if (done.has(i) || input.finalScriptWitness !== undefined) continue;
    const psigs = partialSigs(out, plan);
    if (psigs === undefined) continue;
    const nonces = allNonces(out, plan);
    if (nonces === undefined) fail('MISSING_NONCE', i, 'every partial signature is present but not every public nonce');
    let sig: Uint8Array;
    try {
      plan.participants.forEach((p, j) => {
        if (!partialSigVerify(psigs[j] as Uint8Array, nonces, plan.participants, plan.tweaks, plan.sighash, j)) {
          fail('BAD_PARTIAL_SIG', i, 'partial signature does not verify', p);
        }
      });
      const aggnonce = nonceAgg(nonces);
      sig = partialSigAgg(psigs, { aggnonce, pubkeys: plan.participants, tweaks: plan.tweaks, msg: plan.sighash });
    } catch (e) {
      fromMusig(e, i, 'BAD_PARTIAL_SIG', plan.participants);
    }
    if (!schnorr.verify(sig, plan.sighash, plan.signingKey)) fail('INVALID_SIGNATURE', i, 'the aggregate signature does not verify against the signing key');
    const full = plan.sighashType === SIGHASH_DEFAULT ? sig : concatBytes(sig, Uint8Array.of(plan.sighashType));
    try {
      if (plan.leafHash === undefined) out.updateInput(i, { tapKeySig: full }, true);
      else out.updateInput(i, { tapScriptSig: [[{ pubKey: plan.signingKey, leafHash: plan.leafHash }, full]] }, true);
      out.finalizeIdx(i);
    } catch (e) {
      fail('FINALIZE_FAILED', i, describe(e));
    }
    done.add(i);
    finalized.push(i);
  }
  let rawTx: Uint8Array | undefined;
  if (out.isFinal) {
    try {
      rawTx = out.extract();
    } catch {
      rawTx = undefined;
    }
  }
  return { psbt: encodePsbt(out), ...(rawTx ? { rawTx } : {}), finalized };
}
