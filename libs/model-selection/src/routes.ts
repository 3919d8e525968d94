import { ApiError, createRouter, isStorableText, errorSchema, jobRunResponses, jsonContent, standardErrors, startJob, waitQuerySchema, type GatewayContext } from '@caliber/platform';
import { createRoute, z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import { calibrateModelSelectionJob, candidateStats, scoringParams } from './calibrate.ts';
import type { ModelSelectionConfig } from './config.ts';
import { insertResults, languageSchema, MAX_RESULTS, resultBatchSchema } from './ingest.ts';
import { ANY, SIZE_CATEGORIES } from './schema.ts';
import { rankCandidates, sizeCategoryOf } from './scoring.ts';

const json = jsonContent;
const errors = standardErrors;
const tags = ['model-selection'];
const security = [{ bearer: [] }];

const modelRefSchema = z.object({ model_id: z.string(), provider: z.string(), score: z.number() }).openapi('ModelRef');

const configurationSchema = z
  .object({
    language: z.string().openapi({ description: '"any": chosen over every language (the default)' }),
    size_category: z.string().openapi({ description: '"any": chosen over every size of the language' }),
    model_id: z.string(),
    provider: z.string(),
    score: z.number(),
    sample_count: z.number().int(),
    quality_score: z.number().openapi({ description: 'Mean quality of the chosen model' }),
    latency_ms: z.number().openapi({ description: 'Median latency' }),
    cost_usd: z.number().openapi({ description: 'Mean cost per evaluation' }),
    runner_up: modelRefSchema.nullable(),
    run_id: z.number().int().openapi({ description: 'The calibration run that last scored this configuration' }),
    stale: z.boolean().openapi({ description: 'The last run found no candidate here (no model with enough results in the window); the choice is kept' }),
    chosen_at: z.string(),
    updated_at: z.string(),
  })
  .openapi('ModelConfiguration');

/** A whole number written in decimal digits (z.coerce would take "", " " and "0x10"). */
const count = z
  .string()
  .regex(/^\d{1,15}$/, 'must be a whole number')
  .transform(Number);

const sizeQuery = z.object({
  language: languageSchema,
  size: z.enum(SIZE_CATEGORIES).optional().openapi({ description: 'small | medium | large; or give lines or files' }),
  lines: count.optional().openapi({ description: 'Lines of code of the repository (sets the size category)' }),
  files: count.optional().openapi({ description: 'Files in the repository, when lines are not known' }),
});

const resultsRoute = createRoute({
  method: 'post',
  path: '/admin/model-selection/results',
  tags,
  summary: `Store evaluation results (at most ${MAX_RESULTS} per request; all or nothing)`,
  description: 'A result a run already reported (same run_id, language, size_category, provider, model_id, repository) is not stored again and is counted in `duplicates`.',
  security,
  request: { body: { required: true, content: { 'application/json': { schema: resultBatchSchema } } } },
  responses: { 200: json(z.object({ inserted: z.number().int(), duplicates: z.number().int() }), 'Stored'), ...errors },
});

const calibrateRoute = createRoute({
  method: 'post',
  path: '/admin/model-selection/calibrate',
  tags,
  summary: 'Choose the model of every (language, size) from the results (also runs on MODEL_SELECTION_CRON)',
  description: 'A `calibrate` job of kind `model-selection`; with ?wait=true, `{"status":"ok","configurations":n,"changed":[…],…}`. Each change is notified to NOTIFY_WEBHOOK_URL.',
  security,
  request: { query: waitQuerySchema },
  responses: { ...jobRunResponses('The run: configurations written, changes, choices kept within the margin', 'The run refused its payload'), ...errors },
});

const listRoute = createRoute({
  method: 'get',
  path: '/admin/model-selection/configurations',
  tags,
  summary: 'Every configuration, by language and size',
  security,
  request: {
    query: z.object({
      language: z.union([languageSchema, z.literal(ANY)]).optional().openapi({ description: 'One language, or "any" for the default' }),
      limit: z.coerce.number().int().min(1).max(1000).optional().default(500),
      cursor: z.string().max(400).optional().openapi({ description: 'next_cursor of the previous page' }),
    }),
  },
  responses: { 200: json(z.object({ items: z.array(configurationSchema), next_cursor: z.string().nullable() }), 'A page of configurations'), ...errors },
});

const rankingsRoute = createRoute({
  method: 'get',
  path: '/admin/model-selection/rankings',
  tags,
  summary: 'How the candidates of one (language, size) score on the results now, and which are not candidates (too few samples)',
  security,
  request: {
    query: z.object({
      language: z.union([languageSchema, z.literal(ANY)]).openapi({ description: 'A language, or "any"' }),
      size: z.enum([...SIZE_CATEGORIES, ANY]).optional().default(ANY),
    }),
  },
  responses: { 200: json(z.object({}).passthrough(), 'The ranking'), ...errors },
});

const configRoute = createRoute({
  method: 'get',
  path: '/model-config',
  tags,
  summary: 'The model to use for a repository: the (language, size) configuration, else the language over every size, else the default (stale ones last)',
  security,
  request: { query: sizeQuery },
  responses: {
    200: json(configurationSchema.extend({ match: z.enum(['exact', 'language', 'default']) }), 'The configuration and which fallback gave it'),
    404: json(errorSchema, 'No configuration at all yet'),
    ...errors,
  },
});

type ConfigRow = {
  language: string;
  size_category: string;
  model_id: string;
  provider: string;
  score: number;
  sample_count: number;
  quality_score: number;
  latency_ms: number;
  cost_usd: number;
  runner_up_model_id: string | null;
  runner_up_provider: string | null;
  runner_up_score: number | null;
  run_id: number;
  stale: boolean;
  chosen_at: Date;
  updated_at: Date;
};

const CONFIG_COLUMNS = sql.raw(
  'language, size_category, model_id, provider, score, sample_count, quality_score, latency_ms, cost_usd, runner_up_model_id, runner_up_provider, runner_up_score, run_id, stale, chosen_at, updated_at',
);

function present(r: ConfigRow) {
  const { runner_up_model_id, runner_up_provider, runner_up_score, ...rest } = r;
  return {
    ...rest,
    run_id: Number(r.run_id),
    runner_up: runner_up_model_id && runner_up_provider ? { model_id: runner_up_model_id, provider: runner_up_provider, score: runner_up_score ?? 0 } : null,
    chosen_at: new Date(r.chosen_at).toISOString(),
    updated_at: new Date(r.updated_at).toISOString(),
  };
}

const encodeCursor = (r: { language: string; size_category: string }) => Buffer.from(JSON.stringify([r.language, r.size_category])).toString('base64url');
function decodeCursor(cursor: string): [string, string] {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'string' && isStorableText(x))) return v as [string, string];
  } catch {
    // fall through
  }
  throw new ApiError(400, 'invalid_request', 'cursor: not a next_cursor of this list');
}

