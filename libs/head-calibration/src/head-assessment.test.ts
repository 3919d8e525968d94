import { describe, expect, it } from 'vitest';
import { loadHeadCalibrationConfig, thresholdsFor } from './config.ts';
import { assessHead } from './head-assessment.ts';
import { DEFAULT_DRIFT_THRESHOLDS, histogram, summarizeSorted, type LabelStatistics } from './math.ts';

const stats = (values: number[], bins = 10): LabelStatistics => ({
  ...summarizeSorted(Float64Array.from(values).sort()),
  histogram: histogram(values, bins),
});
const spread = (n: number, f: (x: number) => number) => Array.from({ length: n }, (_, i) => f((i + 0.5) / n));

describe('assessHead', () => {
  const a = stats(spread(1000, (x) => x));
  const b = stats(spread(1000, (x) => x ** 2));

  it('marks a head without reference unstable with null metrics, averaging its labels', () => {
    const r = assessHead({ modelName: 'm', headName: 'h', labels: { yes: a, no: b }, reference: undefined, thresholds: DEFAULT_DRIFT_THRESHOLDS });
    expect(r).toMatchObject({ isStable: false, metrics: null, failedMetrics: [], referenceVersion: null, fileCount: 1000 });
    expect(r.p5).toBeCloseTo((a.p5 + b.p5) / 2, 15);
    expect(r.range).toBeCloseTo((a.range + b.range) / 2, 15);
    expect(r.labels.yes?.incomparable).toBe('no_reference');
  });

  it('is stable against an identical reference', () => {
    const r = assessHead({ modelName: 'm', headName: 'h', labels: { yes: a }, reference: { version: 4, labels: { yes: a } }, thresholds: DEFAULT_DRIFT_THRESHOLDS });
    expect(r).toMatchObject({ isStable: true, referenceVersion: 4, failedMetrics: [] });
    expect(r.metrics?.jsd).toBe(0);
  });

  it('takes the worst label: one drifted label makes the head unstable', () => {
    const r = assessHead({ modelName: 'm', headName: 'h', labels: { yes: a, no: b }, reference: { version: 1, labels: { yes: a, no: a } }, thresholds: DEFAULT_DRIFT_THRESHOLDS });
    expect(r.isStable).toBe(false);
    expect(r.labels.yes?.failed_metrics).toEqual([]);
    expect(r.labels.no?.failed_metrics.length).toBeGreaterThan(0);
    expect(r.failedMetrics).toEqual(r.labels.no?.failed_metrics);
  });

  it('is unstable when a label is new, or the bin count changed, even if the others match', () => {
    const newLabel = assessHead({ modelName: 'm', headName: 'h', labels: { yes: a, extra: a }, reference: { version: 1, labels: { yes: a } }, thresholds: DEFAULT_DRIFT_THRESHOLDS });
    expect(newLabel).toMatchObject({ isStable: false, failedMetrics: [] });
    expect(newLabel.labels.extra?.incomparable).toBe('label_not_in_reference');
    const rebinned = assessHead({ modelName: 'm', headName: 'h', labels: { yes: a }, reference: { version: 1, labels: { yes: stats(spread(1000, (x) => x), 20) } }, thresholds: DEFAULT_DRIFT_THRESHOLDS });
    expect(rebinned.labels.yes?.incomparable).toBe('bins_changed');
    expect(rebinned.isStable).toBe(false);
  });

  it('applies per-head threshold overrides from the environment', () => {
    const config = loadHeadCalibrationConfig({ CALIBRATION_DRIFT_JSD: '0.2', CALIBRATION_DRIFT_OVERRIDES: '{"m/h":{"apd":0.5,"jsd":0.9}}' });
    expect(thresholdsFor(config, 'm', 'h')).toEqual({ apd: 0.5, srd: 0.05, jsd: 0.9, median: 0.05, iqr: 0.1 });
    expect(thresholdsFor(config, 'm', 'other')).toEqual({ apd: 0.01, srd: 0.05, jsd: 0.2, median: 0.05, iqr: 0.1 });
    expect(() => loadHeadCalibrationConfig({ CALIBRATION_DRIFT_OVERRIDES: '{"m/h":{"typo":1}}' })).toThrow(/CALIBRATION_DRIFT_OVERRIDES/);
    expect(() => loadHeadCalibrationConfig({ CALIBRATION_DRIFT_OVERRIDES: 'not json' })).toThrow(/must be JSON/);
  });
});
