import { ApiError, type Executor } from '@caliber/platform';
import { sql } from 'drizzle-orm';
import { calibrationMetrics, scaleGroups, type ConfidenceGroup } from './calibration-math.ts';

/** The model rows the folded rollups keep for all of a tenant's models together. */
export const ALL_MODELS = '';

/**
 * Rollup rows at the grain of `unit`: the folded rows (confidence_hourly or confidence_daily) and
 * the sums still pending (hourly, binned to days when asked), which readers add up alike. `scope`
 * is one model, all models together (the folded tables' ALL_MODELS rows: a tenth as many rows to
 * add for ten models), or each model.
 */
const rollupRows = (tenantId: string, unit: 'hour' | 'day', scope: { model: string } | 'all' | 'each') => {
  const folded = scope === 'each' ? sql`model <> ${ALL_MODELS}` : sql`model = ${scope === 'all' ? ALL_MODELS : scope.model}`;
  const pending = typeof scope === 'object' ? sql`AND model = ${scope.model}` : sql``;
  return sql`(
  SELECT model, bucket, count, sum_overall, sum_sq_overall, min_overall, max_overall, sum_factual, sum_reasoning, sum_contextual, sum_uncertainty_width
    FROM ${sql.raw(unit === 'hour' ? 'confidence_hourly' : 'confidence_daily')} WHERE tenant_id = ${tenantId}::uuid AND ${folded}
  UNION ALL
  SELECT model, ${sql.raw(unit === 'hour' ? 'bucket' : "date_bin('1 day', bucket, '2000-01-01 00:00:00+00')")}, count, sum_overall, sum_sq_overall,
         min_overall, max_overall, sum_factual, sum_reasoning, sum_contextual, sum_uncertainty_width
    FROM confidence_hourly_pending WHERE tenant_id = ${tenantId}::uuid ${pending}) r`;
};

export type BucketUnit = 'hour' | 'day';
const UNIT_MS: Record<BucketUnit, number> = { hour: 3_600_000, day: 86_400_000 };
/** The longest series one trends request returns. */
export const MAX_BUCKETS = 5_000;

const SCALE = [1, 10, 100, 1e3, 1e4, 1e5, 1e6];
/** Rounds to `digits` decimals (toFixed was most of the trends route's own time). */
const round = (x: number | null | undefined, digits = 6) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * SCALE[digits]!) / SCALE[digits]!);

export interface TrendsQuery {
  from?: string;
  to?: string;
  bucket: BucketUnit;
  model?: string;
}

/**
 * Confidence over time from the hourly rollup, in UTC hours or days. Every bucket of the range is
 * listed, empty ones with count 0, so a chart needs no gap filling. `from` is rounded down to its
 * bucket; `to` is exclusive.
 */
export async function confidenceTrends(tx: Executor, tenantId: string, q: TrendsQuery, now = new Date()) {
  const step = UNIT_MS[q.bucket];
  const to = q.to ? new Date(q.to) : now;
  // Default span: the last 24 hours, or the last 30 days.
  const requestedFrom = q.from ? new Date(q.from) : new Date(to.getTime() - (q.bucket === 'hour' ? 24 : 30) * step);
  const from = new Date(Math.floor(requestedFrom.getTime() / step) * step);
  if (from >= to) throw new ApiError(400, 'invalid_request', '"from" must be before "to"');
  const buckets = Math.ceil((to.getTime() - from.getTime()) / step);
  if (buckets > MAX_BUCKETS) {
    throw new ApiError(400, 'invalid_request', `That range holds ${buckets} ${q.bucket} buckets; at most ${MAX_BUCKETS} per request (use bucket=day, or a shorter range)`);
  }
  const { rows } = await tx.execute<{
    bucket_ms: number;
    count: number;
    sum_overall: number;
    sum_sq: number;
    min_overall: number;
    max_overall: number;
    sum_factual: number;
    sum_reasoning: number;
    sum_contextual: number;
    sum_width: number;
  }>(sql`
    -- Epoch ms rather than a timestamptz: parsing timestamps was most of this route's own time.
    SELECT (extract(epoch FROM bucket) * 1000)::float8 AS bucket_ms, sum(count)::float8 AS count, sum(sum_overall) AS sum_overall,
           sum(sum_sq_overall) AS sum_sq, min(min_overall) AS min_overall, max(max_overall) AS max_overall,
           sum(sum_factual) AS sum_factual, sum(sum_reasoning) AS sum_reasoning, sum(sum_contextual) AS sum_contextual,
           sum(sum_uncertainty_width) AS sum_width
      FROM ${rollupRows(tenantId, q.bucket, q.model ? { model: q.model } : 'all')}
     WHERE bucket >= ${from.toISOString()}::timestamptz AND bucket < ${to.toISOString()}::timestamptz
     GROUP BY 1`);
  const byStart = new Map(rows.map((r) => [r.bucket_ms, r]));
  const series = [];
  for (let t = from.getTime(); t < to.getTime(); t += step) {
    const r = byStart.get(t);
    if (!r || r.count === 0) {
      series.push({ bucket: new Date(t).toISOString(), count: 0, avg_overall: null, avg_factual: null, avg_reasoning: null, avg_contextual: null, min_overall: null, max_overall: null, stddev_overall: null, avg_uncertainty_width: null });
      continue;
    }
    const mean = r.sum_overall / r.count;
    series.push({
      bucket: new Date(t).toISOString(),
      count: r.count,
      avg_overall: round(mean),
      avg_factual: round(r.sum_factual / r.count),
      avg_reasoning: round(r.sum_reasoning / r.count),
      avg_contextual: round(r.sum_contextual / r.count),
      min_overall: round(r.min_overall),
      max_overall: round(r.max_overall),
      stddev_overall: round(Math.sqrt(Math.max(0, r.sum_sq / r.count - mean * mean))),
      avg_uncertainty_width: round(r.sum_width / r.count),
    });
  }
  return { from: from.toISOString(), to: to.toISOString(), bucket: q.bucket, model: q.model ?? null, buckets: series };
}

