/**
 * BIP328: a MuSig2 plain aggregate key as a synthetic xpub (depth 0, child number 0, fixed chain
 * code), and the plain tweaks that unhardened BIP32 derivation from it applies. Pure, no I/O.
 * https://github.com/bitcoin/bips/blob/master/bip-0328.mediawiki
 *
 * The child public keys come from @scure/bip32 (curve arithmetic stays out of this module); the
 * tweak I_L of each step is the HMAC-SHA512 of BIP32's CKDpub, recomputed here because signing
 * needs it as a MuSig2 plain tweak.
 */
import { HDKey } from '@scure/bip32';
import { hmac } from '@noble/hashes/hmac.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { hexToBytes } from '@noble/hashes/utils.js';
import { hash160 } from '@scure/btc-signer/utils.js';
import { getPlainPk, keyAgg, keyAggAndTweak } from '../musig2/index.js';
import type { Tweak } from '../musig2/index.js';

/** sha256("MuSig2MuSig2MuSig2"), the chain code of every BIP328 synthetic xpub. */
export const BIP328_CHAINCODE: Uint8Array = hexToBytes('868087ca02a6f974c4598924c36b57762d32cb45717167e300622c7167e38965');

/** First non-hardened-forbidden index: BIP328 derivation is unhardened only. */
export const HARDENED_OFFSET = 0x80000000;

/** BIP32 version bytes of an xpub: mainnet xpub, testnet/regtest tpub. */
export const XPUB_VERSIONS = { mainnet: { public: 0x0488b21e, private: 0x0488ade4 }, testnet: { public: 0x043587cf, private: 0x04358394 } } as const;

/** The derivation is not possible (hardened step, bad key, or a step that BIP32 declares invalid). */
export class Bip328Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Bip328Error';
  }
}

/** I_L and I_R of one CKDpub step (HMAC-SHA512 over the parent key and index). */
function ckdHmac(chainCode: Uint8Array, key: Uint8Array, index: number): { IL: Uint8Array; IR: Uint8Array } {
  if (!Number.isInteger(index) || index < 0 || index >= HARDENED_OFFSET) {
    throw new Bip328Error(`derivation index ${index} is hardened or out of range (only unhardened steps are possible from a public key)`);
  }
  const data = new Uint8Array(37);
  data.set(key, 0);
  new DataView(data.buffer).setUint32(33, index, false);
  const I = hmac(sha512, chainCode, data);
  return { IL: I.slice(0, 32), IR: I.slice(32) };
}

/**
 * BIP328 derivation below KeyAgg(participants) along an unhardened path, with the child key of
 * each step computed by src/musig2 as the aggregate with the plain tweaks so far (cached there,
 * so inputs that share a path prefix share its work). Same result as deriveFromAggregate.
 */
export function deriveMusig(participants: readonly Uint8Array[], path: readonly number[]): Derivation {
  let key: Uint8Array;
  try {
    key = getPlainPk(keyAgg(participants));
  } catch (e) {
    throw new Bip328Error(`cannot aggregate the participants: ${(e as Error).message}`);
  }
  let cc = BIP328_CHAINCODE;
  const tweaks: Tweak[] = [];
  for (const index of path) {
    const { IL, IR } = ckdHmac(cc, key, index);
    tweaks.push({ tweak: IL, xonly: false });
    try {
      key = getPlainPk(keyAggAndTweak(participants, tweaks));
    } catch (e) {
      throw new Bip328Error(`derivation step ${index} is invalid: ${(e as Error).message}`);
    }
    cc = IR;
  }
  return { publicKey: key, tweaks, chainCode: cc };
}

function checkAggregate(aggregate: Uint8Array): void {
  if (!(aggregate instanceof Uint8Array) || aggregate.length !== 33 || (aggregate[0] !== 2 && aggregate[0] !== 3)) {
    throw new Bip328Error('aggregate key must be a 33-byte compressed public key');
  }
}

/** The synthetic HDKey of a plain (33-byte) aggregate key. */
export function syntheticHdKey(aggregate: Uint8Array, network: 'mainnet' | 'testnet' = 'mainnet'): HDKey {
  checkAggregate(aggregate);
  try {
    return new HDKey({ publicKey: aggregate, chainCode: BIP328_CHAINCODE, depth: 0, index: 0, parentFingerprint: 0, versions: XPUB_VERSIONS[network] });
  } catch {
    throw new Bip328Error('aggregate key is not a valid curve point');
  }
}

/** The synthetic xpub string of a plain aggregate key (BIP328 test vectors: mainnet `xpub...`). */
export function syntheticXpub(aggregate: Uint8Array, network: 'mainnet' | 'testnet' = 'mainnet'): string {
  return syntheticHdKey(aggregate, network).publicExtendedKey;
}

/** BIP32 key fingerprint: the first 4 bytes of HASH160(compressed key), as a big-endian uint32. */
export function keyFingerprint(compressed: Uint8Array): number {
  const h = hash160(compressed);
  return (((h[0] as number) << 24) | ((h[1] as number) << 16) | ((h[2] as number) << 8) | (h[3] as number)) >>> 0;
}

/** Result of deriving along an unhardened path from a key with a given chain code. */
export interface Derivation {
  /** The 33-byte compressed child public key. */
  readonly publicKey: Uint8Array;
  /** One plain MuSig2 tweak (I_L) per step, in order. */
  readonly tweaks: Tweak[];
  /** The child's chain code (to continue deriving). */
  readonly chainCode: Uint8Array;
}

/**
 * CKDpub along `path` from (publicKey, chainCode), returning the child key and the I_L of every
 * step as plain tweaks. Refuses hardened indices and the (negligible) invalid-child cases.
 */
export function deriveUnhardened(publicKey: Uint8Array, chainCode: Uint8Array, path: readonly number[]): Derivation {
  let key = publicKey;
  let cc = chainCode;
  const tweaks: Tweak[] = [];
  for (const index of path) {
    const { IL } = ckdHmac(cc, key, index);
    let child: HDKey;
    try {
      child = new HDKey({ publicKey: key, chainCode: cc }).deriveChild(index);
    } catch (e) {
      throw new Bip328Error(`derivation step ${index} is invalid: ${(e as Error).message}`);
    }
    const pk = child.publicKey;
    if (pk === null || child.chainCode === null) throw new Bip328Error(`derivation step ${index} gave no key`);
    tweaks.push({ tweak: IL, xonly: false });
    key = pk;
    cc = child.chainCode;
  }
  return { publicKey: key, tweaks, chainCode: cc };
}

/** BIP328: the child of a plain aggregate key along an unhardened path, with its plain tweaks. */
export function deriveFromAggregate(aggregate: Uint8Array, path: readonly number[]): Derivation {
  checkAggregate(aggregate);
  return deriveUnhardened(aggregate, BIP328_CHAINCODE, path);
}
