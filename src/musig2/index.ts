/**
 * MuSig2 (BIP327 v1.0.4) over Uint8Array: pure functions, no I/O. This is the only module in
 * the project that does curve arithmetic.
 */
export { Musig2Error, InvalidContributionError, InvalidInputError } from './errors.js';
export type { Contribution } from './errors.js';
export {
  individualPubkey, keySort, keyAgg, applyTweak, keyAggAndTweak, getXonlyPk, getPlainPk,
} from './keyagg.js';
export type { Tweak, KeyAggContext } from './keyagg.js';
export { nonceGen, nonceAgg, isValidAggnonce } from './nonce.js';
export type { NonceGenInput, NonceGenOutput } from './nonce.js';
export { sign, deterministicSign, partialSigVerify, partialSigAgg } from './sign.js';
export type { SessionContext } from './sign.js';
export { warmUp } from './curve.js';
