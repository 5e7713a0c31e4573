/**
 * BIP341 signature hash with the per-transaction hashes (sha_prevouts, sha_amounts,
 * sha_scriptpubkeys, sha_sequences, sha_outputs) computed once, so that a PSBT of n inputs costs
 * O(n), not O(n^2). Works from the unsigned transaction's wire bytes.
 * https://github.com/bitcoin/bips/blob/master/bip-0341.mediawiki#common-signature-message
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { tagSchnorr } from '@scure/btc-signer/utils.js';
import { tapLeafHash } from '@scure/btc-signer/payment.js';

interface RawTxParts {
  version: Uint8Array; // 4 bytes as on the wire
  lockTime: Uint8Array;
  outpoints: Uint8Array[]; // 36 bytes each
  sequences: Uint8Array[]; // 4 bytes each
  outputs: Uint8Array[]; // amount || CompactSize || script
}

function compactSize(n: number): Uint8Array {
  if (n < 0xfd) return Uint8Array.of(n);
  if (n <= 0xffff) return Uint8Array.of(0xfd, n & 0xff, n >>> 8);
  return Uint8Array.of(0xfe, n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
}

function readCompact(b: Uint8Array, pos: number): [number, number] {
  const first = b[pos] as number;
  if (first < 0xfd) return [first, pos + 1];
  const need = first === 0xfd ? 2 : first === 0xfe ? 4 : 8;
  let v = 0;
  for (let i = need; i >= 1; i--) v = v * 256 + (b[pos + i] as number);
  return [v, pos + 1 + need];
}

/** Split a non-witness transaction serialization into the pieces SigMsg hashes. */
function parseUnsigned(raw: Uint8Array): RawTxParts {
  let pos = 4;
  const version = raw.subarray(0, 4);
  let n: number;
  [n, pos] = readCompact(raw, pos);
  const outpoints: Uint8Array[] = [];
  const sequences: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    outpoints.push(raw.subarray(pos, pos + 36));
    let sl: number;
    [sl, pos] = readCompact(raw, pos + 36);
    pos += sl;
    sequences.push(raw.subarray(pos, pos + 4));
    pos += 4;
  }
  [n, pos] = readCompact(raw, pos);
  const outputs: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const start = pos;
    let sl: number;
    [sl, pos] = readCompact(raw, pos + 8);
    pos += sl;
    outputs.push(raw.subarray(start, pos));
  }
  const lockTime = raw.subarray(pos, pos + 4);
  if (pos + 4 !== raw.length) throw new Error('unsigned transaction has trailing bytes');
  return { version, lockTime, outpoints, sequences, outputs };
}

function u64le(x: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, x, true);
  return b;
}

function u32le(x: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, x >>> 0, true);
  return b;
}

function shaOf(parts: readonly Uint8Array[]): Uint8Array {
  const h = sha256.create();
  for (const p of parts) h.update(p);
  return h.digest();
}

const VALID_TYPES = new Set([0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83]);

/** Computes BIP341 sighashes for one transaction and its spent outputs. */
export class TaprootSighasher {
  private readonly tx: RawTxParts;
  private readonly amounts: Uint8Array[];
  private readonly scripts: Uint8Array[];
  private shared?: { prevouts: Uint8Array; amounts: Uint8Array; scripts: Uint8Array; sequences: Uint8Array; outputs: Uint8Array };

  constructor(unsignedTx: Uint8Array, prevScripts: readonly Uint8Array[], prevAmounts: readonly bigint[]) {
    this.tx = parseUnsigned(unsignedTx);
    if (prevScripts.length !== this.tx.outpoints.length || prevAmounts.length !== this.tx.outpoints.length) {
      throw new Error('one spent output per input is needed');
    }
    this.scripts = prevScripts.map((s) => Uint8Array.of(...compactSize(s.length), ...s));
    this.amounts = prevAmounts.map(u64le);
  }

  private hashes(): NonNullable<TaprootSighasher['shared']> {
    this.shared ??= {
      prevouts: shaOf(this.tx.outpoints),
      amounts: shaOf(this.amounts),
      scripts: shaOf(this.scripts),
      sequences: shaOf(this.tx.sequences),
      outputs: shaOf(this.tx.outputs),
    };
    return this.shared;
  }

  /** TapSighash of input `index`; `leafScript` (version 0xc0) for a script-path spend. */
  sighash(index: number, hashType: number, leafScript?: Uint8Array, leafVersion = 0xc0): Uint8Array {
    if (!VALID_TYPES.has(hashType)) throw new Error(`hash type ${hashType} is not a BIP341 hash type`);
    if (!Number.isInteger(index) || index < 0 || index >= this.tx.outpoints.length) throw new Error(`no input ${index}`);
    const outType = hashType === 0 ? 1 : hashType & 3;
    const anyoneCanPay = (hashType & 0x80) !== 0;
    if (outType === 3 && index >= this.tx.outputs.length) throw new Error(`SIGHASH_SINGLE input ${index} has no output of its index`);
    const parts: Uint8Array[] = [Uint8Array.of(0x00, hashType), this.tx.version, this.tx.lockTime];
    if (!anyoneCanPay) {
      const h = this.hashes();
      parts.push(h.prevouts, h.amounts, h.scripts, h.sequences);
    }
    if (outType === 1) parts.push(this.hashes().outputs);
    parts.push(Uint8Array.of(leafScript === undefined ? 0 : 2));
    if (anyoneCanPay) {
      parts.push(this.tx.outpoints[index] as Uint8Array, this.amounts[index] as Uint8Array, this.scripts[index] as Uint8Array, this.tx.sequences[index] as Uint8Array);
    } else {
      parts.push(u32le(index));
    }
    if (outType === 3) parts.push(sha256(this.tx.outputs[index] as Uint8Array));
    if (leafScript !== undefined) parts.push(tapLeafHash(leafScript, leafVersion), Uint8Array.of(0x00), u32le(0xffffffff));
    return tagSchnorr('TapSighash', ...parts);
  }
}
