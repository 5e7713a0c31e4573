/**
 * Output descriptors for MuSig2 Taproot wallets: BIP386 `tr()` (with a script tree of `pk()`
 * leaves), `rawtr()`, and BIP390 `musig()` key expressions, with BIP380 checksums, hex keys,
 * WIF keys and xpubs (BIP389 `<a;b>` multipath), KeySort before KeyAgg, and BIP328 derivation
 * below the aggregate for `musig(...)/<0;1>/*`. Pure, no I/O.
 * https://github.com/bitcoin/bips/blob/master/bip-0390.mediawiki
 */
import { HDKey } from '@scure/bip32';
import { Address, WIF, tapLeafHash } from '@scure/btc-signer/payment.js';
import { NETWORK, TEST_NETWORK, compareBytes, equalBytes, pubECDSA, tagSchnorr, taprootTweakPubkey } from '@scure/btc-signer/utils.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { getPlainPk, keyAgg, keyAggAndTweak, keySort } from '../musig2/index.js';
import type { Tweak } from '../musig2/index.js';
import { HARDENED_OFFSET, XPUB_VERSIONS, deriveMusig } from './bip328.js';
import { descriptorChecksum } from './checksum.js';

export class DescriptorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DescriptorError';
  }
}

export type Network = 'mainnet' | 'testnet' | 'regtest';

const NETWORKS = {
  mainnet: NETWORK,
  testnet: TEST_NETWORK,
  regtest: { ...TEST_NETWORK, bech32: 'bcrt' },
} as const;

/** One step of a derivation path: a fixed index, the `*` wildcard, or a `<a;b;...>` multipath. */
export type PathStep = { kind: 'index'; index: number } | { kind: 'wildcard'; hardened: boolean } | { kind: 'multi'; indices: number[] };

export interface KeyOrigin { fingerprint: number; path: number[] }

export type KeyExpr =
  | { kind: 'pubkey'; key: Uint8Array; origin?: KeyOrigin } // 33-byte compressed or 32-byte x-only
  | { kind: 'xpub'; hd: HDKey; path: PathStep[]; origin?: KeyOrigin }
  | { kind: 'musig'; participants: KeyExpr[]; path: PathStep[] };

export type TreeExpr = { kind: 'leaf'; key: KeyExpr } | { kind: 'branch'; left: TreeExpr; right: TreeExpr };

export interface Descriptor {
  readonly type: 'tr' | 'rawtr';
  readonly key: KeyExpr;
  readonly tree?: TreeExpr;
  /** Length of the multipath groups (1 without multipath): the valid branches are 0..branches-1. */
  readonly branches: number;
  /** Whether `index` matters (some `*`). */
  readonly ranged: boolean;
  /** The text as given, without checksum. */
  readonly text: string;
}

// ---------------------------------------------------------------------------------------------
// Parsing

class Parser {
  pos = 0;
  constructor(readonly s: string) {}
  peek(str: string): boolean { return this.s.startsWith(str, this.pos); }
  eat(str: string): boolean {
    if (!this.peek(str)) return false;
    this.pos += str.length;
    return true;
  }
  expect(str: string): void {
    if (!this.eat(str)) throw new DescriptorError(`expected '${str}' at position ${this.pos}`);
  }
  /** Characters up to one of the delimiters. */
  token(delims: string): string {
    const start = this.pos;
    while (this.pos < this.s.length && !delims.includes(this.s[this.pos] as string)) this.pos++;
    return this.s.slice(start, this.pos);
  }
}

function parseIndex(text: string, allowHardened: boolean): number {
  const hardened = text.endsWith('h') || text.endsWith("'") || text.endsWith('H');
  const digits = hardened ? text.slice(0, -1) : text;
  if (!/^\d{1,10}$/.test(digits)) throw new DescriptorError(`bad derivation index '${text}'`);
  const n = Number(digits);
  if (n >= HARDENED_OFFSET) throw new DescriptorError(`derivation index ${digits} out of range`);
  if (hardened && !allowHardened) throw new DescriptorError(`hardened step '${text}' is not allowed here`);
  return hardened ? n + HARDENED_OFFSET : n;
}

