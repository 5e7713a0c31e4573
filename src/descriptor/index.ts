/**
 * Descriptors for MuSig2 Taproot wallets (BIP386 tr()/rawtr(), BIP390 musig(), BIP380
 * checksums, BIP328 derivation below an aggregate) and the BIP373 Updater. Pure, no I/O.
 */
export {
  DescriptorError, parseDescriptor, deriveAt, addressOf, deriveAddress, matchOutputScript, buildTaproot,
} from './descriptor.js';
export type {
  Descriptor, DerivePosition, DerivedKey, DerivedLeaf, DerivedOutput, KeyExpr, KeyOrigin, MusigKeyInfo, Network, PathStep, TreeExpr,
  ScriptTree, TaprootLeaf, TaprootOutput,
} from './descriptor.js';
export { descriptorChecksum, addChecksum } from './checksum.js';
export {
  BIP328_CHAINCODE, Bip328Error, deriveFromAggregate, deriveMusig, deriveUnhardened, keyFingerprint, syntheticHdKey, syntheticXpub,
} from './bip328.js';
export type { Derivation } from './bip328.js';
export { updatePsbtFromDescriptor, inputFieldsFor, outputFieldsFor } from './update.js';
export type { UpdateResult } from './update.js';
