import { describe, expect, it } from 'vitest';
import {
  computeDriftMetrics,
  failedMetrics,
  histogram,
  jensenShannonDistance,
  maxDriftMetrics,
  minmaxCalibrate,
  percentileOfSorted,
  summarizeSorted,
  DEFAULT_DRIFT_THRESHOLDS,
  type LabelStatistics,
} from './math.ts';

/** The same generator as the Python snippets below (a 31-bit LCG), in exact integer arithmetic. */
function lcg(n: number, seed: number): number[] {
  const out: number[] = [];
  let s = BigInt(seed);
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245n + 12345n) % 2147483648n;
    out.push(Number(s) / 2147483648);
  }
  return out;
}
const sorted = (xs: number[]) => Float64Array.from(xs).sort();

describe('percentileOfSorted (numpy.percentile, method="linear")', () => {
  // python: [float(np.percentile(np.array(v), q)) for q in (5, 25, 50, 75, 95)]
  const cases: [string, number[], number[]][] = [
    ['four values', [0.1, 0.4, 0.35, 0.8], [0.1375, 0.2875, 0.375, 0.5, 0.7399999999999999]],
    ['one value', [0.42], [0.42, 0.42, 0.42, 0.42, 0.42]],
    ['two values', [0.2, 0.9], [0.23500000000000001, 0.375, 0.55, 0.7250000000000001, 0.865]],
    [
      'lcg(1000, 7)',
      lcg(1000, 7),
      [0.049404159351252024, 0.2597492003114894, 0.4880018378607929, 0.7460691522574052, 0.9452236596960574],
    ],
  ];
  it.each(cases)('%s', (_, values, expected) => {
    const got = [0.05, 0.25, 0.5, 0.75, 0.95].map((q) => percentileOfSorted(sorted(values), q));
    got.forEach((g, i) => expect(g).toBeCloseTo(expected[i] as number, 14));
  });

  it('rejects an empty sample and a quantile outside [0, 1]', () => {
    expect(() => percentileOfSorted([], 0.5)).toThrow(RangeError);
    expect(() => percentileOfSorted([1], 1.5)).toThrow(RangeError);
  });

  it('summarizes range and IQR from the percentiles', () => {
    const s = summarizeSorted(sorted([0.1, 0.4, 0.35, 0.8]));
    expect(s.samples).toBe(4);
    expect(s.range).toBeCloseTo(0.7399999999999999 - 0.1375, 15);
    expect(s.iqr).toBeCloseTo(0.5 - 0.2875, 15);
  });
});

describe('histogram (numpy.histogram, range=(0, 1))', () => {
  it('puts values on and near edges where numpy does', () => {
    // python: h = np.histogram(np.array(edge), bins=100, range=(0, 1))[0]
    //         [(i, int(c)) for i, c in enumerate(h) if c]
    const edge = [0.0, 0.01, 0.07, 0.29, 0.3, 0.57, 0.58, 0.99, 1.0, 0.999999, 0.5, -0.1, 1.1];
    const h = histogram(edge, 100);
    const nonzero = h.flatMap((c, i) => (c ? [[i, c]] : []));
    expect(nonzero).toEqual([[0, 1], [1, 1], [7, 1], [29, 1], [30, 1], [50, 1], [56, 1], [58, 1], [99, 3]]);
  });

  it('matches numpy on 1000 values in 10 bins', () => {
    // python: np.histogram(np.array(lcg(1000, 7)), bins=10, range=(0, 1))[0].tolist()
    expect(histogram(lcg(1000, 7), 10)).toEqual([93, 106, 87, 125, 100, 106, 95, 81, 102, 105]);
  });

  it('rejects a bin count that is not a positive integer', () => {
    expect(() => histogram([0.5], 0)).toThrow(RangeError);
    expect(() => histogram([0.5], 2.5)).toThrow(RangeError);
  });
});

describe('jensenShannonDistance (scipy.spatial.distance.jensenshannon, base=2)', () => {
  const cases: [string, number[], number[], number][] = [
    // python: float(jensenshannon([1, 2, 3, 4, 0], [0, 2, 2, 4, 1], base=2))
    ['counts with zeros on both sides', [1, 2, 3, 4, 0], [0, 2, 2, 4, 1], 0.33318953286438613],
    // python: float(jensenshannon([1, 0], [0, 1], base=2))
    ['disjoint histograms', [1, 0], [0, 1], 1],
    // python: float(jensenshannon([1, 2, 3], [2, 4, 6], base=2))
    ['identical shapes, different totals', [1, 2, 3], [2, 4, 6], 0],
    // python: a = np.histogram(np.array(lcg(1000, 7)), bins=100, range=(0, 1))[0]
    //         b = np.histogram(np.array(lcg(1000, 11)) ** 1.2, bins=100, range=(0, 1))[0]
    //         float(jensenshannon(a, b, base=2))
    ['two 100-bin histograms', histogram(lcg(1000, 7), 100), histogram(lcg(1000, 11).map((x) => x ** 1.2), 100), 0.22514450837962866],
  ];
  it.each(cases)('%s', (_, p, q, expected) => {
    expect(jensenShannonDistance(p, q)).toBeCloseTo(expected, 12);
    expect(jensenShannonDistance(q, p)).toBeCloseTo(expected, 12);
  });

  it('refuses empty or mismatched histograms', () => {
    expect(() => jensenShannonDistance([0, 0], [1, 0])).toThrow(RangeError);
    expect(() => jensenShannonDistance([1], [1, 0])).toThrow(RangeError);
  });
});