function parsePath(p: Parser): PathStep[] {
  const steps: PathStep[] = [];
  while (p.eat('/')) {
    if (p.eat('*')) {
      const hardened = p.eat("'") || p.eat('h') || p.eat('H');
      steps.push({ kind: 'wildcard', hardened });
    } else if (p.eat('<')) {
      const body = p.token('>');
      p.expect('>');
      const indices = body.split(';').map((t) => parseIndex(t, true));
      if (indices.length < 2) throw new DescriptorError('a multipath step needs at least two indices');
      if (new Set(indices).size !== indices.length) throw new DescriptorError('a multipath step repeats an index');
      steps.push({ kind: 'multi', indices });
    } else {
      steps.push({ kind: 'index', index: parseIndex(p.token('/,)#}'), true) });
    }
  }
  if (steps.findIndex((s) => s.kind === 'wildcard') >= 0 && steps.findIndex((s) => s.kind === 'wildcard') !== steps.length - 1) {
    throw new DescriptorError('`*` must be the last derivation step');
  }
  if (steps.filter((s) => s.kind === 'multi').length > 1) throw new DescriptorError('at most one multipath step per key');
  return steps;
}

function parseOrigin(p: Parser): KeyOrigin | undefined {
  if (!p.eat('[')) return undefined;
  const body = p.token(']');
  p.expect(']');
  const [fp, ...rest] = body.split('/');
  if (fp === undefined || !/^[0-9a-fA-F]{8}$/.test(fp)) throw new DescriptorError(`bad key origin fingerprint '${fp ?? ''}'`);
  return { fingerprint: Number.parseInt(fp, 16) >>> 0, path: rest.map((t) => parseIndex(t, true)) };
}

function parseHdKey(text: string): HDKey {
  for (const versions of [XPUB_VERSIONS.mainnet, XPUB_VERSIONS.testnet]) {
    try {
      return HDKey.fromExtendedKey(text, versions);
    } catch {
      // try the other network
    }
  }
  throw new DescriptorError(`bad extended key '${text.slice(0, 12)}...'`);
}

function isPoint(bytes: Uint8Array): boolean {
  try {
    new HDKey({ publicKey: bytes.length === 32 ? Uint8Array.of(2, ...bytes) : bytes, chainCode: new Uint8Array(32) });
    return true;
  } catch {
    return false;
  }
}

type KeyPlace = 'tr' | 'leaf' | 'participant';

function parseKey(p: Parser, place: KeyPlace): KeyExpr {
  if (p.eat('musig(')) {
    if (place === 'participant') throw new DescriptorError('musig() cannot be nested in musig()');
    const participants: KeyExpr[] = [];
    do participants.push(parseKey(p, 'participant')); while (p.eat(','));
    p.expect(')');
    const path = parsePath(p);
    if (path.length > 0) {
      for (const k of participants) {
        if (k.kind !== 'xpub') throw new DescriptorError('musig() with derivation steps needs every participant to be an xpub');
        if (k.path.some((s) => s.kind !== 'index')) throw new DescriptorError('musig() with derivation steps cannot have ranged or multipath participants');
      }
      for (const s of path) {
        if (s.kind === 'wildcard' && s.hardened) throw new DescriptorError('musig() cannot have hardened child derivation');
        if (s.kind === 'index' && s.index >= HARDENED_OFFSET) throw new DescriptorError('musig() cannot have hardened derivation steps');
        if (s.kind === 'multi' && s.indices.some((i) => i >= HARDENED_OFFSET)) throw new DescriptorError('musig() cannot have hardened derivation steps');
      }
    }
    return { kind: 'musig', participants, path };
  }
  const origin = parseOrigin(p);
  const text = p.token('/,)#}[');
  if (/^[0-9a-fA-F]{66}$/.test(text) || /^[0-9a-fA-F]{64}$/.test(text)) {
    const key = hexToBytes(text);
    if (key.length === 33 && key[0] !== 2 && key[0] !== 3) throw new DescriptorError(`'${text}' is not a compressed public key`);
    if (key.length === 32 && place === 'participant') throw new DescriptorError('musig() participants must be 33-byte compressed keys, not x-only');
    if (!isPoint(key)) throw new DescriptorError(`'${text}' is not a valid public key`);
    if (p.peek('/')) throw new DescriptorError('a hex key cannot have derivation steps');
    return { kind: 'pubkey', key, ...(origin ? { origin } : {}) };
  }
  if (/^[xt](pub|prv)/.test(text)) {
    const hd = parseHdKey(text);
    const path = parsePath(p);
    for (const s of path) {
      const hardened = (s.kind === 'index' && s.index >= HARDENED_OFFSET) || (s.kind === 'wildcard' && s.hardened) || (s.kind === 'multi' && s.indices.some((i) => i >= HARDENED_OFFSET));
      if (hardened && !hd.privateKey) throw new DescriptorError('hardened derivation needs a private extended key');
    }
    return { kind: 'xpub', hd, path, ...(origin ? { origin } : {}) };
  }
  for (const net of [NETWORK, TEST_NETWORK]) {
    let sk: Uint8Array | undefined;
    try {
      sk = WIF(net).decode(text);
    } catch {
      continue;
    }
    try {
      if (p.peek('/')) throw new DescriptorError('a WIF key cannot have derivation steps');
      return { kind: 'pubkey', key: pubECDSA(sk, true), ...(origin ? { origin } : {}) };
    } finally {
      sk.fill(0);
    }
  }
  throw new DescriptorError(`unrecognised key expression '${text.slice(0, 16)}'`);
}

