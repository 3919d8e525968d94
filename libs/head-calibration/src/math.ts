/**
 * Calibration math for tagger heads, with no I/O. Each function matches the numpy/scipy routine
 * named in its comment; the tests hold golden values computed with those routines.
 */

/** The percentiles a calibration keeps per label (as fractions). */
export const PERCENTILES = { p5: 0.05, p25: 0.25, median: 0.5, p75: 0.75, p95: 0.95 } as const;

/**
 * `numpy.percentile(a, q * 100)` with the default method "linear" (Hyndman–Fan type 7), on an
 * already ascending-sorted array. Like numpy, the interpolation is computed from the nearer end.
 */
export function percentileOfSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) throw new RangeError('percentile of an empty sample');
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile ${q} outside [0, 1]`);
  const virtual = (n - 1) * q;
  const lo = Math.floor(virtual);
  const hi = Math.min(lo + 1, n - 1);
  const t = virtual - lo;
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  const diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

export interface ScoreSummary {
  samples: number;
  p5: number;
  p25: number;
  median: number;
  p75: number;
  p95: number;
  range: number;
  iqr: number;
}

export function summarizeSorted(sorted: ArrayLike<number>): ScoreSummary {
  const p = (q: number) => percentileOfSorted(sorted, q);
  const s = { p5: p(PERCENTILES.p5), p25: p(PERCENTILES.p25), median: p(PERCENTILES.median), p75: p(PERCENTILES.p75), p95: p(PERCENTILES.p95) };
  return { samples: sorted.length, ...s, range: s.p95 - s.p5, iqr: s.p75 - s.p25 };
}

/**
 * `numpy.histogram(a, bins=bins, range=(0, 1))[0]`: equal-width bins, the last one closed, values
 * outside [0, 1] ignored. Bin edges and the edge corrections follow numpy's uniform-bins path so
 * values on an edge land in the same bin as in numpy.
 */
export function histogram(values: ArrayLike<number>, bins: number): number[] {
  if (!Number.isInteger(bins) || bins < 1) throw new RangeError(`bins must be a positive integer, got ${bins}`);
  const counts = new Array<number>(bins).fill(0);
  const step = 1 / bins; // numpy.linspace(0, 1, bins + 1)[i] == i * step, last edge exactly 1
  const edge = (i: number) => (i >= bins ? 1 : i * step);
  for (let k = 0; k < values.length; k++) {
    const x = values[k] as number;
    if (!(x >= 0 && x <= 1)) continue;
    let i = Math.trunc(x * bins);
    if (i === bins) i -= 1;
    if (x < edge(i)) i -= 1;
    else if (i !== bins - 1 && x >= edge(i + 1)) i += 1;
    counts[i] = (counts[i] as number) + 1;
  }
  return counts;
}

/** scipy.special.rel_entr(x, y) / ln 2 summed over the bins, for probability vectors. */
function relativeEntropyBits(p: number[], m: number[]): number {
  let sum = 0;
  for (let i = 0; i < p.length; i++) {
    const x = p[i] as number;
    if (x > 0) sum += x * Math.log(x / (m[i] as number));
  }
  return sum;
}

/**
 * `scipy.spatial.distance.jensenshannon(p, q, base=2)`: the Jensen–Shannon distance (square root of
 * the divergence) between two histograms, normalised to probabilities. 0 for identical shapes, 1 for
 * disjoint supports.
 */
export function jensenShannonDistance(pCounts: readonly number[], qCounts: readonly number[]): number {
  if (pCounts.length !== qCounts.length) throw new RangeError('histograms must have the same number of bins');
  const pTotal = pCounts.reduce((a, b) => a + b, 0);
  const qTotal = qCounts.reduce((a, b) => a + b, 0);
  if (pTotal <= 0 || qTotal <= 0) throw new RangeError('histograms must not be empty');
  const p = pCounts.map((x) => x / pTotal);
  const q = qCounts.map((x) => x / qTotal);
  const m = p.map((x, i) => (x + (q[i] as number)) / 2);
  const js = (relativeEntropyBits(p, m) + relativeEntropyBits(q, m)) / Math.LN2;
  return Math.sqrt(Math.max(0, js / 2));
}

/** Min-max calibration: `clamp((raw − p5) / (p95 − p5), 0, 1)`, raw unchanged when `p95 ≤ p5`. */
export function minmaxCalibrate(raw: number, p5: number, p95: number): number {
  if (!(p95 > p5)) return raw;
  const scaled = (raw - p5) / (p95 - p5);
  return scaled < 0 ? 0 : scaled > 1 ? 1 : scaled;
}

export const DRIFT_METRICS = ['apd_p5', 'apd_p95', 'srd', 'jsd', 'median_drift', 'iqr_drift'] as const;
export type DriftMetric = (typeof DRIFT_METRICS)[number];
export type DriftMetrics = Record<DriftMetric, number>;

/** What a label's drift is measured from: its summary and histogram at the reference version. */
export interface LabelStatistics extends ScoreSummary {
  histogram: number[];
}

/** `|Δ| / reference`, with a zero reference giving 0 when nothing moved and +∞ otherwise. */
function relativeChange(current: number, reference: number): number {
  const delta = Math.abs(current - reference);
  if (reference === 0) return delta === 0 ? 0 : Number.POSITIVE_INFINITY;
  return delta / Math.abs(reference);
}

export function computeDriftMetrics(current: LabelStatistics, reference: LabelStatistics): DriftMetrics {
  return {
    apd_p5: Math.abs(current.p5 - reference.p5),
    apd_p95: Math.abs(current.p95 - reference.p95),
    srd: relativeChange(current.range, reference.range),
    jsd: jensenShannonDistance(reference.histogram, current.histogram),
    median_drift: Math.abs(current.median - reference.median),
    iqr_drift: relativeChange(current.iqr, reference.iqr),
  };
}

export interface DriftThresholds {
  apd: number;
  srd: number;
  jsd: number;
  median: number;
  iqr: number;
}

export const DEFAULT_DRIFT_THRESHOLDS: DriftThresholds = { apd: 0.01, srd: 0.05, jsd: 0.1, median: 0.05, iqr: 0.1 };

const THRESHOLD_OF: Record<DriftMetric, keyof DriftThresholds> = {
  apd_p5: 'apd',
  apd_p95: 'apd',
  srd: 'srd',
  jsd: 'jsd',
  median_drift: 'median',
  iqr_drift: 'iqr',
};

/** The metrics that are not strictly below their threshold, in a fixed order. */
export function failedMetrics(metrics: DriftMetrics, thresholds: DriftThresholds): DriftMetric[] {
  return DRIFT_METRICS.filter((m) => !(metrics[m] < thresholds[THRESHOLD_OF[m]]));
}

/** A head's metric is the worst (max) over its labels. */
export function maxDriftMetrics(perLabel: readonly DriftMetrics[]): DriftMetrics {
  if (perLabel.length === 0) throw new RangeError('no label metrics to combine');
  const out = {} as DriftMetrics;
  for (const m of DRIFT_METRICS) out[m] = Math.max(...perLabel.map((l) => l[m]));
  return out;
}

export function mean(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('mean of nothing');
  return values.reduce((a, b) => a + b, 0) / values.length;
}
