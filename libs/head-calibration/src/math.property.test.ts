import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { computeDriftMetrics, histogram, jensenShannonDistance, minmaxCalibrate, percentileOfSorted, summarizeSorted, type LabelStatistics } from './math.ts';

const unit = fc.double({ min: 0, max: 1, noNaN: true });
const scores = fc.array(unit, { minLength: 1, maxLength: 300 });
const counts = (bins: number) => fc.array(fc.nat({ max: 1000 }), { minLength: bins, maxLength: bins }).filter((c) => c.some((x) => x > 0));
const sorted = (xs: number[]) => Float64Array.from(xs).sort();

function stats(xs: number[], bins = 20): LabelStatistics {
  const s = sorted(xs);
  return { ...summarizeSorted(s), histogram: histogram(s, bins) };
}

describe('percentiles (property)', () => {
  it('are monotonic in q and stay within the sample', () => {
    fc.assert(
      fc.property(scores, unit, unit, (xs, a, b) => {
        const s = sorted(xs);
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        const pLo = percentileOfSorted(s, lo);
        const pHi = percentileOfSorted(s, hi);
        return pLo <= pHi + 1e-15 && pLo >= s[0]! - 1e-15 && pHi <= s[s.length - 1]! + 1e-15;
      }),
    );
  });
});

describe('minmaxCalibrate (property)', () => {
  it('is clamped to [0, 1] and monotonic in the raw score', () => {
    fc.assert(
      fc.property(fc.double({ min: -2, max: 3, noNaN: true }), fc.double({ min: -2, max: 3, noNaN: true }), unit, unit, (r1, r2, a, b) => {
        const [p5, p95] = a < b ? [a, b] : [b, a];
        fc.pre(p95 > p5);
        const [x, y] = r1 <= r2 ? [r1, r2] : [r2, r1];
        const cx = minmaxCalibrate(x, p5, p95);
        const cy = minmaxCalibrate(y, p5, p95);
        return cx >= 0 && cx <= 1 && cy >= 0 && cy <= 1 && cx <= cy;
      }),
    );
  });

  it('leaves the score as it is when the bounds are degenerate', () => {
    fc.assert(fc.property(unit, unit, (raw, p) => minmaxCalibrate(raw, p, p) === raw));
  });
});

describe('histogram (property)', () => {
  it('counts every score in [0, 1] exactly once', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -1, max: 2, noNaN: true }), { maxLength: 300 }), fc.integer({ min: 1, max: 100 }), (xs, bins) => {
        const h = histogram(xs, bins);
        return h.length === bins && h.reduce((a, b) => a + b, 0) === xs.filter((x) => x >= 0 && x <= 1).length;
      }),
    );
  });
});

describe('Jensen–Shannon distance (property)', () => {
  it('is symmetric, within [0, 1], and 0 for the same shape at any scale', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }).chain((bins) => fc.tuple(counts(bins), counts(bins), fc.integer({ min: 1, max: 7 }))), ([p, q, k]) => {
        const pq = jensenShannonDistance(p, q);
        const qp = jensenShannonDistance(q, p);
        return Math.abs(pq - qp) < 1e-12 && pq >= 0 && pq <= 1 + 1e-12 && jensenShannonDistance(p, p.map((x) => x * k)) < 1e-7;
      }),
    );
  });

  it('is 1 for disjoint supports', () => {
    expect(jensenShannonDistance([5, 0, 0], [0, 0, 9])).toBeCloseTo(1, 12);
  });
});

describe('drift metrics (property)', () => {
  it('are never negative, are 0 against themselves, and the absolute ones are symmetric', () => {
    fc.assert(
      fc.property(scores, scores, (a, b) => {
        const sa = stats(a);
        const sb = stats(b);
        const ab = computeDriftMetrics(sa, sb);
        const ba = computeDriftMetrics(sb, sa);
        const self = computeDriftMetrics(sa, sa);
        return (
          Object.values(ab).every((v) => v >= 0 && !Number.isNaN(v)) &&
          Object.values(self).every((v) => v === 0 || v < 1e-9) &&
          ab.apd_p5 === ba.apd_p5 &&
          ab.apd_p95 === ba.apd_p95 &&
          ab.median_drift === ba.median_drift &&
          Math.abs(ab.jsd - ba.jsd) < 1e-12
        );
      }),
    );
  });
});
