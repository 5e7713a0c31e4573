// A 5-input Taproot transaction for the PSBT end-to-end tests, built here from scure's primitives
// and @scure/bip32 (not from src/psbt or src/descriptor), a MuSig2 participant played by scure's
// musig2 module, and the final check with bitcoinjs-lib (which shares no code with the project):
//
//   input 0: key path, internal key = the aggregate (BIP341 TapTweak with no script tree)
//   input 1: key path, internal key = the aggregate derived at m/0/5 (BIP328), SIGHASH_ALL
//   input 2: rawtr: the output key is the aggregate itself
//   input 3: script path, leaf pk(aggregate derived at m/1/7), unrelated internal key
//   input 4: a single-key P2TR input none of the MuSig2 keys takes part in (signed by scure)
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { HDKey } from '@scure/bip32';
import { p2tr, SigHash, Transaction } from '@scure/btc-signer';
import * as musig from '@scure/btc-signer/musig2.js';
import { hash160 } from '@scure/btc-signer/utils.js';
import * as bitcoin from 'bitcoinjs-lib';
import type { PsbtParticipant } from '../../src/client/index.js';

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const fromHex = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));
const u32be = (n: number) => Uint8Array.from([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
const concat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));

/** sha256("MuSig2MuSig2MuSig2"), BIP328's chain code. */
const BIP328_CHAIN_CODE = fromHex('868087ca02a6f974c4598924c36b57762d32cb45717167e300622c7167e38965');

function taggedHash(tag: string, ...parts: Uint8Array[]): Uint8Array {
  const t = sha256(new TextEncoder().encode(tag));
  return sha256(concat(t, t, ...parts));
}

export interface Tweak {
  tweak: Uint8Array;
  xonly: boolean;
}

/** BIP328: the plain tweaks of unhardened derivation from the synthetic xpub, and the child key. */
export function bip328(aggregate: Uint8Array, path: number[]): { tweaks: Tweak[]; child: Uint8Array; fingerprint: number } {
  let key = aggregate;
  let chain = BIP328_CHAIN_CODE;
  const tweaks: Tweak[] = [];
  for (const i of path) {
    const I = hmac(sha512, chain, concat(key, u32be(i)));
    const il = I.subarray(0, 32);
    tweaks.push({ tweak: il.slice(), xonly: false });
    key = secp256k1.Point.fromBytes(key).add(secp256k1.Point.BASE.multiply(BigInt(`0x${hex(il)}`))).toBytes(true);
    chain = I.slice(32);
  }
  // Cross-check against @scure/bip32 on the synthetic xpub.
  const viaBip32 = new HDKey({ publicKey: aggregate, chainCode: BIP328_CHAIN_CODE }).derive(`m/${path.join('/')}`);
  if (path.length > 0 && hex(viaBip32.publicKey!) !== hex(key)) throw new Error('BIP328 derivation disagrees with @scure/bip32');
  const h = hash160(aggregate);
  return { tweaks, child: key, fingerprint: ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0 };
}

/** What a participant needs to sign input `index`, computed independently of src/psbt. */
export interface InputSpec {
  index: number;
  tweaks: Tweak[];
  /** 32-byte x-only key that signs (output key or leaf key). */
  signingKey: Uint8Array;
  /** 33-byte plain tweaked key: the second key of 0x1b/0x1c key data. */
  keyDataKey: Uint8Array;
  sighashType: number;
  leafScript?: Uint8Array;
  leafHash?: Uint8Array;
}

export interface Fixture {
  /** The PSBT, input 4 already signed and finalized. */
  psbt: Uint8Array;
  participants: Uint8Array[];
  aggregate: Uint8Array;
  specs: InputSpec[];
  prevoutScripts: Uint8Array[];
  amounts: bigint[];
}

const tweakedKey = (participants: Uint8Array[], tweaks: Tweak[]) => {
  const ctx = musig.keyAggregate(participants, tweaks.map((t) => t.tweak), tweaks.map((t) => t.xonly));
  return { xonly: musig.keyAggExport(ctx), plain: ctx.aggPublicKey.toBytes(true) };
};

/**
 * The transaction: participants are KeySorted (as BIP390 musig() lists them). `outputAmount`
 * lets a test change the transaction. `soloKey` signs input 4.
 */
