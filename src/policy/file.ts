// The signing-policy file: strict JSON, documented in docs/policy.schema.json and in the
// README's "Signing policy" section. Loading checks every field and names the first bad one;
// the result is an immutable Policy with its hash.
import { readFile } from 'node:fs/promises';
import { schnorr } from '@noble/curves/secp256k1.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { parseDescriptor } from '../descriptor/index.js';
import type { Descriptor } from '../descriptor/index.js';
import { destinationScript, NETWORKS } from './address.js';
import type { PolicyNetwork } from './address.js';
import { PolicyError } from './errors.js';
import { canonicalJson, hashCanonical } from './hash.js';
import type { CanonicalValue } from './hash.js';
import { childPath, JsonNumber, parseStrictJson } from './json.js';
import type { JsonObject, JsonValue } from './json.js';

export const POLICY_VERSION = 1;
/** 21 million BTC in sats: no amount in a policy may exceed it, so every amount is a safe integer. */
export const MAX_MONEY = 2_100_000_000_000_000n;
/** Longest velocity period: ten years of 365 days. */
export const MAX_PERIOD_SECONDS = 315_360_000;
/** Largest policy file read from disk. */
export const MAX_POLICY_BYTES = 1 << 20;
/** Key ids follow the keystore's label rule; rule names use the same characters. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const XONLY_HEX = /^[0-9a-fA-F]{64}$/;
/** The shape the schema also checks (BIP390: musig() inside tr() or rawtr(), optional BIP380 checksum); then it is parsed. */
const WALLET_RE = /^(?:tr|rawtr)\([\x21-\x7e]*musig\([\x21-\x7e]*\)(?:#[a-z0-9]{8})?$/;

/** Taproot sighash types (BIP341) by the names a policy uses. */
export const SIGHASH_TYPES = {
  DEFAULT: 0x00,
  ALL: 0x01,
  NONE: 0x02,
  SINGLE: 0x03,
  'ALL|ANYONECANPAY': 0x81,
  'NONE|ANYONECANPAY': 0x82,
  'SINGLE|ANYONECANPAY': 0x83,
} as const;
export type SighashName = keyof typeof SIGHASH_TYPES;
/** A rule that does not list sighash types allows only these: the others let outputs change after signing. */
export const DEFAULT_SIGHASH_TYPES: readonly SighashName[] = ['DEFAULT', 'ALL'];

export interface Destination {
  /** As written in the file (hex lowercased). */
  readonly text: string;
  readonly script: Uint8Array;
}

export interface Rule {
  readonly name: string;
  /** Most sats sent (non-change outputs) by one transaction. */
  readonly maxAmount?: bigint;
  /** Velocity: at most `amount` sats sent within one fixed, epoch-aligned window of `periodSeconds`. */
  readonly perPeriod?: { readonly amount: bigint; readonly periodSeconds: number };
  /** Allowed scriptPubKeys of non-change outputs; absent = any destination. */
  readonly destinations?: readonly Destination[];
  /** Fee caps: `sats` absolute, `basisPoints` of the amount sent (percent × 100). Both must hold. */
  readonly maxFee?: { readonly sats?: bigint; readonly basisPoints?: bigint };
  /** Allowed sighash type bytes, never absent (defaults to DEFAULT and ALL). */
  readonly sighashTypes: ReadonlySet<number>;
  /** At least `min` distinct approvers among `keys` (x-only, 32 bytes) must have signed. */
  readonly approvals?: { readonly keys: readonly Uint8Array[]; readonly min: number };
}

export interface KeyPolicy {
  readonly keyId: string;
  /** BIP390 musig() descriptors this key signs for, as written; change is re-derived from them. */
  readonly wallets: readonly string[];
  /** The same descriptors, parsed (src/descriptor), in the same order. */
  readonly descriptors: readonly Descriptor[];
  /** Whether NonceGen/Sign/DeterministicSign on an opaque message are allowed (default false). */
  readonly allowRawMessage: boolean;
  /** Ordered; the first rule that matches allows. Empty = sign no transaction. */
  readonly rules: readonly Rule[];
}

export interface Policy {
  readonly version: typeof POLICY_VERSION;
  readonly network: PolicyNetwork;
  readonly keys: ReadonlyMap<string, KeyPolicy>;
  /** The canonical text that is hashed (see hash.ts). */
  readonly canonical: string;
  /** SHA-256 of `canonical`. */
  readonly hash: Uint8Array;
  readonly hashHex: string;
  /** True when some rule has `per_period`: enforcing it needs the ledger. */
  readonly needsLedger: boolean;
}

export interface ParseOptions {
  /** A further check of each wallet, after it parsed as a descriptor; throw an Error saying why it is bad. */
  checkWallet?: (descriptor: string, network: PolicyNetwork) => void;
}

type Obj = JsonObject;

function fail(path: string, problem: string): never {
  throw new PolicyError(path, problem);
}

function kind(v: JsonValue): string {
  if (v === null) return 'null';
  if (v instanceof JsonNumber) return 'a number';
  if (v instanceof Map) return 'an object';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? 'a string' : 'a boolean';
}

function object(v: JsonValue, path: string, allowed: readonly string[], required: readonly string[]): Obj {
  if (!(v instanceof Map)) fail(path || '(top level)', `must be an object, not ${kind(v)}`);
  for (const name of v.keys()) if (!allowed.includes(name)) fail(childPath(path, name), 'unknown field');
  for (const name of required) if (!v.has(name)) fail(childPath(path, name), 'required field is missing');
  return v;
}

function string(v: JsonValue, path: string): string {
  if (typeof v !== 'string') fail(path, `must be a string, not ${kind(v)}`);
  return v;
}

function boolean(v: JsonValue, path: string): boolean {
  if (typeof v !== 'boolean') fail(path, `must be true or false, not ${kind(v)}`);
  return v;
}

function array(v: JsonValue, path: string, minItems: number): JsonValue[] {
  if (!Array.isArray(v)) fail(path, `must be an array, not ${kind(v)}`);
  if (v.length < minItems) fail(path, `must have at least ${minItems} item${minItems === 1 ? '' : 's'}`);
  return v;
}

/** A whole number written in plain digits (no sign, fraction or exponent) within [min, max]. */
function integer(v: JsonValue, path: string, min: bigint, max: bigint, unit: string): bigint {
  const range = `a whole number of ${unit} from ${min} to ${max}, in plain digits`;
  if (!(v instanceof JsonNumber)) fail(path, `must be ${range}, not ${kind(v)}`);
  if (!/^(?:0|[1-9][0-9]*)$/.test(v.text)) fail(path, `must be ${range}, not ${v.text}`);
  const n = BigInt(v.text);
  if (n < min || n > max) fail(path, `must be ${range}, not ${v.text}`);
  return n;
}

/** A percentage from 0 to 100 with at most two decimals, as basis points (percent × 100). */
function percent(v: JsonValue, path: string): bigint {
  const what = 'a percentage from 0 to 100 with at most two decimals, in plain digits';
  if (!(v instanceof JsonNumber)) fail(path, `must be ${what}, not ${kind(v)}`);
  const m = /^(0|[1-9][0-9]*)(?:\.([0-9]+))?$/.exec(v.text);
  const fraction = (m?.[2] ?? '').replace(/0+$/, '');
  if (!m || fraction.length > 2) fail(path, `must be ${what}, not ${v.text}`);
  const bp = BigInt(m[1]!) * 100n + BigInt(fraction.padEnd(2, '0'));
  if (bp > 10_000n) fail(path, `must be ${what}, not ${v.text}`);
  return bp;
}

function name(v: JsonValue, path: string, what: string): string {
  const s = string(v, path);
  if (!NAME_RE.test(s)) fail(path, `${what} ${JSON.stringify(s)} must be 1 to 64 characters from A-Z a-z 0-9 . _ : -, starting with a letter or digit`);
  return s;
}

function unique<T>(items: readonly T[], key: (t: T) => string, path: string): void {
  const seen = new Map<string, number>();
  items.forEach((item, i) => {
    const k = key(item);
    const first = seen.get(k);
    if (first !== undefined) fail(childPath(path, i), `repeats item ${first}`);
    seen.set(k, i);
  });
}

function optionalComment(o: Obj, path: string, out: Record<string, CanonicalValue>): void {
  const c = o.get('comment');
  if (c !== undefined) out.comment = string(c, childPath(path, 'comment'));
}

function isXOnlyKey(hex: string): boolean {
  try {
    schnorr.utils.lift_x(BigInt(`0x${hex}`));
    return true;
  } catch {
    return false;
  }
}

interface Parsed<T> {
  value: T;
  canonical: Record<string, CanonicalValue>;
}

function parseRule(v: JsonValue, path: string, network: PolicyNetwork): Parsed<Rule> {
  const o = object(
    v,
    path,
    ['name', 'comment', 'max_amount', 'per_period', 'destinations', 'max_fee', 'sighash_types', 'approvals'],
    ['name'],
  );
  const ruleName = name(o.get('name')!, childPath(path, 'name'), 'rule name');
  const c: Record<string, CanonicalValue> = { name: ruleName };
  optionalComment(o, path, c);
  const rule: { -readonly [K in keyof Rule]: Rule[K] } = { name: ruleName, sighashTypes: new Set() };

  const maxAmount = o.get('max_amount');
  if (maxAmount !== undefined) {
    rule.maxAmount = integer(maxAmount, childPath(path, 'max_amount'), 0n, MAX_MONEY, 'sats');
    c.max_amount = Number(rule.maxAmount);
  }

  const perPeriod = o.get('per_period');
  if (perPeriod !== undefined) {
    const p = childPath(path, 'per_period');
    const pp = object(perPeriod, p, ['amount', 'period_seconds'], ['amount', 'period_seconds']);
    const amount = integer(pp.get('amount')!, childPath(p, 'amount'), 0n, MAX_MONEY, 'sats');
    const seconds = integer(pp.get('period_seconds')!, childPath(p, 'period_seconds'), 1n, BigInt(MAX_PERIOD_SECONDS), 'seconds');
    rule.perPeriod = { amount, periodSeconds: Number(seconds) };
    c.per_period = { amount: Number(amount), period_seconds: Number(seconds) };
  }

  const destinations = o.get('destinations');
  if (destinations !== undefined) {
    const p = childPath(path, 'destinations');
    const list = array(destinations, p, 0).map((entry, i): Destination => {
      const text = string(entry, childPath(p, i));
      const d = destinationScript(text, network);
      if (typeof d === 'string') fail(childPath(p, i), `${JSON.stringify(text)} is ${d}`);
      return { text: d.address ? text : bytesToHex(d.script), script: d.script };
    });
    unique(list, (d) => bytesToHex(d.script), p);
    rule.destinations = list;
    c.destinations = list.map((d) => d.text);
  }

  const maxFee = o.get('max_fee');
  if (maxFee !== undefined) {
    const p = childPath(path, 'max_fee');
    const mf = object(maxFee, p, ['sats', 'percent'], []);
    if (mf.size === 0) fail(p, "needs 'sats', 'percent' or both");
    const fee: { sats?: bigint; basisPoints?: bigint } = {};
    const cf: Record<string, CanonicalValue> = {};
    const sats = mf.get('sats');
    if (sats !== undefined) {
      fee.sats = integer(sats, childPath(p, 'sats'), 0n, MAX_MONEY, 'sats');
      cf.sats = Number(fee.sats);
    }
    const pct = mf.get('percent');
    if (pct !== undefined) {
      fee.basisPoints = percent(pct, childPath(p, 'percent'));
      cf.percent = Number(fee.basisPoints) / 100;
    }
    rule.maxFee = fee;
    c.max_fee = cf;
  }

  const sighash = o.get('sighash_types');
  const p = childPath(path, 'sighash_types');
  const names =
    sighash === undefined
      ? [...DEFAULT_SIGHASH_TYPES]
      : array(sighash, p, 1).map((s, i) => {
          const n = string(s, childPath(p, i));
          if (!Object.hasOwn(SIGHASH_TYPES, n)) fail(childPath(p, i), `unknown sighash type ${JSON.stringify(n)}; one of ${Object.keys(SIGHASH_TYPES).join(', ')}`);
          return n as SighashName;
        });
  unique(names, (n) => n, p);
  rule.sighashTypes = new Set(names.map((n) => SIGHASH_TYPES[n]));
  c.sighash_types = names;

  const approvals = o.get('approvals');
  if (approvals !== undefined) {
    const ap = childPath(path, 'approvals');
    const a = object(approvals, ap, ['keys', 'min'], ['keys', 'min']);
    const kp = childPath(ap, 'keys');
    const keys = array(a.get('keys')!, kp, 1).map((k, i) => {
      const hex = string(k, childPath(kp, i));
      if (!XONLY_HEX.test(hex)) fail(childPath(kp, i), 'must be an x-only public key: 64 hex digits');
      if (!isXOnlyKey(hex)) fail(childPath(kp, i), 'is not the x coordinate of a point on secp256k1');
      return hex.toLowerCase();
    });
    unique(keys, (k) => k, kp);
    const min = integer(a.get('min')!, childPath(ap, 'min'), 1n, BigInt(keys.length), 'approvals (at most the number of keys)');
    rule.approvals = { keys: keys.map((k) => hexToBytes(k)), min: Number(min) };
    c.approvals = { keys, min: Number(min) };
  }
  return { value: rule, canonical: c };
}

function parseKey(v: JsonValue, path: string, keyId: string, network: PolicyNetwork, options: ParseOptions): Parsed<KeyPolicy> {
  const o = object(v, path, ['wallets', 'allow_raw_message', 'rules', 'comment'], ['rules']);
  const c: Record<string, CanonicalValue> = {};
  optionalComment(o, path, c);

  const wp = childPath(path, 'wallets');
  const wallets = o.get('wallets') === undefined ? [] : array(o.get('wallets')!, wp, 0).map((w, i) => string(w, childPath(wp, i)));
  const descriptors = wallets.map((w, i) => {
    if (!WALLET_RE.test(w)) fail(childPath(wp, i), 'must be a BIP390 descriptor: tr(musig(...)...) or rawtr(musig(...)...), no spaces');
    try {
      const descriptor = parseDescriptor(w);
      options.checkWallet?.(w, network);
      return descriptor;
    } catch (err) {
      fail(childPath(wp, i), (err as Error).message);
    }
  });
  unique(wallets, (w) => w, wp);
  c.wallets = wallets;

  const raw = o.get('allow_raw_message');
  const allowRawMessage = raw === undefined ? false : boolean(raw, childPath(path, 'allow_raw_message'));
  c.allow_raw_message = allowRawMessage;

  const rp = childPath(path, 'rules');
  const rules = array(o.get('rules')!, rp, 0).map((r, i) => parseRule(r, childPath(rp, i), network));
  const firstWithName = new Map<string, number>();
  rules.forEach((r, i) => {
    const first = firstWithName.get(r.value.name);
    if (first !== undefined) fail(childPath(childPath(rp, i), 'name'), `${JSON.stringify(r.value.name)} is already the name of rules[${first}]`);
    firstWithName.set(r.value.name, i);
  });
  c.rules = rules.map((r) => r.canonical);
  return { value: { keyId, wallets, descriptors, allowRawMessage, rules: rules.map((r) => r.value) }, canonical: c };
}

/** Parses and checks a policy document; a PolicyError names the first bad field. */
export function parsePolicy(text: string, options: ParseOptions = {}): Policy {
  const top = object(parseStrictJson(text), '', ['version', 'network', 'keys', 'comment'], ['version', 'network', 'keys']);
  const versionValue = top.get('version')!;
  if (!(versionValue instanceof JsonNumber) || versionValue.text !== '1') {
    fail('version', `must be 1, not ${versionValue instanceof JsonNumber ? versionValue.text : kind(versionValue)}`);
  }
  const version = 1;
  const networkText = string(top.get('network')!, 'network');
  if (!(NETWORKS as readonly string[]).includes(networkText)) fail('network', `must be one of ${NETWORKS.join(', ')}, not ${JSON.stringify(networkText)}`);
  const network = networkText as PolicyNetwork;
  const c: Record<string, CanonicalValue> = { version, network };
  optionalComment(top, '', c);

  const keysObj = top.get('keys')!;
  if (!(keysObj instanceof Map)) fail('keys', `must be an object, not ${kind(keysObj)}`);
  const keys = new Map<string, KeyPolicy>();
  const ck: Record<string, CanonicalValue> = {};
  for (const [keyId, kv] of keysObj) {
    const kp = childPath('keys', keyId);
    if (!NAME_RE.test(keyId)) fail(kp, 'a key id must be 1 to 64 characters from A-Z a-z 0-9 . _ : -, starting with a letter or digit');
    const parsed = parseKey(kv, kp, keyId, network, options);
    keys.set(keyId, parsed.value);
    ck[keyId] = parsed.canonical;
  }
  c.keys = ck;

  const canonical = canonicalJson(c);
  const hash = hashCanonical(canonical);
  const needsLedger = [...keys.values()].some((k) => k.rules.some((r) => r.perPeriod !== undefined));
  return { version: POLICY_VERSION, network, keys, canonical, hash, hashHex: bytesToHex(hash), needsLedger };
}

/** Reads and parses a policy file; errors name the file and the field. */
export async function loadPolicy(path: string, options: ParseOptions = {}): Promise<Policy> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new PolicyError('', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'read failed'}`);
  }
  if (bytes.length > MAX_POLICY_BYTES) throw new PolicyError('', `${path}: larger than ${MAX_POLICY_BYTES} bytes`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new PolicyError('', `${path}: not valid UTF-8`);
  }
  try {
    return parsePolicy(text, options);
  } catch (err) {
    if (err instanceof PolicyError) throw err.withSource(path);
    throw err;
  }
}
