import {
  ApiError,
  assertTenantExists,
  createRouter,
  errorBody,
  errorSchema,
  jsonContent,
  standardErrors,
  summarizeIssues,
  tenantOf,
  waitQuerySchema,
  withTenant,
  withTenantClient,
  type AppEnv,
  type GatewayContext,
} from '@caliber/platform';
import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { calibrationReport, confidenceTrends, dashboard, MAX_BUCKETS } from './analytics.ts';
import { calibrateConfidenceJob } from './calibrate-confidence.ts';
import type { ConfidenceConfig } from './config.ts';
import { batchOf, instantSchema, insertPerformanceMetrics, insertScores, MAX_BATCH, outcomeSchema, performanceMetricSchema, recordOutcomes, scoreBatchSchema, type ConfidenceScoreInput } from './ingest.ts';
import { VALIDATION_METHODS } from './schema.ts';
import { certainlyValidScoreBatch } from './score-fast-path.ts';

const json = jsonContent;
const security = [{ bearer: [] }];
const tags = ['confidence'];
const tenantHeader = z.object({
  'x-tenant-id': z.string().optional().openapi({ description: 'With the admin key: the tenant to act for (a tenant key needs none)' }),
});
const errors = {
  ...standardErrors,
  403: json(errorSchema, 'A tenant key on a route it may not call'),
  404: json(errorSchema, 'X-Tenant-Id names no tenant'),
};
const batchErrors = {
  ...errors,
  400: json(errorSchema.extend({ error: errorSchema.shape.error.extend({ failed_indexes: z.array(z.number().int()).optional() }) }), 'Invalid items (their indexes in `failed_indexes`); nothing was written'),
};
const iso = instantSchema;

function batchRoute(path: string, body: z.ZodType, summary: string, description: string, result: z.ZodType) {
  return createRoute({
    method: 'post',
    path,
    tags,
    summary,
    description,
    security,
    request: { headers: tenantHeader, body: { required: true, content: { 'application/json': { schema: body } } } },
    responses: { 201: json(result, 'Stored'), ...batchErrors },
  });
}

const insertedSchema = z.object({ inserted: z.number().int(), duplicates: z.number().int() });

const scoresRoute = batchRoute(
  '/confidence/scores',
  scoreBatchSchema,
  `Record confidence scores (up to ${MAX_BATCH} per request)`,
  'All or nothing: one invalid score and nothing is written, the failing indexes listed. A request_id already stored is skipped and counted in `duplicates`, so a retried batch is harmless. overall_confidence = mean of the three confidences.',
  insertedSchema,
);
const outcomesRoute = batchRoute(
  '/confidence/outcomes',
  batchOf('outcomes', outcomeSchema),
  'Record what requests turned out to be (correct or not), by validation method',
  `validation_method: ${VALIDATION_METHODS.join(', ')}. Each request_id must have a recorded score (404, nothing written). The same request and method sent again updates the verdict.`,
  z.object({ inserted: z.number().int(), updated: z.number().int(), unchanged: z.number().int() }),
);
const metricsRoute = batchRoute(
  '/metrics/performance',
  batchOf('metrics', performanceMetricSchema),
  `Record performance metrics (up to ${MAX_BATCH} per request): response time, tokens, load, memory, CPU, cache hit rate, per endpoint`,
  'A metric with a request_id sent again for the same endpoint is stored once.',
  insertedSchema,
);

const trendPoint = z.object({
  bucket: z.string(),
  count: z.number(),
  avg_overall: z.number().nullable(),
  avg_factual: z.number().nullable(),
  avg_reasoning: z.number().nullable(),
  avg_contextual: z.number().nullable(),
  min_overall: z.number().nullable(),
  max_overall: z.number().nullable(),
  stddev_overall: z.number().nullable(),
  avg_uncertainty_width: z.number().nullable(),
});
const trendsRoute = createRoute({
  method: 'get',
  path: '/confidence/trends',
  tags,
  summary: 'Confidence over time, per UTC hour or day',
  description: `Every bucket in [from, to) is listed (empty ones with count 0); from is rounded down to its bucket. Defaults: the last 24 hours by hour, the last 30 days by day. At most ${MAX_BUCKETS} buckets.`,
  security,
  request: {
    headers: tenantHeader,
    query: z.object({
      from: iso.optional(),
      to: iso.optional(),
      bucket: z.enum(['hour', 'day']).optional().default('hour'),
      model: z.string().min(1).max(200).optional(),
    }),
  },
  responses: {
    200: json(z.object({ from: z.string(), to: z.string(), bucket: z.string(), model: z.string().nullable(), buckets: z.array(trendPoint) }), 'The series'),
    ...errors,
  },
});