function parseTree(p: Parser): TreeExpr {
  if (p.eat('{')) {
    const left = parseTree(p);
    p.expect(',');
    const right = parseTree(p);
    p.expect('}');
    return { kind: 'branch', left, right };
  }
  if (p.eat('pk(')) {
    const key = parseKey(p, 'leaf');
    p.expect(')');
    return { kind: 'leaf', key };
  }
  throw new DescriptorError(`unsupported tapscript at position ${p.pos} (only pk() leaves)`);
}

function keysOf(k: KeyExpr): KeyExpr[] {
  return k.kind === 'musig' ? [k, ...k.participants] : [k];
}

function leavesOf(t: TreeExpr | undefined): TreeExpr[] {
  if (t === undefined) return [];
  return t.kind === 'leaf' ? [t] : [...leavesOf(t.left), ...leavesOf(t.right)];
}

/**
 * Parse a `tr()` or `rawtr()` descriptor (checksum optional; checked when present). Anything
 * else, and every BIP390 rule (musig() only in tr()/rawtr(), not nested, ranged musig() over
 * xpubs only, no hardened steps below the aggregate), is refused with a DescriptorError.
 */
export function parseDescriptor(input: string): Descriptor {
  if (typeof input !== 'string') throw new DescriptorError('a descriptor must be a string');
  let text = input.trim();
  const hash = text.indexOf('#');
  if (hash >= 0) {
    const given = text.slice(hash + 1);
    text = text.slice(0, hash);
    const sum = descriptorChecksum(text);
    if (sum === undefined || given !== sum) throw new DescriptorError(`bad checksum '${given}'${sum ? `, expected '${sum}'` : ''}`);
  }
  const p = new Parser(text);
  let type: 'tr' | 'rawtr';
  if (p.eat('tr(')) type = 'tr';
  else if (p.eat('rawtr(')) type = 'rawtr';
  else {
    const fn = /^[a-z_]+/.exec(text)?.[0] ?? '';
    if (text.includes('musig(')) throw new DescriptorError(`musig() is only allowed inside tr() or rawtr(), not in ${fn || 'this'}()`);
    throw new DescriptorError(`unsupported descriptor '${fn}()' (only tr() and rawtr())`);
  }
  const key = parseKey(p, 'tr');
  let tree: TreeExpr | undefined;
  if (type === 'tr' && p.eat(',')) tree = parseTree(p);
  p.expect(')');
  if (p.pos !== text.length) throw new DescriptorError(`unexpected text after position ${p.pos}`);

  const all = [key, ...leavesOf(tree).flatMap((l) => (l.kind === 'leaf' ? [l.key] : []))].flatMap(keysOf);
  const multi = all.flatMap((k) => (k.kind === 'pubkey' ? [] : k.path.filter((s) => s.kind === 'multi')));
  const lengths = new Set(multi.map((s) => (s.kind === 'multi' ? s.indices.length : 1)));
  if (lengths.size > 1) throw new DescriptorError('multipath steps of different lengths');
  const ranged = all.some((k) => k.kind !== 'pubkey' && k.path.some((s) => s.kind === 'wildcard'));
  for (const k of all) {
    if (k.kind === 'musig' && k.participants.some((q) => q.kind === 'pubkey' && q.key.length === 32)) throw new DescriptorError('musig() participants must be 33-byte keys');
  }
  return { type, key, ...(tree ? { tree } : {}), branches: lengths.size === 0 ? 1 : [...lengths][0] as number, ranged, text };
}

