// Property: mutated descriptors are either parsed and derived or refused with a DescriptorError.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DescriptorError, deriveAt, parseDescriptor } from '../../src/descriptor/index.js';
import { readVectorJson } from '../vectors/load.js';

const D = readVectorJson<{ valid: { descriptor: string }[]; invalid: { descriptor: string }[] }>('bip390/vectors.json');
const seeds = [...D.valid, ...D.invalid].map((v) => v.descriptor);
const CHARS = '0123456789abcdefx()[],/*\'h<>;{}#pkmusigtrw ';

describe('mutated descriptors', () => {
  it('only DescriptorError is ever thrown', () => {
    let parsed = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: seeds.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 2 }), fc.constantFrom(...CHARS)), { minLength: 1, maxLength: 3 }),
        (seed, edits) => {
          let s = seeds[seed]!;
          for (const [at, op, c] of edits) {
            const i = at % (s.length + 1);
            s = op === 0 ? s.slice(0, i) + c + s.slice(i + 1) : op === 1 ? s.slice(0, i) + c + s.slice(i) : s.slice(0, i) + s.slice(i + 1);
          }
          try {
            const d = parseDescriptor(s);
            deriveAt(d, { index: 1 });
            parsed++;
          } catch (e) {
            if (!(e instanceof DescriptorError)) throw e;
          }
        },
      ),
      { numRuns: 1500, seed: 390 },
    );
    expect(parsed).toBeGreaterThan(0);
  });
});
