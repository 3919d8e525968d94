import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  check,
  doublePrecision,
  foreignKey,
  index,
  integer,
  jsonb,
  numeric,
  pgEnum,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';
import { tenants } from '@caliber/platform/schema';

// Every table here carries tenant_id and is walled off per tenant by row-level security
// (FORCE ROW LEVEL SECURITY, policies on caliber_current_tenant()), written by hand at the end of
// the migration that creates them.

/** A confidence in [0, 1], kept to 4 decimals as the seed's DECIMAL(5,4). */
const confidence = (name: string) => numeric(name, { precision: 5, scale: 4, mode: 'number' });
const unitRange = (column: string) => sql.raw(`${column} >= 0 AND ${column} <= 1`);

export const VALIDATION_METHODS = ['human_review', 'automated_test', 'cross_validation'] as const;
export const validationMethod = pgEnum('validation_method', VALIDATION_METHODS);

/** One AI request's confidence, as its system scored it; a request id is stored once per tenant. */
export const confidenceScores = pgTable(
  'confidence_scores',
  {
    // No foreign key to tenants on this high-volume table: its per-row check was half the cost of an
    // insert. The RLS policy's WITH CHECK pins tenant_id to the transaction's tenant, which the
    // gateway only ever sets to an existing one.
    tenantId: uuid('tenant_id').notNull(),
    requestId: text('request_id').notNull(),
    model: text('model').notNull(),
    factualConfidence: confidence('factual_confidence').notNull(),
    reasoningConfidence: confidence('reasoning_confidence').notNull(),
    contextualRelevance: confidence('contextual_relevance').notNull(),
    uncertaintyLower: confidence('uncertainty_lower').notNull(),
    uncertaintyUpper: confidence('uncertainty_upper').notNull(),
    overallConfidence: confidence('overall_confidence')
      .notNull()
      .generatedAlwaysAs(sql`(factual_confidence + reasoning_confidence + contextual_relevance) / 3.0`),
    modelConsensus: jsonb('model_consensus').notNull().default({}),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    // The only index: routes read scores by request id and time series from confidence_hourly, so
    // ingest maintains one btree.
    primaryKey({ name: 'confidence_scores_pkey', columns: [t.tenantId, t.requestId] }),
    check('confidence_scores_factual_range', unitRange('factual_confidence')),
    check('confidence_scores_reasoning_range', unitRange('reasoning_confidence')),
    check('confidence_scores_contextual_range', unitRange('contextual_relevance')),
    check('confidence_scores_lower_range', unitRange('uncertainty_lower')),
    check('confidence_scores_upper_range', unitRange('uncertainty_upper')),
    check('confidence_scores_bounds_order', sql`uncertainty_lower <= uncertainty_upper`),
    // The rollups keep all models' totals under model '': no score may claim that name.
    check('confidence_scores_model_named', sql`model <> ''`),
  ],
);

/** The sums a rollup row keeps for its scores (a fresh set of columns per table). */
const rollupSums = () => ({
  count: bigint('count', { mode: 'number' }).notNull(),
  sumOverall: doublePrecision('sum_overall').notNull(),
  sumSqOverall: doublePrecision('sum_sq_overall').notNull(),
  minOverall: doublePrecision('min_overall').notNull(),
  maxOverall: doublePrecision('max_overall').notNull(),
  sumFactual: doublePrecision('sum_factual').notNull(),
  sumReasoning: doublePrecision('sum_reasoning').notNull(),
  sumContextual: doublePrecision('sum_contextual').notNull(),
  sumUncertaintyWidth: doublePrecision('sum_uncertainty_width').notNull(),
});

/**
 * Per tenant, model and UTC hour: the sums the trends and the dashboard read, kept up by the same
 * statement that inserts the scores (only rows actually inserted count, so a retried batch adds
 * nothing). A million scores become a few thousand rows.
 */
export const confidenceHourly = pgTable(
  'confidence_hourly',
  {
    /** No foreign key, as on confidence_scores (its check was a fifth of a batch's rollup UPSERT). */
    tenantId: uuid('tenant_id').notNull(),
    model: text('model').notNull(),
    bucket: timestamp('bucket', { withTimezone: true }).notNull(),
    ...rollupSums(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.bucket, t.model] }), index('confidence_hourly_model_idx').on(t.tenantId, t.model, t.bucket)],
);

/** The same sums per UTC day, kept by the same folds, so a month by day reads 30 rows a model. */
export const confidenceDaily = pgTable(
  'confidence_daily',
  {
    tenantId: uuid('tenant_id').notNull(),
    model: text('model').notNull(),
    bucket: timestamp('bucket', { withTimezone: true }).notNull(),
    ...rollupSums(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.bucket, t.model] }), index('confidence_daily_model_idx').on(t.tenantId, t.model, t.bucket)],
);

/**
 * Rollup sums not yet folded into confidence_hourly. Each batch of scores appends its sums here
 * (plain inserts, so concurrent batches never wait on each other's rollup rows), and whichever
 * batch of the tenant finds the fold lock free moves them into confidence_hourly in its own
 * transaction. Readers add both tables up, so a sum counts the same before and after its fold.
 */
