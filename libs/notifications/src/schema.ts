import { sql } from 'drizzle-orm';
import { bigint, bigserial, check, index, integer, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';

export const NOTIFICATION_STATUSES = ['pending', 'delivered', 'failed', 'skipped'] as const;
export type NotificationStatus = (typeof NOTIFICATION_STATUSES)[number];

/**
 * Something that happened and is told to the webhook (NOTIFY_WEBHOOK_URL). Written in the same
 * transaction as the change it reports, with the exact body that is signed and sent on every
 * attempt, so a retry sends the same bytes and the same signature.
 */
export const notifications = pgTable(
  'notifications',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    event: text('event').notNull(),
    /** What the producer calls this occurrence; a second notification with the same key is not written. */
    dedupeKey: text('dedupe_key').notNull().unique(),
    body: text('body').notNull(),
    /** pending → delivered | failed (4xx, or out of attempts) | skipped (no webhook configured). */
    status: text('status', { enum: NOTIFICATION_STATUSES }).notNull().default('pending'),
    /** Attempts in the current round; a redelivery by hand starts a new round. */
    attempts: integer('attempts').notNull().default(0),
    round: integer('round').notNull().default(0),
    /**
     * While `lease_until` is in the future, the worker holding `lease_token` is sending and nobody
     * else may; its outcome is recorded only while the token is still its own.
     */
    leaseUntil: timestamp('lease_until', { withTimezone: true }),
    leaseToken: uuid('lease_token'),
    lastAttemptAt: timestamp('last_attempt_at', { withTimezone: true }),
    /** The BullMQ job (queue `notify`) meant to send it now; the reconcile sweep replaces a lost one. */
    jobId: text('job_id'),
    lastError: text('last_error'),
    causedBy: text('caused_by'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    deliveredAt: timestamp('delivered_at', { withTimezone: true }),
  },
  (t) => [
    index('notifications_status_idx').on(t.status, t.id),
    index('notifications_event_idx').on(t.event, t.id),
    check('notifications_status_check', sql.raw(`status IN (${NOTIFICATION_STATUSES.map((s) => `'${s}'`).join(', ')})`)),
  ],
);

/** Every POST made for a notification and what came of it. */
export const notificationAttempts = pgTable(
  'notification_attempts',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    notificationId: bigint('notification_id', { mode: 'number' })
      .notNull()
      .references(() => notifications.id, { onDelete: 'cascade' }),
    round: integer('round').notNull(),
    attempt: integer('attempt').notNull(),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull(),
    durationMs: integer('duration_ms').notNull(),
    /** The receiver's HTTP status; null when none came (timeout, refused connection). */
    statusCode: integer('status_code'),
    /** delivered | retry (5xx, 408, 429, timeout, network) | failed (other 4xx, 3xx, last attempt). */
    outcome: text('outcome', { enum: ['delivered', 'retry', 'failed'] }).notNull(),
    error: text('error'),
    /** The start of the receiver's answer, for debugging a refusal. */
    response: text('response'),
  },
  (t) => [
    index('notification_attempts_notification_idx').on(t.notificationId, t.id),
    uniqueIndex('notification_attempts_attempt_key').on(t.notificationId, t.round, t.attempt),
  ],
);
