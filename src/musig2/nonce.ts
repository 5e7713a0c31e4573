/**
 * BIP327 NonceGen and NonceAgg.
 */
import { randomBytes } from '@noble/hashes/utils.js';
import { checkByteList, checkBytes, concat, copyBytes, toHex, uintBytes } from './encoding.js';
import { hashAux, hashNonce } from './hash.js';
import { InvalidContributionError, InvalidInputError } from './errors.js';
import type { Pt } from './backend.js';
import type { Engine } from './engine.js';

export interface NonceGenInput {
  sk?: Uint8Array; // 32, optional
  pk: Uint8Array; // 33, the signer's individual public key (required)
  aggpk?: Uint8Array; // 32, x-only aggregate key, optional
  msg?: Uint8Array; // optional; absent (undefined) differs from empty
  extraIn?: Uint8Array; // optional
  rand?: Uint8Array; // rand' (32): default is the CSPRNG; pass it only to supply entropy or for test vectors
}

export interface NonceGenOutput {
  secnonce: Uint8Array; // 97 = bytes(32, k1) || bytes(32, k2) || pk
  pubnonce: Uint8Array; // 66 = cbytes(k1·G) || cbytes(k2·G)
}

/**
 * The last step of both nonce derivations: k1 = int(h1) mod n and k2 = int(h2) mod n, written
 * into k[0..64) by the backend (never as BigInts on the native backend), with their points.
 */
export function noncePoints(E: Engine, h1: Uint8Array, h2: Uint8Array, k: Uint8Array, zeroMessage: string): [Pt, Pt] {
  const pair = E.curve.noncePair(h1, h2, k);
  if (pair === null) {
    k.fill(0);
    throw new InvalidInputError(zeroMessage);
  }
  return pair;
}

/** pubnonce = cbytes(R1) || cbytes(R2). */
export function encodePubnonce(E: Engine, [R1, R2]: readonly [Pt, Pt]): Uint8Array {
  return concat(E.curve.encode(R1), E.curve.encode(R2));
}

/** NonceGen(sk, pk, aggpk, m, extra_in) with rand' from the CSPRNG unless injected. */
export function nonceGen(E: Engine, input: NonceGenInput): NonceGenOutput {
  if (typeof input !== 'object' || input === null) throw new InvalidInputError('input must be an object', 'input');
  const { sk, pk, aggpk, msg, extraIn, rand: randIn } = input;
  if (sk !== undefined) checkBytes(sk, 'sk', 32);
  checkBytes(pk, 'pk', 33);
  if (aggpk !== undefined) checkBytes(aggpk, 'aggpk', 32);
  if (msg !== undefined) checkBytes(msg, 'msg');
  if (extraIn !== undefined) {
    checkBytes(extraIn, 'extraIn');
    if (extraIn.length >= 2 ** 32) throw new InvalidInputError('extraIn must be shorter than 2^32 bytes', 'extraIn');
  }
  if (randIn !== undefined) checkBytes(randIn, 'rand', 32);

  const aggpkBytes = aggpk ?? new Uint8Array(0);
  const mPrefixed = msg === undefined ? Uint8Array.of(0) : concat(Uint8Array.of(1), uintBytes(msg.length, 8), msg);
  const extra = extraIn ?? new Uint8Array(0);
  const secrets: Uint8Array[] = []; // wiped on the way out, whatever happens
  try {
    const randPrime: Uint8Array = randIn === undefined ? randomBytes(32) : copyBytes(randIn);
    secrets.push(randPrime);
    // rand = sk XOR hash_aux(rand') if sk is present, else rand'.
    let rand = randPrime;
    if (sk !== undefined) {
      rand = hashAux(randPrime);
      secrets.push(rand);
      for (let i = 0; i < 32; i++) rand[i] = (rand[i] as number) ^ (sk[i] as number);
    }
    const parts = [
      rand, uintBytes(pk.length, 1), pk, uintBytes(aggpkBytes.length, 1), aggpkBytes,
      mPrefixed, uintBytes(extra.length, 4), extra,
    ];
    const h1 = hashNonce(...parts, Uint8Array.of(0));
    secrets.push(h1);
    const h2 = hashNonce(...parts, Uint8Array.of(1));
    secrets.push(h2);
    // secnonce = bytes(32, k1) || bytes(32, k2) || pk, with k1, k2 written in place.
    const secnonce = new Uint8Array(97);
    const pair = noncePoints(E, h1, h2, secnonce.subarray(0, 64), 'nonce derivation produced k = 0; retry');
    secnonce.set(pk, 64);
    return { secnonce, pubnonce: encodePubnonce(E, pair) };
  } finally {
    for (const buf of secrets) buf.fill(0);
  }
}

