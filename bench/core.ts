// Core benchmark: one signer's Sign, DeterministicSign, PartialSigVerify and KeyAgg, ours on both
// curve backends (native: libsecp256k1; noble: pure JavaScript) beside @brandonblack/musig (noble
// v2 backend) and @scure/btc-signer, interleaved in the same run.
//
// Warm: every call uses the same key set (and, for brandonblack, the same array object, which is
// what its internal caches key on). Cold: every call gets a key set nobody has seen, built
// outside the timed region. No tweaks, 32-byte messages, a fresh message per call. Each library
// runs with its defaults, which for all three include self-verification of the partial signature.
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import { bytesToNumberBE, numberToBytesBE } from '@noble/curves/utils.js';
import { bytesToHex, concatBytes, randomBytes } from '@noble/hashes/utils.js';
import * as scure from '@scure/btc-signer/musig2.js';
import { musig2For } from '../src/musig2/index.js';
import type { Musig2 } from '../src/musig2/index.js';
import { brandonblack, brandonblackPeer } from '../test/peers/brandonblack.js';
import { scurePeer } from '../test/peers/scure.js';
import type { Comparison, Contender } from './harness.js';
import { benchClock, benchTimeMs, compare, environment, fmtOps, fmtRatio, markdownTable } from './harness.js';

const nativeM: Musig2 = musig2For('native');
const nobleM: Musig2 = musig2For('noble');
const Point = secp256k1.Point;
type Point = InstanceType<typeof Point>;
const N = Point.Fn.ORDER;
const NO_TWEAKS: never[] = [];
const SIZES = [2, 3, 16] as const;
const NAMES = ['native', 'noble', 'brandonblack', 'scure'] as const;
type Name = (typeof NAMES)[number];
type Op = 'Sign' | 'DeterministicSign' | 'PartialSigVerify' | 'KeyAgg';
const OPS: readonly Op[] = ['Sign', 'DeterministicSign', 'PartialSigVerify', 'KeyAgg'];

interface KeySet {
  readonly sk: Uint8Array; // the benchmarked signer's key; its pubkey is pubkeys[0]
  readonly pubkeys: Uint8Array[];
  /** Every signer's secret key, so verification inputs can be made without key aggregation. */
  readonly secrets: readonly bigint[];
}

/**
 * Fresh key sets cheaply: consecutive secret keys s, s+1, ... so each public key is the previous
 * one plus G (a point addition, not a scalar multiplication). Only their bytes matter here.
 */
class KeyFactory {
  private s = bytesToNumberBE(secp256k1.utils.randomSecretKey());
  private P: Point = Point.BASE.multiply(this.s);

  next(u: number): KeySet {
    const sk = numberToBytesBE(this.s, 32);
    const pubkeys: Uint8Array[] = [];
    const secrets: bigint[] = [];
    for (let j = 0; j < u; j++) {
      pubkeys.push(this.P.toBytes(true));
      secrets.push(this.s);
      this.P = this.P.add(Point.BASE);
      this.s = (this.s + 1n) % N;
      if (this.s === 0n) throw new Error('KeyFactory wrapped around n');
    }
    return { sk, pubkeys, secrets };
  }
}

/** Random nonce pairs (k1, k2, pubnonce); a secnonce is k1 || k2 || pk for any signer. */
const NONCES = Array.from({ length: 64 }, () => {
  const k = concatBytes(secp256k1.utils.randomSecretKey(), secp256k1.utils.randomSecretKey());
  const k1 = bytesToNumberBE(k.subarray(0, 32));
  const k2 = bytesToNumberBE(k.subarray(32));
  const pubnonce = concatBytes(Point.BASE.multiply(k1).toBytes(true), Point.BASE.multiply(k2).toBytes(true));
  return { k, k1, k2, pubnonce };
});
const pickNonce = (): (typeof NONCES)[number] => NONCES[Math.floor(Math.random() * NONCES.length)]!;

interface SignIn {
  readonly key: KeySet;
  readonly secnonce: Uint8Array;
  readonly pubnonce: Uint8Array;
  readonly aggnonce: Uint8Array;
  readonly msg: Uint8Array;
}
interface DetIn {
  readonly key: KeySet;
  readonly aggothernonce: Uint8Array;
  readonly msg: Uint8Array;
}
interface VerifyIn {
  readonly key: KeySet;
  readonly pubnonces: Uint8Array[];
  readonly psig: Uint8Array;
  readonly msg: Uint8Array;
}

