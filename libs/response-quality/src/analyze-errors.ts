import { appendOutbox, defineJob, outboxEvent, type JobContext, type PlatformContext } from '@caliber/platform';
import { sql } from 'drizzle-orm';
import { z } from 'zod';
import type { ResponseQualityConfig } from './config.ts';
import { ERROR_CATEGORIES, type ErrorCategory } from './taxonomy.ts';

export const analyzeErrorsJob = defineJob('analyze-errors', 'analyze', z.object({ requested_by: z.string().max(200).optional() }));

/**
 * Written when a run is stored, for the fine-tuning trigger to pick up (it reads the run's
 * patterns); until a fine-tune processor exists the job waits in its queue.
 */
export const fineTuneCheckJob = defineJob('fine-tune', 'check-criteria', z.object({ analysis_run_id: z.number().int().positive() }));

/** What to try when a category grows, per category. */
export const SUGGESTED_ACTIONS: Record<ErrorCategory, string> = {
  factual_error: 'add retrieval or citations for factual questions, and fine-tune on the corrected responses',
  hallucination: 'ground answers in retrieved sources and tell the model to say when it does not know',
  incomplete: 'raise the output token limit and ask for every part of multi-part questions',
  off_topic: 'restate the question in the system prompt and filter retrieved context for relevance',
  formatting: 'give an output format in the prompt (or a JSON schema) and validate before showing',
  outdated_information: 'add retrieval for dates and current facts, or state the knowledge cut-off',
  unsafe: 'tighten the safety prompt and add a moderation pass before showing responses',
  too_verbose: 'ask for concise answers and lower the output token limit',
  too_brief: 'ask for explanations and examples in the prompt',
  instruction_following: "repeat the user's constraints at the end of the prompt, or try a model that follows instructions better",
  code_error: 'run generated code in a sandbox before answering, and fine-tune on corrected code',
  reasoning_error: 'ask for step-by-step reasoning or route to a reasoning model',
};

export interface AnalyzeErrorsSummary {
  run_id: number;
  as_of: string;
  window_start: string;
  negative_feedback: number;
  patterns: number;
  trends: number;
  suggestions: number;
}

const pct = (x: number) => `${Math.round(x * 100)}%`;

/**
 * One analyze-errors run. It looks at negative feedback (categories given plus those read from the
 * comment) up to the job's creation time, so a retried job computes the same thing, and stores:
 * patterns per model over ANALYZE_ERRORS_WEEKS weeks, counts per ISO week with the change against
 * the week before (weeks without reports count 0), and suggestions for categories that make up at
 * least SUGGESTION_MIN_SHARE of a model's negative feedback in the last 7 days. A retried job
 * returns the run it stored.
 */
