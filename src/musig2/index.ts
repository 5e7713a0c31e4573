/**
 * MuSig2 (BIP327 v1.0.4) over Uint8Array: pure functions, no I/O. This is the only module in
 * the project that does curve arithmetic.
 *
 * The arithmetic runs on one of two backends (backend.ts): `native` (libsecp256k1 through the
 * addon in native/) or `noble` (pure JavaScript). The functions exported here run on the
 * active backend: `selectBackend` picks it (the daemon does so once at start, from
 * --curve-backend); until then it is `auto`, native if the addon loads and noble otherwise.
 * `musig2For(name)` gives the same functions on a given backend (tests cross-check the two).
 */
import type { BackendName, CurveBackend } from './backend.js';
import { warmUp as warmUpNoble } from './curve.js';
import { newEngine } from './engine.js';
import type { Engine } from './engine.js';
import { Musig2Error } from './errors.js';
import * as K from './keyagg.js';
import type { KeyAggContext, Tweak } from './keyagg.js';
import { loadAddon, nativeBackend } from './native.js';
import { nobleBackend } from './noble-backend.js';
import * as NG from './nonce.js';
import type { NonceGenInput, NonceGenOutput } from './nonce.js';
import * as S from './sign.js';
import type { SessionContext } from './sign.js';

export { Musig2Error, InvalidContributionError, InvalidInputError } from './errors.js';
export type { Contribution } from './errors.js';
export { keySort } from './keyagg.js';
export type { Tweak, KeyAggContext } from './keyagg.js';
export type { NonceGenInput, NonceGenOutput } from './nonce.js';
export type { SessionContext } from './sign.js';
export type { BackendName } from './backend.js';

/** What the configuration may ask for. */
export type BackendChoice = BackendName | 'auto';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'native', 'noble'];

/** The BIP327 functions on one backend. */
export interface Musig2 {
  readonly backend: BackendName;
  individualPubkey(sk: Uint8Array): Uint8Array;
  keySort(pubkeys: readonly Uint8Array[]): Uint8Array[];
  keyAgg(pubkeys: readonly Uint8Array[]): KeyAggContext;
  applyTweak(ctx: KeyAggContext, tweak: Uint8Array, isXonly: boolean): KeyAggContext;
  keyAggAndTweak(pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[]): KeyAggContext;
  getXonlyPk(ctx: KeyAggContext): Uint8Array;
  getPlainPk(ctx: KeyAggContext): Uint8Array;
  nonceGen(input: NonceGenInput): NonceGenOutput;
  nonceAgg(pubnonces: readonly Uint8Array[]): Uint8Array;
  isValidAggnonce(aggnonce: Uint8Array): boolean;
  sign(secnonce: Uint8Array, sk: Uint8Array, ctx: SessionContext): Uint8Array;
  deterministicSign(
    sk: Uint8Array, aggothernonce: Uint8Array, pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[],
    msg: Uint8Array, rand?: Uint8Array,
  ): { pubnonce: Uint8Array; psig: Uint8Array };
  partialSigVerify(
    psig: Uint8Array, pubnonces: readonly Uint8Array[], pubkeys: readonly Uint8Array[],
    tweaks: readonly Tweak[], msg: Uint8Array, i: number,
  ): boolean;
  partialSigAgg(psigs: readonly Uint8Array[], ctx: SessionContext): Uint8Array;
  /** Build what the first call would (noble's G tables, a few hundred ms), e.g. at start-up. */
  warmUp(): void;
}

function bind(E: Engine): Musig2 {
  return Object.freeze({
    backend: E.curve.name,
    individualPubkey: (sk: Uint8Array) => K.individualPubkey(E, sk),
    keySort: K.keySort,
    keyAgg: (pubkeys: readonly Uint8Array[]) => K.keyAgg(E, pubkeys),
    applyTweak: (ctx: KeyAggContext, tweak: Uint8Array, isXonly: boolean) => K.applyTweak(E, ctx, tweak, isXonly),
    keyAggAndTweak: (pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[]) => K.keyAggAndTweak(E, pubkeys, tweaks),
    getXonlyPk: (ctx: KeyAggContext) => K.getXonlyPk(E, ctx),
    getPlainPk: (ctx: KeyAggContext) => K.getPlainPk(E, ctx),
    nonceGen: (input: NonceGenInput) => NG.nonceGen(E, input),
    nonceAgg: (pubnonces: readonly Uint8Array[]) => NG.nonceAgg(E, pubnonces),
    isValidAggnonce: (aggnonce: Uint8Array) => NG.isValidAggnonce(E, aggnonce),
    sign: (secnonce: Uint8Array, sk: Uint8Array, ctx: SessionContext) => S.sign(E, secnonce, sk, ctx),
    deterministicSign: (sk: Uint8Array, aggothernonce: Uint8Array, pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[], msg: Uint8Array, rand?: Uint8Array) =>
      S.deterministicSign(E, sk, aggothernonce, pubkeys, tweaks, msg, rand),
    partialSigVerify: (psig: Uint8Array, pubnonces: readonly Uint8Array[], pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[], msg: Uint8Array, i: number) =>
      S.partialSigVerify(E, psig, pubnonces, pubkeys, tweaks, msg, i),
    partialSigAgg: (psigs: readonly Uint8Array[], ctx: SessionContext) => S.partialSigAgg(E, psigs, ctx),
    warmUp: () => {
      if (E.curve.name === 'noble') warmUpNoble();
    },
  });
}