export function buildFixture(pubkeys: Uint8Array[], soloKey: Uint8Array, opts: { outputAmount?: bigint; seed?: number } = {}): Fixture {
  const participants = musig.sortKeys(pubkeys);
  const aggregate = musig.keyAggregate(participants).aggPublicKey.toBytes(true);
  const aggX = aggregate.subarray(1);
  const seed = opts.seed ?? 1;
  const prevTxid = (i: number) => sha256(new TextEncoder().encode(`musig2-signer e2e prevout ${seed} ${i}`));
  const tx = new Transaction({ allowUnknownOutputs: true });
  const specs: InputSpec[] = [];
  const amounts = [100_000n, 200_000n, 300_000n, 400_000n, 50_000n];
  const scripts: Uint8Array[] = [];
  const participantsField = { musig2ParticipantPubkeys: [[aggregate, participants]] as [Uint8Array, Uint8Array[]][] };

  // 0: key path, internal key = aggregate.
  {
    const pay = p2tr(aggX);
    const tweaks = [{ tweak: taggedHash('TapTweak', aggX), xonly: true }];
    const key = tweakedKey(participants, tweaks);
    if (hex(key.xonly) !== hex(pay.tweakedPubkey)) throw new Error('fixture: input 0 key mismatch');
    scripts.push(pay.script);
    tx.addInput({ txid: prevTxid(0), index: 0, witnessUtxo: { script: pay.script, amount: amounts[0]! }, tapInternalKey: aggX, ...participantsField });
    specs.push({ index: 0, tweaks, signingKey: key.xonly, keyDataKey: key.plain, sighashType: SigHash.DEFAULT });
  }
  // 1: key path, internal key derived at m/0/5, SIGHASH_ALL.
  {
    const d = bip328(aggregate, [0, 5]);
    const internal = d.child.subarray(1);
    const pay = p2tr(internal);
    const tweaks = [...d.tweaks, { tweak: taggedHash('TapTweak', internal), xonly: true }];
    const key = tweakedKey(participants, tweaks);
    if (hex(key.xonly) !== hex(pay.tweakedPubkey)) throw new Error('fixture: input 1 key mismatch');
    scripts.push(pay.script);
    tx.addInput({
      txid: prevTxid(1),
      index: 1,
      witnessUtxo: { script: pay.script, amount: amounts[1]! },
      tapInternalKey: internal,
      tapBip32Derivation: [[internal, { hashes: [], der: { fingerprint: d.fingerprint, path: [0, 5] } }]],
      sighashType: SigHash.ALL,
      ...participantsField,
    });
    specs.push({ index: 1, tweaks, signingKey: key.xonly, keyDataKey: key.plain, sighashType: SigHash.ALL });
  }
  // 2: rawtr: the aggregate is the output key.
  {
    const script = concat(Uint8Array.of(0x51, 0x20), aggX);
    scripts.push(script);
    tx.addInput({ txid: prevTxid(2), index: 2, witnessUtxo: { script, amount: amounts[2]! }, ...participantsField });
    specs.push({ index: 2, tweaks: [], signingKey: aggX.slice(), keyDataKey: aggregate, sighashType: SigHash.DEFAULT });
  }
  // 3: script path, leaf pk(aggregate derived at m/1/7), internal key unrelated to the participants.
  {
    const d = bip328(aggregate, [1, 7]);
    const leafKey = d.child.subarray(1);
    const leafScript = concat(Uint8Array.of(0x20), leafKey, Uint8Array.of(0xac));
    const internal = secp256k1.getPublicKey(sha256(new TextEncoder().encode(`internal ${seed}`)), true).subarray(1);
    const pay = p2tr(internal, { script: leafScript }, undefined, true);
    scripts.push(pay.script);
    const leafHash = taggedHash('TapLeaf', Uint8Array.of(0xc0, leafScript.length), leafScript);
    tx.addInput({
      txid: prevTxid(3),
      index: 3,
      witnessUtxo: { script: pay.script, amount: amounts[3]! },
      tapInternalKey: internal,
      tapLeafScript: pay.tapLeafScript,
      tapMerkleRoot: leafHash,
      tapBip32Derivation: [[leafKey, { hashes: [leafHash], der: { fingerprint: d.fingerprint, path: [1, 7] } }]],
      ...participantsField,
    });
    const key = tweakedKey(participants, d.tweaks);
    specs.push({ index: 3, tweaks: d.tweaks, signingKey: leafKey.slice(), keyDataKey: key.plain, sighashType: SigHash.DEFAULT, leafScript, leafHash });
  }
  // 4: someone else's single-key input.
  {
    const pay = p2tr(secp256k1.getPublicKey(soloKey, true).subarray(1));
    scripts.push(pay.script);
    tx.addInput({ txid: prevTxid(4), index: 4, witnessUtxo: { script: pay.script, amount: amounts[4]! }, tapInternalKey: pay.tapInternalKey });
  }
  const total = amounts.reduce((a, b) => a + b, 0n);
  const out = opts.outputAmount ?? total - 1_000n - 20_000n;
  tx.addOutput({ script: concat(Uint8Array.of(0x51, 0x20), sha256(new TextEncoder().encode('payee'))), amount: out });
  tx.addOutput({ script: scripts[0]!, amount: total - out - 1_000n });
  tx.signIdx(soloKey, 4);
  tx.finalizeIdx(4);
  return { psbt: tx.toPSBT(), participants, aggregate, specs, prevoutScripts: scripts, amounts };
}

function sighashOf(tx: Transaction, f: Fixture, s: InputSpec): Uint8Array {
  return s.leafScript === undefined
    ? tx.preimageWitnessV1(s.index, f.prevoutScripts, s.sighashType, f.amounts)
    : tx.preimageWitnessV1(s.index, f.prevoutScripts, s.sighashType, f.amounts, -1, s.leafScript, 0xc0);
}

