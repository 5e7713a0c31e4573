// Random MuSig2 sessions, cross-checked against two independent implementations and across
// our two curve backends.
//
// Every session runs the whole protocol with our core and ends with BIP340 verify of the final
// signature: 1 to 16 signers (duplicate keys included), 0 to 3 tweaks of both kinds, messages of
// 0, 32 and 100 bytes; every signer but the last uses NonceGen + Sign and the last one uses
// DeterministicSign (with rand absent, random, or all-zero). A single-signer session has nobody
// to form an aggothernonce, so its one signer uses NonceGen + Sign.
//
// The peers: @scure/btc-signer's musig2 and @brandonblack/musig (noble v2 backend, test/peers).
// Both take every BIP327 input we do, rand' included, so nonces and partial signatures must be
// byte-identical, not just valid. The cheap checks (KeySort, NonceAgg) run against both peers on
// every session. The full matrix (individual and aggregate keys, NonceGen, DeterministicSign,
// Sign with the same secnonce, PartialSigVerify both ways, PartialSigAgg) runs against
// brandonblack on every third session and against scure on every fourth (so about a sixth of the
// sessions get both), because both peers redo key aggregation, in milliseconds, for every session
// and every DeterministicSign; that keeps the file within a few tens of seconds on 2 cores.
//
// `ours` is the native backend (libsecp256k1). Every value it produces in every session is also
// computed on the noble backend and must be byte-identical: individual and aggregate keys,
// secnonces, pubnonces, partial signatures, verification results, final signatures.
//
// Random choices come from a seeded generator. Set MUSIG2_PROPERTY_SEED=<hex> to replay a run;
// every failure message names the seed and the session.
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import { bytesToNumberBE, numberToBytesBE } from '@noble/curves/utils.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, concatBytes, hexToBytes, randomBytes } from '@noble/hashes/utils.js';
import { afterAll, describe, expect, it } from 'vitest';
import { Musig2Error, musig2For } from '../../src/musig2/index.js';
import type { SessionContext, Tweak } from '../../src/musig2/index.js';
import { brandonblackPeer } from '../peers/brandonblack.js';
import { scurePeer } from '../peers/scure.js';
import type { MusigPeer } from '../peers/types.js';

const ours = musig2For('native');
const noble = musig2For('noble');

const SESSIONS = 300;
const BLOCKS = 6;
const N = secp256k1.Point.Fn.ORDER;
const MSG_LENGTHS = [0, 32, 100] as const;

const SEED_HEX = process.env.MUSIG2_PROPERTY_SEED ?? bytesToHex(randomBytes(8));
if (!/^([0-9a-fA-F]{2})+$/.test(SEED_HEX)) throw new Error(`MUSIG2_PROPERTY_SEED must be hex, got ${SEED_HEX}`);
const SEED = hexToBytes(SEED_HEX);

/** A deterministic byte stream: SHA-256 of (key, counter). Quality matters less than replay. */
class Rng {
  private counter = 0;
  private block = new Uint8Array(0);
  private pos = 0;

  constructor(private readonly key: Uint8Array) {}

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let filled = 0; filled < n; ) {
      if (this.pos === this.block.length) {
        this.block = sha256(concatBytes(this.key, numberToBytesBE(this.counter++, 4)));
        this.pos = 0;
      }
      const take = Math.min(n - filled, this.block.length - this.pos);
      out.set(this.block.subarray(this.pos, this.pos + take), filled);
      filled += take;
      this.pos += take;
    }
    return out;
  }

  /** Uniform enough in [0, max) for choosing test cases. */
  int(max: number): number {
    return Number(bytesToNumberBE(this.bytes(6)) % BigInt(max));
  }

  chance(p: number): boolean {
    return this.int(1_000_000) < p * 1_000_000;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  /** A secret key or tweak in [1, n-1]. */
  scalar(): Uint8Array {
    for (;;) {
      const b = this.bytes(32);
      const v = bytesToNumberBE(b);
      if (v > 0n && v < N) return b;
    }
  }
}

type RandMode = 'absent' | 'random' | 'zero';

interface NonceChoice {
  readonly withSk: boolean;
  readonly withAggpk: boolean;
  readonly withMsg: boolean;
  readonly extraIn: Uint8Array | undefined;
  readonly rand: Uint8Array;
}

