import { appendOutbox, defineJob, delay, isStorableText, outboxEvent, outboxJobId, runAgainLater, type Executor, type JobContext } from '@caliber/platform';
import { UnrecoverableError } from 'bullmq';
import { sql } from 'drizzle-orm';
import type pg from 'pg';
import { z } from 'zod';
import type { NotificationsConfig } from './config.ts';
import { postWebhook, retryDelayMs, type DeliveryOutcome } from './webhook.ts';

/** What an attempt that sent but could not record its outcome leaves in its job, for the next attempt to record. */
const unrecordedSchema = z.object({
  token: z.uuid(),
  round: z.number().int(),
  attempt: z.number().int(),
  started_at: z.string(),
  duration_ms: z.number().int(),
  status_code: z.number().int().nullable(),
  outcome: z.enum(['delivered', 'retry', 'failed']),
  status: z.enum(['pending', 'delivered', 'failed']),
  error: z.string().nullable(),
  response: z.string().nullable(),
  retry_after_ms: z.number().nullable(),
});
type Unrecorded = z.infer<typeof unrecordedSchema>;

/** Sends one notification to the webhook (the `notify` queue); retries are the job checking again later. */
export const deliverNotificationJob = defineJob(
  'notify',
  'webhook',
  z.object({ notification_id: z.number().int().positive(), unrecorded: unrecordedSchema.optional() }),
);

/** Queues again the pending notifications whose job is gone (`NOTIFY_RECONCILE_CRON`). */
export const reconcileNotificationsJob = defineJob('notify', 'reconcile', z.object({ requested_by: z.string().max(200).optional() }));

export interface NewNotification {
  event: string;
  /** Names this occurrence: queueing the same key again writes nothing (a retried producer). */
  dedupeKey: string;
  /** The JSON body, as sent; `event` is added first if it is not there. */
  payload: Record<string, unknown>;
}

/** Starts (again) the delivery of notifications through the outbox, in the caller's transaction, and notes each one's job. */
export async function queueDelivery(tx: Executor, ids: number[], causedBy?: string): Promise<void> {
  if (ids.length === 0) return;
  const outboxIds = await appendOutbox(tx, ids.map((id) => outboxEvent(deliverNotificationJob, { notification_id: id })), causedBy);
  await tx.execute(sql`
    UPDATE notifications n SET job_id = j.job_id
      FROM unnest(${sql.param(ids)}::bigint[], ${sql.param(outboxIds.map(outboxJobId))}::text[]) AS j(id, job_id)
     WHERE n.id = j.id`);
}

/**
 * Records notifications and the `notify` jobs that send them, inside the caller's transaction: a
 * change that rolls back tells nobody, and one that commits is told once (the job id is the
 * outbox row's). Returns the ids of the notifications written (not those already there).
 */
export async function queueNotifications(tx: Executor, items: NewNotification[], causedBy?: string): Promise<number[]> {
  if (items.length === 0) return [];
  const bodies = items.map((n) => JSON.stringify({ event: n.event, ...n.payload }));
  const rows = (
    await tx.execute<{ id: number }>(sql`
      INSERT INTO notifications (event, dedupe_key, body, caused_by)
      SELECT * FROM unnest(${sql.param(items.map((n) => n.event))}::text[], ${sql.param(items.map((n) => n.dedupeKey))}::text[], ${sql.param(bodies)}::text[], ${sql.param(items.map(() => causedBy ?? null))}::text[])
      ON CONFLICT (dedupe_key) DO NOTHING
      RETURNING id`)
  ).rows;
  const ids = rows.map((r) => Number(r.id));
  await queueDelivery(tx, ids, causedBy);
  return ids;
}

interface Claimed {
  id: number;
  event: string;
  body: string;
  attempts: number;
  round: number;
  lease_token: string;
}

export interface DeliveryResult {
  notification_id: number;
  status: string;
  attempts?: number;
  status_code?: number | null;
  note?: string;
}

type Ctx = Pick<JobContext, 'job' | 'token' | 'platform' | 'log'>;

/** Text Postgres can store: an answer may hold NUL or broken UTF-16 (a receiver's bug must not break recording). */
function storable(s: string | null): string | null {
  if (s === null || isStorableText(s)) return s;
  return (s.replace(/\u0000/g, '') as unknown as { toWellFormed(): string }).toWellFormed();
}

/**
 * One attempt at a notification. It takes a lease on the row first, so two workers (a job taken
 * over after a stall, a second job for the same notification) never send at once and a delivered
 * notification is never sent again; the outcome is recorded only while the lease is still its own.
 * A retryable failure is recorded and the job checks again after the backoff; a final one (4xx,
 * the last attempt) marks the notification failed and fails the job without retries.
 */
