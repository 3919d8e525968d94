import fc from 'fast-check';
import { describe, it } from 'vitest';
import { buildMatcherIndex, matchModel, signature } from './matcher.ts';

const SIZES = [1, 3, 7, 8, 9, 13, 14, 27, 32, 34, 70, 72, 90, 110, 405];
const FAMILIES = ['llama', 'qwen', 'gemma', 'mistral', 'phi', 'yi'];
const size = fc.constantFrom(...SIZES);

/** A model name in one of the shapes providers use, with a parameter count. */
const spelling = (family: string, version: string, b: number) =>
  fc.constantFrom(`${family}-${version}-${b}b`, `${family}-${version}-${b}b-instruct`, `${family}${version.replace('.', '-')}-${b}b-chat`, `${family.toUpperCase()}-${version}-${b}B-Instruct`, `org/${family}-${version}-${b}b`);

describe('matcher (property)', () => {
  it('never maps a model to an AA entry of another size', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...FAMILIES),
        fc.constantFrom('2', '3.1', '2.5', '4'),
        fc.uniqueArray(size, { minLength: 1, maxLength: 5 }),
        size,
        fc.constantFrom('groq', 'together', 'openrouter', 'fireworks'),
        (family, version, aaSizes, wanted, provider) =>
          fc.assert(
            fc.property(spelling(family, version, wanted), (modelId) => {
              const entries = aaSizes.map((b) => ({ slug: `${family}-${version.replace('.', '-')}-${b}b`, name: `${family} ${version} ${b}B` }));
              const decision = matchModel(buildMatcherIndex(entries), { provider, modelId });
              if (decision.slug === null) return true;
              // A mapped model has the same size as its entry, and that size was on offer.
              return aaSizes.includes(wanted) && decision.slug === `${family}-${version.replace('.', '-')}-${wanted}b`;
            }),
            { numRuns: 5 },
          ),
      ),
      { numRuns: 200 },
    );
  });

  it('does map a plain name when its size is on offer (the property above is not vacuous)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...FAMILIES), fc.constantFrom('2', '3.1', '2.5', '4'), fc.uniqueArray(size, { minLength: 1, maxLength: 5 }), (family, version, aaSizes) => {
        const entries = aaSizes.map((b) => ({ slug: `${family}-${version.replace('.', '-')}-${b}b`, name: `${family} ${version} ${b}B` }));
        const wanted = aaSizes[0]!;
        return matchModel(buildMatcherIndex(entries), { provider: 'groq', modelId: `${family}-${version}-${wanted}b` }).slug === entries[0]!.slug;
      }),
    );
  });

  it("reads a name's size the same however it is written", () => {
    fc.assert(
      fc.property(fc.constantFrom(...FAMILIES), size, (family, b) => {
        const sizes = (id: string) => signature(id).key.split(' ').filter((t) => /^\d+(\.\d+)?b$/.test(t));
        return JSON.stringify(sizes(`${family}-3-${b}b`)) === JSON.stringify(sizes(`${family.toUpperCase()}-3-${b}B-Instruct`)) && sizes(`${family}-3-${b}b`).length === 1;
      }),
    );
  });
});
