// The Aggregator service: stateless public BIP327 arithmetic. Each handler checks shapes here
// (cheap), runs the curve arithmetic in `compute` (the compute pool's worker threads, so the
// event loop stays free for I/O), and encodes; the core's own errors come back as the same
// classes and map to statuses in errors.ts. KeySort is a byte sort and stays on this thread.
// Each handler passes the call's identity (`caller`, from rpc.ts unary) to `compute` for the
// per-client compute quota.
import { keySort } from '../musig2/index.js';
import type * as pb from '../protocol/contract.js';
import type { ComputePool } from '../signer/index.js';
import type { RequestLimits } from './validate.js';
import {
  boundedBytes,
  bytesList,
  fixedBytes,
  index,
  PSIG_BYTES,
  PUBKEY_BYTES,
  PUBNONCE_BYTES,
  sameLength,
  tweakList,
} from './validate.js';

const buf = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);

/** Where the Aggregator's arithmetic runs: the pool's public operations, each with a trailing `caller`. */
export type AggregatorCompute = Pick<ComputePool, 'keyAgg' | 'nonceAgg' | 'partialSigVerify' | 'partialSigAgg'>;

export interface AggregatorHandlers {
  keySort(req: pb.KeySortRequest): Promise<pb.KeySortResponse>;
  keyAgg(req: pb.KeyAggRequest, caller?: string): Promise<pb.KeyAggResponse>;
  nonceAgg(req: pb.NonceAggRequest, caller?: string): Promise<pb.NonceAggResponse>;
  partialSigVerify(req: pb.PartialSigVerifyRequest, caller?: string): Promise<pb.PartialSigVerifyResponse>;
  partialSigAgg(req: pb.PartialSigAggRequest, caller?: string): Promise<pb.PartialSigAggResponse>;
}

export function aggregatorHandlers(limits: RequestLimits, compute: AggregatorCompute): AggregatorHandlers {
  const pubkeysOf = (value: unknown) => bytesList(value, 'pubkeys', PUBKEY_BYTES, limits.maxSigners);
  const tweaksOf = (value: unknown) => tweakList(value, 'tweaks', limits.maxTweaks);
  const messageOf = (value: unknown) => boundedBytes(value, 'message', limits.maxMessageBytes);

  return {
    async keySort(req) {
      return { pubkeys: keySort(pubkeysOf(req.pubkeys)).map(buf) };
    },

    async keyAgg(req, caller) {
      const { xonly, plain } = await compute.keyAgg(pubkeysOf(req.pubkeys), tweaksOf(req.tweaks), caller);
      return { aggregatePubkeyXonly: buf(xonly), aggregatePubkey: buf(plain) };
    },

    async nonceAgg(req, caller) {
      const pubnonces = bytesList(req.pubnonces, 'pubnonces', PUBNONCE_BYTES, limits.maxSigners);
      return { aggnonce: buf(await compute.nonceAgg(pubnonces, caller)) };
    },

    async partialSigVerify(req, caller) {
      const psig = fixedBytes(req.partialSig, 'partial_sig', PSIG_BYTES);
      const pubnonces = bytesList(req.pubnonces, 'pubnonces', PUBNONCE_BYTES, limits.maxSigners);
      const pubkeys = pubkeysOf(req.pubkeys);
      sameLength(pubnonces, 'pubnonces', pubkeys, 'pubkeys');
      const tweaks = tweaksOf(req.tweaks);
      const msg = messageOf(req.message);
      const i = index(req.signerIndex, 'signer_index', pubkeys.length);
      return { valid: await compute.partialSigVerify(psig, pubnonces, pubkeys, tweaks, msg, i, caller) };
    },

    async partialSigAgg(req, caller) {
      const psigs = bytesList(req.partialSigs, 'partial_sigs', PSIG_BYTES, limits.maxSigners);
      const aggnonce = fixedBytes(req.aggnonce, 'aggnonce', PUBNONCE_BYTES);
      const pubkeys = pubkeysOf(req.pubkeys);
      sameLength(pubkeys, 'pubkeys', psigs, 'partial_sigs');
      const tweaks = tweaksOf(req.tweaks);
      const msg = messageOf(req.message);
      return { signature: buf(await compute.partialSigAgg(psigs, { aggnonce, pubkeys, tweaks, msg }, caller)) };
    },
  };
}
