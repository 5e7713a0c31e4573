// Loads the musig2.signer.v1 contract with one set of proto-loader options, shared by the
// client SDK and the server so both sides see the same JavaScript shapes:
// - camelCase field names (keyCase false);
// - bytes as Buffer (a Uint8Array subclass);
// - int64 as number (the only int64 is a Unix time in ms, far below 2^53);
// - defaults filled in for absent scalar and repeated fields, so a missing field reads as empty;
// - proto3 `optional` fields stay undefined when absent (proto-loader models them as a
//   synthetic oneof), so an absent `rand` differs from 32 zero bytes.
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import type { PackageDefinition } from '@grpc/proto-loader';

export const PACKAGE = 'musig2.signer.v1';
export const SIGNER_SERVICE = `${PACKAGE}.Signer`;
export const AGGREGATOR_SERVICE = `${PACKAGE}.Aggregator`;

/** Absolute path of the contract; `src/` and the compiled `dist/` both sit one level below the root. */
export const PROTO_PATH = fileURLToPath(new URL('../../proto/musig2/signer/v1/signer.proto', import.meta.url));

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
};

let cached: PackageDefinition | undefined;

export function loadPackageDefinition(): PackageDefinition {
  cached ??= protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS);
  return cached;
}

// The JavaScript shapes of the messages, as produced by the options above.

export interface TweakMsg {
  tweak: Buffer;
  xonly: boolean;
}

export interface KeyMsg {
  keyId: string;
  publicKey: Buffer;
}

export interface ListKeysResponse {
  keys: KeyMsg[];
}

export interface NonceGenRequest {
  keyId: string;
  pubkeys: Buffer[];
  tweaks: TweakMsg[];
  message?: Buffer;
  extraIn: Buffer;
}

export interface NonceGenResponse {
  sessionId: Buffer;
  pubnonce: Buffer;
  expiresAtUnixMs: number;
}

export interface SignRequest {
  sessionId: Buffer;
  aggnonce: Buffer;
  pubkeys: Buffer[];
  tweaks: TweakMsg[];
  message: Buffer;
}

export interface SignResponse {
  partialSig: Buffer;
  pubnonce: Buffer;
}

export interface DeterministicSignRequest {
  keyId: string;
  aggothernonce: Buffer;
  pubkeys: Buffer[];
  tweaks: TweakMsg[];
  message: Buffer;
  rand?: Buffer;
}

export interface DeterministicSignResponse {
  pubnonce: Buffer;
  partialSig: Buffer;
}

export interface KeySortRequest {
  pubkeys: Buffer[];
}

export interface KeySortResponse {
  pubkeys: Buffer[];
}

export interface KeyAggRequest {
  pubkeys: Buffer[];
  tweaks: TweakMsg[];
}

export interface KeyAggResponse {
  aggregatePubkeyXonly: Buffer;
  aggregatePubkey: Buffer;
}

export interface NonceAggRequest {
  pubnonces: Buffer[];
}

export interface NonceAggResponse {
  aggnonce: Buffer;
}

export interface PartialSigVerifyRequest {
  partialSig: Buffer;
  pubnonces: Buffer[];
  pubkeys: Buffer[];
  tweaks: TweakMsg[];
  message: Buffer;
  signerIndex: number;
}

export interface PartialSigVerifyResponse {
  valid: boolean;
}

export interface PartialSigAggRequest {
  partialSigs: Buffer[];
  aggnonce: Buffer;
  pubkeys: Buffer[];
  tweaks: TweakMsg[];
  message: Buffer;
}

export interface PartialSigAggResponse {
  signature: Buffer;
}

export interface PsbtNonceGenRequest {
  keyId: string;
  psbt: Buffer;
}

export interface PsbtNonceGenResponse {
  sessionId: Buffer;
  psbt: Buffer;
  expiresAtUnixMs: number;
  inputs: number[];
}

export interface PsbtSignRequest {
  sessionId: Buffer;
  psbt: Buffer;
}

export interface PsbtSignResponse {
  psbt: Buffer;
  inputs: number[];
}

export interface PsbtDeterministicSignRequest {
  keyId: string;
  psbt: Buffer;
}

export interface PsbtDeterministicSignResponse {
  psbt: Buffer;
  inputs: number[];
}

export interface PsbtCombineRequest {
  psbts: Buffer[];
}

export interface PsbtCombineResponse {
  psbt: Buffer;
}

export interface PsbtFinalizeRequest {
  psbt: Buffer;
}

export interface PsbtFinalizeResponse {
  psbt: Buffer;
  rawTx: Buffer;
  finalized: number[];
}
