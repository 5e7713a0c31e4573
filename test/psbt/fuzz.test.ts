// Property: whatever bytes arrive, decodePsbt + planSigning (+ the nonce/psig readers and the
// Finalizer) either succeed or throw a PsbtError; never a foreign error, never a hang.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  PsbtError, allNonces, decodePsbt, finalizeMusigInputs, otherNonces, partialSigs, planSigning,
} from '../../src/psbt/index.js';
import { bip373, unhex } from './helpers.js';

const V = bip373();
const seeds = V.valid.map((v) => unhex(v.hex));
const ours = unhex(V.participants[0]!.pubkey);

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; len: number }
  | { kind: 'truncate'; at: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
);

function apply(bytes: Uint8Array, muts: readonly Mutation[]): Uint8Array {
  let b = bytes.slice();
  for (const m of muts) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    if (m.kind === 'flip') b[at]! ^= 1 << m.bit;
    else if (m.kind === 'set') b[at] = m.value;
    else if (m.kind === 'insert') b = Uint8Array.of(...b.subarray(0, at), ...m.bytes, ...b.subarray(at));
    else if (m.kind === 'delete') b = Uint8Array.of(...b.subarray(0, at), ...b.subarray(at + m.len));
    else b = b.subarray(0, at);
  }
  return b;
}

function exercise(bytes: Uint8Array): void {
  const tx = decodePsbt(bytes);
  const plan = planSigning(tx, ours);
  for (const p of plan.inputs) {
    otherNonces(tx, p, ours);
    allNonces(tx, p);
    partialSigs(tx, p);
  }
  finalizeMusigInputs(tx);
}

describe('mutated PSBTs', () => {
  it('only PsbtError is ever thrown', () => {
    let accepted = 0;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: seeds.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 4 }), (seed, muts) => {
        const bytes = apply(seeds[seed]!, muts);
        try {
          exercise(bytes);
          accepted++;
        } catch (e) {
          if (!(e instanceof PsbtError)) throw e;
          expect(e.message).toMatch(/[A-Z_]+: /);
        }
      }),
      { numRuns: 2000, seed: 20260 },
    );
    // Some mutations (e.g. of amounts or unknown bytes) still give a PSBT we can plan.
    expect(accepted).toBeGreaterThan(0);
  });
});
