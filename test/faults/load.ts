// Signing load for the fault tests: `concurrency` loops, each running whole sessions against a
// daemon: NonceGen (key A) -> [DeterministicSign (key B) on every n-th session] -> Sign (key A).
// Bounded in count (maxSessions) and time (maxMs); stops by itself or on stop(). Records every
// partial signature received (for the invariants), every error code per RPC, when each signature
// was requested and received (to prove none came while a safety layer was down), and the
// sessions left open (NonceGen done, no signature) for retries after a fault.
import { randomBytes } from '@noble/hashes/utils.js';
import { ClientError } from '../../src/client/index.js';
import type { DeterministicSignParams, SignerClient, SignParams } from '../../src/client/index.js';
import { nonceAgg, nonceGen } from '../../src/musig2/index.js';
import { contextDigest, deterministicDigest } from '../../src/signer/digest.js';
import type { Received } from './invariants.js';

export interface LoadOptions {
  /** The client loop `i` uses (round 2 goes to the same client as round 1). */
  client: (i: number) => SignerClient;
  randomKey: string;
  deterministicKey: string;
  pubkeys: readonly Uint8Array[];
  concurrency: number;
  /** Stop after this many sessions have been started. */
  maxSessions: number;
  /** Stop after this long (ms). */
  maxMs: number;
  /** Every n-th session gets its second nonce from DeterministicSign (0: never). */
  deterministicEvery: number;
  /** Pause after a failed call, so loops do not spin while a dependency is down (default 25 ms). */
  backoffMs?: number;
}

export interface Signed {
  rpc: 'Sign' | 'DeterministicSign';
  /** performance.now() when the request was sent and when the answer came. */
  sentAt: number;
  receivedAt: number;
}

export interface OpenSession {
  client: SignerClient;
  params: SignParams;
}

export interface DeterministicCall {
  client: SignerClient;
  params: DeterministicSignParams;
  /** The answer, when one came. */
  result?: { pubnonce: Uint8Array; partialSig: Uint8Array };
}

/** A pool of other signers' pubnonces (made locally; the daemon only parses them). */
function otherNonces(n: number): Uint8Array[] {
  const sk = randomBytes(32);
  return Array.from({ length: n }, () => nonceGen({ pk: REAL_PK, sk, rand: randomBytes(32) }).pubnonce);
}
// The BIP327 test vectors' first public key: any valid compressed point does.
const REAL_PK = Uint8Array.from(Buffer.from('02F9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9', 'hex'));

export class Load {
  readonly received: Received[] = [];
  readonly signed: Signed[] = [];
  readonly codes = new Map<string, number>();
  /** Errors that were not ClientErrors (must stay empty). */
  readonly thrown: unknown[] = [];
  readonly open: OpenSession[] = [];
  readonly deterministic: DeterministicCall[] = [];
  sessionsStarted = 0;
  sessionsCompleted = 0;
  readonly done: Promise<void>;
  private stopped = false;
  private readonly deadline: number;
  private readonly others = otherNonces(16);

  constructor(private readonly o: LoadOptions) {
    this.deadline = performance.now() + o.maxMs;
    this.done = Promise.all(Array.from({ length: o.concurrency }, (_, i) => this.loop(i))).then(() => undefined);
  }

  stop(): Promise<void> {
    this.stopped = true;
    return this.done;
  }

  /** Count of answers with this RPC and code name (e.g. 'Sign', 'UNAVAILABLE'). */
  count(rpc: string, code: string): number {
    return this.codes.get(`${rpc} ${code}`) ?? 0;
  }

  /** Every RPC/code pair seen. */
  codeNames(): string[] {
    return [...new Set([...this.codes.keys()].map((k) => k.split(' ')[1]!))];
  }

  /** Signatures requested at or after `from` and received at or before `to`. */
  signedWithin(from: number, to: number): Signed[] {
    return this.signed.filter((s) => s.sentAt >= from && s.receivedAt <= to);
  }

  private note(rpc: string, err: unknown): void {
    if (err instanceof ClientError) {
      const name = `${rpc} ${err.codeName}`;
      this.codes.set(name, (this.codes.get(name) ?? 0) + 1);
    } else {
      this.thrown.push(err);
    }
  }

  private ok(rpc: string): void {
    const name = `${rpc} OK`;
    this.codes.set(name, (this.codes.get(name) ?? 0) + 1);
  }

  private more(): boolean {
    return !this.stopped && this.sessionsStarted < this.o.maxSessions && performance.now() < this.deadline;
  }

  private async loop(i: number): Promise<void> {
    const client = this.o.client(i);
    const { pubkeys } = this.o;
    while (this.more()) {
      const n = this.sessionsStarted++;
      const message = randomBytes(32);
      let failed = false;
      const fail = async (rpc: string, err: unknown) => {
        this.note(rpc, err);
        failed = true;
        await new Promise((r) => setTimeout(r, this.o.backoffMs ?? 25));
      };

      let r1;
      try {
        r1 = await client.nonceGen({ keyId: this.o.randomKey, pubkeys });
        this.ok('NonceGen');
      } catch (err) {
        await fail('NonceGen', err);
        continue;
      }

      let other = this.others[n % this.others.length]!;
      if (this.o.deterministicEvery > 0 && n % this.o.deterministicEvery === 0) {
        const params = { keyId: this.o.deterministicKey, aggothernonce: r1.pubnonce, pubkeys, message };
        const call: DeterministicCall = { client, params };
        this.deterministic.push(call);
        const sentAt = performance.now();
        try {
          const d = await client.deterministicSign(params);
          this.signed.push({ rpc: 'DeterministicSign', sentAt, receivedAt: performance.now() });
          this.ok('DeterministicSign');
          call.result = d;
          this.received.push({
            pubnonce: d.pubnonce,
            psig: d.partialSig,
            digest: deterministicDigest(d.pubnonce, d.partialSig),
          });
          other = d.pubnonce;
        } catch (err) {
          await fail('DeterministicSign', err);
        }
      }

      const params: SignParams = { sessionId: r1.sessionId, aggnonce: nonceAgg([r1.pubnonce, other]), pubkeys, message };
      if (failed) {
        this.open.push({ client, params });
        continue;
      }
      const sentAt = performance.now();
      try {
        const s = await client.sign(params);
        this.signed.push({ rpc: 'Sign', sentAt, receivedAt: performance.now() });
        this.ok('Sign');
        this.received.push({
          pubnonce: s.pubnonce,
          psig: s.partialSig,
          digest: contextDigest({ path: 'random', keyId: this.o.randomKey, nonce: params.aggnonce, pubkeys, tweaks: [], message }),
          sessionId: r1.sessionId,
        });
        if (Buffer.compare(s.pubnonce, r1.pubnonce) !== 0) this.thrown.push(new Error('Sign answered another pubnonce than NonceGen'));
        this.sessionsCompleted++;
      } catch (err) {
        this.open.push({ client, params });
        await fail('Sign', err);
      }
    }
  }
}

/** Polls `check` (bounded: `tries` times, `delayMs` apart) until it returns true. */
export async function eventually(check: () => Promise<boolean>, tries = 200, delayMs = 100): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await check().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, delayMs));
  }
  return false;
}
