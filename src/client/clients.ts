// Typed, Promise-based clients for the Signer and Aggregator services (Uint8Array in and out),
// plus the standard health check. Each client owns one channel: round 2 of a session must use
// the same client object as round 1, so it reaches the daemon that holds the session.
import { credentials as grpcCredentials, makeClientConstructor, Metadata } from '@grpc/grpc-js';
import type { ChannelCredentials, Client, ClientOptions as ClientOptionsGrpc, ServiceDefinition, ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { ClientError } from './errors.js';
import type * as pb from '../protocol/contract.js';
import { AGGREGATOR_SERVICE, loadPackageDefinition, SIGNER_SERVICE } from '../protocol/contract.js';

export interface Tweak {
  tweak: Uint8Array;
  xonly: boolean;
}

export interface ClientOptions {
  /** Channel credentials; plaintext when absent (fine for loopback, which the daemon enforces). */
  credentials?: ChannelCredentials;
  /** Per-call deadline in milliseconds (default 30 s). */
  deadlineMs?: number;
}

type Callback<Res> = (err: ServiceError | null, res?: Res) => void;
type UnaryMethod = (
  req: unknown,
  metadata: Metadata,
  options: { deadline: number; waitForReady?: boolean },
  cb: Callback<unknown>,
) => void;

export interface CallOptions {
  /** Wait for the connection to become ready (up to the deadline) instead of failing fast. */
  waitForReady?: boolean;
}

const toBuffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
const toBytes = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.length);
const encodeTweaks = (tweaks: readonly Tweak[]): pb.TweakMsg[] => tweaks.map((t) => ({ tweak: toBuffer(t.tweak), xonly: t.xonly }));

type ClientConstructor = new (address: string, creds: ChannelCredentials, options?: ClientOptionsGrpc) => Client;
const constructors = new Map<string, ClientConstructor>();
function constructorFor(serviceName: string): ClientConstructor {
  let ctor = constructors.get(serviceName);
  if (!ctor) {
    const definition =
      serviceName === 'grpc.health.v1.Health'
        ? (healthService as unknown as ServiceDefinition)
        : (loadPackageDefinition()[serviceName] as ServiceDefinition);
    ctor = makeClientConstructor(definition, serviceName);
    constructors.set(serviceName, ctor);
  }
  return ctor;
}

abstract class BaseClient {
  protected readonly client: Client;
  private readonly deadlineMs: number;
  private healthClient: Client | undefined;

  constructor(
    serviceName: string,
    /** HOST:PORT of the daemon. */
    readonly endpoint: string,
    options: ClientOptions = {},
  ) {
    const Ctor = constructorFor(serviceName);
    this.client = new Ctor(endpoint, options.credentials ?? grpcCredentials.createInsecure());
    this.deadlineMs = options.deadlineMs ?? 30_000;
  }

  protected call<Res>(method: string, request: unknown, options: CallOptions = {}, client: Client = this.client): Promise<Res> {
    const fn = (client as unknown as Record<string, UnaryMethod>)[method]!;
    const callOptions = { deadline: Date.now() + this.deadlineMs, waitForReady: options.waitForReady === true };
    return new Promise<Res>((resolve, reject) => {
      fn.call(client, request, new Metadata(), callOptions, (err, res) => {
        if (err) reject(ClientError.fromServiceError(method, err));
        else resolve(res as Res);
      });
    });
  }

  /** grpc.health.v1 Check on this client's own channel: 'SERVING', 'NOT_SERVING', ... */
  async health(service = ''): Promise<string> {
    this.healthClient ??= new (constructorFor('grpc.health.v1.Health'))(this.endpoint, grpcCredentials.createInsecure(), {
      channelOverride: this.client.getChannel(),
    });
    const res = await this.call<{ status: string }>('check', { service }, {}, this.healthClient);
    return res.status;
  }

  close(): void {
    this.healthClient?.close();
    this.client.close();
  }
}

export interface KeyInfo {
  keyId: string;
  publicKey: Uint8Array;
}

export interface NonceGenParams {
  keyId: string;
  pubkeys: readonly Uint8Array[];
  tweaks?: readonly Tweak[];
  /** The message if known; undefined means absent (an empty array is an empty message). */
  message?: Uint8Array;
  extraIn?: Uint8Array;
}

export interface NonceGenResult {
  sessionId: Uint8Array;
  pubnonce: Uint8Array;
  expiresAtUnixMs: number;
}

export interface SignParams {
  sessionId: Uint8Array;
  aggnonce: Uint8Array;
  pubkeys: readonly Uint8Array[];
  tweaks?: readonly Tweak[];
  message: Uint8Array;
}

export interface SignResult {
  partialSig: Uint8Array;
  pubnonce: Uint8Array;
}

