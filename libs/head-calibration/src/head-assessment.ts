import {
  computeDriftMetrics,
  failedMetrics,
  maxDriftMetrics,
  mean,
  type DriftMetric,
  type DriftMetrics,
  type DriftThresholds,
  type LabelStatistics,
} from './math.ts';

/** Per-label figures stored in `calibration_runs.details.labels` and compared by later runs. */
export interface LabelDetails extends LabelStatistics {
  drift: DriftMetrics | null;
  failed_metrics: DriftMetric[];
  /** Why the label could not be compared with the reference, when it could not. */
  incomparable?: 'no_reference' | 'label_not_in_reference' | 'bins_changed';
}

export interface HeadReferenceStatistics {
  version: number;
  labels: Record<string, LabelStatistics>;
}

export interface HeadAssessment {
  modelName: string;
  headName: string;
  fileCount: number;
  p5: number;
  p95: number;
  range: number;
  referenceVersion: number | null;
  metrics: DriftMetrics | null;
  failedMetrics: DriftMetric[];
  thresholds: DriftThresholds;
  isStable: boolean;
  labels: Record<string, LabelDetails>;
}

/**
 * Decides one head's stability from its labels' statistics and the statistics stored with its
 * reference run. The head's metric is the max over labels; it is stable iff every label could be
 * compared and every metric is strictly below its threshold. Without a reference every metric is
 * null and the head is unstable.
 */
export function assessHead(input: {
  modelName: string;
  headName: string;
  labels: Record<string, LabelStatistics>;
  reference: HeadReferenceStatistics | undefined;
  thresholds: DriftThresholds;
}): HeadAssessment {
  const names = Object.keys(input.labels).sort();
  if (names.length === 0) throw new RangeError(`head ${input.modelName}/${input.headName} has no labels`);
  const labels: Record<string, LabelDetails> = {};
  const comparable: DriftMetrics[] = [];
  let allComparable = true;

  for (const name of names) {
    const current = input.labels[name] as LabelStatistics;
    const ref = input.reference?.labels[name];
    let incomparable: LabelDetails['incomparable'];
    if (!input.reference) incomparable = 'no_reference';
    else if (!ref) incomparable = 'label_not_in_reference';
    else if (ref.histogram.length !== current.histogram.length) incomparable = 'bins_changed';

    if (incomparable || !ref) {
      allComparable = false;
      labels[name] = { ...current, drift: null, failed_metrics: [], incomparable };
      continue;
    }
    const drift = computeDriftMetrics(current, ref);
    comparable.push(drift);
    labels[name] = { ...current, drift, failed_metrics: failedMetrics(drift, input.thresholds) };
  }

  const metrics = input.reference && comparable.length > 0 ? maxDriftMetrics(comparable) : null;
  const failed = metrics ? failedMetrics(metrics, input.thresholds) : [];
  const stats = names.map((n) => input.labels[n] as LabelStatistics);
  return {
    modelName: input.modelName,
    headName: input.headName,
    // Files scored by the head: its labels are normally scored together, so the largest label count.
    fileCount: Math.max(...stats.map((s) => s.samples)),
    p5: mean(stats.map((s) => s.p5)),
    p95: mean(stats.map((s) => s.p95)),
    range: mean(stats.map((s) => s.range)),
    referenceVersion: input.reference?.version ?? null,
    metrics,
    failedMetrics: failed,
    thresholds: input.thresholds,
    isStable: allComparable && metrics !== null && failed.length === 0,
    labels,
  };
}
