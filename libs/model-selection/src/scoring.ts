import type { SizeCategory } from './schema.ts';

/** What the results of one model on one (language, size) add up to. */
export type CandidateStats = {
  model_id: string;
  provider: string;
  samples: number;
  /** Mean quality_score, in [0, 1]. */
  quality: number;
  /** Median latency_ms: one stalled evaluation should not sink a model. */
  latency_ms: number;
  /** Mean cost_usd per evaluation. */
  cost_usd: number;
};

export interface ScoringParams {
  weights: { quality: number; latency: number; cost: number };
  latencyRefMs: number;
  costRefUsd: number;
}

export interface ScoredCandidate extends CandidateStats {
  score: number;
  parts: { quality: number; latency: number; cost: number };
}

const r6 = (x: number) => Math.round(x * 1e6) / 1e6;

/**
 * The weighted score in [0, 1]: quality as it is, latency as ref/(ref + median latency) and cost as
 * ref/(ref + mean cost), so 0 ms or $0 scores 1 and the reference value 0.5. Each part depends on
 * the model alone, not on which other models were tested, so scores compare across runs.
 */
export function scoreCandidate(stats: CandidateStats, params: ScoringParams): ScoredCandidate {
  const parts = {
    quality: stats.quality,
    latency: params.latencyRefMs / (params.latencyRefMs + stats.latency_ms),
    cost: params.costRefUsd / (params.costRefUsd + stats.cost_usd),
  };
  const w = params.weights;
  const total = w.quality + w.latency + w.cost;
  const score = (w.quality * parts.quality + w.latency * parts.latency + w.cost * parts.cost) / total;
  return { ...stats, score: r6(score), parts: { quality: r6(parts.quality), latency: r6(parts.latency), cost: r6(parts.cost) } };
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Best first. Equal scores go to the better quality, then latency, then cost part (these decide
 * even when their weight is 0), then to more samples, then by provider and model id, so a ranking
 * is stable.
 */
export function rankCandidates(candidates: CandidateStats[], params: ScoringParams, minSamples: number): ScoredCandidate[] {
  return candidates
    .filter((c) => c.samples >= minSamples)
    .map((c) => scoreCandidate(c, params))
    .sort(
      (a, b) =>
        b.score - a.score ||
        b.parts.quality - a.parts.quality ||
        b.parts.latency - a.parts.latency ||
        b.parts.cost - a.parts.cost ||
        b.samples - a.samples ||
        cmp(a.provider, b.provider) ||
        cmp(a.model_id, b.model_id),
    );
}

export type ModelRef = {
  model_id: string;
  provider: string;
  score: number;
};

export type ChoiceReason = 'first' | 'better' | 'current_ineligible' | 'same' | 'within_margin';

export interface Choice {
  chosen: ScoredCandidate;
  runnerUp: ScoredCandidate | null;
  changed: boolean;
  reason: ChoiceReason;
  /** The model chosen before, as this run scored it (or as stored, when it is no longer a candidate). */
  previous: ModelRef | null;
}

const same = (a: { model_id: string; provider: string }, b: { model_id: string; provider: string }) => a.model_id === b.model_id && a.provider === b.provider;

/**
 * Which model a pair gets. The current choice is kept unless the best candidate beats it by more
 * than `margin`, or it is no longer a candidate (too few samples in the window); with no candidate
 * at all the pair keeps what it has (null here).
 */
export function chooseModel(ranked: ScoredCandidate[], current: ModelRef | null, margin: number): Choice | null {
  const best = ranked[0];
  if (!best) return null;
  const pick = (chosen: ScoredCandidate, changed: boolean, reason: ChoiceReason, previous: ModelRef | null): Choice => ({
    chosen,
    runnerUp: ranked.find((c) => !same(c, chosen)) ?? null,
    changed,
    reason,
    previous,
  });
  if (!current) return pick(best, true, 'first', null);
  const incumbent = ranked.find((c) => same(c, current));
  if (!incumbent) return pick(best, true, 'current_ineligible', current);
  const previous = { model_id: incumbent.model_id, provider: incumbent.provider, score: incumbent.score };
  if (same(best, incumbent)) return pick(incumbent, false, 'same', previous);
  // Scores are rounded to 6 decimals, so this compares what is shown, not float noise.
  if (r6(best.score - incumbent.score) > margin) return pick(best, true, 'better', previous);
  return pick(incumbent, false, 'within_margin', previous);
}

/** Documented size categories, by the repository's lines of code or, lacking those, its files. */
export const SIZE_THRESHOLDS = {
  small: { maxLines: 10_000, maxFiles: 100 },
  medium: { maxLines: 100_000, maxFiles: 1_000 },
} as const;

export function sizeCategoryOf(repo: { lines?: number; files?: number }): SizeCategory {
  if (repo.lines !== undefined) {
    if (repo.lines < SIZE_THRESHOLDS.small.maxLines) return 'small';
    return repo.lines < SIZE_THRESHOLDS.medium.maxLines ? 'medium' : 'large';
  }
  if (repo.files === undefined) throw new Error('sizeCategoryOf needs lines or files');
  if (repo.files < SIZE_THRESHOLDS.small.maxFiles) return 'small';
  return repo.files < SIZE_THRESHOLDS.medium.maxFiles ? 'medium' : 'large';
}