// ---------------------------------------------------------------------------------------------
// Derivation

/** Where to derive: the multipath branch (0 receive, 1 change for `<0;1>`) and the `*` index. */
export interface DerivePosition { branch?: number; index?: number }

/** A MuSig2 aggregate behind a derived key. */
export interface MusigKeyInfo {
  /** Participant keys after derivation, KeySorted (the 0x1a / 0x08 value order). */
  readonly participants: Uint8Array[];
  /** Plain aggregate KeyAgg(participants), 33 bytes (the 0x1a / 0x08 key data). */
  readonly aggregate: Uint8Array;
  /** Unhardened BIP328 path below the aggregate ([] without one). */
  readonly path: number[];
  /** BIP328 plain tweaks along `path`. */
  readonly tweaks: Tweak[];
  /** BIP32 origins of the participants (for PSBT_IN_TAP_BIP32_DERIVATION), in `participants` order. */
  readonly participantOrigins: (KeyOrigin | undefined)[];
}

export interface DerivedKey {
  /** 32-byte x-only key as it appears in the output or leaf. */
  readonly xonly: Uint8Array;
  /** 33-byte compressed key when known (always for musig and xpub keys). */
  readonly compressed?: Uint8Array;
  readonly musig?: MusigKeyInfo;
  /** BIP32 origin of a single (non-musig) key. */
  readonly origin?: KeyOrigin;
}

export interface DerivedLeaf {
  readonly key: DerivedKey;
  readonly script: Uint8Array; // <32-byte key> OP_CHECKSIG
  readonly leafVersion: number; // 0xc0
  readonly leafHash: Uint8Array;
  readonly depth: number;
  /** Control block (for PSBT_IN_TAP_LEAF_SCRIPT) of this leaf. */
  readonly controlBlock: { version: number; internalKey: Uint8Array; merklePath: Uint8Array[] };
}

export interface DerivedOutput {
  readonly type: 'tr' | 'rawtr';
  readonly branch: number;
  readonly index: number;
  /** tr(): the internal key; rawtr(): the output key itself. */
  readonly internalKey: DerivedKey;
  readonly leaves: DerivedLeaf[];
  readonly merkleRoot?: Uint8Array;
  /** tr(): the x-only TapTweak tweak hash of internal key and merkle root. */
  readonly tapTweak?: Uint8Array;
  /** 32-byte x-only output key. */
  readonly outputKey: Uint8Array;
  /** Output key parity (0 even, 1 odd); 0 for rawtr. */
  readonly outputParity: number;
  /** The P2TR scriptPubKey: OP_1 <32-byte output key>. */
  readonly script: Uint8Array;
}

function resolve(path: readonly PathStep[], branch: number, index: number): number[] {
  return path.map((s) => {
    if (s.kind === 'index') return s.index;
    if (s.kind === 'wildcard') return s.hardened ? index + HARDENED_OFFSET : index;
    const i = s.indices[branch];
    if (i === undefined) throw new DescriptorError(`branch ${branch} is out of range for <${s.indices.join(';')}>`);
    return i;
  });
}

// Intermediate nodes (e.g. the /0 and /1 branches) are derived once per key, not per index.
const childCache = new WeakMap<HDKey, Map<number, HDKey>>();

function deriveHd(hd: HDKey, path: readonly number[]): HDKey {
  let k = hd;
  try {
    path.forEach((i, n) => {
      if (n === path.length - 1) {
        k = k.deriveChild(i);
        return;
      }
      let children = childCache.get(k);
      if (children === undefined) childCache.set(k, (children = new Map()));
      let c = children.get(i);
      if (c === undefined) children.set(i, (c = k.deriveChild(i)));
      k = c;
    });
  } catch (e) {
    throw new DescriptorError(`derivation failed: ${(e as Error).message}`);
  }
  return k;
}