export async function runAnalyzeErrors(
  platform: Pick<PlatformContext, 'db' | 'config'>,
  config: ResponseQualityConfig,
  job: Pick<JobContext, 'jobKey' | 'log'> & { createdAt: Date },
): Promise<AnalyzeErrorsSummary> {
  const done = await platform.db.execute<{ summary: AnalyzeErrorsSummary }>(sql`SELECT summary FROM error_analysis_runs WHERE job_id = ${job.jobKey}`);
  if (done.rows[0]) return done.rows[0].summary;

  const asOf = job.createdAt;
  const windowStart = new Date(asOf.getTime() - config.ANALYZE_ERRORS_WEEKS * 7 * 86_400_000);
  const tz = platform.config.TZ;
  return platform.db.transaction(async (tx) => {
    const runId = (
      await tx.execute<{ id: number }>(sql`
        INSERT INTO error_analysis_runs (job_id, as_of, window_start, summary) VALUES (${job.jobKey}, ${asOf}, ${windowStart}, '{}') RETURNING id`)
    ).rows[0]!.id;
    // Negative feedback of the window, read once into a temporary table: one row per category it
    // names (given or read from the comment), or one row with no category.
    await tx.execute(sql`
      CREATE TEMP TABLE analysis_negative ON COMMIT DROP AS
      SELECT r.model_id, c.category, f.id, f.created_at, f.comment, r.response_id,
             to_char(f.created_at AT TIME ZONE ${tz}, 'IYYY-"W"IW') AS week
        FROM response_feedback f
        JOIN llm_responses r ON r.id = f.response_ref
        LEFT JOIN LATERAL (SELECT DISTINCT unnest(f.categories || f.comment_categories) AS category) c ON true
       WHERE f.negative AND f.created_at >= ${windowStart} AND f.created_at < ${asOf}`);
    await tx.execute(sql`ANALYZE analysis_negative`);

    // Patterns: share of the model's negative feedback; examples are the latest three responses
    // (one feedback each, those with a comment first).
    const patterns = await tx.execute(sql`
      WITH totals AS (SELECT model_id, count(DISTINCT id) AS n FROM analysis_negative GROUP BY 1),
      counted AS (SELECT model_id, category, count(*) AS n FROM analysis_negative WHERE category IS NOT NULL GROUP BY 1, 2),
      per_response AS (
        SELECT DISTINCT ON (model_id, category, response_id) model_id, category, response_id, comment, created_at
          FROM analysis_negative WHERE category IS NOT NULL
         ORDER BY model_id, category, response_id, comment IS NULL, created_at DESC),
      ranked AS (
        SELECT *, row_number() OVER (PARTITION BY model_id, category ORDER BY comment IS NULL, created_at DESC, response_id) AS rn FROM per_response),
      examples AS (
        SELECT model_id, category,
               jsonb_agg(jsonb_build_object('response_id', response_id, 'comment', comment) ORDER BY rn) AS examples
          FROM ranked WHERE rn <= 3 GROUP BY 1, 2)
      INSERT INTO error_patterns (run_id, model_id, category, count, share, examples)
      SELECT ${runId}, c.model_id, c.category, c.n, c.n::float8 / t.n, e.examples
        FROM counted c JOIN totals t USING (model_id) JOIN examples e USING (model_id, category)`);

    // ISO weeks of the window, every (model, category) seen, zero-filled, with the change on the week before.
    const trends = await tx.execute(sql`
      WITH counts AS (SELECT model_id, category, week, count(*) AS n FROM analysis_negative WHERE category IS NOT NULL GROUP BY 1, 2, 3),
      weeks AS (
        -- Every ISO week the window touches, the one as_of falls in included (Monday 03:00 runs).
        SELECT to_char(d, 'IYYY-"W"IW') AS week
          FROM generate_series(date_trunc('week', ${windowStart}::timestamptz AT TIME ZONE ${tz}),
                               date_trunc('week', (${asOf}::timestamptz - interval '1 microsecond') AT TIME ZONE ${tz}), interval '1 week') AS d),
      pairs AS (SELECT DISTINCT model_id, category FROM counts)
      INSERT INTO error_trends (run_id, model_id, category, week, count, change)
      SELECT ${runId}, p.model_id, p.category, w.week, coalesce(c.n, 0),
             coalesce(c.n, 0) - coalesce(lag(coalesce(c.n, 0)) OVER (PARTITION BY p.model_id, p.category ORDER BY w.week), 0)
        FROM pairs p CROSS JOIN weeks w LEFT JOIN counts c USING (model_id, category, week)`);

    // This week (the 7 days before as_of) against the 7 days before it, as shares of each model's negative feedback.
    const weekStart = new Date(asOf.getTime() - 7 * 86_400_000);
    const prevStart = new Date(asOf.getTime() - 14 * 86_400_000);
    const shares = await tx.execute<{ model_id: string; category: ErrorCategory; count: number; share: number; previous_share: number }>(sql`
      WITH x AS (SELECT model_id, category, id, created_at >= ${weekStart} AS this_week FROM analysis_negative WHERE created_at >= ${prevStart}),
      totals AS (SELECT model_id, count(DISTINCT id) FILTER (WHERE this_week) AS now_n, count(DISTINCT id) FILTER (WHERE NOT this_week) AS prev_n FROM x GROUP BY 1)
      SELECT x.model_id, x.category,
             count(DISTINCT x.id) FILTER (WHERE x.this_week)::int AS count,
             (count(DISTINCT x.id) FILTER (WHERE x.this_week))::float8 / nullif(t.now_n, 0) AS share,
             coalesce((count(DISTINCT x.id) FILTER (WHERE NOT x.this_week))::float8 / nullif(t.prev_n, 0), 0) AS previous_share
        FROM x JOIN totals t USING (model_id)
       WHERE x.category IS NOT NULL
       GROUP BY x.model_id, x.category, t.now_n, t.prev_n`);
    const suggestions = shares.rows
      .filter((s) => s.share !== null && s.count >= config.SUGGESTION_MIN_COUNT && s.share >= config.SUGGESTION_MIN_SHARE && s.share > s.previous_share)
      .sort((a, b) => b.share - a.share || (a.model_id < b.model_id ? -1 : 1))
      .map((s) => ({
        ...s,
        evidence: `${pct(s.share)} of ${s.model_id}'s negative feedback this week is ${s.category} (${s.count} reports), up from ${pct(s.previous_share)}`,
        action: SUGGESTED_ACTIONS[s.category] ?? `review the ${ERROR_CATEGORIES[s.category] ?? s.category} reports`,
      }));
    if (suggestions.length > 0) {
      await tx.execute(sql`
        INSERT INTO improvement_suggestions (run_id, model_id, category, share, previous_share, count, evidence, action)
        SELECT ${runId}, model_id, category, share, previous_share, count, evidence, action
          FROM jsonb_to_recordset(${JSON.stringify(suggestions)}::jsonb)
               AS r(model_id text, category text, share float8, previous_share float8, count int, evidence text, action text)`);
    }

    const negativeFeedback = (await tx.execute<{ n: number }>(sql`SELECT count(DISTINCT id)::int AS n FROM analysis_negative`)).rows[0]!.n;
    const summary: AnalyzeErrorsSummary = {
      run_id: runId,
      as_of: asOf.toISOString(),
      window_start: windowStart.toISOString(),
      negative_feedback: negativeFeedback,
      patterns: patterns.rowCount ?? 0,
      trends: trends.rowCount ?? 0,
      suggestions: suggestions.length,
    };
    await tx.execute(sql`UPDATE error_analysis_runs SET summary = ${JSON.stringify(summary)}::jsonb WHERE id = ${runId}`);
    await appendOutbox(tx, [outboxEvent(fineTuneCheckJob, { analysis_run_id: runId })], job.jobKey);
    job.log.info(summary, 'error analysis stored');
    return summary;
  });
}
