// Transactions end to end over gRPC: two daemon processes (a random-nonce key and the
// deterministic final signer, each on its own SoftHSM2 token and SQLite ledger) and a third
// participant played by scure's musig2 sign a 5-input Taproot transaction (key path with the
// aggregate as internal key, key path with a BIP328-derived internal key, rawtr, a script-path
// pk(musig) leaf, and an input no MuSig2 key takes part in). Every input of the final
// transaction is checked with bitcoinjs-lib's sighash. Then the refusals: a transaction changed
// between the rounds (nonces burned), a wrong 0x1a aggregate, a derivation that misses the output
// key, a missing witnessUtxo, an unsupported sighash type, a key that takes part in nothing, and
// a bad partial signature named by PsbtFinalize.
import { status as Status } from '@grpc/grpc-js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { SigHash, Transaction } from '@scure/btc-signer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AggregatorClient, ClientError, CulpritError, runPsbtSession, SignerClient } from '../../src/client/index.js';
import type { PsbtParticipant, PsbtSessionEvent } from '../../src/client/index.js';
import { createKey, Daemon, makeToken, removeToken } from './harness.js';
import type { Token } from './harness.js';
import { buildFixture, hex, scureParticipant, verifyWithBitcoinjs } from './psbt-fixture.js';
import type { Fixture } from './psbt-fixture.js';

let tokens: Token[] = [];
let daemons: Daemon[] = [];
let randomClient: SignerClient;
let finalClient: SignerClient;
let aggregator: AggregatorClient;
let pubkeys: { random: Uint8Array; final: Uint8Array; outsider: Uint8Array };
const scureSecret = secp256k1.utils.randomSecretKey();
const soloSecret = secp256k1.utils.randomSecretKey();
const scurePubkey = secp256k1.getPublicKey(scureSecret, true);

const fixture = (opts: { outputAmount?: bigint; seed?: number } = {}): Fixture =>
  buildFixture([scurePubkey, pubkeys.random, pubkeys.final], soloSecret, opts);

/** The PSBT with some fields of one input replaced (undefined removes a field). */
function mutateInput(psbt: Uint8Array, index: number, fields: Record<string, unknown>): Uint8Array {
  const tx = Transaction.fromPSBT(psbt, { allowUnknownOutputs: true });
  for (const [k, v] of Object.entries(fields)) {
    tx.updateInput(index, { [k]: undefined } as never, true);
    if (v !== undefined) tx.updateInput(index, { [k]: v } as never, true);
  }
  return tx.toPSBT();
}

async function refusal(p: Promise<unknown>): Promise<ClientError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ClientError);
  return err as ClientError;
}

beforeAll(async () => {
  tokens = await Promise.all([makeToken(), makeToken()]);
  const [random, outsider, final] = await Promise.all([
    (async () => {
      const r = await createKey(tokens[0]!, 'random');
      return [r, await createKey(tokens[0]!, 'outsider')] as const;
    })(),
    createKey(tokens[1]!, 'final'),
  ]).then(([[r, o], f]) => [r, o, f]);
  pubkeys = { random: random!, final: final!, outsider: outsider! };
  daemons = await Promise.all(tokens.map((t) => Daemon.start(t)));
  randomClient = new SignerClient(daemons[0]!.address);
  finalClient = new SignerClient(daemons[1]!.address);
  aggregator = new AggregatorClient(daemons[0]!.address);
});

afterAll(async () => {
  randomClient?.close();
  finalClient?.close();
  aggregator?.close();
  await Promise.all(daemons.map((d) => d.stop()));
  await Promise.all(tokens.map(removeToken));
});