/** A model's outcomes as groups of equal predicted confidence (at most 10 001: 4 decimals). */
export async function outcomeGroups(tx: Executor, tenantId: string, filter: ReturnType<typeof sql> = sql``) {
  const { rows } = await tx.execute<{ model: string; confidence: number; count: number; positives: number }>(sql`
    SELECT model, predicted_confidence::float8 AS confidence, count(*)::int AS count, count(*) FILTER (WHERE actual_outcome)::int AS positives
      FROM confidence_calibration
     WHERE tenant_id = ${tenantId}::uuid ${filter}
     GROUP BY model, predicted_confidence
     ORDER BY model, predicted_confidence`);
  const byModel = new Map<string, ConfidenceGroup[]>();
  for (const r of rows) {
    const groups = byModel.get(r.model) ?? [];
    groups.push({ confidence: r.confidence, count: r.count, positives: r.positives });
    byModel.set(r.model, groups);
  }
  return byModel;
}

export interface TemperatureFit {
  temperature: number;
  outcomes: number;
  ece_before: number;
  ece_after: number;
  brier_before: number;
  brier_after: number;
  fitted_at: string;
}

async function latestFits(tx: Executor, tenantId: string, models: string[]): Promise<Map<string, TemperatureFit>> {
  if (models.length === 0) return new Map();
  const { rows } = await tx.execute<{ model: string; temperature: number; outcomes: number; ece_before: number; ece_after: number; brier_before: number; brier_after: number; fitted_at: Date }>(sql`
    SELECT m.model, f.temperature, f.outcomes, f.ece_before, f.ece_after, f.brier_before, f.brier_after, f.fitted_at
      FROM unnest(${sql.param(models)}::text[]) AS m(model)
      JOIN LATERAL (SELECT * FROM confidence_temperature_fits f WHERE f.tenant_id = ${tenantId}::uuid AND f.model = m.model ORDER BY f.id DESC LIMIT 1) f ON true`);
  return new Map(
    rows.map((r) => [
      r.model,
      {
        temperature: round(r.temperature)!,
        outcomes: r.outcomes,
        ece_before: round(r.ece_before)!,
        ece_after: round(r.ece_after)!,
        brier_before: round(r.brier_before)!,
        brier_after: round(r.brier_after)!,
        fitted_at: new Date(r.fitted_at).toISOString(),
      },
    ]),
  );
}

function describeMetrics(groups: ConfidenceGroup[], bins: number) {
  const m = calibrationMetrics(groups, bins);
  return {
    n: m.n,
    ece: round(m.ece)!,
    mce: round(m.mce)!,
    brier: round(m.brier)!,
    bins: m.bins.map((b) => ({ lo: round(b.lo)!, hi: round(b.hi)!, count: b.count, avg_confidence: round(b.avg_confidence), accuracy: round(b.accuracy) })),
  };
}

export interface CalibrationQuery {
  model?: string;
  bins: number;
  validation_method?: string;
  from?: string;
  to?: string;
}

