import { sql } from 'drizzle-orm';
import { bigint, bigserial, boolean, index, jsonb, pgTable, smallint, text, timestamp } from 'drizzle-orm/pg-core';

/** An LLM response a product showed, identified by the product's own id. */
export const llmResponses = pgTable(
  'llm_responses',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    responseId: text('response_id').notNull().unique(),
    modelId: text('model_id').notNull(),
    query: text('query').notNull(),
    response: text('response').notNull(),
    respondedAt: timestamp('responded_at', { withTimezone: true }).notNull().defaultNow(),
    metadata: jsonb('metadata').notNull().default({}),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('llm_responses_model_time_idx').on(t.modelId, t.respondedAt)],
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
    comment: text('comment'),
    correction: text('correction'),
    negative: boolean('negative').notNull(),
    idempotencyKey: text('idempotency_key').unique(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('response_feedback_response_idx').on(t.responseRef), index('response_feedback_created_idx').on(t.createdAt)],
);
