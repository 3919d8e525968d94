import fc from 'fast-check';
import { describe, it } from 'vitest';
import { chooseModel, rankCandidates, scoreCandidate, type CandidateStats, type ScoringParams } from './scoring.ts';

const candidate = (i: number) =>
  fc.record({
    model_id: fc.constant(`m${i}`),
    provider: fc.constantFrom('a', 'b'),
    samples: fc.integer({ min: 0, max: 50 }),
    quality: fc.double({ min: 0, max: 1, noNaN: true }),
    latency_ms: fc.double({ min: 0, max: 86_400_000, noNaN: true }),
    cost_usd: fc.double({ min: 0, max: 1_000_000, noNaN: true }),
  });
const candidates = fc.integer({ min: 1, max: 8 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => candidate(i))));
const params: fc.Arbitrary<ScoringParams> = fc.record({
  weights: fc.record({ quality: fc.double({ min: 0, max: 10, noNaN: true }), latency: fc.double({ min: 0, max: 10, noNaN: true }), cost: fc.double({ min: 0, max: 10, noNaN: true }) }).filter((w) => w.quality + w.latency + w.cost > 0),
  latencyRefMs: fc.double({ min: 1, max: 100_000, noNaN: true }),
  costRefUsd: fc.double({ min: 0.0001, max: 100, noNaN: true }),
});

describe('model-selection scoring (property)', () => {
  it('scores lie in [0, 1]', () => {
    fc.assert(fc.property(candidates, params, (cs, p) => cs.every((c) => { const s = scoreCandidate(c as CandidateStats, p).score; return s >= 0 && s <= 1; })));
  });

  it('keeps an eligible current choice unless the best beats it by more than the margin', () => {
    fc.assert(
      fc.property(candidates, params, fc.double({ min: 0, max: 0.5, noNaN: true }), fc.nat(), (cs, p, margin, pick) => {
        const ranked = rankCandidates(cs as CandidateStats[], p, 5);
        fc.pre(ranked.length > 0);
        const current = ranked[pick % ranked.length]!;
        const choice = chooseModel(ranked, { model_id: current.model_id, provider: current.provider, score: current.score }, margin)!;
        const best = ranked[0]!;
        if (choice.changed) return best.score - current.score > margin && choice.chosen === best;
        return choice.chosen.model_id === current.model_id && choice.chosen.provider === current.provider;
      }),
    );
  });
});
