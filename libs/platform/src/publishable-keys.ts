import { createRoute, z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Database } from './db.ts';
import { ApiError, createRouter, errorSchema, jsonContent, standardErrors } from './http.ts';
import { hashApiKey, newApiKey } from './tenants.ts';

export const PUBLISHABLE_KEY_PREFIX = 'clbp_';

export interface PublishableKey {
  id: number;
  allowedOrigins: string[];
  rateLimitPerMinute: number;
  project: string;
  modelIds: string[];
  trustCorrections: boolean;
}

export async function findPublishableKey(pool: pg.Pool, key: string): Promise<PublishableKey | undefined> {
  const { rows } = await pool.query<{ id: number; allowed_origins: string[]; rate_limit_per_minute: number; project: string; model_ids: string[]; trust_corrections: boolean }>(
    'SELECT id, allowed_origins, rate_limit_per_minute, project, model_ids, trust_corrections FROM publishable_keys WHERE key_hash = $1 AND revoked_at IS NULL',
    [hashApiKey(key)],
  );
  const row = rows[0];
  return row
    ? { id: Number(row.id), allowedOrigins: row.allowed_origins, rateLimitPerMinute: row.rate_limit_per_minute, project: row.project, modelIds: row.model_ids, trustCorrections: row.trust_corrections }
    : undefined;
}

/**
 * Counts a request of (key, client IP) in the current minute; over the key's limit it says how
 * many seconds until the window turns. One INCR per request (a fixed window: simple, and the
 * worst burst is twice the limit across a window edge).
 */
export async function rateLimit(redis: Redis, prefix: string, key: PublishableKey, ip: string, now = Date.now()): Promise<{ allowed: boolean; retryAfterS: number }> {
  const window = Math.floor(now / 60_000);
  const name = `${prefix}:ratelimit:pk:${key.id}:${ip}:${window}`;
  const [[, count]] = (await redis.multi().incr(name).expire(name, 120).exec()) as [[unknown, number]];
  return { allowed: count <= key.rateLimitPerMinute, retryAfterS: Math.max(1, Math.ceil(((window + 1) * 60_000 - now) / 1000)) };
}

/** `https://app.example.com` as browsers send it in `Origin`: scheme, host and port only. */
const originSchema = z
  .string()
  .max(300)
  .refine((s) => {
    try {
      const u = new URL(s);
      return /^https?:$/.test(u.protocol) && u.origin === s;
    } catch {
      return false;
    }
  }, 'must be an origin such as https://app.example.com (scheme, host, optional port; no path)');

/** A product project's name, as responses and publishable keys carry it. */
export const projectSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'must be 1–64 of a-z, 0-9, ".", "_", "-", starting with a letter or digit')
  .openapi({ description: 'The product project (e.g. `support-chat`)', example: 'support-chat' });

const keySchema = z
  .object({
    id: z.number().int(),
    name: z.string(),
    prefix: z.string(),
    allowed_origins: z.array(z.string()),
    rate_limit_per_minute: z.number().int(),
    project: z.string(),
    model_ids: z.array(z.string()),
    trust_corrections: z.boolean(),
    created_at: z.string(),
    revoked_at: z.string().nullable(),
  })
  .openapi('PublishableKey');

const createRouteDef = createRoute({
  method: 'post',
  path: '/admin/publishable-keys',
  tags: ['publishable keys'],
  summary: 'Issue a publishable key for web pages (the feedback widget); the key is shown once',
  description:
    'It may only record responses and feedback (POST /api/analytics/response-quality/response and …/feedback), only from its allowed origins (CORS), within its rate limit per client IP; every other route refuses it with 403. ' +
    'It records responses of its `model_ids` into its `project` and gives feedback only on responses of that project. Its corrections train fine-tunes only with `trust_corrections`.',
  security: [{ bearer: [] }],
  request: {
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .object({
              name: z.string().trim().min(1).max(200),
              allowed_origins: z.array(originSchema).min(1).max(50),
              rate_limit_per_minute: z.number().int().min(1).max(100_000).optional(),
              project: projectSchema,
              model_ids: z
                .array(z.string().min(1).max(200).refine((m) => !m.includes('\u0000'), 'must not contain NUL characters'))
                .min(1)
                .max(100)
                .openapi({ description: 'The models whose responses its pages may record and rate' }),
              trust_corrections: z.boolean().optional().openapi({ description: 'Let its corrected answers train fine-tunes (default false: they are stored and shown, not trained on)' }),
            })
            .strict(),
        },
      },
    },
  },
  responses: { 201: jsonContent(keySchema.extend({ key: z.string() }), 'Issued: keep the key, it is not shown again'), ...standardErrors },
});

const listRouteDef = createRoute({
  method: 'get',
  path: '/admin/publishable-keys',
  tags: ['publishable keys'],
  summary: 'Publishable keys (prefix only)',
  security: [{ bearer: [] }],
  responses: { 200: jsonContent(z.object({ items: z.array(keySchema) }), 'Keys'), ...standardErrors },
});

const revokeRouteDef = createRoute({
  method: 'delete',
  path: '/admin/publishable-keys/{id}',
  tags: ['publishable keys'],
  summary: 'Revoke a publishable key; requests with it get 401 from then on',
  security: [{ bearer: [] }],
  request: { params: z.object({ id: z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER) }) },
  responses: { 200: jsonContent(keySchema, 'Revoked'), 404: jsonContent(errorSchema, 'No such key'), ...standardErrors },
});

type Row = { id: number; name: string; prefix: string; allowed_origins: string[]; rate_limit_per_minute: number; project: string; model_ids: string[]; trust_corrections: boolean; created_at: Date; revoked_at: Date | null };
const present = (r: Row) => ({ ...r, id: Number(r.id), created_at: new Date(r.created_at).toISOString(), revoked_at: r.revoked_at ? new Date(r.revoked_at).toISOString() : null });
const COLUMNS = sql.raw('id, name, prefix, allowed_origins, rate_limit_per_minute, project, model_ids, trust_corrections, created_at, revoked_at');

/** `/admin/publishable-keys`: issue, list and revoke (admin key only). */
export function publishableKeyRoutes(ctx: { db: Database }) {
  const app = createRouter();
  app.openapi(createRouteDef, async (c) => {
    const body = c.req.valid('json');
    const { key, hash, prefix } = newApiKey(PUBLISHABLE_KEY_PREFIX, 7);
    const row = (
      await ctx.db.execute<Row>(sql`
        INSERT INTO publishable_keys (name, key_hash, prefix, allowed_origins, rate_limit_per_minute, project, model_ids, trust_corrections)
        VALUES (${body.name}, ${hash}, ${prefix}, ${sql.param([...new Set(body.allowed_origins)])}::text[], ${body.rate_limit_per_minute ?? 60},
                ${body.project}, ${sql.param([...new Set(body.model_ids)])}::text[], ${body.trust_corrections ?? false})
        RETURNING ${COLUMNS}`)
    ).rows[0]!;
    return c.json({ ...present(row), key }, 201);
  });
  app.openapi(listRouteDef, async (c) => c.json({ items: (await ctx.db.execute<Row>(sql`SELECT ${COLUMNS} FROM publishable_keys ORDER BY id`)).rows.map(present) }, 200));
  app.openapi(revokeRouteDef, async (c) => {
    const { id } = c.req.valid('param');
    const row = (await ctx.db.execute<Row>(sql`UPDATE publishable_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = ${id} RETURNING ${COLUMNS}`)).rows[0];
    if (!row) throw new ApiError(404, 'not_found', `No publishable key ${id}`);
    return c.json(present(row), 200);
  });
  return app;
}
