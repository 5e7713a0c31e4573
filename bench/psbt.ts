// PSBT signing end to end: one real daemon (SoftHSM2 token, SQLite ledger, one worker per core),
// a 100-input PSBT signed by the final signer (PsbtDeterministicSign) over gRPC, per input,
// beside the raw-message DeterministicSign per call on the same daemon, key set and tweak (a
// 3-party aggregate with the BIP341 TapTweak), both through the SDK client. Interleaved rounds;
// wall-clock rates (the work happens in the daemon). Each PSBT call signs a transaction the
// ledger has not seen (the lock time varies), so nothing is a replay. Target: per input at most
// 1.2x the raw call. Never fails a build.
import { loadavg } from 'node:os';
import { sha256 } from '@noble/hashes/sha2.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { p2tr, Transaction } from '@scure/btc-signer';
import { SignerClient } from '../src/client/index.js';
import * as musig2 from '../src/musig2/index.js';
import { createKey, Daemon, makeToken, removeToken } from '../test/e2e/harness.js';
import type { Token } from '../test/e2e/harness.js';
import { benchTimeMs, environment, markdownTable, median } from './harness.js';

const INPUTS = 100;
const RAW_IN_FLIGHT = 32;
const PSBT_IN_FLIGHT = 2;

function taggedHash(tag: string, ...parts: Uint8Array[]): Uint8Array {
  const t = sha256(new TextEncoder().encode(tag));
  return sha256(Uint8Array.from(Buffer.concat([t, t, ...parts])));
}

/** Runs `op` with `inFlight` calls outstanding for about `ms`; returns calls per second. */
async function drive(op: () => Promise<unknown>, inFlight: number, ms: number): Promise<number> {
  let calls = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() - t0 < ms) {
        await op();
        calls++;
      }
    }),
  );
  return calls / ((performance.now() - t0) / 1000);
}

export async function benchPsbt(): Promise<void> {
  const sliceMs = benchTimeMs(4000);
  const rounds = 3;
  const load0 = loadavg();
  let token: Token | undefined;
  let daemon: Daemon | undefined;
  let client: SignerClient | undefined;
  try {
    token = await makeToken('musig2-bench-psbt-');
    const detPk = await createKey(token, 'det');
    daemon = await Daemon.start(token);
    client = new SignerClient(daemon.address);

    // Two other participants, played here: only their public nonces matter to the final signer.
    const others = [randomBytes(32), randomBytes(32)].map((sk) => ({ sk, pk: musig2.individualPubkey(sk) }));
    const participants = musig2.keySort([detPk, ...others.map((o) => o.pk)]);
    const aggregate = musig2.getPlainPk(musig2.keyAgg(participants));
    const aggX = aggregate.subarray(1);
    const tweaks = [{ tweak: taggedHash('TapTweak', aggX), xonly: true }];
    const signingKey = musig2.getXonlyPk(musig2.keyAggAndTweak(participants, tweaks));
    const keyDataKey = musig2.getPlainPk(musig2.keyAggAndTweak(participants, tweaks));
    const pay = p2tr(aggX);
    const nonces = Array.from({ length: INPUTS }, () => others.map((o) => musig2.nonceGen({ sk: o.sk, pk: o.pk, aggpk: signingKey }).pubnonce));

    let lockTime = 0;
    /** A fresh 100-input PSBT (a new lock time, so new sighashes) with both other nonces on each input. */
    const nextPsbt = (): Uint8Array => {
      const tx = new Transaction({ allowUnknownOutputs: true, lockTime: ++lockTime });
      for (let i = 0; i < INPUTS; i++) {
        tx.addInput({
          txid: sha256(Uint8Array.of(i, i >> 8)),
          index: i,
          witnessUtxo: { script: pay.script, amount: 10_000n },
          tapInternalKey: aggX,
          musig2ParticipantPubkeys: [[aggregate, participants]],
          musig2PubNonce: others.map((o, j) => [{ participantPubkey: o.pk, aggregatePubkey: keyDataKey }, nonces[i]![j]!]),
        } as never);
      }
      tx.addOutput({ script: pay.script, amount: BigInt(INPUTS) * 10_000n - 5_000n });
      return tx.toPSBT();
    };
    // Built ahead, so the client's CPU does not count against the daemon.
    const psbts: Uint8Array[] = Array.from({ length: 40 }, nextPsbt);
    let next = 0;
    const aggothernonce = musig2.nonceAgg(nonces[0]!);
    const raw = () => client!.deterministicSign({ keyId: 'det', aggothernonce, pubkeys: participants, tweaks, message: randomBytes(32) });
    const psbt = async () => {
      const p = psbts[next++ % psbts.length]!;
      const r = await client!.psbtDeterministicSign({ keyId: 'det', psbt: p });
      if (r.inputs.length !== INPUTS) throw new Error('not every input signed');
    };

    // Warm-up (worker tables, caches, ledger file).
    await drive(raw, RAW_IN_FLIGHT, 500);
    await drive(psbt, PSBT_IN_FLIGHT, 500);
    const rawRates: number[] = [];
    const psbtInputRates: number[] = [];
    for (let r = 0; r < rounds; r++) {
      rawRates.push(await drive(raw, RAW_IN_FLIGHT, sliceMs));
      psbtInputRates.push((await drive(psbt, PSBT_IN_FLIGHT, sliceMs)) * INPUTS);
    }
    if (next >= psbts.length) console.log(`(note: ${next} PSBT calls cycled through ${psbts.length} transactions; later ones were ledger replays)`);
    const rawMs = 1000 / median(rawRates);
    const inputMs = 1000 / median(psbtInputRates);
    const ratio = median(psbtInputRates.map((p, i) => rawRates[i]! / p));
    console.log(`## PSBT signing through the daemon (${INPUTS}-input PSBT, PsbtDeterministicSign)\n`);
    console.log(await environment());
    console.log(`load average at start ${load0.map((l) => l.toFixed(1)).join(' ')}, ${rounds} interleaved rounds of ${sliceMs} ms, SDK client, one daemon with one worker per core\n`);
    console.log(
      markdownTable(
        ['operation', 'in flight', 'signatures/s', 'ms per signature (wall)'],
        [
          ['DeterministicSign (raw 32-byte message)', String(RAW_IN_FLIGHT), median(rawRates).toFixed(0), rawMs.toFixed(2)],
          [`PsbtDeterministicSign, per input of ${INPUTS}`, `${PSBT_IN_FLIGHT} PSBTs`, median(psbtInputRates).toFixed(0), inputMs.toFixed(2)],
        ],
      ),
    );
    console.log('');
    console.log(
      markdownTable(
        ['target', 'measured (median of per-round ratios)', 'result'],
        [['per input <= 1.2x the raw call', `${ratio.toFixed(2)}x (rounds: ${psbtInputRates.map((p, i) => (rawRates[i]! / p).toFixed(2)).join(', ')})`, ratio <= 1.2 ? 'PASS' : 'MISS']],
      ),
    );
    console.log('');
  } finally {
    client?.close();
    await daemon?.stop();
    await removeToken(token);
  }
}