function deriveKey(k: KeyExpr, branch: number, index: number): DerivedKey {
  if (k.kind === 'pubkey') {
    const xonly = k.key.length === 32 ? k.key : k.key.subarray(1);
    return { xonly, ...(k.key.length === 33 ? { compressed: k.key } : {}), ...(k.origin ? { origin: k.origin } : {}) };
  }
  if (k.kind === 'xpub') {
    const steps = resolve(k.path, branch, index);
    const child = deriveHd(k.hd, steps);
    const pk = child.publicKey as Uint8Array;
    const origin: KeyOrigin = k.origin
      ? { fingerprint: k.origin.fingerprint, path: [...k.origin.path, ...steps] }
      : { fingerprint: k.hd.fingerprint, path: steps }; // no origin: the xpub is its own root
    return { xonly: pk.subarray(1), compressed: pk, origin };
  }
  const derived = k.participants.map((q) => deriveKey(q, branch, index));
  const withOrigins = derived.map((d) => ({ key: d.compressed as Uint8Array, origin: d.origin }));
  const sorted = keySort(withOrigins.map((d) => d.key));
  // Pair each sorted key with an origin (equal keys share one).
  const participantOrigins = sorted.map((key) => withOrigins.find((d) => equalBytes(d.key, key))?.origin);
  const aggregate = getPlainPk(keyAgg(sorted));
  const path = resolve(k.path, branch, index);
  let child;
  try {
    child = deriveMusig(sorted, path);
  } catch (e) {
    throw new DescriptorError(`musig() derivation failed: ${(e as Error).message}`);
  }
  return {
    xonly: child.publicKey.subarray(1),
    compressed: child.publicKey,
    musig: { participants: sorted, aggregate, path, tweaks: child.tweaks, participantOrigins },
  };
}

const branchHash = (a: Uint8Array, b: Uint8Array): Uint8Array =>
  (compareBytes(a, b) < 0 ? tagSchnorr('TapBranch', a, b) : tagSchnorr('TapBranch', b, a));

/** A BIP341 script tree: a leaf, or a pair of subtrees (the shape is kept as given). */
export type ScriptTree = { script: Uint8Array; leafVersion: number } | [ScriptTree, ScriptTree];

export interface TaprootLeaf {
  readonly script: Uint8Array;
  readonly leafVersion: number;
  readonly leafHash: Uint8Array;
  readonly depth: number;
  readonly controlBlock: { version: number; internalKey: Uint8Array; merklePath: Uint8Array[] };
}

export interface TaprootOutput {
  readonly leaves: TaprootLeaf[]; // depth-first, left to right
  readonly merkleRoot?: Uint8Array;
  readonly tapTweak: Uint8Array;
  readonly outputKey: Uint8Array;
  readonly outputParity: number;
  readonly script: Uint8Array;
}

/**
 * BIP341 taproot_output_script with leaf hashes, merkle root, tweak and control blocks. With
 * `musig` (the internal key's aggregate and BIP328 tweaks), the output key is computed by
 * src/musig2 as one more (x-only) tweak, which is much cheaper than a generic point tweak.
 */
export function buildTaproot(internalKey: Uint8Array, tree?: ScriptTree, musig?: MusigKeyInfo): TaprootOutput {
  type Built = { hash: Uint8Array; leaves: { leaf: Omit<TaprootLeaf, 'controlBlock'>; path: Uint8Array[] }[] };
  const build = (t: ScriptTree, depth: number): Built => {
    if (!Array.isArray(t)) {
      const leafHash = tapLeafHash(t.script, t.leafVersion);
      return { hash: leafHash, leaves: [{ leaf: { script: t.script, leafVersion: t.leafVersion, leafHash, depth }, path: [] }] };
    }
    const l = build(t[0], depth + 1);
    const r = build(t[1], depth + 1);
    for (const x of l.leaves) x.path.push(r.hash);
    for (const x of r.leaves) x.path.push(l.hash);
    return { hash: branchHash(l.hash, r.hash), leaves: [...l.leaves, ...r.leaves] };
  };
  const built = tree ? build(tree, 0) : undefined;
  const merkleRoot = built?.hash;
  const tapTweak = tagSchnorr('TapTweak', internalKey, merkleRoot ?? new Uint8Array(0));
  let outputKey: Uint8Array;
  let outputParity: number;
  try {
    if (musig) {
      const plain = getPlainPk(keyAggAndTweak(musig.participants, [...musig.tweaks, { tweak: tapTweak, xonly: true }]));
      [outputKey, outputParity] = [plain.subarray(1), plain[0] === 3 ? 1 : 0];
    } else {
      [outputKey, outputParity] = taprootTweakPubkey(internalKey, merkleRoot ?? new Uint8Array(0));
    }
  } catch (e) {
    throw new DescriptorError(`TapTweak failed: ${(e as Error).message}`);
  }
  const leaves = (built?.leaves ?? []).map(({ leaf, path }) => ({
    ...leaf, controlBlock: { version: leaf.leafVersion | outputParity, internalKey, merklePath: path },
  }));
  return { leaves, ...(merkleRoot ? { merkleRoot } : {}), tapTweak, outputKey, outputParity, script: Uint8Array.of(0x51, 0x20, ...outputKey) };
}