export interface DeterministicSignParams {
  keyId: string;
  aggothernonce: Uint8Array;
  pubkeys: readonly Uint8Array[];
  tweaks?: readonly Tweak[];
  message: Uint8Array;
  /** Optional 32 bytes; 32 zero bytes are a present value, distinct from undefined. */
  rand?: Uint8Array;
}

export interface DeterministicSignResult {
  pubnonce: Uint8Array;
  partialSig: Uint8Array;
}

export class SignerClient extends BaseClient {
  constructor(endpoint: string, options: ClientOptions = {}) {
    super(SIGNER_SERVICE, endpoint, options);
  }

  async listKeys(): Promise<KeyInfo[]> {
    const res = await this.call<pb.ListKeysResponse>('listKeys', {});
    return res.keys.map((k) => ({ keyId: k.keyId, publicKey: toBytes(k.publicKey) }));
  }

  async nonceGen(p: NonceGenParams): Promise<NonceGenResult> {
    const req: Partial<pb.NonceGenRequest> = {
      keyId: p.keyId,
      pubkeys: p.pubkeys.map(toBuffer),
      tweaks: encodeTweaks(p.tweaks ?? []),
      extraIn: toBuffer(p.extraIn ?? new Uint8Array(0)),
    };
    if (p.message !== undefined) req.message = toBuffer(p.message);
    const res = await this.call<pb.NonceGenResponse>('nonceGen', req);
    return { sessionId: toBytes(res.sessionId), pubnonce: toBytes(res.pubnonce), expiresAtUnixMs: Number(res.expiresAtUnixMs) };
  }

  async sign(p: SignParams, options?: CallOptions): Promise<SignResult> {
    const req: pb.SignRequest = {
      sessionId: toBuffer(p.sessionId),
      aggnonce: toBuffer(p.aggnonce),
      pubkeys: p.pubkeys.map(toBuffer),
      tweaks: encodeTweaks(p.tweaks ?? []),
      message: toBuffer(p.message),
    };
    const res = await this.call<pb.SignResponse>('sign', req, options);
    return { partialSig: toBytes(res.partialSig), pubnonce: toBytes(res.pubnonce) };
  }

  async deterministicSign(p: DeterministicSignParams): Promise<DeterministicSignResult> {
    const req: pb.DeterministicSignRequest = {
      keyId: p.keyId,
      aggothernonce: toBuffer(p.aggothernonce),
      pubkeys: p.pubkeys.map(toBuffer),
      tweaks: encodeTweaks(p.tweaks ?? []),
      message: toBuffer(p.message),
    };
    if (p.rand !== undefined) req.rand = toBuffer(p.rand);
    const res = await this.call<pb.DeterministicSignResponse>('deterministicSign', req);
    return { pubnonce: toBytes(res.pubnonce), partialSig: toBytes(res.partialSig) };
  }

  /** Round 1 on a PSBT: this key's 0x1b per input it takes part in, in a minimal PSBT. */
  async psbtNonceGen(p: { keyId: string; psbt: Uint8Array }): Promise<PsbtNonceGenResult> {
    const res = await this.call<pb.PsbtNonceGenResponse>('psbtNonceGen', { keyId: p.keyId, psbt: toBuffer(p.psbt) } satisfies pb.PsbtNonceGenRequest);
    return { sessionId: toBytes(res.sessionId), psbt: toBytes(res.psbt), expiresAtUnixMs: Number(res.expiresAtUnixMs), inputs: res.inputs };
  }

  /** Round 2 on a PSBT carrying every participant's 0x1b: this key's 0x1c per input. */
  async psbtSign(p: { sessionId: Uint8Array; psbt: Uint8Array }, options?: CallOptions): Promise<PsbtSignResult> {
    const res = await this.call<pb.PsbtSignResponse>('psbtSign', { sessionId: toBuffer(p.sessionId), psbt: toBuffer(p.psbt) } satisfies pb.PsbtSignRequest, options);
    return { psbt: toBytes(res.psbt), inputs: res.inputs };
  }

  /** The final signer on a PSBT carrying every other participant's 0x1b: its own 0x1b and 0x1c. */
  async psbtDeterministicSign(p: { keyId: string; psbt: Uint8Array }): Promise<PsbtSignResult> {
    const res = await this.call<pb.PsbtDeterministicSignResponse>('psbtDeterministicSign', {
      keyId: p.keyId,
      psbt: toBuffer(p.psbt),
    } satisfies pb.PsbtDeterministicSignRequest);
    return { psbt: toBytes(res.psbt), inputs: res.inputs };
  }

  /** Sends an arbitrary request object as-is (for testing the daemon's input handling). */
  raw<Res = unknown>(
    method: 'listKeys' | 'nonceGen' | 'sign' | 'deterministicSign' | 'psbtNonceGen' | 'psbtSign' | 'psbtDeterministicSign',
    request: unknown,
  ): Promise<Res> {
    return this.call<Res>(method, request);
  }
}