/**
 * Decode pubnonces in BIP327 order (first halves of all nonces, then second halves), blaming
 * the first undecodable one. Returns the points as [R_i1, R_i2] per signer.
 */
export function decodePubnonces(E: Engine, pubnonces: readonly Uint8Array[], blame: (i: number) => InvalidContributionError): [Pt, Pt][] {
  const C = E.curve;
  const hexes = pubnonces.map(toHex);
  const misses: number[] = [];
  const out = hexes.map((h, i): [Pt, Pt] => {
    const hit = E.nonces.get(h);
    if (hit !== undefined) return [hit[0], hit[1]];
    misses.push(i);
    return [C.INF, C.INF];
  });
  for (let j = 0; j < 2; j++) {
    for (const i of misses) {
      const R = C.decode((pubnonces[i] as Uint8Array).subarray(33 * j, 33 * (j + 1)));
      if (R === null) throw blame(i); // cached nonces decoded fine before, so the order holds
      (out[i] as [Pt, Pt])[j] = R;
    }
  }
  for (const i of misses) E.nonces.set(hexes[i] as string, out[i] as [Pt, Pt]);
  return out;
}

/** cbytes_ext. */
function encodeExt(E: Engine, P: Pt): Uint8Array {
  return E.curve.isInf(P) ? new Uint8Array(33) : E.curve.encode(P);
}

/** cpoint_ext: 33 zero bytes decode to infinity. */
export function decodeExt(E: Engine, c: Uint8Array): Pt | null {
  if (c.length === 33 && c.every((b) => b === 0)) return E.curve.INF;
  return E.curve.decode(c);
}

/** Sum decoded nonce pairs: the aggregate points and their cbytes_ext encoding. */
export function aggregateNoncePoints(E: Engine, points: readonly (readonly [Pt, Pt])[]): { aggnonce: Uint8Array; R1: Pt; R2: Pt } {
  const C = E.curve;
  let R1 = C.INF;
  let R2 = C.INF;
  for (const [a, b] of points) {
    R1 = C.add(R1, a);
    R2 = C.add(R2, b);
  }
  [R1, R2] = C.normalize([R1, R2]) as [Pt, Pt]; // one inversion for both encodings
  return { aggnonce: concat(encodeExt(E, R1), encodeExt(E, R2)), R1, R2 };
}

/**
 * Whether `aggnonce` is 66 bytes whose halves both decode by cpoint_ext, as Sign will require:
 * lets a caller refuse a bad aggnonce before it spends a secret nonce on it.
 */
export function isValidAggnonce(E: Engine, aggnonce: Uint8Array): boolean {
  return aggnonce.length === 66 && decodeExt(E, aggnonce.subarray(0, 33)) !== null && decodeExt(E, aggnonce.subarray(33, 66)) !== null;
}

/** NonceAgg(pubnonce_1..u): the 66-byte aggregate nonce. */
export function nonceAgg(E: Engine, pubnonces: readonly Uint8Array[]): Uint8Array {
  checkByteList(pubnonces, 'pubnonces', 66, 1);
  const points = decodePubnonces(E, pubnonces, (i) => new InvalidContributionError(i, 'pubnonce', 'not a valid pair of compressed points'));
  return aggregateNoncePoints(E, points).aggnonce;
}
