import type { Executor } from '@caliber/platform';
import { sql } from 'drizzle-orm';
import type { FineTuningConfig } from './config.ts';
import { accountCredits } from './credits.ts';
import { BLANK } from './dataset.ts';

/** What the trigger policy looks at for one model. */
export interface FineTuneStats {
  model_id: string;
  /** Examples a dataset built now would have (problematic responses with a correction, deduplicated). */
  examples: number;
  /** Problematic responses corrected since the model's last successful job started building its dataset. */
  new_corrections: number;
  /** Feedback and negative feedback over the window. */
  feedback: number;
  negative_feedback: number;
  error_rate: number | null;
  window_days: number;
  /** The latest started job that counts for the cooldown (not failed or cancelled). */
  last_job: { id: string; status: string; created_at: string } | null;
  /** A started job of this model that has not ended (one created but never started does not count). */
  active_job: { id: string; status: string } | null;
  cooldown_ends_at: string | null;
  account_id: string | null;
  balance: number | null;
  credit_cost: number;
}

export interface Criterion {
  name: 'corrections' | 'dataset' | 'error_rate' | 'cooldown' | 'credits';
  passed: boolean;
  message: string;
}

export interface FineTuneDecision {
  should_fine_tune: boolean;
  /** Why: every criterion's message when the answer is yes, the failing ones when it is no. */
  reasons: string[];
  criteria: Criterion[];
}

export type FineTunePolicy = Pick<
  FineTuningConfig,
  'FINE_TUNE_MIN_CORRECTIONS' | 'FINE_TUNE_MIN_EXAMPLES' | 'FINE_TUNE_MIN_ERROR_RATE' | 'FINE_TUNE_WINDOW_DAYS' | 'FINE_TUNE_COOLDOWN_HOURS' | 'FINE_TUNE_CREDIT_COST'
>;

const pct = (x: number) => `${(x * 100).toFixed(1).replace(/\.0$/, '')}%`;

/**
 * The trigger policy. A model should be fine-tuned when all of these hold:
 *  1. corrections — at least FINE_TUNE_MIN_CORRECTIONS problematic responses were corrected since
 *     its last successful job (so a retrain has something new to learn);
 *  2. dataset — a dataset built now has at least FINE_TUNE_MIN_EXAMPLES examples;
 *  3. error_rate — at least FINE_TUNE_MIN_ERROR_RATE of its feedback over FINE_TUNE_WINDOW_DAYS
 *     is negative;
 *  4. cooldown — no job of the model is running, and its last job that was not failed or cancelled
 *     was created FINE_TUNE_COOLDOWN_HOURS ago or more;
 *  5. credits — the account to charge holds FINE_TUNE_CREDIT_COST.
 */
export function decideFineTune(stats: FineTuneStats, policy: FineTunePolicy, now: Date): FineTuneDecision {
  const criteria: Criterion[] = [];
  const need = policy.FINE_TUNE_MIN_CORRECTIONS;
  criteria.push({
    name: 'corrections',
    passed: stats.new_corrections >= need,
    message: `${stats.new_corrections} corrected problematic responses since the last successful fine-tune (${need} needed)`,
  });
  criteria.push({
    name: 'dataset',
    passed: stats.examples >= policy.FINE_TUNE_MIN_EXAMPLES,
    message: `${stats.examples} examples after removing duplicates (${policy.FINE_TUNE_MIN_EXAMPLES} needed)`,
  });
  criteria.push({
    name: 'error_rate',
    passed: stats.error_rate !== null && stats.error_rate >= policy.FINE_TUNE_MIN_ERROR_RATE,
    message:
      stats.error_rate === null
        ? `no feedback in the last ${policy.FINE_TUNE_WINDOW_DAYS} days`
        : `${pct(stats.error_rate)} of ${stats.feedback} feedback in the last ${policy.FINE_TUNE_WINDOW_DAYS} days is negative (${pct(policy.FINE_TUNE_MIN_ERROR_RATE)} needed)`,
  });
  if (stats.active_job) {
    criteria.push({ name: 'cooldown', passed: false, message: `job ${stats.active_job.id} is still ${stats.active_job.status}` });
  } else if (stats.cooldown_ends_at && Date.parse(stats.cooldown_ends_at) > now.getTime()) {
    criteria.push({ name: 'cooldown', passed: false, message: `last job ${stats.last_job!.id} was created at ${stats.last_job!.created_at}; cooldown ends at ${stats.cooldown_ends_at}` });
  } else {
    criteria.push({ name: 'cooldown', passed: true, message: stats.last_job ? `cooldown since job ${stats.last_job.id} is over` : 'no earlier job' });
  }
  if (stats.account_id === null) {
    criteria.push({ name: 'credits', passed: false, message: 'no account to charge: pass account_id or set FINE_TUNE_ACCOUNT' });
  } else {
    const balance = stats.balance ?? 0;
    criteria.push({
      name: 'credits',
      passed: balance >= stats.credit_cost,
      message: `account "${stats.account_id}" has ${balance} credits (${stats.credit_cost} needed)${stats.balance === null ? '; it has never been granted any' : ''}`,
    });
  }
  const should = criteria.every((c) => c.passed);
  return { should_fine_tune: should, reasons: criteria.filter((c) => should || !c.passed).map((c) => c.message), criteria };
}