describe('a 3-party, 5-input transaction', () => {
  it('runPsbtSession: scure, a random daemon key and the final signer; bitcoinjs-lib verifies every input', async () => {
    const f = fixture();
    const scure = scureParticipant(scureSecret, f);
    const result = await runPsbtSession({
      psbt: f.psbt,
      signers: [scure, { keyId: 'random', client: randomClient }, { keyId: 'final', client: finalClient }],
    });
    expect(result.finalized).toEqual([0, 1, 2, 3]);
    expect(result.rawTx).toBeDefined();
    expect(verifyWithBitcoinjs(result.rawTx!, f.prevoutScripts, f.amounts)).toBe(5);
    // SIGHASH_ALL on input 1 gives a 65-byte signature; the others are 64 bytes.
    const final = Transaction.fromRaw(result.rawTx!, { allowUnknownOutputs: true });
    expect(final.getInput(1).finalScriptWitness![0]).toHaveLength(65);
    expect(final.getInput(0).finalScriptWitness![0]).toHaveLength(64);
    expect(final.getInput(3).finalScriptWitness).toHaveLength(3);
    expect(result.txid).toBe(final.id);
  });

  it('the same transaction as a PSBT version 2', async () => {
    const f = fixture({ seed: 9 });
    const v2 = Transaction.fromPSBT(f.psbt, { allowUnknownOutputs: true }).toPSBT(2);
    expect(Transaction.fromPSBT(v2, { allowUnknownOutputs: true }).opts.PSBTVersion).toBe(2);
    const result = await runPsbtSession({
      psbt: v2,
      signers: [scureParticipant(scureSecret, f), { keyId: 'random', client: randomClient }, { keyId: 'final', client: finalClient }],
    });
    expect(result.finalized).toEqual([0, 1, 2, 3]);
    expect(verifyWithBitcoinjs(result.rawTx!, f.prevoutScripts, f.amounts)).toBe(5);
  });

  it('the RPCs one by one: minimal answers, PsbtCombine and PsbtFinalize on the daemon', async () => {
    const f = fixture({ seed: 2 });
    const scure = scureParticipant(scureSecret, f);
    const r1 = await randomClient.psbtNonceGen({ keyId: 'random', psbt: f.psbt });
    expect(r1.inputs).toEqual([0, 1, 2, 3]);
    expect(r1.sessionId).toHaveLength(32);
    // Minimal: the unsigned transaction and one 0x1b per input, nothing else.
    const minimal = Transaction.fromPSBT(r1.psbt, { allowUnknownOutputs: true });
    for (let i = 0; i < 5; i++) {
      const input = minimal.getInput(i);
      expect(input.witnessUtxo).toBeUndefined();
      expect(input.musig2ParticipantPubkeys).toBeUndefined();
      expect(input.musig2PubNonce?.length ?? 0).toBe(i < 4 ? 1 : 0);
    }
    const withNonces = await aggregator.psbtCombine([f.psbt, await scure.nonceGen(f.psbt), r1.psbt]);
    const det = await finalClient.psbtDeterministicSign({ keyId: 'final', psbt: withNonces });
    expect(det.inputs).toEqual([0, 1, 2, 3]);
    const all = await aggregator.psbtCombine([withNonces, det.psbt]);
    const [mine, theirs] = await Promise.all([randomClient.psbtSign({ sessionId: r1.sessionId, psbt: all }), scure.sign(all)]);
    // An identical retry replays the same answer.
    expect(hex((await randomClient.psbtSign({ sessionId: r1.sessionId, psbt: all })).psbt)).toBe(hex(mine.psbt));
    const signed = await aggregator.psbtCombine([all, mine.psbt, theirs]);
    const fin = await aggregator.psbtFinalize(signed);
    expect(fin.finalized).toEqual([0, 1, 2, 3]);
    expect(verifyWithBitcoinjs(fin.rawTx!, f.prevoutScripts, f.amounts)).toBe(5);
    // The final signer is stateless and idempotent.
    expect(hex((await finalClient.psbtDeterministicSign({ keyId: 'final', psbt: withNonces })).psbt)).toBe(hex(det.psbt));

    // A bad partial signature is refused by PsbtFinalize, naming the input and the participant.
    const tampered = Transaction.fromPSBT(signed, { allowUnknownOutputs: true });
    const entries = tampered.getInput(2).musig2PartialSig!;
    const victim = entries.findIndex(([k]) => hex(k.participantPubkey) === hex(pubkeys.random));
    const bad = entries.map(([k, v], j) => [k, j === victim ? Uint8Array.from(v.map((b, n) => (n === 31 ? b ^ 1 : b))) : v]);
    tampered.updateInput(2, { musig2PartialSig: undefined } as never, true);
    tampered.updateInput(2, { musig2PartialSig: bad } as never, true);
    const err = await refusal(aggregator.psbtFinalize(tampered.toPSBT()));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.errorInfo?.reason).toBe('BAD_PARTIAL_SIG');
    expect(err.errorInfo?.metadata).toMatchObject({ input: '2', participant: hex(pubkeys.random), contribution: 'psig' });
  });

  it('runPsbtSession names the signer whose partial signature is bad', async () => {
    const f = fixture({ seed: 3 });
    const honest = scureParticipant(scureSecret, f);
    const liar: PsbtParticipant = {
      ...honest,
      async sign(psbt) {
        const tx = Transaction.fromPSBT(await honest.sign(psbt), { allowUnknownOutputs: true });
        const entries = tx.getInput(0).musig2PartialSig!;
        const flipped = entries.map(([k, v]) => [k, Uint8Array.from(v.map((b, n) => (n === 0 ? b ^ 0x40 : b)))]);
        tx.updateInput(0, { musig2PartialSig: undefined } as never, true);
        tx.updateInput(0, { musig2PartialSig: flipped } as never, true);
        return tx.toPSBT();
      },
    };
    const err = await runPsbtSession({
      psbt: f.psbt,
      signers: [liar, { keyId: 'random', client: randomClient }, { keyId: 'final', client: finalClient }],
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CulpritError);
    expect((err as CulpritError).signerIndex).toBe(0);
    expect((err as CulpritError).contribution).toBe('psig');
  });
});