type MusigKey = { participantPubkey: Uint8Array; aggregatePubkey: Uint8Array; leafHash?: Uint8Array };
const musigKey = (pk: Uint8Array, s: InputSpec): MusigKey =>
  s.leafHash === undefined ? { participantPubkey: pk, aggregatePubkey: s.keyDataKey } : { participantPubkey: pk, aggregatePubkey: s.keyDataKey, leafHash: s.leafHash };

/** A random-nonce participant played by scure's musig2: reads and writes BIP373 fields with scure's PSBT code. */
export function scureParticipant(secretKey: Uint8Array, f: Fixture): PsbtParticipant & { secnonces: Map<number, Uint8Array> } {
  const publicKey = musig.IndividualPubkey(secretKey);
  const secnonces = new Map<number, Uint8Array>();
  const open = (psbt: Uint8Array) => Transaction.fromPSBT(psbt, { allowUnknownOutputs: true, unknown: 'ignore' } as never);
  return {
    publicKey,
    label: 'scure participant',
    secnonces,
    async nonceGen(psbt) {
      const tx = open(psbt);
      for (const s of f.specs) {
        const n = musig.nonceGen(publicKey, secretKey, s.signingKey, sighashOf(tx, f, s));
        secnonces.set(s.index, n.secret);
        tx.updateInput(s.index, { musig2PubNonce: [[musigKey(publicKey, s), n.public]] } as never, true);
      }
      return tx.toPSBT();
    },
    async sign(psbt) {
      const tx = open(psbt);
      for (const s of f.specs) {
        const entries = (tx.getInput(s.index).musig2PubNonce ?? []) as [MusigKey, Uint8Array][];
        const nonces = f.participants.map((pk) => {
          const e = entries.find(([k]) => hex(k.participantPubkey) === hex(pk) && hex(k.aggregatePubkey.subarray(1)) === hex(s.signingKey));
          if (!e) throw new Error(`scure participant: no nonce of ${hex(pk)} on input ${s.index}`);
          return e[1];
        });
        const session = new musig.Session(
          musig.nonceAggregate(nonces),
          f.participants,
          sighashOf(tx, f, s),
          s.tweaks.map((t) => t.tweak),
          s.tweaks.map((t) => t.xonly),
        );
        const psig = session.sign(secnonces.get(s.index)!, secretKey);
        tx.updateInput(s.index, { musig2PartialSig: [[musigKey(publicKey, s), psig]] } as never, true);
      }
      return tx.toPSBT();
    },
  };
}

/**
 * Every input of a final transaction, checked with bitcoinjs-lib's BIP341 sighash: its BIP340
 * signature against the spent output's key (key path), or against the leaf key whose control
 * block commits to the output key (script path). Returns the number of inputs checked.
 */
export function verifyWithBitcoinjs(rawTx: Uint8Array, prevoutScripts: Uint8Array[], amounts: bigint[]): number {
  const tx = bitcoin.Transaction.fromBuffer(rawTx);
  tx.ins.forEach((input, i) => {
    const outputKey = prevoutScripts[i]!.subarray(2, 34);
    const w = input.witness;
    const sig = w[0]!;
    const hashType = sig.length === 65 ? sig[64]! : bitcoin.Transaction.SIGHASH_DEFAULT;
    if (w.length === 1) {
      const hash = tx.hashForWitnessV1(i, prevoutScripts, amounts, hashType);
      if (!schnorr.verify(sig.subarray(0, 64), hash, outputKey)) throw new Error(`input ${i}: key-path signature does not verify`);
      return;
    }
    const [, script, control] = w as [Uint8Array, Uint8Array, Uint8Array];
    const leafHash = bitcoin.crypto.taggedHash('TapLeaf', concat(Uint8Array.of(control[0]! & 0xfe, script.length), script));
    const hash = tx.hashForWitnessV1(i, prevoutScripts, amounts, hashType, leafHash);
    if (script.length !== 34 || script[0] !== 0x20 || script[33] !== 0xac) throw new Error(`input ${i}: not a pk() leaf`);
    if (!schnorr.verify(sig.subarray(0, 64), hash, script.subarray(1, 33))) throw new Error(`input ${i}: script-path signature does not verify`);
    let node = leafHash;
    for (let at = 33; at < control.length; at += 32) {
      const step = control.subarray(at, at + 32);
      node = Buffer.compare(node, step) < 0 ? bitcoin.crypto.taggedHash('TapBranch', concat(node, step)) : bitcoin.crypto.taggedHash('TapBranch', concat(step, node));
    }
    const internal = control.subarray(1, 33);
    const t = bitcoin.crypto.taggedHash('TapTweak', concat(internal, node));
    const Q = secp256k1.Point.fromBytes(concat(Uint8Array.of(2), internal)).add(secp256k1.Point.BASE.multiply(BigInt(`0x${hex(t)}`)));
    if (hex(Q.toBytes(true).subarray(1)) !== hex(outputKey) || (Q.toBytes(true)[0]! & 1) !== (control[0]! & 1)) {
      throw new Error(`input ${i}: the control block does not commit to the output key`);
    }
  });
  return tx.ins.length;
}
