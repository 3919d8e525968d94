import fc from 'fast-check';
import { describe, it } from 'vitest';
import { applyTemperature, calibrationMetrics, groupOutcomes } from './calibration-math.ts';

const outcomes = fc.array(fc.tuple(fc.integer({ min: 0, max: 10_000 }).map((x) => x / 10_000), fc.boolean()), { minLength: 1, maxLength: 300 });

describe('calibration metrics (property)', () => {
  it('ECE and Brier lie in [0, 1], MCE is at least ECE, and the bins hold every outcome', () => {
    fc.assert(
      fc.property(outcomes, fc.integer({ min: 1, max: 50 }), (pairs, bins) => {
        const m = calibrationMetrics(groupOutcomes(pairs.map((p) => p[0]), pairs.map((p) => p[1])), bins);
        return (
          m.n === pairs.length &&
          m.ece >= 0 && m.ece <= 1 + 1e-12 &&
          m.mce >= m.ece - 1e-12 && m.mce <= 1 + 1e-12 &&
          m.brier >= 0 && m.brier <= 1 + 1e-12 &&
          m.bins.length === bins &&
          m.bins.reduce((s, b) => s + b.count, 0) === pairs.length
        );
      }),
    );
  });

  it('a temperature keeps confidences in [0, 1] and their order', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0.05, max: 20, noNaN: true }), (a, b, t) => {
        const [x, y] = a <= b ? [a, b] : [b, a];
        const cx = applyTemperature(x, t);
        const cy = applyTemperature(y, t);
        return cx >= 0 && cx <= 1 && cy >= 0 && cy <= 1 && cx <= cy + 1e-12;
      }),
    );
  });
});
