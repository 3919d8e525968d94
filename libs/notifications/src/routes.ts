import { ApiError, createRouter, errorSchema, jsonContent, standardErrors, type GatewayContext } from '@caliber/platform';
import { createRoute, z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import { queueDelivery } from './notify.ts';
import { NOTIFICATION_STATUSES } from './schema.ts';

const json = jsonContent;
const tags = ['notifications'];
const security = [{ bearer: [] }];

const attemptSchema = z
  .object({
    round: z.number().int(),
    attempt: z.number().int(),
    started_at: z.string(),
    duration_ms: z.number().int(),
    status_code: z.number().int().nullable(),
    outcome: z.enum(['delivered', 'retry', 'failed']),
    error: z.string().nullable(),
    response: z.string().nullable(),
  })
  .openapi('NotificationAttempt');

const notificationSchema = z
  .object({
    id: z.number().int(),
    event: z.string(),
    status: z.enum(NOTIFICATION_STATUSES),
    attempts: z.number().int().openapi({ description: 'Attempts in the current round' }),
    round: z.number().int().openapi({ description: 'Redeliveries by hand so far' }),
    last_error: z.string().nullable(),
    created_at: z.string(),
    delivered_at: z.string().nullable(),
    body: z.object({}).passthrough().openapi({ description: 'The JSON body, exactly as signed and sent' }),
  })
  .openapi('Notification');

const idParam = z.object({ id: z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER) });

const listRoute = createRoute({
  method: 'get',
  path: '/admin/notifications',
  tags,
  summary: 'Notifications sent (or being sent) to NOTIFY_WEBHOOK_URL, newest first',
  security,
  request: {
    query: z.object({
      status: z.enum(NOTIFICATION_STATUSES).optional(),
      event: z.string().min(1).max(200).optional(),
      limit: z.coerce.number().int().min(1).max(500).optional().default(50),
      cursor: z.coerce.number().int().positive().optional().openapi({ description: 'next_cursor of the previous page' }),
    }),
  },
  responses: { 200: json(z.object({ items: z.array(notificationSchema), next_cursor: z.string().nullable() }), 'A page of notifications'), ...standardErrors },
});

const getRoute = createRoute({
  method: 'get',
  path: '/admin/notifications/{id}',
  tags,
  summary: 'One notification with every delivery attempt',
  security,
  request: { params: idParam },
  responses: { 200: json(notificationSchema.extend({ delivery_attempts: z.array(attemptSchema) }), 'The notification'), 404: json(errorSchema, 'No such notification'), ...standardErrors },
});

const redeliverRoute = createRoute({
  method: 'post',
  path: '/admin/notifications/{id}/redeliver',
  tags,
  summary: 'Send a failed or skipped notification again (a new round of attempts, same body and signature)',
  security,
  request: { params: idParam },
  responses: {
    202: json(notificationSchema, 'Queued again'),
    404: json(errorSchema, 'No such notification'),
    409: json(errorSchema, 'It is pending or was delivered: it is not sent twice'),
    ...standardErrors,
  },
});

type Row = {
  id: number;
  event: string;
  status: (typeof NOTIFICATION_STATUSES)[number];
  attempts: number;
  round: number;
  last_error: string | null;
  created_at: Date;
  delivered_at: Date | null;
  body: string;
};
const COLUMNS = sql.raw('id, event, status, attempts, round, last_error, created_at, delivered_at, body');
const present = (r: Row) => ({
  ...r,
  id: Number(r.id),
  created_at: new Date(r.created_at).toISOString(),
  delivered_at: r.delivered_at ? new Date(r.delivered_at).toISOString() : null,
  body: JSON.parse(r.body) as Record<string, unknown>,
});

export function notificationRoutes(ctx: GatewayContext) {
  const app = createRouter();

  app.openapi(listRoute, async (c) => {
    const q = c.req.valid('query');
    const rows = (
      await ctx.db.execute<Row>(sql`SELECT ${COLUMNS} FROM notifications WHERE true
        ${q.status ? sql`AND status = ${q.status}` : sql``}
        ${q.event ? sql`AND event = ${q.event}` : sql``}
        ${q.cursor ? sql`AND id < ${q.cursor}` : sql``}
        ORDER BY id DESC LIMIT ${q.limit}`)
    ).rows.map(present);
    return c.json({ items: rows, next_cursor: rows.length === q.limit ? String(rows.at(-1)!.id) : null }, 200);
  });

  app.openapi(getRoute, async (c) => {
    const { id } = c.req.valid('param');
    const row = (await ctx.db.execute<Row>(sql`SELECT ${COLUMNS} FROM notifications WHERE id = ${id}`)).rows[0];
    if (!row) throw new ApiError(404, 'not_found', `No notification ${id}`);
    const attempts = (
      await ctx.db.execute<z.infer<typeof attemptSchema> & { started_at: Date }>(sql`
        SELECT round, attempt, started_at, duration_ms, status_code, outcome, error, response
          FROM notification_attempts WHERE notification_id = ${id} ORDER BY id`)
    ).rows.map((a) => ({ ...a, started_at: new Date(a.started_at).toISOString() }));
    return c.json({ ...present(row), delivery_attempts: attempts }, 200);
  });

  app.openapi(redeliverRoute, async (c) => {
    const { id } = c.req.valid('param');
    const row = await ctx.db.transaction(async (tx) => {
      const updated = (
        await tx.execute<Row>(sql`UPDATE notifications SET status = 'pending', attempts = 0, round = round + 1, last_error = NULL, lease_until = NULL, lease_token = NULL
          WHERE id = ${id} AND status IN ('failed', 'skipped') RETURNING ${COLUMNS}`)
      ).rows[0];
      if (updated) await queueDelivery(tx, [id], `redeliver/notification-${id}`);
      return updated;
    });
    if (!row) {
      const status = (await ctx.db.execute<{ status: string }>(sql`SELECT status FROM notifications WHERE id = ${id}`)).rows[0]?.status;
      if (!status) throw new ApiError(404, 'not_found', `No notification ${id}`);
      throw new ApiError(409, 'conflict', `Notification ${id} is ${status}; only failed or skipped ones are sent again`);
    }
    return c.json(present(row), 202);
  });

  return app;
}