const dashboardRoute = createRoute({
  method: 'get',
  path: '/confidence/dashboard',
  tags,
  summary: 'The last hours at a glance: scores and confidence per model (against the hours before), calibration per model, performance per endpoint',
  security,
  request: { headers: tenantHeader, query: z.object({ hours: z.coerce.number().int().min(1).max(24 * 90).optional().default(24) }) },
  responses: { 200: json(z.object({}).passthrough(), 'The dashboard'), ...errors },
});

const binSchema = z.object({ lo: z.number(), hi: z.number(), count: z.number().int(), avg_confidence: z.number().nullable(), accuracy: z.number().nullable() });
const calibrationRoute = createRoute({
  method: 'get',
  path: '/confidence/calibration',
  tags,
  summary: 'How well overall_confidence predicts outcomes: ECE, MCE, Brier and reliability bins',
  description:
    'Equal-width bins (lo, hi]. ECE = Σ (bin count / n)·|accuracy − mean confidence|; MCE the largest such gap; Brier the mean of (confidence − outcome)². For one model, also its latest fitted temperature and the metrics with it applied (`calibrated`).',
  security,
  request: {
    headers: tenantHeader,
    query: z.object({
      model: z.string().min(1).max(200).optional(),
      bins: z.coerce.number().int().min(1).max(100).optional(),
      validation_method: z.enum(VALIDATION_METHODS).optional(),
      from: iso.optional().openapi({ description: 'Outcomes validated at or after' }),
      to: iso.optional().openapi({ description: 'Outcomes validated before' }),
    }),
  },
  responses: {
    200: json(
      z.object({
        model: z.string().nullable(),
        n: z.number().int(),
        ece: z.number(),
        mce: z.number(),
        brier: z.number(),
        bins: z.array(binSchema),
        temperature: z.number().nullable(),
        temperature_fit: z.object({}).passthrough().nullable(),
        calibrated: z.object({ ece: z.number(), mce: z.number(), brier: z.number() }).nullable(),
      }),
      'The calibration report',
    ),
    ...errors,
  },
});

const tenantJobSchema = z.object({ jobId: z.string(), queue: z.string(), status: z.string() });
const calibrateRoute = createRoute({
  method: 'post',
  path: '/confidence/calibrate',
  tags,
  summary: "Fit a temperature to the tenant's models (one model, or each) from their outcomes",
  description: 'A `calibrate` job of kind `confidence`. 202 with the job to follow at `status`, or with ?wait=true its result.',
  security,
  request: {
    headers: tenantHeader,
    query: waitQuerySchema.extend({ model: z.string().min(1).max(200).optional().openapi({ description: 'One model; default each model of the tenant' }) }),
  },
  responses: {
    200: json(z.object({}).passthrough(), 'The fits and the models skipped (with ?wait=true)'),
    202: json(tenantJobSchema, 'Queued (or still running when ?timeout= ran out)'),
    422: json(errorSchema, 'The job refused its payload'),
    500: json(errorSchema, 'The job failed after all its retries'),
    ...errors,
  },
});

const jobRoute = createRoute({
  method: 'get',
  path: '/confidence/jobs/{id}',
  tags,
  summary: "One of this tenant's calibration jobs: state and result",
  security,
  request: { headers: tenantHeader, params: z.object({ id: z.string().min(1).max(100) }) },
  responses: {
    200: json(z.object({ id: z.string(), state: z.string(), result: z.any(), failedReason: z.string().nullable(), progress: z.any() }), 'The job'),
    ...errors,
  },
});

/** Validation failures of a batch list the indexes of the failing items, so a client can fix or drop just those. */
function batchHook(field: string) {
  return (result: { success: boolean; error?: { issues: z.core.$ZodIssue[] } }, c: Context<AppEnv>) => {
    if (result.success || !result.error) return;
    const issues = result.error.issues;
    const failed = [...new Set(issues.filter((i) => i.path[0] === field && typeof i.path[1] === 'number').map((i) => i.path[1] as number))].sort((a, b) => a - b);
    const message = failed.length
      ? `${failed.length} item${failed.length === 1 ? '' : 's'} of "${field}" invalid (index ${failed.slice(0, 10).join(', ')}${failed.length > 10 ? ', …' : ''}): ${summarizeIssues(issues)}; nothing was written`
      : summarizeIssues(issues);
    return c.json(errorBody('invalid_request', message, { issues: issues.slice(0, 100), ...(failed.length ? { failed_indexes: failed } : {}) }), 400);
  };
}

const tenantJobPath = (id: string) => `/confidence/jobs/${encodeURIComponent(id)}`;