describe('refusals', () => {
  it('a transaction changed between the rounds is refused and its nonces are burned', async () => {
    const f = fixture({ seed: 4 });
    const changed = fixture({ seed: 4, outputAmount: 900_000n });
    const scure = scureParticipant(scureSecret, f);
    const r1 = await randomClient.psbtNonceGen({ keyId: 'random', psbt: f.psbt });
    const withNonces = await aggregator.psbtCombine([f.psbt, await scure.nonceGen(f.psbt), r1.psbt]);
    const all = await aggregator.psbtCombine([withNonces, (await finalClient.psbtDeterministicSign({ keyId: 'final', psbt: withNonces })).psbt]);

    const err = await refusal(randomClient.psbtSign({ sessionId: r1.sessionId, psbt: changed.psbt }));
    expect(err.code).toBe(Status.FAILED_PRECONDITION);
    expect(err.errorInfo?.reason).toBe('TRANSACTION_CHANGED');
    expect(err.errorInfo?.metadata.input).toBe('0');
    // The original transaction, with every nonce, no longer signs either: the nonces are gone.
    const again = await refusal(randomClient.psbtSign({ sessionId: r1.sessionId, psbt: all }));
    expect(again.code).toBe(Status.FAILED_PRECONDITION);
    expect(again.details).toMatch(/destroyed/);
  });

  const cases: { name: string; mutate: (f: Fixture) => Uint8Array; input: string; reason: string }[] = [
    {
      name: 'a 0x1a aggregate that is not KeyAgg of its participants',
      mutate: (f) => mutateInput(f.psbt, 0, { musig2ParticipantPubkeys: [[secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true), f.participants]] }),
      input: '0',
      reason: 'AGGREGATE_MISMATCH',
    },
    {
      name: 'a BIP328 derivation that does not reach the output key',
      mutate: (f) => {
        const tx = Transaction.fromPSBT(f.psbt, { allowUnknownOutputs: true });
        const [[key, value]] = tx.getInput(1).tapBip32Derivation!;
        return mutateInput(f.psbt, 1, { tapBip32Derivation: [[key, { ...value, der: { ...value.der, path: [0, 6] } }]] });
      },
      input: '1',
      reason: 'DERIVATION_MISMATCH',
    },
    {
      name: 'a missing witnessUtxo',
      mutate: (f) => mutateInput(f.psbt, 2, { witnessUtxo: undefined }),
      input: '2',
      reason: 'MISSING_UTXO',
    },
    {
      name: 'an unsupported sighash type',
      mutate: (f) => mutateInput(f.psbt, 0, { sighashType: SigHash.NONE }),
      input: '0',
      reason: 'UNSUPPORTED_SIGHASH',
    },
  ];
  for (const c of cases) {
    it(`${c.name}: INVALID_ARGUMENT naming input ${c.input}, from both roles`, async () => {
      const f = fixture({ seed: 5 });
      const psbt = c.mutate(f);
      for (const call of [
        () => randomClient.psbtNonceGen({ keyId: 'random', psbt }),
        () => finalClient.psbtDeterministicSign({ keyId: 'final', psbt }),
      ]) {
        const err = await refusal(call());
        expect(err.code).toBe(Status.INVALID_ARGUMENT);
        expect(err.errorInfo?.reason).toBe(c.reason);
        expect(err.errorInfo?.metadata.input).toBe(c.input);
        expect(err.details).toContain(`input ${c.input}`);
      }
    });
  }

  it('a key that takes part in no input is refused', async () => {
    const f = fixture({ seed: 6 });
    const err = await refusal(randomClient.psbtNonceGen({ keyId: 'outsider', psbt: f.psbt }));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.errorInfo?.reason).toBe('NO_PARTICIPATION');
    expect(hex(pubkeys.outsider)).toHaveLength(66);
  });

  it('bytes that are not a PSBT, and a PSBT over the size cap', async () => {
    const err = await refusal(randomClient.psbtNonceGen({ keyId: 'random', psbt: Uint8Array.from([1, 2, 3]) }));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.errorInfo?.reason).toBe('MALFORMED');
    const empty = await refusal(randomClient.psbtSign({ sessionId: new Uint8Array(32), psbt: new Uint8Array(0) }));
    expect(empty.code).toBe(Status.INVALID_ARGUMENT);
  });
});