export async function deliverNotification(ctx: Ctx, config: NotificationsConfig, payload: z.infer<typeof deliverNotificationJob.schema>): Promise<DeliveryResult> {
  const { pool } = ctx.platform;
  const notificationId = payload.notification_id;
  // An earlier attempt of this job sent but could not record what came of it: record it, don't send again.
  if (payload.unrecorded) return settle(ctx, config, notificationId, payload.unrecorded);

  if (!config.NOTIFY_WEBHOOK_URL || !config.NOTIFY_WEBHOOK_SECRET) {
    const { rows } = await pool.query(
      `UPDATE notifications SET status = 'skipped', last_error = 'NOTIFY_WEBHOOK_URL is not set'
        WHERE id = $1 AND status = 'pending' AND (lease_until IS NULL OR lease_until < now()) RETURNING id`,
      [notificationId],
    );
    if (rows.length > 0) return { notification_id: notificationId, status: 'skipped', note: 'NOTIFY_WEBHOOK_URL is not set' };
    return notClaimed(ctx, notificationId);
  }
  // Long enough for the POST (its timeout covers reading the answer) and recording what came of it.
  const leaseMs = 2 * config.NOTIFY_TIMEOUT_MS + 1_000;
  const claimed = (
    await pool.query<Claimed>(
      `UPDATE notifications SET lease_until = now() + make_interval(secs => $2::float8 / 1000), lease_token = gen_random_uuid(),
              attempts = attempts + 1, last_attempt_at = now()
        WHERE id = $1 AND status = 'pending' AND (lease_until IS NULL OR lease_until < now())
        RETURNING id, event, body, attempts, round, lease_token`,
      [notificationId, leaseMs],
    )
  ).rows[0];
  if (!claimed) return notClaimed(ctx, notificationId);

  const deadline = Date.now() + leaseMs;
  const started = new Date();
  const t0 = performance.now();
  const outcome = await postWebhook({
    url: config.NOTIFY_WEBHOOK_URL,
    secret: config.NOTIFY_WEBHOOK_SECRET,
    body: claimed.body,
    timeoutMs: config.NOTIFY_TIMEOUT_MS,
    headers: {
      'x-caliber-event': claimed.event,
      // The same on every attempt and redelivery: a receiver drops a notification it already has by it.
      'x-caliber-notification-id': String(claimed.id),
      'x-caliber-attempt': String(claimed.attempts),
    },
  });
  const final = outcome.outcome === 'retry' && claimed.attempts >= config.NOTIFY_MAX_ATTEMPTS;
  const error = outcome.outcome === 'delivered' ? null : final ? `${outcome.error} (attempt ${claimed.attempts} of ${config.NOTIFY_MAX_ATTEMPTS}, giving up)` : outcome.error;
  const record: Unrecorded = {
    token: claimed.lease_token,
    round: claimed.round,
    attempt: claimed.attempts,
    started_at: started.toISOString(),
    duration_ms: Math.round(performance.now() - t0),
    status_code: outcome.statusCode,
    outcome: final ? 'failed' : outcome.outcome,
    status: outcome.outcome === 'delivered' ? 'delivered' : outcome.outcome === 'failed' || final ? 'failed' : 'pending',
    error: storable(error),
    response: storable(outcome.response),
    retry_after_ms: outcome.outcome === 'retry' ? outcome.retryAfterMs : null,
  };
  let own: boolean;
  try {
    own = await recordWithRetries(pool, notificationId, record, deadline);
  } catch (err) {
    // Postgres is not answering: keep the outcome with the job, so its next attempt records it instead of sending again.
    await ctx.job.updateData({ notification_id: notificationId, unrecorded: record });
    throw err;
  }
  return after(ctx, config, notificationId, record, own);
}

/** Records an outcome left in the job by an attempt that could not, then carries on from it. */
async function settle(ctx: Ctx, config: NotificationsConfig, notificationId: number, record: Unrecorded): Promise<DeliveryResult> {
  const own = await recordAttempt(ctx.platform.pool, notificationId, record);
  await ctx.job.updateData({ notification_id: notificationId });
  return after(ctx, config, notificationId, record, own);
}

async function after(ctx: Ctx, config: NotificationsConfig, notificationId: number, record: Unrecorded, own: boolean): Promise<DeliveryResult> {
  const log = ctx.log.child({ notificationId, attempt: record.attempt, statusCode: record.status_code, durationMs: record.duration_ms });
  if (!own) {
    // Our lease ran out and another worker took the notification over: what it records stands.
    log.warn('notification taken over by another worker; this attempt is not recorded');
    return { notification_id: notificationId, status: 'superseded', attempts: record.attempt, note: 'another worker took this notification over' };
  }
  if (record.status === 'delivered') {
    log.info('notification delivered');
    return { notification_id: notificationId, status: 'delivered', attempts: record.attempt, status_code: record.status_code };
  }
  if (record.status === 'failed') {
    log.warn({ error: record.error }, 'notification failed');
    throw new UnrecoverableError(`notification ${notificationId} not delivered: ${record.error}`);
  }
  const wait = retryDelayMs(record.attempt, config.NOTIFY_BACKOFF_MS, config.NOTIFY_BACKOFF_MAX_MS, record.retry_after_ms);
  log.info({ error: record.error, retryInMs: wait }, 'notification attempt failed; will retry');
  await ctx.job.updateProgress({ attempts: record.attempt, last_error: record.error, next_attempt_in_ms: wait }).catch(() => {});
  return runAgainLater(ctx, wait);
}