/** How to build one input of an operation, and how each library performs it. */
interface OpSpec<I> {
  make(key: KeySet): I;
  /** Each input is used once: Sign consumes (wipes) its secnonce. */
  fresh(x: I): I;
  run: Record<Name, (x: I) => unknown>;
}

const signSpec: OpSpec<SignIn> = {
  make: (key) => {
    const n = pickNonce();
    return {
      key,
      secnonce: concatBytes(n.k, key.pubkeys[0]!),
      pubnonce: n.pubnonce,
      // Any valid aggnonce will do for one signer's work; a pubnonce from the pool is one.
      aggnonce: pickNonce().pubnonce,
      msg: randomBytes(32),
    };
  },
  fresh: (x) => ({ ...x, secnonce: x.secnonce.slice() }),
  run: {
    native: (x) => nativeM.sign(x.secnonce, x.key.sk, { aggnonce: x.aggnonce, pubkeys: x.key.pubkeys, tweaks: NO_TWEAKS, msg: x.msg }),
    noble: (x) => nobleM.sign(x.secnonce, x.key.sk, { aggnonce: x.aggnonce, pubkeys: x.key.pubkeys, tweaks: NO_TWEAKS, msg: x.msg }),
    brandonblack: (x) =>
      brandonblackPeer.session(x.aggnonce, x.key.pubkeys, NO_TWEAKS, x.msg).sign(x.secnonce, x.pubnonce, x.key.sk),
    scure: (x) => scurePeer.session(x.aggnonce, x.key.pubkeys, NO_TWEAKS, x.msg).sign(x.secnonce, x.pubnonce, x.key.sk),
  },
};

const detSpec: OpSpec<DetIn> = {
  make: (key) => ({ key, aggothernonce: pickNonce().pubnonce, msg: randomBytes(32) }),
  fresh: (x) => x,
  run: {
    native: (x) => nativeM.deterministicSign(x.key.sk, x.aggothernonce, x.key.pubkeys, NO_TWEAKS, x.msg),
    noble: (x) => nobleM.deterministicSign(x.key.sk, x.aggothernonce, x.key.pubkeys, NO_TWEAKS, x.msg),
    brandonblack: (x) => brandonblackPeer.deterministicSign(x.key.sk, x.aggothernonce, x.key.pubkeys, NO_TWEAKS, x.msg),
    scure: (x) => scurePeer.deterministicSign(x.key.sk, x.aggothernonce, x.key.pubkeys, NO_TWEAKS, x.msg),
  },
};

/**
 * A valid partial signature of signer 0, computed from the secret keys and nonce scalars with
 * scalar arithmetic and base-point multiplications only (BIP327 Sign with no tweaks). It is made
 * without any of the three libraries, so none of their key-aggregation caches is warmed by it.
 */
function psigFromSecrets(key: KeySet, nonces: readonly (typeof NONCES)[number][], msg: Uint8Array): Uint8Array {
  const tag = schnorr.utils.taggedHash;
  const hashInt = (t: string, ...parts: Uint8Array[]): bigint => bytesToNumberBE(tag(t, ...parts)) % N;
  const pks = key.pubkeys;
  const L = tag('KeyAgg list', ...pks);
  const pk2 = pks.find((pk) => bytesToHex(pk) !== bytesToHex(pks[0]!));
  const coef = (pk: Uint8Array): bigint =>
    pk2 !== undefined && bytesToHex(pk) === bytesToHex(pk2) ? 1n : hashInt('KeyAgg coefficient', L, pk);
  const a = pks.map(coef);
  const Q = Point.BASE.multiply(key.secrets.reduce((acc, sk, j) => (acc + a[j]! * sk) % N, 0n));
  const Qx = Q.toBytes(true).subarray(1);
  const sum1 = nonces.reduce((acc, n) => (acc + n.k1) % N, 0n);
  const sum2 = nonces.reduce((acc, n) => (acc + n.k2) % N, 0n);
  const aggnonce = concatBytes(Point.BASE.multiply(sum1).toBytes(true), Point.BASE.multiply(sum2).toBytes(true));
  const b = hashInt('MuSig/noncecoef', aggnonce, Qx, msg);
  const R = Point.BASE.multiply((sum1 + b * sum2) % N);
  const Rx = R.toBytes(true).subarray(1);
  const e = hashInt('BIP0340/challenge', Rx, Qx, msg);
  const even = (P: Point): boolean => P.toBytes(true)[0] === 2;
  const k1 = even(R) ? nonces[0]!.k1 : N - nonces[0]!.k1;
  const k2 = even(R) ? nonces[0]!.k2 : N - nonces[0]!.k2;
  const d = even(Q) ? key.secrets[0]! : N - key.secrets[0]!;
  return numberToBytesBE((k1 + b * k2 + e * a[0]! * d) % N, 32);
}