interface Plan {
  readonly index: number;
  readonly where: string;
  /** One per signer; equal entries are duplicate keys. */
  readonly sks: Uint8Array[];
  readonly sortKeys: boolean;
  readonly tweaks: Tweak[];
  readonly msg: Uint8Array;
  readonly nonces: NonceChoice[];
  readonly detRand: RandMode;
  readonly detRandBytes: Uint8Array;
  readonly tamperIndex: number;
  /** Peers checked on the full matrix for this session. */
  readonly full: MusigPeer[];
}

function drawPlan(index: number): Plan {
  const rng = new Rng(concatBytes(SEED, numberToBytesBE(index, 4)));
  // The first 16 sessions take every size from 1 to 16 once. After that, small sessions are
  // drawn more often: cost grows with the square of the signer count (every psig is verified
  // against all nonces), and most of the edge cases live in small sessions anyway.
  const u = index < 16 ? index + 1 : rng.chance(0.3) ? 1 + rng.int(16) : 1 + rng.int(5);
  // Duplicates: sometimes draw keys from a smaller pool, down to one key for everybody.
  const distinct = u > 1 && rng.chance(0.3) ? 1 + rng.int(u) : u;
  const pool = Array.from({ length: distinct }, () => rng.scalar());
  const sks = Array.from({ length: u }, (_, i) => (i < distinct ? pool[i]! : rng.pick(pool)));
  for (let i = u - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [sks[i], sks[j]] = [sks[j]!, sks[i]!];
  }
  const tweaks = Array.from({ length: rng.int(4) }, () => ({
    // A zero tweak is valid in BIP327 and worth hitting now and then.
    tweak: rng.chance(0.05) ? new Uint8Array(32) : rng.scalar(),
    xonly: rng.chance(0.5),
  }));
  const msg = rng.bytes(rng.pick(MSG_LENGTHS));
  const randomSigners = u === 1 ? 1 : u - 1;
  const nonces = Array.from({ length: randomSigners }, () => {
    const extra = rng.int(10);
    return {
      withSk: rng.chance(0.8),
      withAggpk: rng.chance(0.7),
      withMsg: rng.chance(0.7),
      extraIn: extra < 3 ? undefined : extra < 4 ? new Uint8Array(0) : rng.bytes(1 + rng.int(40)),
      rand: rng.bytes(32),
    };
  });
  const full: MusigPeer[] = [];
  if (index % 3 === 0) full.push(brandonblackPeer);
  if (index % 4 === 1) full.push(scurePeer);
  return {
    index,
    where: `seed=${SEED_HEX} session=${index}`,
    sks,
    sortKeys: rng.chance(0.5),
    tweaks,
    msg,
    nonces,
    detRand: rng.pick<RandMode>(['absent', 'random', 'zero']),
    detRandBytes: rng.bytes(32),
    tamperIndex: rng.int(u),
    full,
  };
}

const hex = (b: Uint8Array): string => bytesToHex(b);

/** psig + 1 mod n: a well-formed partial signature that must not verify. */
function tamper(psig: Uint8Array): Uint8Array {
  return numberToBytesBE((bytesToNumberBE(psig) + 1n) % N, 32);
}

const compareBytes = (a: Uint8Array, b: Uint8Array): number => {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
};

// What the sessions exercised, asserted at the end so a generator change cannot quietly stop
// covering a case.
const seen = {
  sessions: 0,
  signers: new Set<number>(),
  duplicateKeys: 0,
  allKeysEqual: 0,
  tweakCounts: new Set<number>(),
  tweakKinds: new Set<string>(),
  zeroTweak: 0,
  msgLengths: new Set<number>(),
  detRand: new Set<RandMode>(),
  nonceGenWithoutSk: 0,
  nonceGenWithoutMsg: 0,
  fullBy: new Map<string, number>(),
};

