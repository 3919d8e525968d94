import {
  ApiError,
  jsonContent,
  appendOutbox,
  createRouter,
  outboxEvent,
  errorSchema,
  jobRunResponses,
  standardErrors,
  startJob,
  waitQuerySchema,
  type GatewayContext,
} from '@caliber/platform';
import { createRoute, z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import { BestModelCache, bestModelSchema, invalidateBestModelCache, METRICS } from './best-model.ts';
import type { ModelCatalogConfig } from './config.ts';
import { invalidateBestModelJob, mapModelsJob } from './jobs.ts';

const json = jsonContent;
const errors = standardErrors;

const modelName = z.string().min(1).max(500).openapi({ description: 'working_version.model_id, URL-encoded (ids contain "/")' });

const mappingSchema = z
  .object({
    model_name: z.string(),
    aa_slug: z.string().nullable(),
    method: z.string().nullable(),
    score: z.number().nullable(),
    manual: z.boolean(),
    reason: z.string().nullable(),
    providers: z.array(z.string()),
    updated_at: z.string(),
  })
  .openapi('ModelMapping');

const mapRoute = createRoute({
  method: 'post',
  path: '/admin/models/map',
  tags: ['models'],
  summary: 'Load Artificial Analysis data and map every working_version model (also runs daily, MAP_MODELS_CRON)',
  security: [{ bearer: [] }],
  request: { query: waitQuerySchema },
  responses: {
    ...jobRunResponses('The finished run: counts and coverage', 'The run could not be made (e.g. AA key refused, no AA data configured)'),
    ...errors,
  },
});

const putRoute = createRoute({
  method: 'put',
  path: '/admin/models/mappings/{name}',
  tags: ['models'],
  summary: 'Map a model by hand; the matcher never overwrites a manual mapping',
  security: [{ bearer: [] }],
  request: {
    params: z.object({ name: modelName }),
    body: { required: true, content: { 'application/json': { schema: z.object({ aa_slug: z.string().min(1).max(200) }).strict().openapi('ManualMapping') } } },
  },
  responses: { 200: json(mappingSchema, 'Saved'), 404: json(errorSchema, 'Unknown model or AA slug'), ...errors },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/admin/models/mappings/{name}',
  tags: ['models'],
  summary: "Remove a model's mapping (the next map-models run maps it again automatically)",
  security: [{ bearer: [] }],
  request: { params: z.object({ name: modelName }) },
  responses: { 200: json(z.object({ deleted: z.string() }), 'Removed'), 404: json(errorSchema, 'No mapping for that model'), ...errors },
});

const listRoute = createRoute({
  method: 'get',
  path: '/admin/models/mappings',
  tags: ['models'],
  summary: 'Mappings with the reason for each decision; ?unmapped=true lists the models left unmapped',
  security: [{ bearer: [] }],
  request: {
    query: z.object({
      unmapped: z.stringbool().optional(),
      manual: z.stringbool().optional(),
      provider: z.string().optional(),
      limit: z.coerce.number().int().min(1).max(1000).optional().default(100),
      cursor: z.string().optional().openapi({ description: 'next_cursor of the previous page' }),
    }),
  },
  responses: { 200: json(z.object({ items: z.array(mappingSchema), next_cursor: z.string().nullable() }), 'A page of mappings'), ...errors },
});

const coverageRoute = createRoute({
  method: 'get',
  path: '/admin/models/coverage',
  tags: ['models'],
  summary: 'How much of working_version is mapped, now and at the last map-models run',
  security: [{ bearer: [] }],
  responses: {
    200: json(
      z
        .object({
          total: z.number().int(),
          mapped: z.number().int(),
          unmapped: z.number().int(),
          manual: z.number().int(),
          duplicates_skipped: z.number().int(),
          coverage: z.number(),
          last_run: z.object({}).passthrough().nullable(),
        })
        .openapi('MappingCoverage'),
      'Coverage',
    ),
    ...errors,
  },
});

const bestRoute = createRoute({
  method: 'get',
  path: '/best-model',
  tags: ['models'],
  summary: 'The best mapped model (of a provider) by an Artificial Analysis metric; cached for BEST_MODEL_TTL',
  security: [{ bearer: [] }],
  request: {
    query: z.object({
      provider: z.string().min(1).max(200).optional(),
      metric: z.enum(METRICS).optional().default('intelligence_index'),
    }),
  },
  responses: { 200: json(bestModelSchema, 'The best model'), 404: json(errorSchema, 'No mapped model with that metric'), ...errors },
});

export function modelCatalogRoutes(ctx: GatewayContext, config: ModelCatalogConfig) {
  const app = createRouter();
  const cache = new BestModelCache(ctx, config);
  // Answers change at once; if Redis fails here, the outbox event written with the change does it.
  const invalidateNow = () => invalidateBestModelCache(ctx).catch((err: unknown) => ctx.log.warn({ err }, 'best-model cache not invalidated now; the outbox event will'));

  const loadMapping = async (name: string) =>
    (
      await ctx.db.execute<z.infer<typeof mappingSchema> & { updated_at: Date }>(sql`
        SELECT m.model_name, m.aa_slug, m.method, m.score, m.manual, m.reason, m.updated_at,
               coalesce((SELECT array_agg(DISTINCT w.inference_provider ORDER BY w.inference_provider) FROM working_version w WHERE w.model_id = m.model_name), '{}') AS providers
          FROM model_aa_mapping m WHERE m.model_name = ${name}`)
    ).rows.map((r) => ({ ...r, updated_at: new Date(r.updated_at).toISOString() }))[0];

  app.openapi(mapRoute, (c) => startJob(c, ctx, mapModelsJob, { requested_by: 'api' }, c.req.valid('query')));

  app.openapi(putRoute, async (c) => {
    const { name } = c.req.valid('param');
    const { aa_slug } = c.req.valid('json');
    const known = await ctx.db.execute(sql`SELECT
      EXISTS (SELECT 1 FROM working_version WHERE model_id = ${name}) AS model,
      EXISTS (SELECT 1 FROM aa_performance_metrics WHERE slug = ${aa_slug}) AS slug`);
    const { model, slug } = known.rows[0] as { model: boolean; slug: boolean };
    if (!model) throw new ApiError(404, 'not_found', `No model ${JSON.stringify(name)} in working_version`);
    if (!slug) throw new ApiError(404, 'not_found', `No Artificial Analysis entry with slug ${JSON.stringify(aa_slug)} (run map-models to load them)`);
    await ctx.db.transaction(async (tx) => {
      await tx.execute(sql`
        INSERT INTO model_aa_mapping (model_name, aa_slug, method, score, manual, reason, updated_at)
        VALUES (${name}, ${aa_slug}, 'manual', 1, true, 'set by hand', now())
        ON CONFLICT (model_name) DO UPDATE SET aa_slug = excluded.aa_slug, method = 'manual', score = 1, manual = true, reason = 'set by hand', updated_at = now()`);
      await appendOutbox(tx, [outboxEvent(invalidateBestModelJob, { reason: `mapping of ${name} set by hand` })]);
    });
    await invalidateNow();
    return c.json((await loadMapping(name))!, 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const { name } = c.req.valid('param');
    const deleted = await ctx.db.transaction(async (tx) => {
      const rows = (await tx.execute(sql`DELETE FROM model_aa_mapping WHERE model_name = ${name} RETURNING model_name`)).rows;
      if (rows.length > 0) await appendOutbox(tx, [outboxEvent(invalidateBestModelJob, { reason: `mapping of ${name} removed` })]);
      return rows;
    });
    if (deleted.length === 0) throw new ApiError(404, 'not_found', `No mapping for ${JSON.stringify(name)}`);
    await invalidateNow();
    return c.json({ deleted: name }, 200);
  });

  app.openapi(listRoute, async (c) => {
    const { unmapped, manual, provider, limit, cursor } = c.req.valid('query');
    const rows = await ctx.db.execute<z.infer<typeof mappingSchema> & { updated_at: Date }>(sql`
      SELECT m.model_name, m.aa_slug, m.method, m.score, m.manual, m.reason, m.updated_at, p.providers
        FROM model_aa_mapping m
        CROSS JOIN LATERAL (SELECT coalesce(array_agg(DISTINCT w.inference_provider ORDER BY w.inference_provider), '{}') AS providers
                              FROM working_version w WHERE w.model_id = m.model_name) p
       WHERE true
         ${unmapped === undefined ? sql`` : unmapped ? sql`AND m.aa_slug IS NULL` : sql`AND m.aa_slug IS NOT NULL`}
         ${manual === undefined ? sql`` : sql`AND m.manual = ${manual}`}
         ${provider ? sql`AND ${provider} = ANY(p.providers)` : sql``}
         ${cursor ? sql`AND m.model_name > ${cursor}` : sql``}
       ORDER BY m.model_name LIMIT ${limit}`);
    const items = rows.rows.map((r) => ({ ...r, updated_at: new Date(r.updated_at).toISOString() }));
    return c.json({ items, next_cursor: items.length === limit ? items.at(-1)!.model_name : null }, 200);
  });

  app.openapi(coverageRoute, async (c) => {
    const now = (
      await ctx.db.execute<{ total: number; mapped: number; manual: number; duplicates: number }>(sql`
        SELECT count(DISTINCT w.model_id)::int AS total,
               count(DISTINCT w.model_id) FILTER (WHERE m.aa_slug IS NOT NULL)::int AS mapped,
               count(DISTINCT w.model_id) FILTER (WHERE m.manual)::int AS manual,
               (count(*) - count(DISTINCT w.model_id))::int AS duplicates
          FROM working_version w LEFT JOIN model_aa_mapping m ON m.model_name = w.model_id`)
    ).rows[0]!;
    const last = (await ctx.db.execute(sql`SELECT * FROM model_mapping_runs ORDER BY id DESC LIMIT 1`)).rows[0] ?? null;
    return c.json(
      {
        total: now.total,
        mapped: now.mapped,
        unmapped: now.total - now.mapped,
        manual: now.manual,
        duplicates_skipped: now.duplicates,
        coverage: now.total === 0 ? 0 : Number((now.mapped / now.total).toFixed(4)),
        last_run: last,
      },
      200,
    );
  });

  app.openapi(bestRoute, async (c) => {
    const { provider, metric } = c.req.valid('query');
    const { value } = await cache.get(provider, metric);
    if (!value) throw new ApiError(404, 'not_found', `No mapped model${provider ? ` of provider ${JSON.stringify(provider)}` : ''} has a ${metric}`);
    return c.json(value, 200);
  });

  return app;
}