export function modelSelectionRoutes(ctx: GatewayContext, config: ModelSelectionConfig) {
  const app = createRouter();

  app.openapi(resultsRoute, async (c) => {
    const { results } = c.req.valid('json');
    return c.json(await insertResults(ctx.db, results), 200);
  });

  app.openapi(calibrateRoute, (c) => startJob(c, ctx, calibrateModelSelectionJob, { requested_by: 'api' }, c.req.valid('query')));

  app.openapi(listRoute, async (c) => {
    const q = c.req.valid('query');
    const after = q.cursor ? decodeCursor(q.cursor) : undefined;
    const rows = (
      await ctx.db.execute<ConfigRow>(sql`SELECT ${CONFIG_COLUMNS} FROM model_configurations WHERE true
        ${q.language ? sql`AND language = ${q.language}` : sql``}
        ${after ? sql`AND (language, size_category) > (${after[0]}, ${after[1]})` : sql``}
        ORDER BY language, size_category LIMIT ${q.limit}`)
    ).rows.map(present);
    return c.json({ items: rows, next_cursor: rows.length === q.limit ? encodeCursor(rows.at(-1)!) : null }, 200);
  });

  app.openapi(rankingsRoute, async (c) => {
    const { language, size } = c.req.valid('query');
    if (language === ANY && size !== ANY) throw new ApiError(400, 'invalid_request', 'language=any is the default over every size: leave size out (or size=any)');
    const pair = { language, size_category: size };
    const stats = await candidateStats(ctx.db, config, pair);
    const ranked = rankCandidates(stats, scoringParams(config), config.MODEL_SELECTION_MIN_SAMPLES);
    const chosen = (await ctx.db.execute<ConfigRow>(sql`SELECT ${CONFIG_COLUMNS} FROM model_configurations WHERE language = ${pair.language} AND size_category = ${pair.size_category}`)).rows[0];
    return c.json(
      {
        ...pair,
        configuration: chosen ? present(chosen) : null,
        candidates: ranked,
        too_few_samples: stats
          .filter((s) => s.samples < config.MODEL_SELECTION_MIN_SAMPLES)
          .map(({ model_id, provider, samples }) => ({ model_id, provider, samples }))
          .sort((a, b) => b.samples - a.samples),
        params: { min_samples: config.MODEL_SELECTION_MIN_SAMPLES, change_margin: config.MODEL_SELECTION_CHANGE_MARGIN, window_days: config.MODEL_SELECTION_WINDOW_DAYS, ...scoringParams(config) },
      },
      200,
    );
  });

  app.openapi(configRoute, async (c) => {
    const q = c.req.valid('query');
    const given = [q.size, q.lines, q.files].filter((v) => v !== undefined).length;
    if (given !== 1) throw new ApiError(400, 'invalid_request', 'Give exactly one of size (small|medium|large), lines or files');
    const size = q.size ?? sizeCategoryOf({ lines: q.lines, files: q.files });
    const row = (
      await ctx.db.execute<ConfigRow & { match: 'exact' | 'language' | 'default' }>(sql`
        SELECT ${CONFIG_COLUMNS},
               CASE WHEN language = ${q.language} AND size_category = ${size} THEN 'exact' WHEN language = ${q.language} THEN 'language' ELSE 'default' END AS match
          FROM model_configurations
         WHERE (language, size_category) IN ((${q.language}, ${size}), (${q.language}, ${ANY}), (${ANY}, ${ANY}))
         -- The most specific fresh configuration; a stale one only when nothing fresh is there.
         ORDER BY stale, CASE WHEN language = ${ANY} THEN 2 WHEN size_category = ${ANY} THEN 1 ELSE 0 END
         LIMIT 1`)
    ).rows[0];
    if (!row) {
      throw new ApiError(404, 'not_found', 'No model configuration yet: store results (POST /admin/model-selection/results), then run POST /admin/model-selection/calibrate');
    }
    return c.json({ ...present(row), match: row.match }, 200);
  });

  return app;
}