function runSession(plan: Plan): void {
  const { where, tweaks, msg } = plan;
  const peers = [brandonblackPeer, scurePeer];
  const same = (actual: Uint8Array, expected: Uint8Array, what: string): void => {
    expect(hex(actual), `${where}: ${what}`).toBe(hex(expected));
  };
  /** The native result, after checking that noble computes the same bytes. */
  const both = (what: string, f: (m: typeof ours) => Uint8Array): Uint8Array => {
    const mine = f(ours);
    same(f(noble), mine, `${what}: noble vs native`);
    return mine;
  };

  // Keys: our individual pubkeys, optionally put in KeySort order, which all three agree on.
  let sks = plan.sks;
  let pks = sks.map((sk, i) => both(`individual pubkey ${i}`, (m) => m.individualPubkey(sk)));
  for (const peer of plan.full) {
    pks.forEach((pk, i) => same(pk, peer.individualPubkey(sks[i]!), `individual pubkey ${i} vs ${peer.name}`));
  }
  const sorted = ours.keySort(pks);
  for (const peer of peers) {
    expect(peer.keySort([...pks]).map(hex), `${where}: keySort vs ${peer.name}`).toEqual(sorted.map(hex));
  }
  if (plan.sortKeys) {
    const order = pks.map((_, i) => i).sort((a, b) => compareBytes(pks[a]!, pks[b]!));
    sks = order.map((i) => sks[i]!);
    pks = order.map((i) => pks[i]!);
    expect(pks.map(hex), `${where}: keySort order`).toEqual(sorted.map(hex));
  }
  const u = pks.length;

  // Key aggregation: the cached one-shot entry point must match the step-by-step one.
  const ctx = ours.keyAggAndTweak(pks, tweaks);
  let stepwise = ours.keyAgg(pks);
  for (const t of tweaks) stepwise = ours.applyTweak(stepwise, t.tweak, t.xonly);
  const aggX = both('x-only aggregate key', (m) => m.getXonlyPk(m === ours ? ctx : m.keyAggAndTweak(pks, tweaks)));
  const aggPlain = both('plain aggregate key', (m) => m.getPlainPk(m === ours ? ctx : m.keyAggAndTweak(pks, tweaks)));
  expect(aggX.length).toBe(32);
  expect(aggPlain.length).toBe(33);
  same(aggPlain.subarray(1), aggX, 'plain vs x-only aggregate key');
  same(ours.getXonlyPk(stepwise), aggX, 'keyAgg+applyTweak vs keyAggAndTweak (x-only)');
  same(ours.getPlainPk(stepwise), aggPlain, 'keyAgg+applyTweak vs keyAggAndTweak (plain)');
  for (const peer of plan.full) {
    const theirs = peer.keyAgg(pks, tweaks);
    same(theirs.xonly, aggX, `x-only aggregate key vs ${peer.name}`);
    same(theirs.plain, aggPlain, `plain aggregate key vs ${peer.name}`);
  }

  // Round 1 for the random signers, from identical inputs on all three sides.
  const pubnonces: Uint8Array[] = [];
  const secnonces: Uint8Array[] = [];
  plan.nonces.forEach((c, i) => {
    const input = {
      sk: c.withSk ? sks[i] : undefined,
      pk: pks[i]!,
      aggpk: c.withAggpk ? aggX : undefined,
      msg: c.withMsg ? msg : undefined,
      extraIn: c.extraIn,
      rand: c.rand,
    };
    const mine = ours.nonceGen(input);
    const mirror = noble.nonceGen(input);
    same(mirror.secnonce, mine.secnonce, `secnonce ${i}: noble vs native`);
    same(mirror.pubnonce, mine.pubnonce, `pubnonce ${i}: noble vs native`);
    expect(mine.secnonce.length).toBe(97);
    expect(mine.pubnonce.length).toBe(66);
    same(mine.secnonce.subarray(64), pks[i]!, `secnonce ${i} carries the signer's pubkey`);
    for (const peer of plan.full) {
      const theirs = peer.nonceGen(input);
      same(theirs.pubnonce, mine.pubnonce, `pubnonce ${i} vs ${peer.name}`);
      if (theirs.secnonce !== undefined) same(theirs.secnonce, mine.secnonce, `secnonce ${i} vs ${peer.name}`);
    }
    pubnonces.push(mine.pubnonce);
    secnonces.push(mine.secnonce);
    if (!c.withSk) seen.nonceGenWithoutSk++;
    if (!c.withMsg) seen.nonceGenWithoutMsg++;
  });

  // The last signer, when there are others, signs deterministically: no state, no randomness.
  const deterministic = u > 1;
  let detPsig: Uint8Array | undefined;
  let aggothernonce: Uint8Array | undefined;
  if (deterministic) {
    aggothernonce = both('aggothernonce', (m) => m.nonceAgg(pubnonces));
    for (const peer of peers) same(peer.nonceAgg([...pubnonces]), aggothernonce, `aggothernonce vs ${peer.name}`);
    const rand =
      plan.detRand === 'absent' ? undefined : plan.detRand === 'zero' ? new Uint8Array(32) : plan.detRandBytes;
    const sk = sks[u - 1]!;
    const det = ours.deterministicSign(sk, aggothernonce, pks, tweaks, msg, rand);
    const detNoble = noble.deterministicSign(sk, aggothernonce, pks, tweaks, msg, rand);
    same(detNoble.pubnonce, det.pubnonce, 'deterministic pubnonce: noble vs native');
    same(detNoble.psig, det.psig, 'deterministic psig: noble vs native');
    const again = ours.deterministicSign(sk, aggothernonce, pks, tweaks, msg, rand);
    same(again.pubnonce, det.pubnonce, 'DeterministicSign is idempotent (pubnonce)');
    same(again.psig, det.psig, 'DeterministicSign is idempotent (psig)');
    if (plan.detRand === 'zero') {
      // An all-zero rand is a present value (sk' = sk xor hash(0...)), not an absent one.
      const absent = ours.deterministicSign(sk, aggothernonce, pks, tweaks, msg);
      expect(hex(absent.pubnonce), `${where}: zero rand differs from absent rand`).not.toBe(hex(det.pubnonce));
    }
    for (const peer of plan.full) {
      const theirs = peer.deterministicSign(sk, aggothernonce, pks, tweaks, msg, rand);
      same(theirs.pubnonce, det.pubnonce, `deterministic pubnonce vs ${peer.name}`);
      same(theirs.psig, det.psig, `deterministic psig vs ${peer.name}`);
    }
    pubnonces.push(det.pubnonce);
    detPsig = det.psig;
  }

  const aggnonce = both('aggnonce', (m) => m.nonceAgg(pubnonces));
  for (const peer of peers) same(peer.nonceAgg([...pubnonces]), aggnonce, `aggnonce vs ${peer.name}`);
  if (aggothernonce !== undefined) {
    same(ours.nonceAgg([aggothernonce, pubnonces[u - 1]!]), aggnonce, 'aggnonce from aggothernonce');
  }

  // Round 2 for the random signers. Sign wipes the secnonce it is given, so a second use fails.
  const session: SessionContext = { aggnonce, pubkeys: pks, tweaks, msg };
  const psigs: Uint8Array[] = plan.nonces.map((_, i) => {
    const secnonce = secnonces[i]!.slice();
    same(noble.sign(secnonces[i]!.slice(), sks[i]!, session), ours.sign(secnonces[i]!.slice(), sks[i]!, session), `psig ${i}: noble vs native`);
    const psig = ours.sign(secnonce, sks[i]!, session);
    expect(psig.length).toBe(32);
    expect(secnonce.subarray(0, 64).every((b) => b === 0), `${where}: secnonce ${i} wiped`).toBe(true);
    if (i === 0) {
      expect(() => ours.sign(secnonce, sks[i]!, session), `${where}: wiped secnonce ${i} reused`).toThrow(
        Musig2Error,
      );
    }
    return psig;
  });
  if (detPsig !== undefined) psigs.push(detPsig);

  for (let i = 0; i < u; i++) {
    expect(ours.partialSigVerify(psigs[i]!, pubnonces, pks, tweaks, msg, i), `${where}: verify psig ${i}`).toBe(true);
    expect(noble.partialSigVerify(psigs[i]!, pubnonces, pks, tweaks, msg, i), `${where}: noble verifies psig ${i}`).toBe(true);
  }
  const t = plan.tamperIndex;
  const bad = tamper(psigs[t]!);
  expect(ours.partialSigVerify(bad, pubnonces, pks, tweaks, msg, t), `${where}: tampered psig ${t}`).toBe(false);
  expect(noble.partialSigVerify(bad, pubnonces, pks, tweaks, msg, t), `${where}: noble, tampered psig ${t}`).toBe(false);

  const sig = both('final signature', (m) => m.partialSigAgg(psigs, session));
  expect(sig.length).toBe(64);
  expect(schnorr.verify(sig, msg, aggX), `${where}: BIP340 verify of the final signature`).toBe(true);
  const badPsigs = psigs.map((p, i) => (i === t ? bad : p));
  expect(schnorr.verify(ours.partialSigAgg(badPsigs, session), msg, aggX), `${where}: tampered aggregate`).toBe(false);

  for (const peer of plan.full) {
    const theirs = peer.session(aggnonce, pks, tweaks, msg);
    // Given the same secnonce, the peer's partial signature must equal ours byte for byte.
    // Equal bytes make "ours verifies theirs" the check above; here the peer verifies ours.
    plan.nonces.forEach((_, i) => {
      same(theirs.sign(secnonces[i]!.slice(), pubnonces[i]!, sks[i]!), psigs[i]!, `psig ${i} vs ${peer.name}`);
    });
    for (let i = 0; i < u; i++) {
      expect(theirs.partialSigVerify(psigs[i]!, pubnonces, i), `${where}: ${peer.name} verifies our psig ${i}`).toBe(
        true,
      );
    }
    expect(theirs.partialSigVerify(bad, pubnonces, t), `${where}: ${peer.name} rejects tampered psig ${t}`).toBe(false);
    same(theirs.partialSigAgg(psigs), sig, `final signature vs ${peer.name}`);
    seen.fullBy.set(peer.name, (seen.fullBy.get(peer.name) ?? 0) + 1);
  }

  seen.sessions++;
  seen.signers.add(u);
  const distinct = new Set(pks.map(hex)).size;
  if (distinct < u) seen.duplicateKeys++;
  if (u > 1 && distinct === 1) seen.allKeysEqual++;
  seen.tweakCounts.add(tweaks.length);
  for (const tw of tweaks) {
    seen.tweakKinds.add(tw.xonly ? 'xonly' : 'plain');
    if (tw.tweak.every((b) => b === 0)) seen.zeroTweak++;
  }
  seen.msgLengths.add(msg.length);
  if (deterministic) seen.detRand.add(plan.detRand);
}