const verifySpec: OpSpec<VerifyIn> = {
  make: (key) => {
    const nonces = key.pubkeys.map(() => pickNonce());
    const msg = randomBytes(32);
    return { key, pubnonces: nonces.map((n) => n.pubnonce), psig: psigFromSecrets(key, nonces, msg), msg };
  },
  fresh: (x) => x,
  run: {
    native: (x) => nativeM.partialSigVerify(x.psig, x.pubnonces, x.key.pubkeys, NO_TWEAKS, x.msg, 0),
    noble: (x) => nobleM.partialSigVerify(x.psig, x.pubnonces, x.key.pubkeys, NO_TWEAKS, x.msg, 0),
    brandonblack: (x) => brandonblackPeer.partialSigVerify(x.psig, x.pubnonces, x.key.pubkeys, NO_TWEAKS, x.msg, 0),
    scure: (x) => scurePeer.partialSigVerify(x.psig, x.pubnonces, x.key.pubkeys, NO_TWEAKS, x.msg, 0),
  },
};

const keyAggSpec: OpSpec<KeySet> = {
  make: (key) => key,
  fresh: (x) => x,
  run: {
    // keyAggAndTweak is the cached entry point the signer service uses; warm runs hit its LRU.
    native: (x) => nativeM.getXonlyPk(nativeM.keyAggAndTweak(x.pubkeys, NO_TWEAKS)),
    noble: (x) => nobleM.getXonlyPk(nobleM.keyAggAndTweak(x.pubkeys, NO_TWEAKS)),
    brandonblack: (x) => brandonblack.getXOnlyPubkey(brandonblack.keyAgg(x.pubkeys)),
    scure: (x) => scure.keyAggExport(scure.keyAggregate(x.pubkeys)),
  },
};

function specFor(op: Op): OpSpec<unknown> {
  const spec = op === 'Sign' ? signSpec : op === 'DeterministicSign' ? detSpec : op === 'PartialSigVerify' ? verifySpec : keyAggSpec;
  return spec as OpSpec<unknown>;
}

/** A result as a comparable string: bytes as hex, objects field by field. */
function fingerprint(v: unknown): string {
  if (v instanceof Uint8Array) return bytesToHex(v);
  if (typeof v === 'object' && v !== null) {
    return Object.entries(v)
      .map(([k, x]) => `${k}=${fingerprint(x)}`)
      .join(',');
  }
  return String(v);
}

interface Cell {
  readonly op: Op;
  readonly u: number;
  readonly warm: boolean;
  readonly result: Comparison;
}

function measureCell(op: Op, u: number, warm: boolean, timeMs: number): Cell {
  const spec = specFor(op);
  const keys = new KeyFactory();
  const warmKey = keys.next(u);
  const nextKey = (): KeySet => (warm ? warmKey : keys.next(u));

  // The three must agree on shared inputs before their speed means anything (and a verification
  // input must verify: several probes, to cover both parities of R and Q).
  for (let p = 0; p < 6; p++) {
    const probe = spec.make(nextKey());
    const outs = NAMES.map((name) => fingerprint(spec.run[name](spec.fresh(probe))));
    if (new Set(outs).size !== 1 || outs[0] === 'false') {
      throw new Error(`${op} u=${u}: the libraries disagree: ${NAMES.map((n, i) => `${n}: ${outs[i]}`).join('; ')}`);
    }
  }

  const contenders: Contender[] = NAMES.map((name) => ({
    name,
    prepare: (n) => {
      const inputs = Array.from({ length: n }, () => spec.fresh(spec.make(nextKey())));
      const run = spec.run[name];
      return (i) => run(inputs[i]);
    },
  }));
  return { op, u, warm, result: compare(contenders, { timeMs }) };
}