export const confidenceHourlyPending = pgTable(
  'confidence_hourly_pending',
  {
    tenantId: uuid('tenant_id').notNull(),
    model: text('model').notNull(),
    bucket: timestamp('bucket', { withTimezone: true }).notNull(),
    ...rollupSums(),
  },
  (t) => [index('confidence_hourly_pending_idx').on(t.tenantId, t.bucket), check('confidence_hourly_pending_model_named', sql`model <> ''`)],
);

/**
 * What a request's outcome turned out to be, beside the confidence predicted for it (copied from
 * its score, which never changes). One row per request and validation method; sent again, the
 * latest verdict wins.
 */
export const confidenceCalibration = pgTable(
  'confidence_calibration',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    tenantId: uuid('tenant_id').notNull(),
    requestId: text('request_id').notNull(),
    model: text('model').notNull(),
    predictedConfidence: confidence('predicted_confidence').notNull(),
    actualOutcome: boolean('actual_outcome').notNull(),
    validationMethod: validationMethod('validation_method').notNull(),
    /** |predicted − outcome|: this request's contribution to the calibration error. */
    calibrationError: confidence('calibration_error')
      .notNull()
      .generatedAlwaysAs(sql`abs(predicted_confidence - CASE WHEN actual_outcome THEN 1 ELSE 0 END)`),
    validatedAt: timestamp('validated_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    // The score of the same tenant: a composite key, since foreign-key checks do not pass through RLS.
    foreignKey({ columns: [t.tenantId, t.requestId], foreignColumns: [confidenceScores.tenantId, confidenceScores.requestId] }).onDelete('cascade'),
    uniqueIndex('confidence_calibration_request_idx').on(t.tenantId, t.requestId, t.validationMethod),
    index('confidence_calibration_model_idx').on(t.tenantId, t.model, t.predictedConfidence, t.actualOutcome),
    index('confidence_calibration_time_idx').on(t.tenantId, t.validatedAt),
  ],
);

/** System metrics of requests: latency, tokens, load, memory, CPU, cache hits, per endpoint. */
export const performanceMetrics = pgTable(
  'performance_metrics',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    /** No foreign key, as on confidence_scores: the RLS policy pins it to the request's tenant. */
    tenantId: uuid('tenant_id').notNull(),
    endpoint: text('endpoint').notNull(),
    requestId: text('request_id'),
    model: text('model'),
    responseTimeMs: doublePrecision('response_time_ms').notNull(),
    tokensUsed: integer('tokens_used'),
    systemLoad: doublePrecision('system_load'),
    memoryUsageMb: doublePrecision('memory_usage_mb'),
    cpuUsagePercent: doublePrecision('cpu_usage_percent'),
    cacheHitRate: doublePrecision('cache_hit_rate'),
    confidenceAccuracy: doublePrecision('confidence_accuracy'),
    hallucinationRate: doublePrecision('hallucination_rate'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('performance_metrics_time_idx').on(t.tenantId, t.createdAt),
    uniqueIndex('performance_metrics_request_idx').on(t.tenantId, t.endpoint, t.requestId).where(sql`request_id IS NOT NULL`),
    check('performance_metrics_response_time', sql`response_time_ms >= 0`),
    check('performance_metrics_tokens', sql`tokens_used >= 0`),
    check('performance_metrics_load', sql`system_load >= 0`),
    check('performance_metrics_memory', sql`memory_usage_mb >= 0`),
    check('performance_metrics_cpu', sql`cpu_usage_percent >= 0 AND cpu_usage_percent <= 100`),
    check('performance_metrics_cache', unitRange('cache_hit_rate')),
    check('performance_metrics_accuracy', unitRange('confidence_accuracy')),
    check('performance_metrics_hallucination', unitRange('hallucination_rate')),
  ],
);

/** A temperature fitted for a model's confidences by a `calibrate` (kind `confidence`) run. */
export const confidenceTemperatureFits = pgTable(
  'confidence_temperature_fits',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    model: text('model').notNull(),
    temperature: doublePrecision('temperature').notNull(),
    outcomes: integer('outcomes').notNull(),
    eceBefore: doublePrecision('ece_before').notNull(),
    eceAfter: doublePrecision('ece_after').notNull(),
    brierBefore: doublePrecision('brier_before').notNull(),
    brierAfter: doublePrecision('brier_after').notNull(),
    logLossBefore: doublePrecision('log_loss_before').notNull(),
    logLossAfter: doublePrecision('log_loss_after').notNull(),
    bins: integer('bins').notNull(),
    /** The run that made it (`jobKey`): a retried run stores its fit once. */
    jobKey: text('job_key').notNull(),
    fittedAt: timestamp('fitted_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('confidence_temperature_fits_run_idx').on(t.tenantId, t.model, t.jobKey), index('confidence_temperature_fits_model_idx').on(t.tenantId, t.model, t.id)],
);
