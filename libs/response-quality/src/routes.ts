import { ApiError, createRouter, type Principal, errorSchema, jobRunResponses, jsonContent, standardErrors, startJob, waitQuerySchema, type GatewayContext } from '@caliber/platform';
import { analyzeErrorsJob } from './analyze-errors.ts';
import { createRoute, z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import { feedbackSchema, type FeedbackSource, recordFeedback, recordResponses, responseSchema, singleOrBatch } from './feedback.ts';
import { ERROR_CATEGORIES } from './taxonomy.ts';

const json = jsonContent;
const errors = standardErrors;
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
  project: z.string().min(1).max(64).optional().openapi({ description: 'Only responses of this project' }),
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
      cursor: z.string().regex(/^\d{1,9}\.\d{1,15}$/, 'not a cursor this route gave').optional().openapi({ description: 'next_cursor of the previous page' }),
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
            correction_trusted: z.boolean().nullable().openapi({ description: "Whether that correction may train fine-tunes (false: a web page's, held back)" }),
          }),
        ),
        next_cursor: z.string().nullable(),
      }),
      'A page of problematic responses',
    ),
    ...errors,
  },
});

function periodFilter(q: { model_id?: string; project?: string; from?: string; to?: string }) {
  return sql`${q.model_id ? sql`AND r.model_id = ${q.model_id}` : sql``}
             ${q.project ? sql`AND r.project = ${q.project}` : sql``}
             ${q.from ? sql`AND r.responded_at >= ${q.from}::timestamptz` : sql``}
             ${q.to ? sql`AND r.responded_at < ${q.to}::timestamptz` : sql``}`;
}