const PASS = (ok: boolean): string => (ok ? 'PASS' : 'MISS');

export async function benchCore(): Promise<void> {
  const timeMs = benchTimeMs(900);
  const started = Date.now();
  console.log('## Core: one signer, ours (native and noble backends) vs @brandonblack/musig (noble v2) vs @scure/btc-signer\n');
  console.log(
    `${await environment()}; ${timeMs} ms per library per row (BENCH_TIME_MS), 5 interleaved rounds, ` +
      `${benchClock()} clock (BENCH_CLOCK).\n`,
  );

  // BENCH_CORE_OPS=Sign,KeyAgg narrows the run while investigating (the target check needs
  // DeterministicSign).
  const wanted = process.env.BENCH_CORE_OPS?.split(',').map((s) => s.trim());
  const cells: Cell[] = [];
  for (const op of OPS.filter((o) => wanted === undefined || wanted.includes(o))) {
    for (const u of SIZES) {
      for (const warm of [true, false]) {
        const cell = measureCell(op, u, warm, timeMs);
        cells.push(cell);
        const r = cell.result;
        process.stderr.write(
          `  ${op} u=${u} ${warm ? 'warm' : 'cold'}: native ${fmtOps(r.get('native').opsPerSec)}/s, noble ${fmtOps(r.get('noble').opsPerSec)}/s, ` +
            `brandonblack ${fmtOps(r.get('brandonblack').opsPerSec)}/s, scure ${fmtOps(r.get('scure').opsPerSec)}/s\n`,
        );
      }
    }
  }

  const rows = cells.map((c) => [
    c.op,
    String(c.u),
    c.warm ? 'warm' : 'cold',
    fmtOps(c.result.get('native').opsPerSec),
    fmtOps(c.result.get('noble').opsPerSec),
    fmtOps(c.result.get('brandonblack').opsPerSec),
    fmtOps(c.result.get('scure').opsPerSec),
    fmtRatio(c.result.ratio('native', 'noble')),
    fmtRatio(c.result.ratio('noble', 'brandonblack')),
    fmtRatio(c.result.ratio('noble', 'scure')),
  ]);
  console.log(
    markdownTable(
      ['operation', 'signers', 'keys', 'native ops/s', 'noble ops/s', 'brandonblack ops/s', 'scure ops/s', 'native/noble', 'noble/brandonblack', 'noble/scure'],
      rows,
    ),
  );

  // Targets (informational: a benchmark never fails the build).
  const detCells = cells.filter((c) => c.op === 'DeterministicSign' && c.u === 3);
  if (detCells.length === 0) return;
  const det = (warm: boolean): Comparison => detCells.find((c) => c.warm === warm)!.result;
  const warmNative = det(true).ratio('native', 'noble');
  const coldNative = det(false).ratio('native', 'noble');
  const warmBb = det(true).ratio('noble', 'brandonblack');
  const warmSc = det(true).ratio('noble', 'scure');
  const coldBb = det(false).ratio('noble', 'brandonblack');
  console.log('\nTargets, DeterministicSign with 3 signers:\n');
  console.log(
    markdownTable(
      ['target', 'measured', 'result'],
      [
        ['native warm >= 6x noble', fmtRatio(warmNative), PASS(warmNative >= 6)],
        ['native cold >= 4x noble', fmtRatio(coldNative), PASS(coldNative >= 4)],
        ['noble warm >= 3x brandonblack', fmtRatio(warmBb), PASS(warmBb >= 3)],
        ['noble warm >= 6x scure', fmtRatio(warmSc), PASS(warmSc >= 6)],
        ['noble cold >= 1.5x brandonblack', fmtRatio(coldBb), PASS(coldBb >= 1.5)],
      ],
    ),
  );
  console.log(`\nCore section took ${((Date.now() - started) / 1000).toFixed(0)} s.\n`);
}