describe('minmaxCalibrate', () => {
  const cases: [number, number, number, number][] = [
    [0.5, 0.1, 0.9, 0.5],
    [0.1, 0.1, 0.9, 0],
    [0.9, 0.1, 0.9, 1],
    [0.05, 0.1, 0.9, 0],
    [0.95, 0.1, 0.9, 1],
    [0.3, 0.2, 0.6, 0.24999999999999997],
    [0.3, 0.5, 0.5, 0.3], // p95 == p5: raw unchanged
    [0.3, 0.6, 0.5, 0.3], // p95 < p5: raw unchanged
  ];
  it.each(cases)('raw %d with p5 %d, p95 %d → %d', (raw, p5, p95, expected) => {
    expect(minmaxCalibrate(raw, p5, p95)).toBeCloseTo(expected, 15);
  });
});

describe('drift metrics and stability', () => {
  const stats = (values: number[]): LabelStatistics => ({ ...summarizeSorted(sorted(values)), histogram: histogram(values, 100) });

  it('are all zero against the same data, and stable', () => {
    const a = stats(lcg(2000, 3));
    const m = computeDriftMetrics(a, a);
    expect(m).toEqual({ apd_p5: 0, apd_p95: 0, srd: 0, jsd: 0, median_drift: 0, iqr_drift: 0 });
    expect(failedMetrics(m, DEFAULT_DRIFT_THRESHOLDS)).toEqual([]);
  });

  it('follow the seed formulas', () => {
    const ref = stats(lcg(1000, 7));
    const cur = stats(lcg(1000, 11).map((x) => x ** 1.2));
    const m = computeDriftMetrics(cur, ref);
    expect(m.apd_p5).toBeCloseTo(Math.abs(cur.p5 - ref.p5), 15);
    expect(m.apd_p95).toBeCloseTo(Math.abs(cur.p95 - ref.p95), 15);
    expect(m.srd).toBeCloseTo(Math.abs(cur.range - ref.range) / ref.range, 15);
    expect(m.median_drift).toBeCloseTo(Math.abs(cur.median - ref.median), 15);
    expect(m.iqr_drift).toBeCloseTo(Math.abs(cur.iqr - ref.iqr) / ref.iqr, 15);
    expect(m.jsd).toBeCloseTo(0.22514450837962866, 12);
    expect(failedMetrics(m, DEFAULT_DRIFT_THRESHOLDS)).toContain('jsd');
  });

  it('fail a metric that equals its threshold (stable means strictly below)', () => {
    const m = { apd_p5: 0.01, apd_p95: 0, srd: 0.049, jsd: 0.0999, median_drift: 0.05, iqr_drift: 0 };
    expect(failedMetrics(m, DEFAULT_DRIFT_THRESHOLDS)).toEqual(['apd_p5', 'median_drift']);
    expect(failedMetrics(m, { ...DEFAULT_DRIFT_THRESHOLDS, apd: 0.02, median: 0.06 })).toEqual([]);
  });

  it('treat a collapsed reference range as infinite drift unless nothing moved', () => {
    const flat = stats([0.5, 0.5, 0.5]);
    expect(computeDriftMetrics(flat, flat).srd).toBe(0);
    expect(computeDriftMetrics(stats([0.4, 0.5, 0.6]), flat).srd).toBe(Number.POSITIVE_INFINITY);
  });

  it('take the worst label for a head', () => {
    const a = { apd_p5: 0.001, apd_p95: 0.02, srd: 0.01, jsd: 0.05, median_drift: 0, iqr_drift: 0.3 };
    const b = { apd_p5: 0.004, apd_p95: 0.01, srd: 0.02, jsd: 0.01, median_drift: 0.1, iqr_drift: 0.1 };
    expect(maxDriftMetrics([a, b])).toEqual({ apd_p5: 0.004, apd_p95: 0.02, srd: 0.02, jsd: 0.05, median_drift: 0.1, iqr_drift: 0.3 });
  });
});
