import { ApiError, createRouter, errorSchema, type GatewayContext } from '@caliber/platform';
import { createRoute, z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import { feedbackSchema, recordFeedback, recordResponses, responseSchema, singleOrBatch } from './feedback.ts';
import { ERROR_CATEGORIES } from './taxonomy.ts';

const json = <T extends z.ZodType>(schema: T, description: string) => ({ description, content: { 'application/json': { schema } } });
const errors = {
  400: json(errorSchema, 'Invalid request; nothing was written'),
  401: json(errorSchema, 'Missing or wrong API key'),
} as const;
const PREFIX = '/api/analytics/response-quality';
const taxonomy = Object.entries(ERROR_CATEGORIES)
  .map(([k, v]) => `\`${k}\` (${v})`)
  .join(', ');

const responseRoute = createRoute({
  method: 'post',
  path: `${PREFIX}/response`,
  tags: ['response quality'],
  summary: 'Record an LLM response (or {"items":[…]}), optionally with its feedback',
  description: `A response_id already recorded keeps its first version. Feedback categories: ${taxonomy}.`,
  security: [{ bearer: [] }],
  request: { body: { required: true, content: { 'application/json': { schema: singleOrBatch(responseSchema) } } } },
  responses: {
    201: json(z.object({ recorded: z.number().int(), already_recorded: z.number().int(), feedback: z.number().int() }), 'Stored'),
    ...errors,
  },
});

const feedbackRoute = createRoute({
  method: 'post',
  path: `${PREFIX}/feedback`,
  tags: ['response quality'],
  summary: 'Record feedback on a recorded response (or {"items":[…]}): thumbs, 1–5 stars, or full',
  description: `"full" feedback takes categories from the taxonomy: ${taxonomy}; a comment; a corrected response. The same idempotency_key twice is stored once.`,
  security: [{ bearer: [] }],
  request: { body: { required: true, content: { 'application/json': { schema: singleOrBatch(feedbackSchema) } } } },
  responses: {
    201: json(z.object({ recorded: z.number().int(), duplicates: z.number().int() }), 'Stored (duplicates: already stored under their idempotency key)'),
    404: json(errorSchema, 'A response_id that was never recorded; nothing was written'),
    ...errors,
  },
});

const period = {
  model_id: z.string().min(1).max(200).optional(),
  from: z.iso.datetime({ offset: true }).optional().openapi({ description: 'Responses shown at or after (ISO-8601)' }),
  to: z.iso.datetime({ offset: true }).optional().openapi({ description: 'Responses shown before (ISO-8601)' }),
};

const modelMetricsSchema = z
  .object({
    model_id: z.string(),
    responses: z.number().int(),
    feedback: z.number().int(),
    positive_rate: z.number().nullable(),
    avg_stars: z.number().nullable(),
    error_rate_by_category: z.record(z.string(), z.number()),
  })
  .openapi('ResponseQualityMetrics');

const metricsRoute = createRoute({
  method: 'get',
  path: `${PREFIX}/metrics`,
  tags: ['response quality'],
  summary: 'Per model: responses, feedback, positive rate, average stars, error rate by category',
  description: 'error_rate_by_category = feedback naming the category / all feedback of the model in the period.',
  security: [{ bearer: [] }],
  request: { query: z.object(period) },
  responses: { 200: json(z.object({ models: z.array(modelMetricsSchema) }), 'Metrics'), ...errors },
});

const problematicRoute = createRoute({
  method: 'get',
  path: `${PREFIX}/problematic`,
  tags: ['response quality'],
  summary: 'Responses with negative feedback, most negative first',
  security: [{ bearer: [] }],
  request: {
    query: z.object({
      ...period,
      limit: z.coerce.number().int().min(1).max(500).optional().default(50),
      cursor: z.string().regex(/^\d+\.\d+$/).optional().openapi({ description: 'next_cursor of the previous page' }),
    }),
  },
  responses: {
    200: json(
      z.object({
        items: z.array(
          z.object({
            response_id: z.string(),
            model_id: z.string(),
            query: z.string(),
            response: z.string(),
            timestamp: z.string(),
            negative_feedback: z.number().int(),
            feedback: z.number().int(),
            categories: z.array(z.string()),
            comments: z.array(z.string()),
            correction: z.string().nullable(),
          }),
        ),
        next_cursor: z.string().nullable(),
      }),
      'A page of problematic responses',
    ),
    ...errors,
  },
});

function periodFilter(q: { model_id?: string; from?: string; to?: string }) {
  return sql`${q.model_id ? sql`AND r.model_id = ${q.model_id}` : sql``}
             ${q.from ? sql`AND r.responded_at >= ${q.from}::timestamptz` : sql``}
             ${q.to ? sql`AND r.responded_at < ${q.to}::timestamptz` : sql``}`;
}

export function responseQualityRoutes(ctx: GatewayContext) {
  const app = createRouter();

  app.openapi(responseRoute, async (c) => {
    const body = c.req.valid('json');
    return c.json(await recordResponses(ctx.db, 'items' in body ? body.items : [body]), 201);
  });

  app.openapi(feedbackRoute, async (c) => {
    const body = c.req.valid('json');
    return c.json(await recordFeedback(ctx.db, 'items' in body ? body.items : [body]), 201);
  });

  app.openapi(metricsRoute, async (c) => {
    const q = c.req.valid('query');
    if (q.from && q.to && q.from >= q.to) throw new ApiError(400, 'invalid_request', '"from" must be before "to"');
    const [totals, categories] = await Promise.all([
      ctx.db.execute<{ model_id: string; responses: number; feedback: number; positive_rate: number | null; avg_stars: number | null }>(sql`
        SELECT r.model_id, count(DISTINCT r.id)::int AS responses, count(f.id)::int AS feedback,
               avg(CASE WHEN f.id IS NOT NULL THEN (NOT f.negative)::int END)::float8 AS positive_rate,
               avg(f.stars)::float8 AS avg_stars
          FROM llm_responses r LEFT JOIN response_feedback f ON f.response_ref = r.id
         WHERE true ${periodFilter(q)}
         GROUP BY r.model_id ORDER BY r.model_id`),
      ctx.db.execute<{ model_id: string; category: string; n: number }>(sql`
        SELECT r.model_id, c.category, count(*)::int AS n
          FROM llm_responses r JOIN response_feedback f ON f.response_ref = r.id CROSS JOIN unnest(f.categories) AS c(category)
         WHERE true ${periodFilter(q)}
         GROUP BY 1, 2`),
    ]);
    const models = totals.rows.map((t) => ({
      ...t,
      positive_rate: t.positive_rate === null ? null : Number(t.positive_rate.toFixed(4)),
      avg_stars: t.avg_stars === null ? null : Number(t.avg_stars.toFixed(3)),
      error_rate_by_category: Object.fromEntries(
        categories.rows.filter((x) => x.model_id === t.model_id).map((x) => [x.category, Number((x.n / Math.max(t.feedback, 1)).toFixed(4))]),
      ),
    }));
    return c.json({ models }, 200);
  });

  app.openapi(problematicRoute, async (c) => {
    const q = c.req.valid('query');
    const [negAfter, idAfter] = q.cursor ? q.cursor.split('.').map(Number) : [undefined, undefined];
    const rows = await ctx.db.execute<{
      id: number;
      response_id: string;
      model_id: string;
      query: string;
      response: string;
      responded_at: Date;
      negative_feedback: number;
      feedback: number;
      categories: string[];
      comments: string[];
      correction: string | null;
    }>(sql`
      SELECT r.id, r.response_id, r.model_id, r.query, r.response, r.responded_at, s.negative_feedback, s.feedback, s.categories, s.comments, s.correction
        FROM llm_responses r
        JOIN LATERAL (
          SELECT count(*) FILTER (WHERE f.negative)::int AS negative_feedback, count(*)::int AS feedback,
                 ARRAY(SELECT DISTINCT c FROM response_feedback g, unnest(g.categories) AS c WHERE g.response_ref = r.id ORDER BY c) AS categories,
                 coalesce(array_agg(DISTINCT f.comment) FILTER (WHERE f.comment IS NOT NULL AND f.negative), '{}') AS comments,
                 (array_agg(f.correction ORDER BY f.id DESC) FILTER (WHERE f.correction IS NOT NULL))[1] AS correction
            FROM response_feedback f
           WHERE f.response_ref = r.id) s ON s.negative_feedback > 0
       WHERE true ${periodFilter(q)}
         ${negAfter !== undefined ? sql`AND (s.negative_feedback, r.id) < (${negAfter}, ${idAfter})` : sql``}
       ORDER BY s.negative_feedback DESC, r.id DESC
       LIMIT ${q.limit}`);
    const items = rows.rows.map(({ id: _id, responded_at, ...r }) => ({ ...r, timestamp: new Date(responded_at).toISOString() }));
    const last = rows.rows.at(-1);
    return c.json({ items, next_cursor: rows.rows.length === q.limit && last ? `${last.negative_feedback}.${last.id}` : null }, 200);
  });

  return app;
}
