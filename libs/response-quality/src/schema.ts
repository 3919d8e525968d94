import { sql } from 'drizzle-orm';
import { publishableKeys } from '@caliber/platform/schema';
import { bigint, bigserial, boolean, doublePrecision, index, integer, jsonb, pgTable, serial, smallint, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

/** An LLM response a product showed, identified by the product's own id. */
export const llmResponses = pgTable(
  'llm_responses',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    responseId: text('response_id').notNull().unique(),
    modelId: text('model_id').notNull(),
    query: text('query').notNull(),
    response: text('response').notNull(),
    /** The query with runs of whitespace as one space, hashed: examples equal but for whitespace share it. */
    queryKey: text('query_key')
      .notNull()
      .generatedAlwaysAs(sql`md5(btrim(regexp_replace(query, '\\s+', ' ', 'g')))`),
    respondedAt: timestamp('responded_at', { withTimezone: true }).notNull().defaultNow(),
    metadata: jsonb('metadata').notNull().default({}),
    /** The product project it belongs to; a publishable key gives feedback only on its project's responses. */
    project: text('project'),
    /** The publishable key that recorded it (null: a server key). A server's record replaces a page's. */
    sourceKeyId: bigint('source_key_id', { mode: 'number' }).references(() => publishableKeys.id),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('llm_responses_model_time_idx').on(t.modelId, t.respondedAt),
    // What a publishable key wrote, to find and remove if the key was abused.
    index('llm_responses_source_key_idx')
      .on(t.sourceKeyId)
      .where(sql`${t.sourceKeyId} IS NOT NULL`),
  ],
);

/**
 * A user's feedback on a response: thumbs, 1–5 stars, or full (categories from the taxonomy, a
 * comment, a corrected response). `negative` is derived once at write time (thumbs down, ≤ 2
 * stars, or any category) so every report counts the same way.
 */
export const responseFeedback = pgTable(
  'response_feedback',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    responseRef: bigint('response_ref', { mode: 'number' })
      .notNull()
      .references(() => llmResponses.id, { onDelete: 'cascade' }),
    type: text('type', { enum: ['thumbs', 'stars', 'full'] }).notNull(),
    thumbsUp: boolean('thumbs_up'),
    stars: smallint('stars'),
    categories: text('categories').array().notNull().default(sql`'{}'::text[]`),
    /** Categories the comment classifier read out of `comment` when the feedback was stored. */
    commentCategories: text('comment_categories').array().notNull().default(sql`'{}'::text[]`),
    comment: text('comment'),
    correction: text('correction'),
    /** As `llm_responses.query_key`, for the correction (null without one). */
    correctionKey: text('correction_key').generatedAlwaysAs(sql`md5(btrim(regexp_replace(correction, '\\s+', ' ', 'g')))`),
    negative: boolean('negative').notNull(),
    idempotencyKey: text('idempotency_key'),
    /** The publishable key that sent it (null: a server key); idempotency keys are per source. */
    sourceKeyId: bigint('source_key_id', { mode: 'number' }).references(() => publishableKeys.id),
    /** Whether its correction may train fine-tunes: a server's always, a publishable key's if the key is trusted. */
    trusted: boolean('trusted').notNull().default(true),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    // A web page cannot take (squat) the idempotency keys a server uses, nor another key's.
    uniqueIndex('response_feedback_idempotency_idx').on(sql`coalesce(${t.sourceKeyId}, 0)`, t.idempotencyKey),
    index('response_feedback_response_idx').on(t.responseRef),
    index('response_feedback_source_key_idx')
      .on(t.sourceKeyId)
      .where(sql`${t.sourceKeyId} IS NOT NULL`),
    index('response_feedback_created_idx').on(t.createdAt),
    // Fine-tuning datasets and criteria read the corrected responses, a small part of all feedback.
    index('response_feedback_corrections_idx')
      .on(t.responseRef)
      .where(sql`${t.correction} IS NOT NULL`),
    // The dashboard's most disliked responses of the last days read only recent negative feedback.
    index('response_feedback_negative_recent_idx')
      .on(t.createdAt, t.responseRef)
      .where(sql`${t.negative}`),
  ],
);

/** One analyze-errors run: the window it looked at and what it found. */
export const errorAnalysisRuns = pgTable('error_analysis_runs', {
  id: serial('id').primaryKey(),
  jobId: text('job_id').notNull().unique(),
  asOf: timestamp('as_of', { withTimezone: true }).notNull(),
  windowStart: timestamp('window_start', { withTimezone: true }).notNull(),
  summary: jsonb('summary').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

/** Error categories per model over a run's window: count, share of the model's negative feedback, examples. */
export const errorPatterns = pgTable(
  'error_patterns',
  {
    runId: integer('run_id').notNull().references(() => errorAnalysisRuns.id, { onDelete: 'cascade' }),
    modelId: text('model_id').notNull(),
    category: text('category').notNull(),
    count: integer('count').notNull(),
    share: doublePrecision('share').notNull(),
    examples: jsonb('examples').notNull(),
  },
  (t) => [index('error_patterns_run_model_idx').on(t.runId, t.modelId)],
);

/** Negative feedback per model, category and ISO week, with the change against the week before. */
export const errorTrends = pgTable(
  'error_trends',
  {
    runId: integer('run_id').notNull().references(() => errorAnalysisRuns.id, { onDelete: 'cascade' }),
    modelId: text('model_id').notNull(),
    category: text('category').notNull(),
    week: text('week').notNull(),
    count: integer('count').notNull(),
    change: integer('change').notNull(),
  },
  (t) => [index('error_trends_run_model_idx').on(t.runId, t.modelId)],
);

/** What to do about a pattern that grew this week, with the evidence. */
export const improvementSuggestions = pgTable(
  'improvement_suggestions',
  {
    runId: integer('run_id').notNull().references(() => errorAnalysisRuns.id, { onDelete: 'cascade' }),
    modelId: text('model_id').notNull(),
    category: text('category').notNull(),
    share: doublePrecision('share').notNull(),
    previousShare: doublePrecision('previous_share').notNull(),
    count: integer('count').notNull(),
    evidence: text('evidence').notNull(),
    action: text('action').notNull(),
  },
  (t) => [index('improvement_suggestions_run_model_idx').on(t.runId, t.modelId)],
);
