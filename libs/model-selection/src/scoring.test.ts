import { describe, expect, it } from 'vitest';
import { chooseModel, rankCandidates, scoreCandidate, sizeCategoryOf, type CandidateStats, type ScoringParams } from './scoring.ts';

const params: ScoringParams = { weights: { quality: 0.6, latency: 0.2, cost: 0.2 }, latencyRefMs: 2000, costRefUsd: 0.01 };
const stats = (model_id: string, over: Partial<CandidateStats> = {}): CandidateStats => ({
  model_id,
  provider: 'p',
  samples: 10,
  quality: 0.8,
  latency_ms: 2000,
  cost_usd: 0.01,
  ...over,
});

describe('scoreCandidate', () => {
  it.each([
    // quality, latency, cost → score (0.6 q + 0.2 · 2000/(2000+L) + 0.2 · 0.01/(0.01+C))
    { q: 0.8, l: 1000, c: 0.01, score: 0.713333 },
    { q: 1, l: 0, c: 0, score: 1 },
    { q: 0, l: 2000, c: 0.01, score: 0.2 },
    { q: 0.5, l: 6000, c: 0.03, score: 0.4 },
    { q: 0.9, l: 1e9, c: 1e6, score: 0.54 },
  ])('q=$q latency=$l cost=$c → $score', ({ q, l, c, score }) => {
    expect(scoreCandidate(stats('m', { quality: q, latency_ms: l, cost_usd: c }), params).score).toBeCloseTo(score, 6);
  });

  it('only the ratio of the weights counts', () => {
    const a = scoreCandidate(stats('m', { quality: 0.7, latency_ms: 500 }), params).score;
    const b = scoreCandidate(stats('m', { quality: 0.7, latency_ms: 500 }), { ...params, weights: { quality: 6, latency: 2, cost: 2 } }).score;
    expect(b).toBe(a);
  });

  it('with only the quality weight, the score is the quality', () => {
    expect(scoreCandidate(stats('m', { quality: 0.42, latency_ms: 99_999 }), { ...params, weights: { quality: 1, latency: 0, cost: 0 } }).score).toBe(0.42);
  });
});

describe('rankCandidates', () => {
  it('drops models with fewer than the minimum samples and sorts best first, ties by samples then name', () => {
    const ranked = rankCandidates(
      [stats('few', { quality: 1, samples: 4 }), stats('b'), stats('a'), stats('more', { samples: 20 }), stats('best', { quality: 0.9 })],
      params,
      5,
    );
    expect(ranked.map((c) => c.model_id)).toEqual(['best', 'more', 'a', 'b']);
  });
});

describe('chooseModel', () => {
  const ranked = (...list: [string, number][]) => rankCandidates(list.map(([m, q]) => stats(m, { quality: q })), params, 1);
  const ref = (model_id: string, score = 0.5) => ({ model_id, provider: 'p', score });

  it.each([
    { name: 'no current: the best', ranked: ranked(['a', 0.9], ['b', 0.8]), current: null, margin: 0.02, chosen: 'a', changed: true, reason: 'first', runnerUp: 'b' },
    { name: 'current is best', ranked: ranked(['a', 0.9], ['b', 0.8]), current: ref('a'), margin: 0.02, chosen: 'a', changed: false, reason: 'same', runnerUp: 'b' },
    // 0.6 · (0.9 − 0.87) = 0.018 ≤ 0.02: kept, and the better model is the runner-up.
    { name: 'better by less than the margin', ranked: ranked(['a', 0.9], ['b', 0.87]), current: ref('b'), margin: 0.02, chosen: 'b', changed: false, reason: 'within_margin', runnerUp: 'a' },
    // 0.6 · 0.05 = 0.03 > 0.02
    { name: 'better by more than the margin', ranked: ranked(['a', 0.9], ['b', 0.85]), current: ref('b'), margin: 0.02, chosen: 'a', changed: true, reason: 'better', runnerUp: 'b' },
    // 0.6 · (0.9 − 0.8666667) = 0.02 exactly: not more than the margin.
    { name: 'better by exactly the margin', ranked: ranked(['a', 0.9], ['b', 0.9 - 0.02 / 0.6]), current: ref('b'), margin: 0.02, chosen: 'b', changed: false, reason: 'within_margin', runnerUp: 'a' },
    { name: 'margin 0: any better model', ranked: ranked(['a', 0.9], ['b', 0.8999]), current: ref('b'), margin: 0, chosen: 'a', changed: true, reason: 'better', runnerUp: 'b' },
    { name: 'current no longer a candidate', ranked: ranked(['a', 0.7], ['b', 0.6]), current: ref('gone'), margin: 0.5, chosen: 'a', changed: true, reason: 'current_ineligible', runnerUp: 'b' },
    { name: 'one candidate: no runner-up', ranked: ranked(['a', 0.7]), current: null, margin: 0.02, chosen: 'a', changed: true, reason: 'first', runnerUp: null },
  ])('$name', ({ ranked, current, margin, chosen, changed, reason, runnerUp }) => {
    const choice = chooseModel(ranked, current, margin)!;
    expect(choice.chosen.model_id).toBe(chosen);
    expect(choice.changed).toBe(changed);
    expect(choice.reason).toBe(reason);
    expect(choice.runnerUp?.model_id ?? null).toBe(runnerUp);
  });

  it('with no candidate, nothing is chosen (the pair keeps its configuration)', () => {
    expect(chooseModel([], ref('a'), 0.02)).toBeNull();
  });

  it('the previous model is reported as this run scored it', () => {
    const choice = chooseModel(ranked(['a', 0.9], ['b', 0.5]), ref('b', 0.99), 0.02)!;
    expect(choice.previous).toEqual({ model_id: 'b', provider: 'p', score: ranked(['b', 0.5])[0]!.score });
  });

  it('a model of the same name from another provider is another candidate', () => {
    const list = rankCandidates([stats('m', { provider: 'x', quality: 0.9 }), stats('m', { provider: 'y', quality: 0.5 })], params, 1);
    const choice = chooseModel(list, { model_id: 'm', provider: 'y', score: 0 }, 0.02)!;
    expect([choice.chosen.provider, choice.changed, choice.reason]).toEqual(['x', true, 'better']);
  });
});

describe('sizeCategoryOf', () => {
  it.each([
    [{ lines: 0 }, 'small'],
    [{ lines: 9_999 }, 'small'],
    [{ lines: 10_000 }, 'medium'],
    [{ lines: 99_999 }, 'medium'],
    [{ lines: 100_000 }, 'large'],
    [{ files: 99 }, 'small'],
    [{ files: 100 }, 'medium'],
    [{ files: 1_000 }, 'large'],
    [{ lines: 5, files: 5_000 }, 'small'],
  ] as const)('%j → %s', (repo, category) => {
    expect(sizeCategoryOf(repo)).toBe(category);
  });
});
