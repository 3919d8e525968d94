import { sql } from 'drizzle-orm';
import { boolean, doublePrecision, index, integer, jsonb, pgTable, serial, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * The discovery pipeline's table of models each inference provider serves. Caliber only reads it:
 * its database role has SELECT and nothing else on it (see the roles migration).
 */
export const workingVersion = pgTable(
  'working_version',
  {
    id: serial('id').primaryKey(),
    inferenceProvider: text('inference_provider').notNull(),
    modelId: text('model_id').notNull(),
    humanReadableName: text('human_readable_name'),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('working_version_model_id_idx').on(t.modelId), index('working_version_provider_idx').on(t.inferenceProvider)],
);

/** Artificial Analysis benchmark entries, loaded by `map-models`; AA's `id` is stable where slugs change. */
export const aaPerformanceMetrics = pgTable('aa_performance_metrics', {
  slug: text('slug').primaryKey(),
  aaId: text('aa_id').notNull().unique(),
  name: text('name').notNull(),
  creator: text('creator'),
  intelligenceIndex: doublePrecision('intelligence_index'),
  codingIndex: doublePrecision('coding_index'),
  mathIndex: doublePrecision('math_index'),
  pricing: jsonb('pricing'),
  evaluations: jsonb('evaluations'),
  outputTokensPerSecond: doublePrecision('output_tokens_per_second'),
  timeToFirstTokenSeconds: doublePrecision('time_to_first_token_seconds'),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

/**
 * Which AA entry a provider model (working_version.model_id) is. `aa_slug` is null for a model the
 * matcher left unmapped (`reason` says why). Manual rows are never overwritten by the matcher.
 */
export const modelAaMapping = pgTable(
  'model_aa_mapping',
  {
    modelName: text('model_name').primaryKey(),
    aaSlug: text('aa_slug').references(() => aaPerformanceMetrics.slug, { onUpdate: 'cascade', onDelete: 'set null' }),
    method: text('method'),
    score: doublePrecision('score'),
    manual: boolean('manual').notNull().default(false),
    reason: text('reason'),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('model_aa_mapping_aa_slug_idx').on(t.aaSlug).where(sql`${t.aaSlug} IS NOT NULL`)],
);

/** One row per `map-models` run: what it loaded and how much it mapped. */
export const modelMappingRuns = pgTable('model_mapping_runs', {
  id: serial('id').primaryKey(),
  jobId: text('job_id').notNull().unique(),
  source: text('source').notNull(),
  aaEntries: integer('aa_entries').notNull(),
  totalModels: integer('total_models').notNull(),
  mapped: integer('mapped').notNull(),
  unmapped: integer('unmapped').notNull(),
  manual: integer('manual').notNull(),
  duplicatesSkipped: integer('duplicates_skipped').notNull(),
  coverage: doublePrecision('coverage').notNull(),
  /** The job's full answer, returned again if the job is retried after it committed. */
  result: jsonb('result').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});
