import { sql } from 'drizzle-orm';
import { bigint, bigserial, boolean, check, doublePrecision, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

export const SIZE_CATEGORIES = ['small', 'medium', 'large'] as const;
export type SizeCategory = (typeof SIZE_CATEGORIES)[number];
/** The size_category (and language) of configurations pooled over every size (or language). */
export const ANY = 'any';

const inList = (column: string, values: readonly string[]) => sql.raw(`${column} IN (${values.map((v) => `'${v}'`).join(', ')})`);

/**
 * One evaluation of a model on a repository of a language and size, from a test run. A run
 * reports each (language, size, model, repository) once: the same row sent again is a duplicate.
 */
export const calibrationResults = pgTable(
  'calibration_results',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    runId: text('run_id').notNull(),
    language: text('language').notNull(),
    sizeCategory: text('size_category', { enum: SIZE_CATEGORIES }).notNull(),
    modelId: text('model_id').notNull(),
    provider: text('provider').notNull(),
    /** What was tested (a repository URL or name); '' when a run tests one repository per pair. */
    repository: text('repository').notNull().default(''),
    qualityScore: doublePrecision('quality_score').notNull(),
    latencyMs: doublePrecision('latency_ms').notNull(),
    costUsd: doublePrecision('cost_usd').notNull(),
    /** When the evaluation ran; results older than MODEL_SELECTION_WINDOW_DAYS no longer count. */
    testedAt: timestamp('tested_at', { withTimezone: true }).notNull().defaultNow(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('calibration_results_natural_key').on(t.runId, t.language, t.sizeCategory, t.provider, t.modelId, t.repository),
    // The calibrate job reads a window by tested_at; the rankings route one pair within it.
    index('calibration_results_tested_at_idx').on(t.testedAt),
    index('calibration_results_pair_idx').on(t.language, t.sizeCategory, t.testedAt),
    check('calibration_results_size_check', inList('size_category', SIZE_CATEGORIES)),
    check('calibration_results_quality_range', sql`quality_score >= 0 AND quality_score <= 1`),
    // The same bounds as the route's: far inside float8, so no aggregate over them overflows.
    check('calibration_results_latency_range', sql`latency_ms >= 0 AND latency_ms <= 86400000`),
    check('calibration_results_cost_range', sql`cost_usd >= 0 AND cost_usd <= 1000000`),
  ],
);

/**
 * The model to use for repositories of a language and size, as the last calibration chose it:
 * per pair, per language over every size (`size_category = 'any'`) and over everything
 * (`language = 'any'`, the default).
 */
export const modelConfigurations = pgTable(
  'model_configurations',
  {
    language: text('language').notNull(),
    sizeCategory: text('size_category').notNull(),
    modelId: text('model_id').notNull(),
    provider: text('provider').notNull(),
    /** The weighted score in [0, 1] at the last calibration, and what it was computed from. */
    score: doublePrecision('score').notNull(),
    sampleCount: integer('sample_count').notNull(),
    qualityScore: doublePrecision('quality_score').notNull(),
    latencyMs: doublePrecision('latency_ms').notNull(),
    costUsd: doublePrecision('cost_usd').notNull(),
    runnerUpModelId: text('runner_up_model_id'),
    runnerUpProvider: text('runner_up_provider'),
    runnerUpScore: doublePrecision('runner_up_score'),
    /** The calibration run that last scored this pair, and when the chosen model last changed. */
    runId: bigint('run_id', { mode: 'number' }).notNull(),
    /**
     * Set by a run that found no candidate here (no model with enough results in the window): the
     * choice is kept, but `GET /model-config` prefers a fresh fallback to it.
     */
    stale: boolean('stale').notNull().default(false),
    chosenAt: timestamp('chosen_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ name: 'model_configurations_pkey', columns: [t.language, t.sizeCategory] }),
    check('model_configurations_size_check', inList('size_category', [...SIZE_CATEGORIES, ANY])),
  ],
);

/** One model-selection calibration; a retried job finds its finished run by its job key. */
export const modelSelectionRuns = pgTable('model_selection_runs', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  jobKey: text('job_key').notNull().unique(),
  requestedBy: text('requested_by'),
  startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
  finishedAt: timestamp('finished_at', { withTimezone: true }),
  configurations: integer('configurations'),
  changed: integer('changed'),
  result: jsonb('result'),
});
