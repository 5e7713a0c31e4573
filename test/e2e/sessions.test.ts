// Full sessions over gRPC: two daemon processes on their own SoftHSM2 tokens and SQLite ledgers,
// 1 to 5 signers spread over them, plain and BIP341 TapTweak tweaks, every final signature
// checked with BIP340 verify; the `sign` CLI; the Aggregator RPCs; health (reflection: reflection.test.ts).
import { status as Status } from '@grpc/grpc-js';
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AggregatorClient, ClientError, runSession, SignerClient } from '../../src/client/index.js';
import type { SessionSigner, Tweak } from '../../src/client/index.js';
import { nonceAgg } from '../../src/musig2/index.js';
import { createKey, Daemon, fromHex, hex, makeToken, removeToken, runCli } from './harness.js';
import type { Token } from './harness.js';

function taggedHash(tag: string, ...parts: Uint8Array[]): Uint8Array {
  const t = sha256(new TextEncoder().encode(tag));
  return sha256(Uint8Array.from(Buffer.concat([t, t, ...parts])));
}

/** BIP341 output key, computed independently of src/musig2: Q = lift_x(P) + t*G. */
function taprootOutputKey(internalXonly: Uint8Array, t: Uint8Array): Uint8Array {
  const P = secp256k1.Point.fromBytes(Uint8Array.from([0x02, ...internalXonly]));
  const Q = P.add(secp256k1.Point.BASE.multiply(BigInt(`0x${hex(t)}`)));
  return Q.toBytes(true).subarray(1);
}

let tokens: Token[] = [];
let daemons: Daemon[] = [];
/** key id -> daemon index, for the five keys spread over two daemons. */
const KEYS: { keyId: string; daemon: number }[] = [
  { keyId: 'alice', daemon: 0 },
  { keyId: 'bob', daemon: 1 },
  { keyId: 'carol', daemon: 0 },
  { keyId: 'dave', daemon: 1 },
  { keyId: 'erin', daemon: 0 },
];
let clients: SignerClient[] = [];
let aggregator: AggregatorClient;

beforeAll(async () => {
  tokens = await Promise.all([makeToken(), makeToken()]);
  // Keys are created one at a time per token (two processes on one token dir do not see each
  // other's objects reliably), in parallel across tokens.
  await Promise.all(
    tokens.map(async (token, d) => {
      for (const k of KEYS.filter((k) => k.daemon === d)) await createKey(token, k.keyId);
    }),
  );
  daemons = await Promise.all(tokens.map((t) => Daemon.start(t)));
  clients = daemons.map((d) => new SignerClient(d.address));
  aggregator = new AggregatorClient(daemons[0]!.address);
});

afterAll(async () => {
  for (const c of clients) c.close();
  aggregator?.close();
  await Promise.all(daemons.map((d) => d.stop()));
  await Promise.all(tokens.map(removeToken));
});

function signersFor(n: number): SessionSigner[] {
  return KEYS.slice(0, n).map((k) => ({ keyId: k.keyId, client: clients[k.daemon]! }));
}

describe('runSession over real daemons', () => {
  const messages = [randomBytes(32), new Uint8Array(0), randomBytes(100)];

  for (let n = 1; n <= 5; n++) {
    it(`${n} signer(s), untweaked and with a BIP341 TapTweak`, async () => {
      const message = messages[n % messages.length]!;
      const signers = signersFor(n);

      const plain = await runSession({ signers, message });
      expect(schnorr.verify(plain.signature, message, plain.aggregatePubkeyXonly)).toBe(true);
      expect(plain.signature).toHaveLength(64);
      expect(plain.restarts).toBe(0);

      // A BIP32-style plain tweak (from 2 signers up), then the Taproot tweak of the result,
      // with a script tree for odd n and key-path only for even n.
      const pre: Tweak[] = n >= 2 ? [{ tweak: randomBytes(32), xonly: false }] : [];
      const internal = await aggregator.keyAgg(plain.pubkeys, pre);
      const merkleRoot = n % 2 === 1 ? randomBytes(32) : new Uint8Array(0);
      const tapTweak = taggedHash('TapTweak', internal.aggregatePubkeyXonly, merkleRoot);
      const tweaks: Tweak[] = [...pre, { tweak: tapTweak, xonly: true }];

      const tweaked = await runSession({ signers, message, tweaks });
      expect(hex(tweaked.aggregatePubkeyXonly)).toBe(hex(taprootOutputKey(internal.aggregatePubkeyXonly, tapTweak)));
      expect(schnorr.verify(tweaked.signature, message, tweaked.aggregatePubkeyXonly)).toBe(true);
      expect(schnorr.verify(tweaked.signature, message, plain.aggregatePubkeyXonly)).toBe(false);
    });
  }

  it('endpoint strings work as well as shared clients, and sessions can run concurrently', async () => {
    const message = randomBytes(32);
    const signers: SessionSigner[] = KEYS.slice(0, 3).map((k) => ({ keyId: k.keyId, endpoint: daemons[k.daemon]!.address }));
    const results = await Promise.all(Array.from({ length: 8 }, () => runSession({ signers, message })));
    for (const r of results) expect(schnorr.verify(r.signature, message, r.aggregatePubkeyXonly)).toBe(true);
    // Fresh random nonces each time: eight different signatures for one message.
    expect(new Set(results.map((r) => hex(r.signature))).size).toBe(8);
  });
});

