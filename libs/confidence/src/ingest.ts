import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ApiError, isStorableInstant, isStorableJson, isStorableText, MAX_INSTANT_MS, type Executor } from '@caliber/platform';
import { z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { VALIDATION_METHODS } from './schema.ts';

/** The most items one request may carry; a bigger batch is split by the client. */
export const MAX_BATCH = 10_000;

const TEXT_RULE = 'must not contain NUL characters or unpaired surrogates';
const id = (what: string) => z.string().min(1).max(200).refine(isStorableText, TEXT_RULE).openapi({ description: what });
const unit = (what: string) => z.number().min(0).max(1).openapi({ description: `${what}, in [0, 1] (stored to 4 decimals)` });
/** An instant Postgres stores as sent: ISO-8601 with an offset (years 0001–9999), or Unix ms. */
export const instantSchema = z.iso.datetime({ offset: true }).refine(isStorableInstant, 'must be between years 0001 and 9999');
const timestamp = z
  .union([instantSchema, z.number().int().nonnegative().max(MAX_INSTANT_MS)])
  .optional()
  .openapi({ description: 'When it happened (ISO-8601, or Unix ms); default now; kept to the millisecond' });
const toDate = (t: string | number | undefined) => (t === undefined ? null : new Date(t).toISOString());

/**
 * One score. Checks that look across fields or into strings (bounds in order, no NUL, the size of
 * model_consensus) run once per batch in `scoreBatchSchema`: per item they were most of the
 * validation cost of a 10 000-score request.
 */
export const scoreSchema = z
  .object({
    request_id: z.string().min(1).max(200).openapi({ description: 'The AI request this confidence is about; stored once per tenant (no NUL characters or unpaired surrogates)' }),
    model: z.string().min(1).max(200).openapi({ description: 'The model that answered' }),
    factual_confidence: unit('Confidence in the facts'),
    reasoning_confidence: unit('Confidence in the reasoning'),
    contextual_relevance: unit('Relevance to the context'),
    uncertainty_lower: unit('Lower bound of the confidence interval (at most uncertainty_upper)'),
    uncertainty_upper: unit('Upper bound of the confidence interval'),
    model_consensus: z
      .record(z.string(), z.unknown())
      .optional()
      .openapi({ description: 'How the models that were asked agreed, e.g. {"gpt-4o":0.91,"claude":0.88}; at most 10 000 characters of JSON' }),
    created_at: timestamp,
  })
  .strict()
  .openapi('ConfidenceScore');

export const MAX_CONSENSUS_CHARS = 10_000;

/** A batch of scores, with the cross-field checks of each item reported at its index. */
export const scoreBatchSchema = z
  .object({ scores: z.array(scoreSchema).min(1).max(MAX_BATCH) })
  .strict()
  .superRefine(({ scores }, ctx) => {
    scores.forEach((s, i) => {
      if (s.uncertainty_lower > s.uncertainty_upper) {
        ctx.addIssue({ code: 'custom', path: ['scores', i, 'uncertainty_lower'], message: 'uncertainty_lower must not be above uncertainty_upper' });
      }
      for (const field of ['request_id', 'model'] as const) {
        if (!isStorableText(s[field])) ctx.addIssue({ code: 'custom', path: ['scores', i, field], message: TEXT_RULE });
      }
      if (s.model_consensus) {
        if (JSON.stringify(s.model_consensus).length > MAX_CONSENSUS_CHARS) {
          ctx.addIssue({ code: 'custom', path: ['scores', i, 'model_consensus'], message: `must be at most ${MAX_CONSENSUS_CHARS} characters of JSON` });
        }
        if (!isStorableJson(s.model_consensus)) ctx.addIssue({ code: 'custom', path: ['scores', i, 'model_consensus'], message: TEXT_RULE });
      }
    });
  });
export type ConfidenceScoreInput = z.infer<typeof scoreSchema>;

export const outcomeSchema = z
  .object({
    request_id: id('A request whose score was recorded'),
    correct: z.boolean().openapi({ description: 'Whether the answer turned out right' }),
    validation_method: z.enum(VALIDATION_METHODS),
    validated_at: timestamp,
  })
  .strict()
  .openapi('ConfidenceOutcome');
export type OutcomeInput = z.infer<typeof outcomeSchema>;

const nonNegative = (what: string) => z.number().min(0).optional().openapi({ description: what });
export const performanceMetricSchema = z
  .object({
    endpoint: id('The API endpoint (or feature) measured'),
    request_id: id('Ties the metric to a request; a metric sent again with the same endpoint and request_id is stored once').optional(),
    model: id('The model that served it').optional(),
    response_time_ms: z.number().min(0).max(86_400_000),
    tokens_used: z.number().int().min(0).max(2_147_483_647).optional(),
    system_load: nonNegative('Load average of the serving host'),
    memory_usage_mb: nonNegative('Memory in use, MB'),
    cpu_usage_percent: z.number().min(0).max(100).optional(),
    cache_hit_rate: unit('Share of cache hits').optional(),
    confidence_accuracy: unit('Share of confident answers that were right').optional(),
    hallucination_rate: unit('Share of answers found hallucinated').optional(),
    created_at: timestamp,
  })
  .strict()
  .openapi('PerformanceMetric');
export type PerformanceMetricInput = z.infer<typeof performanceMetricSchema>;

export const batchOf = <T extends z.ZodType>(field: string, item: T) =>
  z.object({ [field]: z.array(item).min(1).max(MAX_BATCH) }).strict() as unknown as z.ZodObject<{ [k: string]: z.ZodArray<T> }>;

/** A batch whose items repeat a key: the later ones are reported, as bad input. */
function repeatedIndexes<T>(items: readonly T[], key: (item: T) => string | undefined, field: string, what: string) {
  const seen = new Set<string>();
  const failed: number[] = [];
  items.forEach((item, i) => {
    const k = key(item);
    if (k === undefined) return;
    if (seen.has(k)) failed.push(i);
    else seen.add(k);
  });
  if (failed.length === 0) return;
  throw new ApiError(400, 'invalid_request', `${failed.length} of ${items.length} items repeat ${what} earlier in the batch; nothing was written`, {
    failed_indexes: failed,
    issues: failed.slice(0, 100).map((i) => ({ path: [field, i], message: `repeats ${what} of an earlier item` })),
  });
}

const COPY_SPECIAL = /[\\\t\n\r]/;
/** A string in COPY's text format: backslash, tab and line breaks escaped. */
function copyText(value: string): string {
  if (!COPY_SPECIAL.test(value)) return value;
  return value.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
}

const HOUR_MS = 3_600_000;
/**
 * A confidence in units of 1e-4, rounded as numeric(5,4) rounds the decimal the client sent (half
 * away from zero on its 5th decimal): 0.00015 is 0.0002, though its double is a hair below.
 */
export function units(x: number): number {
  const s = String(x);
  const dot = s.indexOf('.');
  if (dot < 0 || s.includes('e')) return Math.round(x * 1e4); // 0, 1, or below 1e-6
  const frac = `${s.slice(dot + 1)}0000`;
  return Number(s.slice(0, dot)) * 1e4 + Number(frac.slice(0, 4)) + (frac.charCodeAt(4) >= 53 ? 1 : 0);
}
// k / 1e4 prints as its shortest decimal, which is k × 10⁻⁴ exactly (and faster than toFixed).
const decimal = (u: number) => String(u / 1e4);

interface StoredScore {
  requestId: string;
  model: string;
  hour: number;
  line: string;
  overall: number;
  factual: number;
  reasoning: number;
  contextual: number;
  width: number;
}

/**
 * A score as it will be stored: confidences rounded to 4 decimals here (so the rollup is computed
 * from exactly the stored values), overall = (f + r + c) / 3 rounded as Postgres rounds the
 * generated column (a third never ties), the time at millisecond precision.
 */
function toStored(s: ConfidenceScoreInput, now: number): StoredScore {
  const [f, r, c, lo, hi] = [units(s.factual_confidence), units(s.reasoning_confidence), units(s.contextual_relevance), units(s.uncertainty_lower), units(s.uncertainty_upper)];
  const at = s.created_at === undefined ? now : typeof s.created_at === 'number' ? s.created_at : Date.parse(s.created_at);
  // Stored at millisecond precision, as the hour is computed here; toISOString's own form is kept as is.
  const iso = typeof s.created_at === 'string' && s.created_at.length === 24 && s.created_at.endsWith('Z') ? s.created_at : new Date(at).toISOString();
  const consensus = s.model_consensus ? copyText(JSON.stringify(s.model_consensus)) : '{}';
  return {
    requestId: s.request_id,
    model: s.model,
    hour: Math.floor(at / HOUR_MS) * HOUR_MS,
    line: `${copyText(s.request_id)}\t${copyText(s.model)}\t${decimal(f)}\t${decimal(r)}\t${decimal(c)}\t${decimal(lo)}\t${decimal(hi)}\t${consensus}\t${iso}\n`,
    overall: Math.round((f + r + c) / 3) / 1e4,
    factual: f / 1e4,
    reasoning: r / 1e4,
    contextual: c / 1e4,
    width: (hi - lo) / 1e4,
  };
}

/** The hourly sums of a batch, one row per (hour, model). */
function rollupOf(rows: readonly StoredScore[]) {
  const groups = new Map<string, { hour: number; model: string; count: number; sum: number; sumSq: number; min: number; max: number; f: number; r: number; c: number; w: number }>();
  for (const row of rows) {
    const key = `${row.hour}\u0000${row.model}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { hour: row.hour, model: row.model, count: 0, sum: 0, sumSq: 0, min: Infinity, max: -Infinity, f: 0, r: 0, c: 0, w: 0 }));
    g.count++;
    g.sum += row.overall;
    g.sumSq += row.overall * row.overall;
    g.min = Math.min(g.min, row.overall);
    g.max = Math.max(g.max, row.overall);
    g.f += row.factual;
    g.r += row.reasoning;
    g.c += row.contextual;
    g.w += row.width;
  }
  return [...groups.values()];
}

/** Adds a batch of sums to the rollup row they belong to (the target table aliased `t`). */
const ADD_SUMS = `ON CONFLICT (tenant_id, bucket, model) DO UPDATE SET
  count = t.count + excluded.count,
  sum_overall = t.sum_overall + excluded.sum_overall,
  sum_sq_overall = t.sum_sq_overall + excluded.sum_sq_overall,
  min_overall = least(t.min_overall, excluded.min_overall),
  max_overall = greatest(t.max_overall, excluded.max_overall),
  sum_factual = t.sum_factual + excluded.sum_factual,
  sum_reasoning = t.sum_reasoning + excluded.sum_reasoning,
  sum_contextual = t.sum_contextual + excluded.sum_contextual,
  sum_uncertainty_width = t.sum_uncertainty_width + excluded.sum_uncertainty_width`;

const ROLLUP_COLUMNS = `tenant_id, model, bucket, count, sum_overall, sum_sq_overall, min_overall, max_overall, sum_factual, sum_reasoning,
  sum_contextual, sum_uncertainty_width`;

/** Appends the batch's hourly sums to confidence_hourly_pending: no row another batch could be writing. */
async function appendRollup(client: pg.PoolClient, tenantId: string, rows: readonly StoredScore[]) {
  const groups = rollupOf(rows);
  const col = <T>(f: (g: (typeof groups)[number]) => T) => groups.map(f);
  await client.query(
    `INSERT INTO confidence_hourly_pending (${ROLLUP_COLUMNS})
     SELECT $1::uuid, * FROM unnest($2::text[], $3::timestamptz[], $4::bigint[], $5::float8[], $6::float8[], $7::float8[], $8::float8[],
                                    $9::float8[], $10::float8[], $11::float8[], $12::float8[])`,
    [
      tenantId,
      col((g) => g.model),
      col((g) => new Date(g.hour).toISOString()),
      col((g) => g.count),
      col((g) => g.sum),
      col((g) => g.sumSq),
      col((g) => g.min),
      col((g) => g.max),
      col((g) => g.f),
      col((g) => g.r),
      col((g) => g.c),
      col((g) => g.w),
    ],
  );
}

/**
 * Folds the tenant's pending sums (those of committed batches, and this transaction's own) into
 * confidence_hourly and confidence_daily, if no other transaction of the tenant is folding: the lock is only tried, so
 * a batch never waits for another's fold, and what one fold misses the next one takes.
 */
export async function foldPendingRollup(client: pg.PoolClient, tenantId: string): Promise<boolean> {
  const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_xact_lock(hashtext('caliber:confidence-fold'), hashtext($1)) AS locked", [tenantId]);
  if (!rows[0]?.locked) return false;
  const sums = `sum(count), sum(sum_overall), sum(sum_sq_overall), min(min_overall), max(max_overall),
                sum(sum_factual), sum(sum_reasoning), sum(sum_contextual), sum(sum_uncertainty_width)`;
  // Each model's sums, and (model '') all models' together, per hour and per day.
  const grouped = (bucket: string) => `
    SELECT tenant_id, model, ${bucket}, ${sums} FROM moved GROUP BY 1, 2, 3
    UNION ALL
    SELECT tenant_id, '', ${bucket}, ${sums} FROM moved GROUP BY 1, 3`;
  await client.query(
    `WITH moved AS (DELETE FROM confidence_hourly_pending WHERE tenant_id = $1::uuid RETURNING *),
     hourly AS (INSERT INTO confidence_hourly AS t (${ROLLUP_COLUMNS}) ${grouped('bucket')} ${ADD_SUMS})
     INSERT INTO confidence_daily AS t (${ROLLUP_COLUMNS}) ${grouped("date_bin('1 day', bucket, '2000-01-01 00:00:00+00')")} ${ADD_SUMS}`,
    [tenantId],
  );
  return true;
}

const STAGE = `CREATE TEMP TABLE IF NOT EXISTS confidence_scores_stage (request_id text, model text, factual numeric, reasoning numeric,
  contextual numeric, lower_bound numeric, upper_bound numeric, consensus jsonb, created_at timestamptz) ON COMMIT DELETE ROWS`;

/**
 * COPYs the rows into the session's staging table and moves them into confidence_scores; with
 * `skipStored`, rows whose request id is stored (or being stored by a concurrent batch, which it
 * waits for) are skipped. Returns the request ids it stored when skipping.
 */
async function copyAndInsert(client: pg.PoolClient, tenantId: string, rows: readonly StoredScore[], skipStored: boolean): Promise<Set<string> | undefined> {
  await client.query(STAGE);
  let text = '';
  for (const r of rows) text += r.line;
  await pipeline(Readable.from([text]), client.query(copyFrom('COPY confidence_scores_stage FROM STDIN')));
  const moved = await client.query<{ request_id: string }>(
    `INSERT INTO confidence_scores (tenant_id, request_id, model, factual_confidence, reasoning_confidence, contextual_relevance,
                                    uncertainty_lower, uncertainty_upper, model_consensus, created_at)
     SELECT $1::uuid, s.* FROM confidence_scores_stage s
     ${skipStored ? 'ON CONFLICT (tenant_id, request_id) DO NOTHING RETURNING request_id' : ''}`,
    [tenantId],
  );
  // No TRUNCATE: the table empties at commit (ON COMMIT DELETE ROWS), and a failed INSERT's
  // rollback to the savepoint takes the COPY with it.
  return skipStored ? new Set(moved.rows.map((r) => r.request_id)) : undefined;
}

/**
 * Stores a batch of scores and adds them to the hourly rollup, inside the tenant's transaction
 * (`withTenantClient`). The batch is COPYed (Postgres' fastest way in; COPY cannot write a table
 * under row-level security itself) into a temporary table and moved into confidence_scores by one
 * plain INSERT, under the policy's checks; the hourly sums are computed here from the same rounded
 * values the table stores and appended to confidence_hourly_pending (then folded, see
 * `foldPendingRollup`). Rows go in request-id order, so concurrent batches sharing ids take their
 * index locks in one order and cannot deadlock. A request id stored before (a batch sent again, or
 * a concurrent one) fails the plain INSERT on the primary key: the step is then undone to its
 * savepoint and redone with ON CONFLICT DO NOTHING, and the sums cover exactly the rows it
 * stored — each score counts once, and the common case pays for no duplicate check.
 */
export async function insertScores(client: pg.PoolClient, tenantId: string, scores: readonly ConfidenceScoreInput[]) {
  repeatedIndexes(scores, (s) => s.request_id, 'scores', 'the request_id');
  const { rows } = await client.query<{ now: Date }>('SELECT now() AS now');
  const now = new Date(rows[0]!.now).getTime();
  let fresh = scores.map((s) => toStored(s, now)).sort((a, b) => (a.requestId < b.requestId ? -1 : a.requestId > b.requestId ? 1 : 0));
  await client.query('SAVEPOINT confidence_insert');
  try {
    await copyAndInsert(client, tenantId, fresh, false);
  } catch (err) {
    if ((err as { code?: string }).code !== '23505') throw err;
    await client.query('ROLLBACK TO SAVEPOINT confidence_insert');
    const stored = (await copyAndInsert(client, tenantId, fresh, true))!;
    fresh = fresh.filter((r) => stored.has(r.requestId));
  }
  if (fresh.length > 0) {
    await appendRollup(client, tenantId, fresh);
    await foldPendingRollup(client, tenantId);
  }
  return { inserted: fresh.length, duplicates: scores.length - fresh.length };
}

/**
 * Records outcomes against the tenant's scores, copying each score's overall confidence as the
 * prediction. Every request id must have a score of this tenant (404 naming them, nothing
 * written); a (request, method) sent again updates its verdict.
 */
export async function recordOutcomes(tx: Executor, tenantId: string, outcomes: readonly OutcomeInput[]) {
  repeatedIndexes(outcomes, (o) => `${o.validation_method}\u0000${o.request_id}`, 'outcomes', 'the request_id and validation_method');
  const ids = sql.param(outcomes.map((o) => o.request_id));
  const missing = await tx.execute<{ request_id: string; i: number }>(sql`
    SELECT t.request_id, t.i::int
      FROM unnest(${ids}::text[]) WITH ORDINALITY AS t(request_id, i)
     WHERE NOT EXISTS (SELECT 1 FROM confidence_scores s WHERE s.tenant_id = ${tenantId}::uuid AND s.request_id = t.request_id)
     ORDER BY t.i`);
  if (missing.rows.length) {
    const shown = missing.rows.slice(0, 10).map((r) => r.request_id);
    throw new ApiError(404, 'not_found', `No score was recorded for request_id ${shown.join(', ')}${missing.rows.length > 10 ? ` (and ${missing.rows.length - 10} more)` : ''}; nothing was written`, {
      failed_indexes: missing.rows.map((r) => r.i - 1),
    });
  }
  const { rows } = await tx.execute<{ inserted: number; updated: number }>(sql`
    WITH input AS (
      SELECT * FROM unnest(${ids}::text[], ${sql.param(outcomes.map((o) => o.correct))}::boolean[],
                           ${sql.param(outcomes.map((o) => o.validation_method))}::validation_method[],
                           ${sql.param(outcomes.map((o) => toDate(o.validated_at)))}::timestamptz[])
        AS t(request_id, correct, method, validated_at)
    ), up AS (
      INSERT INTO confidence_calibration (tenant_id, request_id, model, predicted_confidence, actual_outcome, validation_method, validated_at)
      SELECT s.tenant_id, s.request_id, s.model, s.overall_confidence, i.correct, i.method, coalesce(i.validated_at, now())
        FROM input i JOIN confidence_scores s ON s.tenant_id = ${tenantId}::uuid AND s.request_id = i.request_id
       ORDER BY s.request_id, i.method
      ON CONFLICT (tenant_id, request_id, validation_method) DO UPDATE
        SET actual_outcome = excluded.actual_outcome, validated_at = excluded.validated_at, updated_at = now()
        WHERE confidence_calibration.actual_outcome IS DISTINCT FROM excluded.actual_outcome
      RETURNING (xmax = 0) AS inserted
    )
    SELECT count(*) FILTER (WHERE inserted)::int AS inserted, count(*) FILTER (WHERE NOT inserted)::int AS updated FROM up`);
  const { inserted = 0, updated = 0 } = rows[0] ?? {};
  return { inserted, updated, unchanged: outcomes.length - inserted - updated };
}

/** Stores performance metrics; one sent again with the same endpoint and request_id is stored once. */
export async function insertPerformanceMetrics(tx: Executor, tenantId: string, metrics: readonly PerformanceMetricInput[]) {
  repeatedIndexes(metrics, (m) => (m.request_id === undefined ? undefined : `${m.endpoint}\u0000${m.request_id}`), 'metrics', 'the endpoint and request_id');
  const col = <K extends keyof PerformanceMetricInput>(k: K) => sql.param(metrics.map((m) => m[k] ?? null));
  const { rows } = await tx.execute<{ inserted: number }>(sql`
    WITH ins AS (
      INSERT INTO performance_metrics (tenant_id, endpoint, request_id, model, response_time_ms, tokens_used, system_load, memory_usage_mb,
                                       cpu_usage_percent, cache_hit_rate, confidence_accuracy, hallucination_rate, created_at)
      SELECT ${tenantId}::uuid, endpoint, request_id, model, response_time_ms, tokens_used, system_load, memory_usage_mb,
             cpu_usage_percent, cache_hit_rate, confidence_accuracy, hallucination_rate, coalesce(created_at, now())
        FROM unnest(${col('endpoint')}::text[], ${col('request_id')}::text[], ${col('model')}::text[], ${col('response_time_ms')}::float8[],
                    ${col('tokens_used')}::int[], ${col('system_load')}::float8[], ${col('memory_usage_mb')}::float8[],
                    ${col('cpu_usage_percent')}::float8[], ${col('cache_hit_rate')}::float8[], ${col('confidence_accuracy')}::float8[],
                    ${col('hallucination_rate')}::float8[], ${sql.param(metrics.map((m) => toDate(m.created_at)))}::timestamptz[])
          AS t(endpoint, request_id, model, response_time_ms, tokens_used, system_load, memory_usage_mb, cpu_usage_percent,
               cache_hit_rate, confidence_accuracy, hallucination_rate, created_at)
       -- One order for every batch: two sharing (endpoint, request_id) keys wait rather than deadlock.
       ORDER BY endpoint, request_id
      ON CONFLICT (tenant_id, endpoint, request_id) WHERE request_id IS NOT NULL DO NOTHING
      RETURNING 1
    )
    SELECT count(*)::int AS inserted FROM ins`);
  const inserted = rows[0]?.inserted ?? 0;
  return { inserted, duplicates: metrics.length - inserted };
}