describe(`property: random MuSig2 sessions, native vs noble vs scure and brandonblack (seed ${SEED_HEX})`, () => {
  afterAll(() => {
    // Printed so a green run can be replayed too.
    console.log(`property test seed: MUSIG2_PROPERTY_SEED=${SEED_HEX}, ${seen.sessions} sessions`);
  });

  const perBlock = SESSIONS / BLOCKS;
  for (let b = 0; b < BLOCKS; b++) {
    it(`sessions ${b * perBlock} to ${(b + 1) * perBlock - 1}`, () => {
      for (let i = b * perBlock; i < (b + 1) * perBlock; i++) runSession(drawPlan(i));
    });
  }

  it('cached key aggregation follows keys and tweaks mutated in place', () => {
    // keyAggAndTweak is LRU-cached; a caller that reuses its arrays must never get a stale key.
    const rng = new Rng(concatBytes(SEED, Uint8Array.of(0xca, 0xc4, 0xe0)));
    const where = `seed=${SEED_HEX} cache check`;
    const pks = [rng.scalar(), rng.scalar(), rng.scalar()].map((sk) => ours.individualPubkey(sk));
    const tweak = { tweak: rng.scalar(), xonly: true };
    const check = (what: string): void => {
      const mine = ours.getPlainPk(ours.keyAggAndTweak(pks, [tweak]));
      expect(hex(mine), `${where}: ${what}`).toBe(hex(brandonblackPeer.keyAgg([...pks], [tweak]).plain));
    };
    check('first use');
    pks[1]!.set(ours.individualPubkey(rng.scalar()));
    check('after a key changed in place');
    tweak.tweak.set(rng.scalar());
    check('after a tweak changed in place');
    tweak.xonly = false;
    check('after a tweak changed kind');
  });

  it('covered every kind of case', () => {
    expect(seen.sessions).toBe(SESSIONS);
    expect([...seen.signers].sort((a, b) => a - b)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    expect(seen.duplicateKeys).toBeGreaterThan(0);
    expect(seen.allKeysEqual).toBeGreaterThan(0);
    expect([...seen.tweakCounts].sort()).toEqual([0, 1, 2, 3]);
    expect([...seen.tweakKinds].sort()).toEqual(['plain', 'xonly']);
    expect(seen.zeroTweak).toBeGreaterThan(0);
    expect([...seen.msgLengths].sort((a, b) => a - b)).toEqual([...MSG_LENGTHS]);
    expect([...seen.detRand].sort()).toEqual(['absent', 'random', 'zero']);
    expect(seen.nonceGenWithoutSk).toBeGreaterThan(0);
    expect(seen.nonceGenWithoutMsg).toBeGreaterThan(0);
    expect(seen.fullBy.get('brandonblack')).toBe(Math.ceil(SESSIONS / 3));
    expect(seen.fullBy.get('scure')).toBe(Math.ceil((SESSIONS - 1) / 4));
  });
});