/** A Postgres blip right after a POST must not make the notification go out again: retry the write within the lease. */
async function recordWithRetries(pool: pg.Pool, notificationId: number, record: Unrecorded, deadline: number): Promise<boolean> {
  for (let wait = 100; ; wait *= 2) {
    try {
      return await recordAttempt(pool, notificationId, record);
    } catch (err) {
      if (Date.now() + wait >= deadline - 250) throw err;
      await delay(wait);
    }
  }
}

/** Writes the attempt and the notification's new state, only while `record.token` still holds the lease. */
async function recordAttempt(pool: pg.Pool, notificationId: number, record: Unrecorded): Promise<boolean> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const { rowCount } = await client.query(
      `UPDATE notifications SET status = $3, lease_until = NULL, lease_token = NULL, last_error = $4,
              delivered_at = CASE WHEN $3 = 'delivered' THEN now() ELSE delivered_at END
        WHERE id = $1 AND lease_token = $2 AND status = 'pending'`,
      [notificationId, record.token, record.status, record.error],
    );
    if (rowCount) {
      await client.query(
        `INSERT INTO notification_attempts (notification_id, round, attempt, started_at, duration_ms, status_code, outcome, error, response)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (notification_id, round, attempt) DO NOTHING`,
        [notificationId, record.round, record.attempt, record.started_at, record.duration_ms, record.status_code, record.outcome, record.error, record.response],
      );
    }
    await client.query('COMMIT');
    return Boolean(rowCount);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/** The notification is not free to send: it is finished (nothing to do) or another worker holds it (look again after its lease). */
async function notClaimed(ctx: Ctx, id: number): Promise<DeliveryResult> {
  const row = (
    await ctx.platform.pool.query<{ status: string; attempts: number; wait_ms: number }>(
      `SELECT status, attempts, greatest(0, extract(epoch FROM lease_until - now()) * 1000)::float8 AS wait_ms FROM notifications WHERE id = $1`,
      [id],
    )
  ).rows[0];
  if (!row) throw new UnrecoverableError(`notification ${id} does not exist`);
  if (row.status === 'pending') return runAgainLater(ctx, Math.ceil(row.wait_ms) + 100);
  return { notification_id: id, status: row.status, attempts: row.attempts, note: `already ${row.status}; not sent again` };
}

/**
 * Queues again every pending notification idle for `NOTIFY_RECONCILE_IDLE_MS` whose job is gone
 * or finished (Redis lost it; it failed while Postgres was down; a worker failed it while another
 * was sending). The new job's id names the notification's round and attempt, so sweeps running
 * at once add it once.
 */
export async function reconcileNotifications(ctx: Pick<JobContext, 'platform' | 'log'>, config: NotificationsConfig) {
  const { pool, queues } = ctx.platform;
  const { rows } = await pool.query<{ id: number; job_id: string | null; round: number; attempts: number }>(
    `SELECT id, job_id, round, attempts FROM notifications
      WHERE status = 'pending' AND (lease_until IS NULL OR lease_until < now())
        AND coalesce(last_attempt_at, created_at) < now() - make_interval(secs => $1::float8 / 1000)
      ORDER BY id LIMIT 1000`,
    [config.NOTIFY_RECONCILE_IDLE_MS],
  );
  const queue = queues.connected('notify');
  const lost: typeof rows = [];
  for (const row of rows) {
    const job = row.job_id ? await queue.getJob(row.job_id) : undefined;
    const state = job ? await job.getState() : 'missing';
    if (state === 'missing' || state === 'completed' || state === 'failed' || state === 'unknown') lost.push(row);
  }
  if (lost.length > 0) {
    const jobs = lost.map((r) => ({ id: r.id, jobId: `notify-${r.id}-r${r.round}-a${r.attempts}` }));
    await queue.addBulk(jobs.map((j) => ({ name: deliverNotificationJob.name, data: { notification_id: j.id }, opts: { jobId: j.jobId } })));
    await pool.query(
      `UPDATE notifications n SET job_id = j.job_id FROM unnest($1::bigint[], $2::text[]) AS j(id, job_id) WHERE n.id = j.id AND n.status = 'pending'`,
      [jobs.map((j) => j.id), jobs.map((j) => j.jobId)],
    );
    ctx.log.warn({ notifications: lost.map((r) => r.id) }, 'pending notifications without a job queued again');
  }
  return { checked: rows.length, requeued: lost.map((r) => r.id) };
}