export interface PsbtNonceGenResult {
  sessionId: Uint8Array;
  /** Minimal PSBT with this key's public nonces. */
  psbt: Uint8Array;
  expiresAtUnixMs: number;
  /** Inputs the key takes part in. */
  inputs: number[];
}

export interface PsbtSignResult {
  /** Minimal PSBT with what the signer added. */
  psbt: Uint8Array;
  inputs: number[];
}

export interface PsbtFinalizeResult {
  psbt: Uint8Array;
  /** The signed transaction, or undefined while some input is not final. */
  rawTx: Uint8Array | undefined;
  finalized: number[];
}

export interface KeyAggResult {
  /** 32-byte x-only aggregate key (the BIP340 verification key). */
  aggregatePubkeyXonly: Uint8Array;
  /** 33-byte compressed aggregate key. */
  aggregatePubkey: Uint8Array;
}

export class AggregatorClient extends BaseClient {
  constructor(endpoint: string, options: ClientOptions = {}) {
    super(AGGREGATOR_SERVICE, endpoint, options);
  }

  async keySort(pubkeys: readonly Uint8Array[]): Promise<Uint8Array[]> {
    const res = await this.call<pb.KeySortResponse>('keySort', { pubkeys: pubkeys.map(toBuffer) });
    return res.pubkeys.map(toBytes);
  }

  async keyAgg(pubkeys: readonly Uint8Array[], tweaks: readonly Tweak[] = []): Promise<KeyAggResult> {
    const res = await this.call<pb.KeyAggResponse>('keyAgg', { pubkeys: pubkeys.map(toBuffer), tweaks: encodeTweaks(tweaks) });
    return { aggregatePubkeyXonly: toBytes(res.aggregatePubkeyXonly), aggregatePubkey: toBytes(res.aggregatePubkey) };
  }

  async nonceAgg(pubnonces: readonly Uint8Array[]): Promise<Uint8Array> {
    const res = await this.call<pb.NonceAggResponse>('nonceAgg', { pubnonces: pubnonces.map(toBuffer) });
    return toBytes(res.aggnonce);
  }

  async partialSigVerify(p: {
    partialSig: Uint8Array;
    pubnonces: readonly Uint8Array[];
    pubkeys: readonly Uint8Array[];
    tweaks?: readonly Tweak[];
    message: Uint8Array;
    signerIndex: number;
  }): Promise<boolean> {
    const res = await this.call<pb.PartialSigVerifyResponse>('partialSigVerify', {
      partialSig: toBuffer(p.partialSig),
      pubnonces: p.pubnonces.map(toBuffer),
      pubkeys: p.pubkeys.map(toBuffer),
      tweaks: encodeTweaks(p.tweaks ?? []),
      message: toBuffer(p.message),
      signerIndex: p.signerIndex,
    } satisfies pb.PartialSigVerifyRequest);
    return res.valid;
  }

  async partialSigAgg(p: {
    partialSigs: readonly Uint8Array[];
    aggnonce: Uint8Array;
    pubkeys: readonly Uint8Array[];
    tweaks?: readonly Tweak[];
    message: Uint8Array;
  }): Promise<Uint8Array> {
    const res = await this.call<pb.PartialSigAggResponse>('partialSigAgg', {
      partialSigs: p.partialSigs.map(toBuffer),
      aggnonce: toBuffer(p.aggnonce),
      pubkeys: p.pubkeys.map(toBuffer),
      tweaks: encodeTweaks(p.tweaks ?? []),
      message: toBuffer(p.message),
    } satisfies pb.PartialSigAggRequest);
    return toBytes(res.signature);
  }

  /** BIP174 Combiner over PSBTs of one transaction. */
  async psbtCombine(psbts: readonly Uint8Array[]): Promise<Uint8Array> {
    const res = await this.call<pb.PsbtCombineResponse>('psbtCombine', { psbts: psbts.map(toBuffer) } satisfies pb.PsbtCombineRequest);
    return toBytes(res.psbt);
  }

  /** Verify and aggregate the partial signatures of every complete MuSig2 input; finalize. */
  async psbtFinalize(psbt: Uint8Array): Promise<PsbtFinalizeResult> {
    const res = await this.call<pb.PsbtFinalizeResponse>('psbtFinalize', { psbt: toBuffer(psbt) } satisfies pb.PsbtFinalizeRequest);
    return { psbt: toBytes(res.psbt), rawTx: res.rawTx.length > 0 ? toBytes(res.rawTx) : undefined, finalized: res.finalized };
  }

  /** Sends an arbitrary request object as-is (for testing the daemon's input handling). */
  raw<Res = unknown>(
    method: 'keySort' | 'keyAgg' | 'nonceAgg' | 'partialSigVerify' | 'partialSigAgg' | 'psbtCombine' | 'psbtFinalize',
    request: unknown,
  ): Promise<Res> {
    return this.call<Res>(method, request);
  }
}
