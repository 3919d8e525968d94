import { sql } from 'drizzle-orm';
import { bigserial, index, integer, jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

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
