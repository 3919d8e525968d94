import { sql } from 'drizzle-orm';
import { bigserial, boolean, index, integer, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';

/**
 * Completion events waiting to become BullMQ jobs. A row is written in the same transaction as the
 * result that caused it and relayed with `outbox-<id>` as its job id, so a crash on either side of
 * the commit neither loses nor duplicates the downstream job.
 */
export const outbox = pgTable(
  'outbox',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    queue: text('queue').notNull(),
    jobName: text('job_name').notNull(),
    payload: jsonb('payload').notNull(),
    /** `<queue>/<job id>` of the job whose result produced this event. */
    causedBy: text('caused_by'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    relayedAt: timestamp('relayed_at', { withTimezone: true }),
    attempts: integer('attempts').notNull().default(0),
    lastError: text('last_error'),
  },
  (t) => [
    index('outbox_pending_idx').on(t.id).where(sql`${t.relayedAt} is null`),
    index('outbox_caused_by_idx').on(t.causedBy),
  ],
);

/**
 * The organisations whose data Caliber walls off from each other (row-level security on their
 * tables keys on `tenant_id`). This directory itself has no RLS: the gateway reads it to know who
 * a key belongs to.
 */
export const tenants = pgTable('tenants', {
  id: uuid('id').primaryKey().defaultRandom(),
  name: text('name').notNull().unique(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

/** A tenant's API keys, stored as SHA-256 of the key (keys are 192 random bits, so no slow hash). */
export const tenantApiKeys = pgTable(
  'tenant_api_keys',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    keyHash: text('key_hash').notNull().unique(),
    /** The key's first characters, to tell keys apart in listings without showing them. */
    prefix: text('prefix').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
  (t) => [index('tenant_api_keys_tenant_idx').on(t.tenantId)],
);

/**
 * Keys a web page may carry (the feedback widget): they can only record responses and feedback,
 * only from their allowed origins, within their rate limit. Stored as SHA-256, like tenant keys.
 */
export const publishableKeys = pgTable(
  'publishable_keys',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    name: text('name').notNull(),
    keyHash: text('key_hash').notNull().unique(),
    prefix: text('prefix').notNull(),
    /** Exact origins (`https://app.example.com`) whose pages may use the key. */
    allowedOrigins: text('allowed_origins').array().notNull(),
    /** Requests per minute per client IP. */
    rateLimitPerMinute: integer('rate_limit_per_minute').notNull().default(60),
    /** The project its pages belong to: it records into it and gives feedback only on its responses. */
    project: text('project').notNull(),
    /** The models whose responses it may record (empty: any). */
    modelIds: text('model_ids').array().notNull().default(sql`'{}'::text[]`),
    /** Whether corrections it sends may train fine-tunes (a public key's are held back by default). */
    trustCorrections: boolean('trust_corrections').notNull().default(false),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
);