/**
 * The policy's inputs for several models at once: one query each for their corrections, their
 * feedback and their jobs, and one for the account. Sequential, as `db` may be a transaction.
 */
export async function computeFineTuneStats(
  db: Pick<Executor, 'execute'>,
  policy: FineTunePolicy,
  modelIds: string[],
  accountId: string | null,
  now: Date,
): Promise<Map<string, FineTuneStats>> {
  const models = [...new Set(modelIds)];
  if (models.length === 0) return new Map();
  const windowStart = new Date(now.getTime() - policy.FINE_TUNE_WINDOW_DAYS * 86_400_000);
  const corrections = await db.execute<{ model_id: string; examples: number; new_corrections: number }>(sql`
      WITH since AS (
        SELECT m AS model_id, (SELECT max(j.created_at) FROM fine_tuning_jobs j WHERE j.model_id = m AND j.status = 'succeeded') AS at
          FROM unnest(${sql.param(models)}::text[]) AS m),
      corrected AS (
        SELECT DISTINCT ON (f.response_ref) r.model_id, r.query_key, f.correction_key, f.created_at
          FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref
         WHERE f.correction IS NOT NULL AND f.trusted AND r.model_id = ANY(${sql.param(models)}::text[]) AND f.created_at < ${now}
           AND EXISTS (SELECT 1 FROM response_feedback n WHERE n.response_ref = f.response_ref AND n.negative AND n.created_at < ${now})
         ORDER BY f.response_ref, f.created_at DESC, f.id DESC)
      SELECT c.model_id,
             count(DISTINCT (c.query_key, c.correction_key)) FILTER (WHERE c.query_key <> ${sql.raw(BLANK)} AND c.correction_key <> ${sql.raw(BLANK)})::int AS examples,
             count(*) FILTER (WHERE s.at IS NULL OR c.created_at >= s.at)::int AS new_corrections
        FROM corrected c JOIN since s USING (model_id)
       GROUP BY c.model_id`);
  const feedback = await db.execute<{ model_id: string; feedback: number; negative_feedback: number }>(sql`
      SELECT r.model_id, count(*)::int AS feedback, count(*) FILTER (WHERE f.negative)::int AS negative_feedback
        FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref
       WHERE r.model_id = ANY(${sql.param(models)}::text[]) AND f.created_at >= ${windowStart} AND f.created_at < ${now}
       GROUP BY r.model_id`);
  const jobs = await db.execute<{ model_id: string; id: string; status: string; created_at: Date; active: boolean }>(sql`
      SELECT DISTINCT ON (model_id, active) model_id, id, status, created_at, active FROM (
        SELECT model_id, id, status, created_at, status NOT IN ('succeeded', 'failed', 'cancelled') AS active
          FROM fine_tuning_jobs
         WHERE model_id = ANY(${sql.param(models)}::text[]) AND status NOT IN ('failed', 'cancelled') AND started_at IS NOT NULL) j
       ORDER BY model_id, active, created_at DESC`);
  const credits = accountId ? await accountCredits(db, [accountId]) : new Map<string, { balance: number }>();
  const byModel = <T extends { model_id: string }>(rows: T[]) => new Map(rows.map((r) => [r.model_id, r]));
  const c = byModel(corrections.rows);
  const f = byModel(feedback.rows);
  const balance = accountId ? (credits.get(accountId)?.balance ?? null) : null;
  const stats = new Map<string, FineTuneStats>();
  for (const model of models) {
    const modelJobs = jobs.rows.filter((j) => j.model_id === model);
    const active = modelJobs.find((j) => j.active);
    const last = modelJobs.sort((a, b) => +new Date(b.created_at) - +new Date(a.created_at))[0];
    const fb = f.get(model);
    stats.set(model, {
      model_id: model,
      examples: c.get(model)?.examples ?? 0,
      new_corrections: c.get(model)?.new_corrections ?? 0,
      feedback: fb?.feedback ?? 0,
      negative_feedback: fb?.negative_feedback ?? 0,
      error_rate: fb && fb.feedback > 0 ? Number((fb.negative_feedback / fb.feedback).toFixed(4)) : null,
      window_days: policy.FINE_TUNE_WINDOW_DAYS,
      last_job: last ? { id: last.id, status: last.status, created_at: new Date(last.created_at).toISOString() } : null,
      active_job: active ? { id: active.id, status: active.status } : null,
      cooldown_ends_at: last ? new Date(new Date(last.created_at).getTime() + policy.FINE_TUNE_COOLDOWN_HOURS * 3_600_000).toISOString() : null,
      account_id: accountId,
      balance,
      credit_cost: policy.FINE_TUNE_CREDIT_COST,
    });
  }
  return stats;
}
