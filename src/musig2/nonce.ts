/**
 * BIP327 NonceGen and NonceAgg.
 */
import { randomBytes } from '@noble/hashes/utils.js';
import {
  N, Point, bytes32, cbytes, cbytesExt, checkByteList, checkBytes, concat, copyBytes, cpoint, cpointExt, normalizePoints, toHex, toInt, uintBytes,
} from './encoding.js';
import { hashAux, hashNonce } from './hash.js';
import { mulBaseSecret } from './curve.js';
import { InvalidContributionError, InvalidInputError } from './errors.js';
import { LruCache } from './lru.js';

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

/** Secret nonce pair from a NonceGen-style derivation, with its public points. */
export interface NoncePair {
  k1: bigint;
  k2: bigint;
  R1: Point;
  R2: Point;
}

/** k1·G, k2·G (constant time) for a pair of nonces in [1, n). */
export function noncePoints(k1: bigint, k2: bigint): NoncePair {
  return { k1, k2, R1: mulBaseSecret(k1), R2: mulBaseSecret(k2) };
}

/** pubnonce = cbytes(R1) || cbytes(R2). */
export function encodePubnonce(pair: NoncePair): Uint8Array {
  return concat(cbytes(pair.R1), cbytes(pair.R2));
}

/** secnonce = bytes(32, k1) || bytes(32, k2) || pk. */
export function encodeSecnonce(k1: bigint, k2: bigint, pk: Uint8Array): Uint8Array {
  const out = new Uint8Array(97);
  const b1 = bytes32(k1);
  const b2 = bytes32(k2);
  try {
    out.set(b1, 0);
    out.set(b2, 32);
    out.set(pk, 64);
  } finally {
    b1.fill(0);
    b2.fill(0);
  }
  return out;
}

/** NonceGen(sk, pk, aggpk, m, extra_in) with rand' from the CSPRNG unless injected. */
export function nonceGen(input: NonceGenInput): NonceGenOutput {
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
    const k1 = toInt(h1) % N;
    const k2 = toInt(h2) % N;
    if (k1 === 0n || k2 === 0n) throw new InvalidInputError('nonce derivation produced k = 0; retry');
    const pair = noncePoints(k1, k2);
    return { secnonce: encodeSecnonce(k1, k2, pk), pubnonce: encodePubnonce(pair) };
  } finally {
    for (const buf of secrets) buf.fill(0);
  }
}

// Decoded pubnonces, so a coordinator verifying every signer of a session decodes each once.
const decodedNonces = new LruCache<string, readonly [Point, Point]>(1024);

/**
 * Decode pubnonces in BIP327 order (first halves of all nonces, then second halves), blaming
 * the first undecodable one. Returns the points as [R_i1, R_i2] per signer.
 */
export function decodePubnonces(pubnonces: readonly Uint8Array[], blame: (i: number) => InvalidContributionError): [Point, Point][] {
  const hexes = pubnonces.map(toHex);
  const misses: number[] = [];
  const out = hexes.map((h, i): [Point, Point] => {
    const hit = decodedNonces.get(h);
    if (hit !== undefined) return [hit[0], hit[1]];
    misses.push(i);
    return [Point.ZERO, Point.ZERO];
  });
  for (let j = 0; j < 2; j++) {
    for (const i of misses) {
      const R = cpoint((pubnonces[i] as Uint8Array).subarray(33 * j, 33 * (j + 1)));
      if (R === null) throw blame(i); // cached nonces decoded fine before, so the order holds
      (out[i] as [Point, Point])[j] = R;
    }
  }
  for (const i of misses) decodedNonces.set(hexes[i] as string, out[i] as [Point, Point]);
  return out;
}

/** Sum decoded nonce pairs: the aggregate points and their cbytes_ext encoding. */
export function aggregateNoncePoints(points: readonly (readonly [Point, Point])[]): { aggnonce: Uint8Array; R1: Point; R2: Point } {
  let R1 = Point.ZERO;
  let R2 = Point.ZERO;
  for (const [a, b] of points) {
    R1 = R1.add(a);
    R2 = R2.add(b);
  }
  [R1, R2] = normalizePoints([R1, R2]) as [Point, Point]; // one inversion for both encodings
  return { aggnonce: concat(cbytesExt(R1), cbytesExt(R2)), R1, R2 };
}

/** NonceAgg(pubnonce_1..u): the 66-byte aggregate nonce. */
/**
 * Whether `aggnonce` is 66 bytes whose halves both decode by cpoint_ext, as Sign will require:
 * lets a caller refuse a bad aggnonce before it spends a secret nonce on it.
 */
export function isValidAggnonce(aggnonce: Uint8Array): boolean {
  return aggnonce.length === 66 && cpointExt(aggnonce.subarray(0, 33)) !== null && cpointExt(aggnonce.subarray(33, 66)) !== null;
}

export function nonceAgg(pubnonces: readonly Uint8Array[]): Uint8Array {
  checkByteList(pubnonces, 'pubnonces', 66, 1);
  const points = decodePubnonces(pubnonces, (i) => new InvalidContributionError(i, 'pubnonce', 'not a valid pair of compressed points'));
  return aggregateNoncePoints(points).aggnonce;
}