export function confidenceRoutes(ctx: GatewayContext, config: ConfidenceConfig) {
  const app = createRouter();
  // Row-level security is what keeps tenants apart; say so loudly if this login passes it.
  void ctx.pool.query<{ bypass: boolean; role: string }>('SELECT current_user AS role, rolsuper OR rolbypassrls AS bypass FROM pg_roles WHERE rolname = current_user').then(
    ({ rows }) => {
      if (rows[0]?.bypass) {
        ctx.log.warn({ role: rows[0].role }, 'this database role bypasses row-level security: tenants are NOT isolated by Postgres (use DATABASE_ROLE=caliber_app, or a login that is neither superuser nor BYPASSRLS)');
      }
    },
    () => {},
  );
  /** The tenant of the request; one named by the admin must exist (a tenant key's always does). */
  const tenant = async (c: Context<AppEnv>) => {
    const id = tenantOf(c);
    if (c.get('principal')?.kind === 'admin') await assertTenantExists(ctx.pool, id);
    return id;
  };

  // Documented from scoreBatchSchema like every route, but validated by the fast path first (see
  // score-fast-path.ts); zod decides whenever the fast path is unsure.
  app.openAPIRegistry.registerPath(scoresRoute);
  app.post(scoresRoute.path, async (c) => {
    const id = await tenant(c);
    if (!/^application\/([\w.+-]+\+)?json\b/i.test(c.req.header('content-type') ?? '')) {
      throw new ApiError(415, 'unsupported_media_type', 'Send the scores as JSON (Content-Type: application/json)');
    }
    const body: unknown = await c.req.json().catch(() => {
      throw new ApiError(400, 'invalid_request', 'The body is not valid JSON');
    });
    let batch = certainlyValidScoreBatch(body);
    if (!batch) {
      const parsed = scoreBatchSchema.safeParse(body);
      if (!parsed.success) return batchHook('scores')(parsed, c)!;
      batch = parsed.data;
    }
    const { scores } = batch;
    return c.json(await withTenantClient(ctx.pool, id, (client) => insertScores(client, id, scores)), 201);
  });

  app.openapi(
    outcomesRoute,
    async (c) => {
      const id = await tenant(c);
      const { outcomes } = c.req.valid('json') as { outcomes: z.infer<typeof outcomeSchema>[] };
      return c.json(await withTenant(ctx.db, id, (tx) => recordOutcomes(tx, id, outcomes)), 201);
    },
    batchHook('outcomes'),
  );

  app.openapi(
    metricsRoute,
    async (c) => {
      const id = await tenant(c);
      const { metrics } = c.req.valid('json') as { metrics: z.infer<typeof performanceMetricSchema>[] };
      return c.json(await withTenant(ctx.db, id, (tx) => insertPerformanceMetrics(tx, id, metrics)), 201);
    },
    batchHook('metrics'),
  );

  app.openapi(trendsRoute, async (c) => {
    const id = await tenant(c);
    const q = c.req.valid('query');
    return c.json(await withTenant(ctx.db, id, (tx) => confidenceTrends(tx, id, q)), 200);
  });

  app.openapi(dashboardRoute, async (c) => {
    const id = await tenant(c);
    const { hours } = c.req.valid('query');
    return c.json(await dashboard((fn) => withTenant(ctx.db, id, fn), id, hours, config.CONFIDENCE_BINS), 200);
  });

  app.openapi(calibrationRoute, async (c) => {
    const id = await tenant(c);
    const q = c.req.valid('query');
    if (q.from && q.to && Date.parse(q.from) >= Date.parse(q.to)) throw new ApiError(400, 'invalid_request', '"from" must be before "to"');
    return c.json(await withTenant(ctx.db, id, (tx) => calibrationReport(tx, id, { ...q, bins: q.bins ?? config.CONFIDENCE_BINS })), 200);
  });

  app.openapi(calibrateRoute, async (c) => {
    const id = await tenant(c);
    const query = c.req.valid('query');
    const job = await ctx.queues.enqueue(calibrateConfidenceJob, { tenant_id: id, model: query.model, requested_by: 'api' });
    const accepted = { jobId: job.id ?? '', queue: job.queueName, status: tenantJobPath(job.id ?? '') };
    if (!query.wait) return c.json(accepted, 202);
    const outcome = await ctx.waiter.waitForJob(job, query.timeout * 1000);
    if (outcome.state === 'completed') return c.json((outcome.result ?? {}) as Record<string, unknown>, 200);
    if (outcome.state === 'timeout') return c.json({ ...accepted, timed_out: true }, 202);
    return c.json(errorBody('job_failed', outcome.reason, { job: accepted }), outcome.refused ? 422 : 500);
  });

  app.openapi(jobRoute, async (c) => {
    const id = await tenant(c);
    const jobId = c.req.valid('param').id;
    const q = ctx.queues.connected(calibrateConfidenceJob.queue);
    const state = await q.getJobState(jobId);
    const job = await q.getJob(jobId);
    // Another tenant's job (or another kind of job) is as unknown as a missing one.
    if (!job || state === 'unknown' || job.name !== calibrateConfidenceJob.name || job.data?.tenant_id !== id) {
      throw new ApiError(404, 'not_found', `No calibration job ${jobId} of this tenant`);
    }
    return c.json({ id: job.id ?? jobId, state, result: job.returnvalue ?? null, failedReason: job.failedReason ?? null, progress: job.progress }, 200);
  });

  return app;
}