describe('a random signer daemon restarted between the rounds', () => {
  it('runPsbtSession restarts round 1 once, with fresh nonces, and still signs', async () => {
    const f = fixture({ seed: 8 });
    const scure = scureParticipant(scureSecret, f);
    const events: PsbtSessionEvent[] = [];
    const result = await runPsbtSession({
      psbt: f.psbt,
      signers: [scure, { keyId: 'random', client: randomClient }, { keyId: 'final', client: finalClient }],
      onEvent: async (event) => {
        events.push(event);
        if (event.kind === 'round1' && event.attempt === 0) {
          const port = daemons[0]!.port;
          await daemons[0]!.stop('SIGKILL');
          daemons[0] = await Daemon.start(tokens[0]!, { listen: `127.0.0.1:${port}` });
        }
      },
    });
    expect(result.restarts).toBe(1);
    expect(events.map((e) => e.kind)).toEqual(['round1', 'restart', 'round1']);
    expect(events[1]).toMatchObject({ kind: 'restart', signerIndex: 1 });
    expect(verifyWithBitcoinjs(result.rawTx!, f.prevoutScripts, f.amounts)).toBe(5);
    // The first attempt's nonces were abandoned, not reused.
    const [first, second] = events.filter((e): e is Extract<PsbtSessionEvent, { kind: 'round1' }> => e.kind === 'round1');
    const nonces = (psbt: Uint8Array) => Transaction.fromPSBT(psbt, { allowUnknownOutputs: true }).getInput(0).musig2PubNonce!.map(([, n]) => hex(n));
    expect(nonces(second!.psbt).some((n) => nonces(first!.psbt).includes(n))).toBe(false);
  });
});
