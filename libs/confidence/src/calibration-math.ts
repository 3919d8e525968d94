// Calibration quality of predicted confidences against observed outcomes. Pure functions, no I/O.
//
// Everything works on groups of equal confidence (a confidence, how many outcomes had it, how many
// of those were correct): confidences are stored to 4 decimals, so a model's millions of outcomes
// come out of Postgres as at most 10 001 groups, and every metric here is exact on them.

export interface ConfidenceGroup {
  confidence: number;
  count: number;
  positives: number;
}

export interface ReliabilityBin {
  lo: number;
  hi: number;
  count: number;
  avg_confidence: number | null;
  accuracy: number | null;
}

export interface CalibrationMetrics {
  n: number;
  /** Expected calibration error: Σ (bin count / n) · |accuracy − mean confidence|. */
  ece: number;
  /** Maximum calibration error: the largest such gap over the bins that hold outcomes. */
  mce: number;
  /** Mean of (confidence − outcome)². */
  brier: number;
  bins: ReliabilityBin[];
}

export const DEFAULT_BINS = 15;

/** Groups raw (confidence, outcome) pairs; for tests and small inputs. */
export function groupOutcomes(confidences: readonly number[], outcomes: readonly (boolean | 0 | 1)[]): ConfidenceGroup[] {
  if (confidences.length !== outcomes.length) throw new Error('confidences and outcomes differ in length');
  const groups = new Map<number, ConfidenceGroup>();
  confidences.forEach((confidence, i) => {
    const g = groups.get(confidence) ?? { confidence, count: 0, positives: 0 };
    g.count += 1;
    g.positives += outcomes[i] ? 1 : 0;
    groups.set(confidence, g);
  });
  return [...groups.values()].sort((a, b) => a.confidence - b.confidence);
}

/**
 * The 0-based bin of a confidence among `bins` equal-width bins, each (lo, hi] (0 itself joins
 * the first). The tolerance keeps 0.3 in (0.2, 0.3] although 0.3 × 10 is 3.0000000000000004.
 */
export function binIndex(confidence: number, bins: number): number {
  const k = Math.ceil(confidence * bins - 1e-9) - 1;
  return Math.min(bins - 1, Math.max(0, k));
}

export function calibrationMetrics(groups: readonly ConfidenceGroup[], bins = DEFAULT_BINS): CalibrationMetrics {
  if (!Number.isInteger(bins) || bins < 1) throw new Error('bins must be a positive integer');
  const acc = Array.from({ length: bins }, () => ({ count: 0, sumConfidence: 0, positives: 0 }));
  let n = 0;
  let squaredError = 0;
  for (const g of groups) {
    if (g.count === 0) continue;
    const b = acc[binIndex(g.confidence, bins)]!;
    b.count += g.count;
    b.sumConfidence += g.confidence * g.count;
    b.positives += g.positives;
    n += g.count;
    squaredError += g.positives * (1 - g.confidence) ** 2 + (g.count - g.positives) * g.confidence ** 2;
  }
  let ece = 0;
  let mce = 0;
  const out = acc.map((b, i): ReliabilityBin => {
    const lo = i / bins;
    const hi = (i + 1) / bins;
    if (b.count === 0) return { lo, hi, count: 0, avg_confidence: null, accuracy: null };
    const avgConfidence = b.sumConfidence / b.count;
    const accuracy = b.positives / b.count;
    const gap = Math.abs(accuracy - avgConfidence);
    ece += (b.count / n) * gap;
    mce = Math.max(mce, gap);
    return { lo, hi, count: b.count, avg_confidence: avgConfidence, accuracy };
  });
  return { n, ece: n ? ece : 0, mce, brier: n ? squaredError / n : 0, bins: out };
}

/** Confidences are clamped to the stored precision before taking logits, so 0 and 1 stay finite. */
const EPS = 1e-4;
const clamp = (p: number) => Math.min(1 - EPS, Math.max(EPS, p));
const logit = (p: number) => Math.log(clamp(p) / (1 - clamp(p)));
const sigmoid = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));

/** Temperature scaling of a binary confidence: σ(logit(p) / T). T > 1 softens, T < 1 sharpens. */
export function applyTemperature(confidence: number, temperature: number): number {
  return sigmoid(logit(confidence) / temperature);
}

/** Mean negative log-likelihood of the outcomes under the (temperature-scaled) confidences. */
export function logLoss(groups: readonly ConfidenceGroup[], temperature = 1): number {
  let n = 0;
  let loss = 0;
  for (const g of groups) {
    const p = clamp(applyTemperature(g.confidence, temperature));
    loss -= g.positives * Math.log(p) + (g.count - g.positives) * Math.log(1 - p);
    n += g.count;
  }
  return n ? loss / n : 0;
}

export const TEMPERATURE_RANGE = [0.01, 100] as const;

/**
 * The temperature minimising log loss. With a = 1/T the loss is that of a one-weight logistic
 * regression on the logits, convex in a, so its derivative Σ z·(n·σ(a z) − positives) rises with a:
 * bisect it. Confidences that predict the outcome backwards (best a ≤ 0) get the hottest allowed
 * temperature, which flattens them towards ½.
 */
export function fitTemperature(groups: readonly ConfidenceGroup[]): number {
  const points = groups.filter((g) => g.count > 0).map((g) => ({ z: logit(g.confidence), n: g.count, pos: g.positives }));
  const slope = (a: number) => points.reduce((s, p) => s + p.z * (p.n * sigmoid(a * p.z) - p.pos), 0);
  let lo = Math.log(1 / TEMPERATURE_RANGE[1]);
  let hi = Math.log(1 / TEMPERATURE_RANGE[0]);
  if (points.length === 0 || slope(Math.exp(lo)) >= 0) return TEMPERATURE_RANGE[1];
  if (slope(Math.exp(hi)) <= 0) return TEMPERATURE_RANGE[0];
  for (let i = 0; i < 100 && hi - lo > 1e-12; i++) {
    const mid = (lo + hi) / 2;
    if (slope(Math.exp(mid)) > 0) hi = mid;
    else lo = mid;
  }
  return 1 / Math.exp((lo + hi) / 2);
}

/** The groups as they would be after temperature scaling (scaling is monotone: groups stay apart). */
export function scaleGroups(groups: readonly ConfidenceGroup[], temperature: number): ConfidenceGroup[] {
  return groups.map((g) => ({ ...g, confidence: applyTemperature(g.confidence, temperature) }));
}