const instances = new Map<BackendName, Musig2>();

/** Whether the native backend can run here, and if not, why. */
export function nativeStatus(): { available: true } | { available: false; reason: string } {
  const r = loadAddon();
  return 'addon' in r ? { available: true } : { available: false, reason: r.error };
}

/** The BIP327 functions on `name`; throws a Musig2Error if that is native and the addon does not load. */
export function musig2For(name: BackendName): Musig2 {
  let m = instances.get(name);
  if (m === undefined) {
    let curve: CurveBackend;
    if (name === 'noble') {
      curve = nobleBackend;
    } else if (name === 'native') {
      const r = loadAddon();
      if (!('addon' in r)) throw new Musig2Error(r.error);
      curve = nativeBackend(r.addon);
    } else {
      throw new Musig2Error(`unknown curve backend ${String(name)}`);
    }
    m = bind(newEngine(curve));
    instances.set(name, m);
  }
  return m;
}

let active: Musig2 | undefined;

/**
 * Makes `choice` the backend of the exported functions and returns the one chosen: `native`
 * fails (a Musig2Error saying why) if the addon does not load; `auto` takes native when it
 * loads and noble otherwise, with the reason native was not taken.
 */
export function selectBackend(choice: BackendChoice): { backend: BackendName; reason?: string } {
  if (choice === 'auto') {
    const st = nativeStatus();
    active = musig2For(st.available ? 'native' : 'noble');
    return st.available ? { backend: 'native' } : { backend: 'noble', reason: st.reason };
  }
  active = musig2For(choice);
  return { backend: choice };
}

/** The backend the exported functions run on (resolving `auto` on first use). */
export function activeBackend(): BackendName {
  return current().backend;
}

function current(): Musig2 {
  if (active === undefined) selectBackend('auto');
  return active as Musig2;
}

export const individualPubkey: Musig2['individualPubkey'] = (sk) => current().individualPubkey(sk);
export const keyAgg: Musig2['keyAgg'] = (pubkeys) => current().keyAgg(pubkeys);
export const applyTweak: Musig2['applyTweak'] = (ctx, tweak, isXonly) => current().applyTweak(ctx, tweak, isXonly);
export const keyAggAndTweak: Musig2['keyAggAndTweak'] = (pubkeys, tweaks) => current().keyAggAndTweak(pubkeys, tweaks);
export const getXonlyPk: Musig2['getXonlyPk'] = (ctx) => current().getXonlyPk(ctx);
export const getPlainPk: Musig2['getPlainPk'] = (ctx) => current().getPlainPk(ctx);
export const nonceGen: Musig2['nonceGen'] = (input) => current().nonceGen(input);
export const nonceAgg: Musig2['nonceAgg'] = (pubnonces) => current().nonceAgg(pubnonces);
export const isValidAggnonce: Musig2['isValidAggnonce'] = (aggnonce) => current().isValidAggnonce(aggnonce);
export const sign: Musig2['sign'] = (secnonce, sk, ctx) => current().sign(secnonce, sk, ctx);
export const deterministicSign: Musig2['deterministicSign'] = (sk, aggothernonce, pubkeys, tweaks, msg, rand) =>
  current().deterministicSign(sk, aggothernonce, pubkeys, tweaks, msg, rand);
export const partialSigVerify: Musig2['partialSigVerify'] = (psig, pubnonces, pubkeys, tweaks, msg, i) =>
  current().partialSigVerify(psig, pubnonces, pubkeys, tweaks, msg, i);
export const partialSigAgg: Musig2['partialSigAgg'] = (psigs, ctx) => current().partialSigAgg(psigs, ctx);
/** Warm up the active backend (see Musig2.warmUp). */
export const warmUp = (): void => current().warmUp();
