// The Signer service adapter: pass the decoded request to SignerService and encode its answer.
// SignerService validates every field itself (naming the proto field on failure), and owns
// policy, sessions and the ledger; nothing here duplicates it. Each signing handler passes the
// call's identity (`caller`, from rpc.ts unary) on for the signer's per-client quotas.
import type * as pb from '../protocol/contract.js';
import type { SignerService } from '../signer/index.js';

const buf = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);

/** The part of SignerService the gRPC layer uses. */
export type SignerBackend = Pick<SignerService, 'listKeys' | 'nonceGen' | 'sign' | 'deterministicSign'>;

export interface SignerHandlers {
  listKeys(req: Record<string, never>): Promise<pb.ListKeysResponse>;
  nonceGen(req: pb.NonceGenRequest, caller?: string): Promise<pb.NonceGenResponse>;
  sign(req: pb.SignRequest, caller?: string): Promise<pb.SignResponse>;
  deterministicSign(req: pb.DeterministicSignRequest, caller?: string): Promise<pb.DeterministicSignResponse>;
}

/** proto3 `optional` fields decode as undefined when absent; an empty value is present. */
const optional = (value: Buffer | null | undefined): Buffer | undefined => value ?? undefined;

/** The hash (hex) of the signing policy in force, or undefined without one (it may change on SIGHUP). */
export type PolicyHashSource = () => string | undefined;

export function signerHandlers(signer: SignerBackend, policyHash?: PolicyHashSource): SignerHandlers {
  return {
    async listKeys() {
      const keys = await signer.listKeys();
      return { keys: keys.map((k) => ({ keyId: k.keyId, publicKey: buf(k.publicKey) })), policyHash: policyHash?.() ?? '' };
    },

    async nonceGen(req, caller) {
      const res = await signer.nonceGen(
        {
          keyId: req.keyId,
          pubkeys: req.pubkeys,
          tweaks: req.tweaks,
          message: optional(req.message),
          extraIn: req.extraIn,
        },
        caller,
      );
      return { sessionId: buf(res.sessionId), pubnonce: buf(res.pubnonce), expiresAtUnixMs: res.expiresAtUnixMs };
    },

    async sign(req, caller) {
      const res = await signer.sign(
        {
          sessionId: req.sessionId,
          aggnonce: req.aggnonce,
          pubkeys: req.pubkeys,
          tweaks: req.tweaks,
          message: req.message,
        },
        caller,
      );
      return { partialSig: buf(res.partialSig), pubnonce: buf(res.pubnonce) };
    },

    async deterministicSign(req, caller) {
      const res = await signer.deterministicSign(
        {
          keyId: req.keyId,
          aggothernonce: req.aggothernonce,
          pubkeys: req.pubkeys,
          tweaks: req.tweaks,
          message: req.message,
          // 32 zero bytes are a present rand, distinct from an absent one.
          rand: optional(req.rand),
        },
        caller,
      );
      return { pubnonce: buf(res.pubnonce), partialSig: buf(res.partialSig) };
    },
  };
}