describe('proto3 optional message in NonceGen', () => {
  it('absent leaves the message open; present-but-empty binds the empty message', async () => {
    const c = clients[0]!;
    const keys = await c.listKeys();
    const pubkeys = ['alice', 'carol'].map((id) => keys.find((k) => k.keyId === id)!.publicKey);
    const sign = async (round1Message: Uint8Array | undefined, message: Uint8Array) => {
      const r1 = await c.nonceGen({ keyId: 'alice', pubkeys, ...(round1Message ? { message: round1Message } : {}) });
      const last = await c.deterministicSign({ keyId: 'carol', aggothernonce: r1.pubnonce, pubkeys, message });
      return c.sign({ sessionId: r1.sessionId, aggnonce: nonceAgg([r1.pubnonce, last.pubnonce]), pubkeys, message });
    };
    const message = randomBytes(32);
    await expect(sign(undefined, message)).resolves.toMatchObject({ partialSig: expect.any(Uint8Array) });
    const refused = await sign(new Uint8Array(0), message).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ClientError);
    expect((refused as ClientError).code).toBe(Status.FAILED_PRECONDITION);
    await expect(sign(new Uint8Array(0), new Uint8Array(0))).resolves.toMatchObject({ partialSig: expect.any(Uint8Array) });
  });
});

describe('Aggregator RPCs', () => {
  it('agree with a session: KeySort, KeyAgg, NonceAgg, PartialSigVerify, PartialSigAgg', async () => {
    const message = randomBytes(32);
    const tweaks: Tweak[] = [{ tweak: randomBytes(32), xonly: true }];
    const r = await runSession({ signers: signersFor(4), message, tweaks });

    const sorted = await aggregator.keySort(r.pubkeys);
    expect(sorted.map(hex)).toEqual(r.pubkeys.map(hex).sort());

    const agg = await aggregator.keyAgg(r.pubkeys, tweaks);
    expect(hex(agg.aggregatePubkeyXonly)).toBe(hex(r.aggregatePubkeyXonly));
    expect(hex(agg.aggregatePubkey)).toBe(hex(r.aggregatePubkey));

    const aggnonce = await aggregator.nonceAgg(r.pubnonces);
    for (let i = 0; i < 4; i++) {
      const args = { pubnonces: r.pubnonces, pubkeys: r.pubkeys, tweaks, message, signerIndex: i };
      expect(await aggregator.partialSigVerify({ ...args, partialSig: r.partialSigs[i]! })).toBe(true);
      const bad = Uint8Array.from(r.partialSigs[i]!);
      bad[31]! ^= 1;
      expect(await aggregator.partialSigVerify({ ...args, partialSig: bad })).toBe(false);
    }
    const sig = await aggregator.partialSigAgg({ partialSigs: r.partialSigs, aggnonce, pubkeys: r.pubkeys, tweaks, message });
    expect(hex(sig)).toBe(hex(r.signature));
  });
});

describe('the sign command', () => {
  it('runs a 3-signer session with tweaks and prints a valid signature', async () => {
    const message = randomBytes(40);
    const tweak = hex(randomBytes(32));
    const args = ['sign', '--message', hex(message), '--tweak', tweak, '--tweak', `${hex(randomBytes(32))}:xonly`];
    for (const k of KEYS.slice(0, 3)) args.push('--signer', `${daemons[k.daemon]!.address}/${k.keyId}`);
    const r = await runCli(args, { env: tokens[0]!.env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split(/\s+/) as [string, string]));
    expect(out.signature).toMatch(/^[0-9a-f]{128}$/);
    expect(schnorr.verify(fromHex(out.signature!), message, fromHex(out.aggregate_pubkey_xonly!))).toBe(true);
    expect(out.aggregate_pubkey!.slice(2)).toBe(out.aggregate_pubkey_xonly);
  });

  it('prints JSON with --json and exits non-zero, naming the signer, for an unknown key', async () => {
    const ok = await runCli(['sign', '--json', '--message', '', '--signer', `${daemons[1]!.address}/bob`], { env: tokens[0]!.env });
    expect(ok.code).toBe(0);
    const parsed = JSON.parse(ok.stdout) as { signature: string; aggregate_pubkey_xonly: string };
    expect(schnorr.verify(fromHex(parsed.signature), new Uint8Array(0), fromHex(parsed.aggregate_pubkey_xonly))).toBe(true);

    const bad = await runCli(['sign', '--message', '00', '--signer', `${daemons[0]!.address}/alice`, '--signer', `${daemons[0]!.address}/nobody`], {
      env: tokens[0]!.env,
    });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("signer 1: no key 'nobody'");
    expect(bad.stdout).toBe('');
  });

  it('refuses malformed arguments with exit code 2', async () => {
    const cases = [
      ['sign', '--message', '00'],
      ['sign', '--signer', 'nohostport', '--message', '00'],
      ['sign', '--signer', '127.0.0.1:1/k', '--message', 'xyz'],
      ['sign', '--signer', '127.0.0.1:1/k', '--message', '00', '--tweak', 'abcd'],
      ['sign', '--signer', '127.0.0.1:1/k', '--message', '00', '--tweak', `${'00'.repeat(32)}:sideways`],
    ];
    const results = await Promise.all(cases.map((args) => runCli(args, { env: tokens[0]!.env })));
    results.forEach((r, i) => expect(r.code, cases[i]!.join(' ')).toBe(2));
  });
});

describe('health', () => {
  it('reports SERVING for the overall server and both services', async () => {
    for (const c of clients) {
      expect(await c.health()).toBe('SERVING');
      expect(await c.health('musig2.signer.v1.Signer')).toBe('SERVING');
      expect(await c.health('musig2.signer.v1.Aggregator')).toBe('SERVING');
    }
  });
});
