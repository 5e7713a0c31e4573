// `musig2-signer demo`: a 3-signer BIP327 session in one process, with no token and no daemon.
// Two signers use random nonces (NonceGen, then Sign); the last uses DeterministicSign.
import { schnorr } from '@noble/curves/secp256k1.js';
import { bytesToHex, randomBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import {
  deterministicSign,
  getPlainPk,
  getXonlyPk,
  individualPubkey,
  keyAggAndTweak,
  keySort,
  nonceAgg,
  nonceGen,
  partialSigAgg,
  partialSigVerify,
  sign,
} from '../musig2/index.js';
import { CliError } from './errors.js';

function freshSecretKey(): Uint8Array {
  // randomBytes(32) is below n with overwhelming probability; individualPubkey rejects the rest.
  for (;;) {
    const sk = randomBytes(32);
    try {
      individualPubkey(sk);
      return sk;
    } catch {
      sk.fill(0);
    }
  }
}

export async function runDemo(argv: string[]): Promise<number> {
  if (argv.length > 0) throw new CliError(`demo takes no arguments, got '${argv[0]}'`, 2);
  const secretKeys = [freshSecretKey(), freshSecretKey(), freshSecretKey()];
  try {
    const pubkeys = keySort(secretKeys.map((sk) => individualPubkey(sk)));
    // Keep each secret key beside its public key after sorting.
    const skFor = (pk: Uint8Array) => secretKeys.find((sk) => bytesToHex(individualPubkey(sk)) === bytesToHex(pk))!;
    const msg = utf8ToBytes('musig2-signer demo message');
    const tweaks: never[] = [];
    const ctx = keyAggAndTweak(pubkeys, tweaks);
    const aggpk = getXonlyPk(ctx);

    // Round 1 for the two random-nonce signers.
    const round1 = pubkeys.slice(0, 2).map((pk) => nonceGen({ sk: skFor(pk), pk, aggpk, msg }));
    const aggothernonce = nonceAgg(round1.map((r) => r.pubnonce));

    // The final signer answers in one call and keeps no state.
    const last = deterministicSign(skFor(pubkeys[2]!), aggothernonce, pubkeys, tweaks, msg);
    const pubnonces = [...round1.map((r) => r.pubnonce), last.pubnonce];
    const session = { aggnonce: nonceAgg(pubnonces), pubkeys, tweaks, msg };

    // Round 2 for the random-nonce signers; sign() wipes each secnonce it consumes.
    const psigs = round1.map((r, i) => sign(r.secnonce, skFor(pubkeys[i]!), session));
    psigs.push(last.psig);
    psigs.forEach((psig, i) => {
      if (!partialSigVerify(psig, pubnonces, pubkeys, tweaks, msg, i)) throw new CliError(`partial signature ${i} failed to verify`);
    });
    const sig = partialSigAgg(psigs, session);
    const ok = schnorr.verify(sig, msg, aggpk);

    console.log('MuSig2 (BIP327) demo: 3 signers, 2 random-nonce + 1 DeterministicSign, in process');
    pubkeys.forEach((pk, i) => console.log(`  signer ${i} pubkey   ${bytesToHex(pk)}${i === 2 ? '  (deterministic)' : ''}`));
    console.log(`  aggregate key (x-only)   ${bytesToHex(aggpk)}`);
    console.log(`  aggregate key (plain)    ${bytesToHex(getPlainPk(ctx))}`);
    console.log(`  message                  ${bytesToHex(msg)}`);
    console.log(`  signature (64 bytes)     ${bytesToHex(sig)}`);
    console.log(`  BIP340 verify            ${ok ? 'valid' : 'INVALID'}`);
    return ok ? 0 : 1;
  } finally {
    for (const sk of secretKeys) sk.fill(0);
  }
}
