import { describe, expect, it } from 'vitest';
import { applyTemperature, binIndex, calibrationMetrics, fitTemperature, groupOutcomes, logLoss, scaleGroups, TEMPERATURE_RANGE } from './calibration-math.ts';

describe('calibration metrics', () => {
  // The golden case, worked by hand: bins (0.9,1], (0.8,0.9], (0.7,0.8], (0.5,0.6], (0.2,0.3], (0.1,0.2].
  const conf = [0.95, 0.9, 0.8, 0.75, 0.6, 0.55, 0.3, 0.2];
  const outcome = [1, 1, 0, 1, 1, 0, 0, 0] as const;

  it('gives ECE, MCE and Brier of the golden case with 10 bins', () => {
    const m = calibrationMetrics(groupOutcomes(conf, [...outcome]), 10);
    expect(m.n).toBe(8);
    expect(m.ece).toBeCloseTo(0.16875, 12);
    expect(m.mce).toBeCloseTo(0.3, 12);
    expect(m.brier).toBeCloseTo(0.1634375, 12);
    expect(m.bins).toHaveLength(10);
    expect(m.bins[7]).toEqual({ lo: 0.7, hi: 0.8, count: 2, avg_confidence: expect.closeTo(0.775, 12), accuracy: 0.5 });
    expect(m.bins[2]).toMatchObject({ count: 1, accuracy: 0 }); // 0.3 is in (0.2, 0.3]
    expect(m.bins[0]).toEqual({ lo: 0, hi: 0.1, count: 0, avg_confidence: null, accuracy: null });
  });

  it('uses 15 bins by default and counts a confidence equal to a bin edge in the lower bin', () => {
    expect(calibrationMetrics(groupOutcomes(conf, [...outcome])).bins).toHaveLength(15);
    const cases: [number, number, number][] = [
      [0, 10, 0],
      [0.1, 10, 0],
      [0.1001, 10, 1],
      [0.3, 10, 2],
      [0.7, 10, 6],
      [1, 10, 9],
      [1, 15, 14],
      [0.4, 15, 5], // 6/15 = 0.4: (1/3, 0.4]
      [0.4001, 15, 6],
    ];
    for (const [p, bins, k] of cases) expect([p, bins, binIndex(p, bins)]).toEqual([p, bins, k]);
  });

  it('is zero for perfectly calibrated groups and maximal for confident wrong answers', () => {
    const calibrated = [
      { confidence: 0.25, count: 4, positives: 1 },
      { confidence: 0.75, count: 4, positives: 3 },
    ];
    expect(calibrationMetrics(calibrated, 4)).toMatchObject({ ece: 0, mce: 0, n: 8 });
    const wrong = [{ confidence: 1, count: 5, positives: 0 }];
    expect(calibrationMetrics(wrong)).toMatchObject({ ece: 1, mce: 1, brier: 1 });
    expect(calibrationMetrics([])).toMatchObject({ n: 0, ece: 0, mce: 0, brier: 0 });
  });

  it('gives the same answer on groups as on the raw pairs they came from', () => {
    const raw = Array.from({ length: 500 }, (_, i) => Math.round(((i * 37) % 101) / 100 * 1e4) / 1e4);
    const out = raw.map((p, i) => (((i * 7919) % 100) / 100 < p ? 1 : 0));
    const grouped = groupOutcomes(raw, out);
    expect(grouped.length).toBeLessThan(raw.length);
    const perPair = calibrationMetrics(raw.map((p, i) => ({ confidence: p, count: 1, positives: out[i]! })));
    const byGroup = calibrationMetrics(grouped);
    for (const k of ['ece', 'mce', 'brier'] as const) expect(byGroup[k]).toBeCloseTo(perPair[k], 12);
    expect(byGroup.bins.map((b) => [b.count, b.accuracy])).toEqual(perPair.bins.map((b) => [b.count, b.accuracy]));
  });
});

describe('temperature scaling', () => {
  // Golden values from scipy.optimize.minimize_scalar (bounded, T in [0.01, 100]) on the same
  // negative log-likelihood, confidences clamped to [1e-4, 1 - 1e-4].
  const groups = [
    [0.05, 10, 2],
    [0.2, 20, 5],
    [0.35, 30, 11],
    [0.5, 40, 19],
    [0.65, 50, 28],
    [0.8, 60, 38],
    [0.9, 70, 47],
    [0.97, 80, 58],
    [0.999, 90, 71],
  ].map(([confidence, count, positives]) => ({ confidence: confidence!, count: count!, positives: positives! }));

  it('fits the temperature scipy finds, and lowers log loss and ECE', () => {
    const t = fitTemperature(groups);
    expect(t).toBeCloseTo(4.209026965580459, 6);
    expect(logLoss(groups)).toBeCloseTo(0.916535004709018, 10);
    expect(logLoss(groups, t)).toBeCloseTo(0.6200050338976286, 10);
    expect(calibrationMetrics(groups).ece).toBeCloseTo(0.16224444444444447, 10);
    expect(calibrationMetrics(scaleGroups(groups, t)).ece).toBeCloseTo(0.050382836464982185, 8);
  });

  it('recovers the temperature that generated the outcomes', () => {
    // Outcomes drawn exactly at σ(logit(p) / 2): expected counts, so the fit is exact.
    const made = Array.from({ length: 19 }, (_, i) => {
      const confidence = (i + 1) / 20;
      return { confidence, count: 1_000_000, positives: Math.round(applyTemperature(confidence, 2) * 1_000_000) };
    });
    expect(fitTemperature(made)).toBeCloseTo(2, 3);
  });

  it('keeps to its range for degenerate inputs', () => {
    expect(fitTemperature([])).toBe(TEMPERATURE_RANGE[1]);
    // Confidence predicts the outcome backwards: flatten as far as allowed.
    expect(fitTemperature([{ confidence: 0.9, count: 10, positives: 0 }, { confidence: 0.1, count: 10, positives: 10 }])).toBe(TEMPERATURE_RANGE[1]);
    // Always right at 0.6: sharpen as far as allowed.
    expect(fitTemperature([{ confidence: 0.6, count: 10, positives: 10 }, { confidence: 0.4, count: 10, positives: 0 }])).toBe(TEMPERATURE_RANGE[0]);
    expect(applyTemperature(0.5, 3)).toBeCloseTo(0.5, 12);
    expect(Number.isFinite(logLoss([{ confidence: 1, count: 3, positives: 0 }]))).toBe(true);
  });
});