export function responseQualityRoutes(ctx: GatewayContext) {
  const app = createRouter();

  // A publishable key (a web page) writes as itself, into its project, one item per request (so
  // its rate limit counts items).
  const sourceOf = (principal: Principal | undefined, body: object): FeedbackSource => {
    if (principal?.kind !== 'publishable') return undefined;
    if ('items' in body) throw new ApiError(400, 'invalid_request', 'A publishable key sends one item per request, not {"items":[…]}');
    return { keyId: principal.keyId, project: principal.project, modelIds: principal.modelIds, trustCorrections: principal.trustCorrections };
  };

  app.openapi(responseRoute, async (c) => {
    const body = c.req.valid('json');
    const source = sourceOf(c.get('principal'), body);
    return c.json(await recordResponses(ctx.db, 'items' in body ? body.items : [body], source), 201);
  });

  app.openapi(feedbackRoute, async (c) => {
    const body = c.req.valid('json');
    const source = sourceOf(c.get('principal'), body);
    return c.json(await recordFeedback(ctx.db, 'items' in body ? body.items : [body], source), 201);
  });

  app.openapi(metricsRoute, async (c) => {
    const q = c.req.valid('query');
    if (q.from && q.to && Date.parse(q.from) >= Date.parse(q.to)) throw new ApiError(400, 'invalid_request', '"from" must be before "to"');
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
      correction_trusted: boolean | null;
    }>(sql`
      SELECT r.id, r.response_id, r.model_id, r.query, r.response, r.responded_at, s.negative_feedback, s.feedback, s.categories, s.comments, s.correction, s.correction_trusted
        FROM llm_responses r
        JOIN LATERAL (
          SELECT count(*) FILTER (WHERE f.negative)::int AS negative_feedback, count(*)::int AS feedback,
                 ARRAY(SELECT DISTINCT c FROM response_feedback g, unnest(g.categories) AS c WHERE g.response_ref = r.id ORDER BY c) AS categories,
                 coalesce(array_agg(DISTINCT f.comment) FILTER (WHERE f.comment IS NOT NULL AND f.negative), '{}') AS comments,
                 (array_agg(f.correction ORDER BY f.id DESC) FILTER (WHERE f.correction IS NOT NULL))[1] AS correction,
                 (array_agg(f.trusted ORDER BY f.id DESC) FILTER (WHERE f.correction IS NOT NULL))[1] AS correction_trusted
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

const IMPROVE = '/api/analytics/model-improvement';

const patternsRoute = createRoute({
  method: 'get',
  path: `${IMPROVE}/error-patterns`,
  tags: ['model improvement'],
  summary: "Error categories per model from the latest analyze-errors run: count, share of the model's negative feedback, examples",
  security: [{ bearer: [] }],
  request: { query: z.object({ model_id: z.string().min(1).max(200).optional() }) },
  responses: {
    200: json(
      z.object({
        run_id: z.number().int().nullable(),
        as_of: z.string().nullable(),
        patterns: z.array(
          z.object({
            model_id: z.string(),
            category: z.string(),
            count: z.number().int(),
            share: z.number(),
            examples: z.array(z.object({ response_id: z.string(), comment: z.string().nullable() })),
          }),
        ),
      }),
      'Patterns (run_id null before the first run)',
    ),
    ...errors,
  },
});

const trendsRoute = createRoute({
  method: 'get',
  path: `${IMPROVE}/error-trends`,
  tags: ['model improvement'],
  summary: 'Negative feedback per model, category and ISO week, with the change against the week before (latest run)',
  security: [{ bearer: [] }],
  request: { query: z.object({ model_id: z.string().min(1).max(200).optional(), weeks: z.coerce.number().int().min(1).max(104).optional().default(8) }) },
  responses: {
    200: json(
      z.object({
        run_id: z.number().int().nullable(),
        trends: z.array(z.object({ model_id: z.string(), category: z.string(), week: z.string(), count: z.number().int(), change: z.number().int() })),
      }),
      'Trends',
    ),
    ...errors,
  },
});

const suggestionsRoute = createRoute({
  method: 'post',
  path: `${IMPROVE}/improvement-suggestions`,
  tags: ['model improvement'],
  summary: 'Suggestions from the latest run: the pattern, its evidence and the action to take',
  security: [{ bearer: [] }],
  request: {
    body: { required: false, content: { 'application/json': { schema: z.object({ model_id: z.string().min(1).max(200).optional() }).strict() } } },
  },
  responses: {
    200: json(
      z.object({
        run_id: z.number().int().nullable(),
        suggestions: z.array(
          z.object({ model_id: z.string(), category: z.string(), share: z.number(), previous_share: z.number(), count: z.number().int(), evidence: z.string(), action: z.string() }),
        ),
      }),
      'Suggestions',
    ),
    ...errors,
  },
});

const analyzeRoute = createRoute({
  method: 'post',
  path: `${IMPROVE}/analyze`,
  tags: ['model improvement'],
  summary: 'Run analyze-errors now (it also runs Mondays 03:00, ANALYZE_ERRORS_CRON)',
  security: [{ bearer: [] }],
  request: { query: waitQuerySchema },
  responses: { ...jobRunResponses("The finished run's summary", 'The run could not be made'), ...errors },
});

async function latestRun(ctx: GatewayContext): Promise<{ id: number; as_of: Date } | undefined> {
  return (await ctx.db.execute<{ id: number; as_of: Date }>(sql`SELECT id, as_of FROM error_analysis_runs WHERE summary <> '{}' ORDER BY id DESC LIMIT 1`)).rows[0];
}

export function modelImprovementRoutes(ctx: GatewayContext) {
  const app = createRouter();

  app.openapi(patternsRoute, async (c) => {
    const { model_id } = c.req.valid('query');
    const run = await latestRun(ctx);
    if (!run) return c.json({ run_id: null, as_of: null, patterns: [] }, 200);
    const rows = await ctx.db.execute<{ model_id: string; category: string; count: number; share: number; examples: { response_id: string; comment: string | null }[] }>(sql`
      SELECT model_id, category, count, share, examples FROM error_patterns
       WHERE run_id = ${run.id} ${model_id ? sql`AND model_id = ${model_id}` : sql``}
       ORDER BY model_id, count DESC, category`);
    return c.json({ run_id: run.id, as_of: new Date(run.as_of).toISOString(), patterns: rows.rows.map((r) => ({ ...r, share: Number(r.share.toFixed(4)) })) }, 200);
  });

  app.openapi(trendsRoute, async (c) => {
    const { model_id, weeks } = c.req.valid('query');
    const run = await latestRun(ctx);
    if (!run) return c.json({ run_id: null, trends: [] }, 200);
    const rows = await ctx.db.execute<{ model_id: string; category: string; week: string; count: number; change: number }>(sql`
      SELECT model_id, category, week, count, change FROM error_trends t
       WHERE run_id = ${run.id} ${model_id ? sql`AND model_id = ${model_id}` : sql``}
         AND week IN (SELECT DISTINCT week FROM error_trends WHERE run_id = ${run.id} ORDER BY week DESC LIMIT ${weeks})
       ORDER BY model_id, category, week`);
    return c.json({ run_id: run.id, trends: rows.rows }, 200);
  });

  app.openapi(suggestionsRoute, async (c) => {
    const body = (c.req.valid('json') ?? {}) as { model_id?: string };
    const run = await latestRun(ctx);
    if (!run) return c.json({ run_id: null, suggestions: [] }, 200);
    const rows = await ctx.db.execute<{ model_id: string; category: string; share: number; previous_share: number; count: number; evidence: string; action: string }>(sql`
      SELECT model_id, category, share, previous_share, count, evidence, action FROM improvement_suggestions
       WHERE run_id = ${run.id} ${body.model_id ? sql`AND model_id = ${body.model_id}` : sql``}
       ORDER BY share DESC, model_id, category`);
    return c.json({ run_id: run.id, suggestions: rows.rows }, 200);
  });

  app.openapi(analyzeRoute, (c) => startJob(c, ctx, analyzeErrorsJob, { requested_by: 'api' }, c.req.valid('query')));

  return app;
}