/** Output script, keys, tree and tweak of a descriptor at a branch and index. */
export function deriveAt(desc: Descriptor, at: DerivePosition = {}): DerivedOutput {
  const branch = at.branch ?? 0;
  const index = at.index ?? 0;
  if (!Number.isInteger(branch) || branch < 0 || branch >= desc.branches) throw new DescriptorError(`branch ${branch} out of range (the descriptor has ${desc.branches})`);
  if (!Number.isInteger(index) || index < 0 || index >= HARDENED_OFFSET) throw new DescriptorError(`index ${index} out of range`);
  const internalKey = deriveKey(desc.key, branch, index);
  if (desc.type === 'rawtr') {
    return {
      type: 'rawtr', branch, index, internalKey, leaves: [], outputKey: internalKey.xonly, outputParity: 0,
      script: Uint8Array.of(0x51, 0x20, ...internalKey.xonly),
    };
  }
  const keys: DerivedKey[] = [];
  const toScripts = (t: TreeExpr): ScriptTree => {
    if (t.kind === 'branch') return [toScripts(t.left), toScripts(t.right)];
    const key = deriveKey(t.key, branch, index);
    keys.push(key);
    return { script: Uint8Array.of(0x20, ...key.xonly, 0xac), leafVersion: 0xc0 };
  };
  const tr = buildTaproot(internalKey.xonly, desc.tree ? toScripts(desc.tree) : undefined, internalKey.musig);
  const { merkleRoot, tapTweak, outputKey, outputParity } = tr;
  const leaves: DerivedLeaf[] = tr.leaves.map((l, i) => ({ ...l, key: keys[i] as DerivedKey }));
  return {
    type: 'tr', branch, index, internalKey, leaves, ...(merkleRoot ? { merkleRoot } : {}), tapTweak, outputKey, outputParity,
    script: Uint8Array.of(0x51, 0x20, ...outputKey),
  };
}

/** The bech32m address of a derived output. */
export function addressOf(out: DerivedOutput, network: Network = 'mainnet'): string {
  return Address(NETWORKS[network]).encode({ type: 'tr', pubkey: out.outputKey });
}

/** The address of a descriptor at a position. */
export function deriveAddress(desc: Descriptor, at: DerivePosition = {}, network: Network = 'mainnet'): string {
  return addressOf(deriveAt(desc, at), network);
}

// Scripts already derived per parsed descriptor, so that matching many scripts (every input and
// output of a PSBT) costs at most one pass over the indices.
const derivedScripts = new WeakMap<Descriptor, { upTo: number; byScript: Map<string, { branch: number; index: number }> }>();

/**
 * The position (branch, index ≤ maxIndex, default 1000) at which the descriptor derives
 * `script`, or undefined. A policy uses it to tell change (branch 1 of `<0;1>`) from a payment.
 */
export function matchOutputScript(desc: Descriptor, script: Uint8Array, opts: { maxIndex?: number; branches?: number[] } = {}): { branch: number; index: number } | undefined {
  const maxIndex = desc.ranged ? (opts.maxIndex ?? 1000) : 0;
  const branches = opts.branches ?? [...Array(desc.branches).keys()];
  if (!(script instanceof Uint8Array) || script.length !== 34 || script[0] !== 0x51 || script[1] !== 0x20) return undefined;
  let memo = derivedScripts.get(desc);
  if (memo === undefined) derivedScripts.set(desc, (memo = { upTo: -1, byScript: new Map() }));
  const want = bytesToHex(script);
  const accept = (pos: { branch: number; index: number } | undefined): pos is { branch: number; index: number } =>
    pos !== undefined && pos.index <= maxIndex && branches.includes(pos.branch);
  const known = memo.byScript.get(want);
  if (accept(known)) return known;
  while (memo.upTo < maxIndex) {
    const index = ++memo.upTo;
    for (let branch = 0; branch < desc.branches; branch++) {
      const id = bytesToHex(deriveAt(desc, { branch, index }).script);
      if (!memo.byScript.has(id)) memo.byScript.set(id, { branch, index });
    }
    const found = memo.byScript.get(want);
    if (accept(found)) return found;
  }
  return undefined;
}

