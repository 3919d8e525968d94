import { queueNotifications, type NewNotification } from '@caliber/notifications';
import { defineJob, groupBy, type Executor, type JobContext } from '@caliber/platform';
import { sql, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import type { ModelSelectionConfig } from './config.ts';
import { ANY } from './schema.ts';
import { chooseModel, rankCandidates, type CandidateStats, type ChoiceReason, type ModelRef, type ScoredCandidate, type ScoringParams } from './scoring.ts';

/** Chooses the model of every (language, size) from the results (the `model-selection` kind of the `calibrate` queue). */
export const calibrateModelSelectionJob = defineJob('calibrate', 'model-selection', z.object({ requested_by: z.string().max(200).optional() }));

export const CHANGE_EVENT = 'model_configuration.changed';

export function scoringParams(config: ModelSelectionConfig): ScoringParams {
  return {
    weights: { quality: config.MODEL_SELECTION_QUALITY_WEIGHT, latency: config.MODEL_SELECTION_LATENCY_WEIGHT, cost: config.MODEL_SELECTION_COST_WEIGHT },
    latencyRefMs: config.MODEL_SELECTION_LATENCY_REF_MS,
    costRefUsd: config.MODEL_SELECTION_COST_REF_USD,
  };
}

type PairStats = CandidateStats & { language: string; size_category: string };

/**
 * Per (language, size), per language over every size and over everything, each model's sample
 * count, mean quality, median latency and mean cost within the window, in one pass (GROUPING SETS).
 */
export async function candidateStats(tx: Executor, config: ModelSelectionConfig, pair?: { language: string; size_category: string }): Promise<PairStats[]> {
  const window = config.MODEL_SELECTION_WINDOW_DAYS > 0 ? sql`AND tested_at >= now() - make_interval(days => ${config.MODEL_SELECTION_WINDOW_DAYS})` : sql``;
  let filter: SQL = sql``;
  let pairColumns = sql`coalesce(language, ${ANY}) AS language, coalesce(size_category, ${ANY}) AS size_category`;
  let groups = sql`GROUPING SETS ((language, size_category, provider, model_id), (language, provider, model_id), (provider, model_id))`;
  if (pair) {
    // One configuration's candidates (the rankings route): the same aggregate over its rows only.
    if (pair.language !== ANY) filter = sql`AND language = ${pair.language}`;
    if (pair.size_category !== ANY) filter = sql`${filter} AND size_category = ${pair.size_category}`;
    pairColumns = sql`${pair.language}::text AS language, ${pair.size_category}::text AS size_category`;
    groups = sql`provider, model_id`;
  }
  const { rows } = await tx.execute<PairStats>(sql`
    SELECT ${pairColumns}, provider, model_id,
           -- Rounded past what the inputs could mean, so float noise (0.0014999999999999998) never shows.
           count(*)::int AS samples, round(avg(quality_score)::numeric, 6)::float8 AS quality,
           round((percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms))::numeric, 3)::float8 AS latency_ms,
           round(avg(cost_usd)::numeric, 9)::float8 AS cost_usd
      FROM calibration_results
     WHERE true ${window} ${filter}
     GROUP BY ${groups}`);
  return rows;
}

type CurrentRow = ModelRef & { language: string; size_category: string };

const ref = (c: ScoredCandidate | ModelRef | null): ModelRef | null => (c ? { model_id: c.model_id, provider: c.provider, score: c.score } : null);

export interface ChangedConfiguration {
  language: string;
  size_category: string;
  from: ModelRef | null;
  to: ModelRef;
  reason: ChoiceReason;
}

export interface ModelSelectionRunResult {
  status: 'ok';
  run_id: number;
  configurations: number;
  changed: ChangedConfiguration[];
  /** Pairs whose best candidate differs from the chosen model by no more than the margin. */
  within_margin: { language: string; size_category: string; kept: ModelRef; best: ModelRef }[];
  /** Pairs with a configuration but no candidate now: they keep it, marked stale (a fresh fallback is preferred). */
  without_candidates: { language: string; size_category: string; kept: ModelRef }[];
  notifications: number;
  params: { weights: ScoringParams['weights']; min_samples: number; change_margin: number; window_days: number };
}

/**
 * One calibration, in one transaction under an advisory lock: runs never interleave, so a change
 * is made (and notified) by exactly one of them. Writes every pair's choice, runner-up and score,
 * and for each changed choice a notification for the webhook, with the run. A retried job whose
 * run committed returns that run's result and changes nothing.
 */
export async function runModelSelection(job: Pick<JobContext, 'platform' | 'jobKey' | 'log'>, config: ModelSelectionConfig, payload: { requested_by?: string }): Promise<ModelSelectionRunResult> {
  const params = scoringParams(config);
  return job.platform.db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('caliber:model-selection'))`);
    const done = (await tx.execute<{ result: ModelSelectionRunResult }>(sql`SELECT result FROM model_selection_runs WHERE job_key = ${job.jobKey} AND finished_at IS NOT NULL`)).rows[0];
    if (done) return done.result;
    const run = (
      await tx.execute<{ id: number; now: Date }>(sql`
        INSERT INTO model_selection_runs (job_key, requested_by) VALUES (${job.jobKey}, ${payload.requested_by ?? null}) RETURNING id, now() AS now`)
    ).rows[0]!;
    const runId = Number(run.id);

    const stats = await candidateStats(tx, config);
    const current = new Map(
      (await tx.execute<CurrentRow>(sql`SELECT language, size_category, model_id, provider, score FROM model_configurations`)).rows.map((r) => [`${r.language}\u0000${r.size_category}`, r]),
    );
    const byPair = groupBy(stats, (s) => `${s.language}\u0000${s.size_category}`);

    const writes: { language: string; size_category: string; chosen: ScoredCandidate; runnerUp: ScoredCandidate | null }[] = [];
    const result: ModelSelectionRunResult = {
      status: 'ok',
      run_id: runId,
      configurations: 0,
      changed: [],
      within_margin: [],
      without_candidates: [],
      notifications: 0,
      params: {
        weights: params.weights,
        min_samples: config.MODEL_SELECTION_MIN_SAMPLES,
        change_margin: config.MODEL_SELECTION_CHANGE_MARGIN,
        window_days: config.MODEL_SELECTION_WINDOW_DAYS,
      },
    };
    const pairs = [...new Set([...byPair.keys(), ...current.keys()])].sort();
    for (const key of pairs) {
      const [language, size_category] = key.split('\u0000') as [string, string];
      const existing = current.get(key) ?? null;
      const choice = chooseModel(rankCandidates(byPair.get(key) ?? [], params, config.MODEL_SELECTION_MIN_SAMPLES), existing && ref(existing), config.MODEL_SELECTION_CHANGE_MARGIN);
      if (!choice) {
        if (existing) result.without_candidates.push({ language, size_category, kept: ref(existing)! });
        continue;
      }
      writes.push({ language, size_category, chosen: choice.chosen, runnerUp: choice.runnerUp });
      if (choice.changed) result.changed.push({ language, size_category, from: choice.previous, to: ref(choice.chosen)!, reason: choice.reason });
      else if (choice.reason === 'within_margin') result.within_margin.push({ language, size_category, kept: ref(choice.chosen)!, best: ref(choice.runnerUp)! });
    }
    result.configurations = writes.length;

    if (writes.length > 0) await upsertConfigurations(tx, runId, writes);
    if (result.without_candidates.length > 0) {
      const stale = result.without_candidates;
      await tx.execute(sql`
        UPDATE model_configurations c SET stale = true, updated_at = now()
          FROM unnest(${sql.param(stale.map((p) => p.language))}::text[], ${sql.param(stale.map((p) => p.size_category))}::text[]) AS s(language, size_category)
         WHERE c.language = s.language AND c.size_category = s.size_category AND NOT c.stale`);
    }
    const changedAt = new Date(run.now).toISOString();
    const notices: NewNotification[] = result.changed.map((c) => ({
      event: CHANGE_EVENT,
      dedupeKey: `${CHANGE_EVENT}:${runId}:${c.language}:${c.size_category}`,
      payload: { language: c.language, size_category: c.size_category, from: c.from, to: c.to, reason: c.reason, run_id: runId, changed_at: changedAt },
    }));
    result.notifications = (await queueNotifications(tx, notices, job.jobKey)).length;

    await tx.execute(sql`
      UPDATE model_selection_runs SET finished_at = clock_timestamp(), configurations = ${result.configurations}, changed = ${result.changed.length},
             result = ${JSON.stringify(result)}::jsonb
       WHERE id = ${runId}`);
    job.log.info({ runId, configurations: result.configurations, changed: result.changed.length }, 'model selection calibrated');
    return result;
  });
}

async function upsertConfigurations(
  tx: Executor,
  runId: number,
  writes: { language: string; size_category: string; chosen: ScoredCandidate; runnerUp: ScoredCandidate | null }[],
) {
  const col = <T>(f: (w: (typeof writes)[number]) => T) => sql.param(writes.map(f));
  await tx.execute(sql`
    INSERT INTO model_configurations (language, size_category, model_id, provider, score, sample_count, quality_score, latency_ms, cost_usd,
                                      runner_up_model_id, runner_up_provider, runner_up_score, run_id, stale, chosen_at, updated_at)
    SELECT language, size_category, model_id, provider, score, sample_count, quality_score, latency_ms, cost_usd,
           runner_up_model_id, runner_up_provider, runner_up_score, ${runId}, false, now(), now()
      FROM unnest(${col((w) => w.language)}::text[], ${col((w) => w.size_category)}::text[], ${col((w) => w.chosen.model_id)}::text[],
                  ${col((w) => w.chosen.provider)}::text[], ${col((w) => w.chosen.score)}::float8[], ${col((w) => w.chosen.samples)}::int[],
                  ${col((w) => w.chosen.quality)}::float8[], ${col((w) => w.chosen.latency_ms)}::float8[], ${col((w) => w.chosen.cost_usd)}::float8[],
                  ${col((w) => w.runnerUp?.model_id ?? null)}::text[], ${col((w) => w.runnerUp?.provider ?? null)}::text[],
                  ${col((w) => w.runnerUp?.score ?? null)}::float8[])
        AS u(language, size_category, model_id, provider, score, sample_count, quality_score, latency_ms, cost_usd,
             runner_up_model_id, runner_up_provider, runner_up_score)
    ON CONFLICT (language, size_category) DO UPDATE SET
      chosen_at = CASE WHEN (model_configurations.model_id, model_configurations.provider) IS DISTINCT FROM (excluded.model_id, excluded.provider)
                       THEN excluded.chosen_at ELSE model_configurations.chosen_at END,
      model_id = excluded.model_id, provider = excluded.provider, score = excluded.score, sample_count = excluded.sample_count,
      quality_score = excluded.quality_score, latency_ms = excluded.latency_ms, cost_usd = excluded.cost_usd,
      runner_up_model_id = excluded.runner_up_model_id, runner_up_provider = excluded.runner_up_provider,
      runner_up_score = excluded.runner_up_score, run_id = excluded.run_id, stale = false, updated_at = excluded.updated_at`);
}
