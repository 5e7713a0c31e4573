// Random PSBTs: our BIP341 sighash (taprootSighash, and the one planSigning uses) against
// bitcoinjs-lib's, for every hash type, key path and script path.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Transaction } from '@scure/btc-signer';
import { decodePsbt, taprootSighash } from '../../src/psbt/index.js';
import { tapLeafHash } from '@scure/btc-signer/payment.js';
import { hex, oracleSighash } from './helpers.js';

const HASH_TYPES = [0, 1, 2, 3, 0x81, 0x82, 0x83];

const inputArb = fc.record({
  txid: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  vout: fc.integer({ min: 0, max: 5 }),
  sequence: fc.integer({ min: 0, max: 0xffffffff }),
  key: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  amount: fc.bigInt({ min: 1n, max: 21_000_000n * 100_000_000n }),
});
const outputArb = fc.record({
  script: fc.uint8Array({ minLength: 0, maxLength: 60 }),
  amount: fc.bigInt({ min: 0n, max: 21_000_000n * 100_000_000n }),
});

describe('BIP341 sighash against bitcoinjs-lib', () => {
  it('random PSBTs (v0 and v2), every hash type, key and script path', () => {
    fc.assert(
      fc.property(
        fc.array(inputArb, { minLength: 1, maxLength: 4 }), fc.array(outputArb, { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 499_999_999 }), fc.constantFrom(0, 2),
        (inputs, outputs, version, lockTime, psbtVersion) => {
          const tx = new Transaction({ version, lockTime, allowUnknownOutputs: true, disableScriptCheck: true, PSBTVersion: psbtVersion });
          for (const i of inputs) tx.addInput({ txid: i.txid, index: i.vout, sequence: i.sequence, witnessUtxo: { script: Uint8Array.of(0x51, 0x20, ...i.key), amount: i.amount } });
          for (const o of outputs) tx.addOutput({ script: o.script, amount: o.amount });
          const psbt = decodePsbt(tx.toPSBT(psbtVersion));
          const leaf = Uint8Array.of(0x20, ...inputs[0]!.key, 0xac);
          for (let idx = 0; idx < inputs.length; idx++) {
            for (const t of HASH_TYPES) {
              if ((t & 3) === 3 && idx >= outputs.length) continue; // SINGLE without its output has no digest
              expect(hex(taprootSighash(psbt, idx, t))).toBe(hex(oracleSighash(psbt, idx, t)));
              expect(hex(taprootSighash(psbt, idx, t, leaf))).toBe(hex(oracleSighash(psbt, idx, t, tapLeafHash(leaf))));
            }
          }
        },
      ),
      { numRuns: 40, seed: 341 },
    );
  });
});