/**
 * How well the overall confidence predicted the outcomes: ECE, MCE, Brier and the reliability
 * bins; for one model also its latest fitted temperature and the same metrics after applying it.
 */
export async function calibrationReport(tx: Executor, tenantId: string, q: CalibrationQuery) {
  const filter = sql`${q.model ? sql`AND model = ${q.model}` : sql``}
    ${q.validation_method ? sql`AND validation_method = ${q.validation_method}::validation_method` : sql``}
    ${q.from ? sql`AND validated_at >= ${q.from}::timestamptz` : sql``}
    ${q.to ? sql`AND validated_at < ${q.to}::timestamptz` : sql``}`;
  const byModel = await outcomeGroups(tx, tenantId, filter);
  const groups = [...byModel.values()].flat();
  const fit = q.model ? (await latestFits(tx, tenantId, [q.model])).get(q.model) : undefined;
  const after = fit ? describeMetrics(scaleGroups(groups, fit.temperature), q.bins) : undefined;
  return {
    model: q.model ?? null,
    ...describeMetrics(groups, q.bins),
    temperature: fit?.temperature ?? null,
    temperature_fit: fit ?? null,
    calibrated: after ? { ece: after.ece, mce: after.mce, brier: after.brier } : null,
  };
}

/** Runs a query in a tenant transaction of its own (`withTenant` bound to the tenant). */
export type TenantRunner = <T>(fn: (tx: Executor) => Promise<T>) => Promise<T>;

/**
 * Everything the dashboard shows for the last `hours`: confidence and calibration per model,
 * performance per endpoint. Its three reads run at once, each in a tenant transaction of its own.
 */
export async function dashboard(run: TenantRunner, tenantId: string, hours: number, bins: number, now = new Date()) {
  const to = now;
  const from = new Date(to.getTime() - hours * UNIT_MS.hour);
  const previousFrom = new Date(from.getTime() - hours * UNIT_MS.hour);
  // Rollup hours that started in the window (the current hour's rows so far included).
  const hourFloor = (d: Date) => new Date(Math.floor(d.getTime() / UNIT_MS.hour) * UNIT_MS.hour).toISOString();
  const confidenceRead = run((tx) => tx.execute<{
    model: string;
    count: number;
    sum_overall: number;
    sum_factual: number;
    sum_reasoning: number;
    sum_contextual: number;
    sum_width: number;
    previous_count: number;
    previous_sum_overall: number;
  }>(sql`
    SELECT model,
           coalesce(sum(count) FILTER (WHERE bucket >= ${hourFloor(from)}::timestamptz), 0)::float8 AS count,
           coalesce(sum(sum_overall) FILTER (WHERE bucket >= ${hourFloor(from)}::timestamptz), 0) AS sum_overall,
           coalesce(sum(sum_factual) FILTER (WHERE bucket >= ${hourFloor(from)}::timestamptz), 0) AS sum_factual,
           coalesce(sum(sum_reasoning) FILTER (WHERE bucket >= ${hourFloor(from)}::timestamptz), 0) AS sum_reasoning,
           coalesce(sum(sum_contextual) FILTER (WHERE bucket >= ${hourFloor(from)}::timestamptz), 0) AS sum_contextual,
           coalesce(sum(sum_uncertainty_width) FILTER (WHERE bucket >= ${hourFloor(from)}::timestamptz), 0) AS sum_width,
           coalesce(sum(count) FILTER (WHERE bucket < ${hourFloor(from)}::timestamptz), 0)::float8 AS previous_count,
           coalesce(sum(sum_overall) FILTER (WHERE bucket < ${hourFloor(from)}::timestamptz), 0) AS previous_sum_overall
      FROM ${rollupRows(tenantId, 'hour', 'each')}
     WHERE bucket >= ${hourFloor(previousFrom)}::timestamptz AND bucket <= ${to.toISOString()}::timestamptz
     GROUP BY model ORDER BY model`));
  const outcomesRead = run((tx) => outcomeGroups(tx, tenantId, sql`AND validated_at >= ${from.toISOString()}::timestamptz AND validated_at <= ${to.toISOString()}::timestamptz`));
  const perfRead = run((tx) => tx.execute<{
    endpoint: string;
    requests: number;
    avg_response_time_ms: number;
    percentiles: number[];
    total_tokens: number | null;
    avg_tokens: number | null;
    avg_system_load: number | null;
    avg_memory_usage_mb: number | null;
    avg_cpu_usage_percent: number | null;
    avg_cache_hit_rate: number | null;
    avg_confidence_accuracy: number | null;
    avg_hallucination_rate: number | null;
  }>(sql`
    SELECT endpoint, count(*)::int AS requests, avg(response_time_ms) AS avg_response_time_ms,
           -- One sort for the three percentiles.
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY response_time_ms) AS percentiles,
           sum(tokens_used)::float8 AS total_tokens, avg(tokens_used)::float8 AS avg_tokens, avg(system_load) AS avg_system_load,
           avg(memory_usage_mb) AS avg_memory_usage_mb, avg(cpu_usage_percent) AS avg_cpu_usage_percent,
           avg(cache_hit_rate) AS avg_cache_hit_rate, avg(confidence_accuracy) AS avg_confidence_accuracy,
           avg(hallucination_rate) AS avg_hallucination_rate
      FROM performance_metrics
     WHERE tenant_id = ${tenantId}::uuid AND created_at >= ${from.toISOString()}::timestamptz AND created_at <= ${to.toISOString()}::timestamptz
     GROUP BY endpoint ORDER BY count(*) DESC, endpoint
     LIMIT 100`));
  const [confidence, outcomes, perf] = await Promise.all([confidenceRead, outcomesRead, perfRead]);

  const models = new Set([...confidence.rows.filter((r) => r.count > 0).map((r) => r.model), ...outcomes.keys()]);
  const fits = await run((tx) => latestFits(tx, tenantId, [...models]));
  const confidenceByModel = new Map(confidence.rows.map((r) => [r.model, r]));
  const totalScores = confidence.rows.reduce((s, r) => s + r.count, 0);
  const totalPrevious = confidence.rows.reduce((s, r) => s + r.previous_count, 0);
  const allOutcomes = [...outcomes.values()].flat();
  const overall = calibrationMetrics(allOutcomes, bins);
  return {
    window: { from: from.toISOString(), to: to.toISOString(), hours },
    scores: totalScores,
    avg_overall: totalScores ? round(confidence.rows.reduce((s, r) => s + r.sum_overall, 0) / totalScores) : null,
    previous_avg_overall: totalPrevious ? round(confidence.rows.reduce((s, r) => s + r.previous_sum_overall, 0) / totalPrevious) : null,
    outcomes: overall.n,
    accuracy: overall.n ? round(allOutcomes.reduce((s, g) => s + g.positives, 0) / overall.n) : null,
    ece: overall.n ? round(overall.ece) : null,
    brier: overall.n ? round(overall.brier) : null,
    models: [...models].sort().map((model) => {
      const c = confidenceByModel.get(model);
      const groups = outcomes.get(model) ?? [];
      const m = calibrationMetrics(groups, bins);
      const fit = fits.get(model);
      return {
        model,
        scores: c?.count ?? 0,
        avg_overall: c?.count ? round(c.sum_overall / c.count) : null,
        avg_factual: c?.count ? round(c.sum_factual / c.count) : null,
        avg_reasoning: c?.count ? round(c.sum_reasoning / c.count) : null,
        avg_contextual: c?.count ? round(c.sum_contextual / c.count) : null,
        avg_uncertainty_width: c?.count ? round(c.sum_width / c.count) : null,
        previous_avg_overall: c?.previous_count ? round(c.previous_sum_overall / c.previous_count) : null,
        outcomes: m.n,
        accuracy: m.n ? round(groups.reduce((s, g) => s + g.positives, 0) / m.n) : null,
        ece: m.n ? round(m.ece) : null,
        mce: m.n ? round(m.mce) : null,
        brier: m.n ? round(m.brier) : null,
        temperature: fit?.temperature ?? null,
        calibrated_ece: fit && m.n ? round(calibrationMetrics(scaleGroups(groups, fit.temperature), bins).ece) : null,
      };
    }),
    performance: perf.rows.map((r) => ({
      endpoint: r.endpoint,
      requests: r.requests,
      avg_response_time_ms: round(r.avg_response_time_ms, 3),
      p50_response_time_ms: round(r.percentiles[0], 3),
      p95_response_time_ms: round(r.percentiles[1], 3),
      p99_response_time_ms: round(r.percentiles[2], 3),
      total_tokens: r.total_tokens,
      avg_tokens: round(r.avg_tokens, 3),
      avg_system_load: round(r.avg_system_load, 4),
      avg_memory_usage_mb: round(r.avg_memory_usage_mb, 3),
      avg_cpu_usage_percent: round(r.avg_cpu_usage_percent, 3),
      avg_cache_hit_rate: round(r.avg_cache_hit_rate),
      avg_confidence_accuracy: round(r.avg_confidence_accuracy),
      avg_hallucination_rate: round(r.avg_hallucination_rate),
    })),
  };
}
