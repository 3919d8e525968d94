import {
  ApiError,
  jsonContent,
  standardErrors,
  createRouter,
  errorBody,
  errorSchema,
  jobAccepted,
  jobAcceptedSchema,
  jobKey,
  respondAfterWait,
  waitQuerySchema,
  type AppEnv,
  type GatewayContext,
} from '@caliber/platform';
import { createRoute, z } from '@hono/zod-openapi';
import { and, desc, eq, sql } from 'drizzle-orm';
import type { MiddlewareHandler } from 'hono';
import { referenceCalibrationPath } from './calibration-files.ts';
import type { HeadCalibrationConfig } from './config.ts';
import { importCalibrationBundle, InvalidBundleError, type BundleEntry } from './import-bundle.ts';
import { calibrateHeadsJob } from './jobs.ts';
import { ingestLibraryFiles, ingestRequestSchema, libraryFileSchema, loadLibraryFiles } from './library.ts';
import { enqueueRetagBacklog, retagStatus, retagStatusSchema } from './retag.ts';
import { calibrationReferences, calibrationRuns } from './schema.ts';

const json = jsonContent;
const errors = standardErrors;
const disabled = { 403: json(errorSchema, 'Calibration API disabled (CALIBRATE_HEADS=false)') } as const;

const ingestRoute = createRoute({
  method: 'post',
  path: '/library/files',
  tags: ['library'],
  summary: "Upsert files and their heads' raw scores; each score is calibrated with its head's reference",
  security: [{ bearer: [] }],
  request: { body: { required: true, content: { 'application/json': { schema: ingestRequestSchema } } } },
  responses: {
    200: json(
      z.object({
        files: z.number().int(),
        tags: z.number().int(),
        recalibration_queued: z.literal(true).optional().openapi({ description: 'NEW_FILES_RECALIBRATE was reached: a calibration run is queued' }),
      }),
      'Files and tag rows written',
    ),
    ...errors,
  },
});

const listQuery = z.object({
  path: z.string().optional().openapi({ description: 'Exact file path: answers with that one file' }),
  limit: z.coerce.number().int().min(1).max(1000).optional().default(100),
  cursor: z.coerce.number().int().min(0).optional().default(0),
});
const listRoute = createRoute({
  method: 'get',
  path: '/library/files',
  tags: ['library'],
  summary: 'The file at ?path=, or a page of files (by id) with their tags',
  security: [{ bearer: [] }],
  request: { query: listQuery },
  responses: {
    200: json(
      z.union([libraryFileSchema, z.object({ items: z.array(libraryFileSchema), next_cursor: z.number().int().nullable() })]),
      'One file (with ?path=) or a page of files',
    ),
    404: json(errorSchema, 'No file at that path'),
    ...errors,
  },
});

const fileRoute = createRoute({
  method: 'get',
  path: '/library/files/{id}',
  tags: ['library'],
  summary: 'A file with its tags',
  security: [{ bearer: [] }],
  request: { params: z.object({ id: z.coerce.number().int().positive() }) },
  responses: { 200: json(libraryFileSchema, 'The file'), 404: json(errorSchema, 'Unknown id'), ...errors },
});

const runRoute = createRoute({
  method: 'post',
  path: '/admin/calibration/run',
  tags: ['calibration'],
  summary: 'Start a calibration run over the whole library',
  description:
    'With ?wait=true the answer comes once the run and its reference updates are done, in the seed shape {"status":"ok","calibration":{…}}.',
  security: [{ bearer: [] }],
  request: { query: waitQuerySchema },
  responses: {
    200: json(z.object({ status: z.literal('ok'), calibration: z.any() }), 'The finished run (with ?wait=true)'),
    202: json(jobAcceptedSchema, 'Run queued'),
    ...disabled,
    422: json(errorSchema, 'The run could not be made (e.g. too few scores)'),
    500: json(errorSchema, 'The run failed after all its retries'),
    ...errors,
  },
});

const runSchema = z
  .object({
    id: z.number().int(),
    model_name: z.string(),
    head_name: z.string(),
    version: z.number().int(),
    file_count: z.number().int(),
    timestamp: z.number().int().openapi({ description: 'Unix ms' }),
    p5: z.number(),
    p95: z.number(),
    range: z.number(),
    reference_version: z.number().int().nullable(),
    apd_p5: z.number().nullable(),
    apd_p95: z.number().nullable(),
    srd: z.number().nullable(),
    jsd: z.number().nullable(),
    median_drift: z.number().nullable(),
    iqr_drift: z.number().nullable(),
    is_stable: z.boolean(),
    failed_metrics: z.array(z.string()),
  })
  .openapi('CalibrationRun');

const historyRoute = createRoute({
  method: 'get',
  path: '/admin/calibration/history',
  tags: ['calibration'],
  summary: 'Calibration runs, newest first',
  security: [{ bearer: [] }],
  request: {
    query: z.object({
      model: z.string().optional(),
      head: z.string().optional(),
      limit: z.coerce.number().int().min(1).max(1000).optional().default(50),
    }),
  },
  responses: {
    200: json(z.object({ status: z.literal('ok'), count: z.number().int(), runs: z.array(runSchema) }), 'Runs'),
    ...disabled,
    ...errors,
  },
});

// Files travel in the request; reading a directory on the server is the CLI's job
// (`caliber calibration import <dir>`), so this route never touches the host's file system.
const importBodySchema = z
  .object({
    files: z
      .record(z.string(), z.unknown())
      .openapi({ description: 'Bundle files by path, e.g. {"effnet/heads/mood_happy-calibration.json": {…}}' }),
  })
  .strict()
  .openapi('CalibrationImport');

const importedSchema = z.object({
  status: z.literal('ok'),
  imported: z.array(z.object({ model_name: z.string(), head_name: z.string(), version: z.number().int(), path: z.string() })),
});

const importRoute = createRoute({
  method: 'post',
  path: '/admin/calibration/import',
  tags: ['calibration'],
  summary: 'Install a pre-made calibration bundle (<model>/heads/<head>-calibration.json); all files are validated first',
  security: [{ bearer: [] }],
  request: { body: { required: true, content: { 'application/json': { schema: importBodySchema } } } },
  responses: { 200: json(importedSchema, 'Installed'), ...errors },
});

const referencesRoute = createRoute({
  method: 'get',
  path: '/admin/calibration/references',
  tags: ['calibration'],
  summary: 'The reference calibration each head tags with',
  security: [{ bearer: [] }],
  responses: {
    200: json(
      z.object({
        items: z.array(
          z.object({
            model_name: z.string(),
            head_name: z.string(),
            version: z.number().int(),
            source: z.enum(['run', 'import']),
            updated_at: z.string(),
            path: z.string(),
            labels: z.record(z.string(), z.object({ p5: z.number(), p95: z.number(), method: z.string() })),
          }),
        ),
      }),
      'References',
    ),
    ...errors,
  },
});

const retagAllRoute = createRoute({
  method: 'post',
  path: '/admin/calibration/retag-all',
  tags: ['calibration'],
  summary: "Queue every tagged file for re-tagging with its heads' reference calibrations",
  description:
    'Answers once the jobs are queued. A file whose job for the current references is still pending is not queued again (`already_queued`). Follow progress at GET /admin/calibration/retag-status or in Bull Board.',
  security: [{ bearer: [] }],
  responses: {
    200: json(
      z.object({ enqueued: z.number().int(), already_queued: z.number().int(), jobs: z.number().int(), message: z.string() }).openapi('RetagAllResult'),
      'Jobs queued',
    ),
    ...disabled,
    503: json(errorSchema, 'Redis is unavailable'),
    401: errors[401],
  },
});

const retagStatusRoute = createRoute({
  method: 'get',
  path: '/admin/calibration/retag-status',
  tags: ['calibration'],
  summary: 'Progress of the re-tagging backlog: total, done, failed, rate and estimated time left',
  security: [{ bearer: [] }],
  responses: { 200: json(retagStatusSchema, 'Progress'), ...disabled, 503: json(errorSchema, 'Redis is unavailable'), 401: errors[401] },
});

export function headCalibrationRoutes(ctx: GatewayContext, config: HeadCalibrationConfig) {
  const app = createRouter();

  const requireDevMode: MiddlewareHandler<AppEnv> = async (c, next) => {
    if (!config.CALIBRATE_HEADS) return c.json(errorBody('calibration_disabled', 'Calibration API endpoints are disabled'), 403);
    return next();
  };
  app.use('/admin/calibration/run', requireDevMode);
  app.use('/admin/calibration/history', requireDevMode);
  app.use('/admin/calibration/retag-all', requireDevMode);
  app.use('/admin/calibration/retag-status', requireDevMode);

  app.openapi(ingestRoute, async (c) => c.json(await ingestLibraryFiles(ctx.db, c.req.valid('json'), config), 200));

  app.openapi(listRoute, async (c) => {
    const { path, limit, cursor } = c.req.valid('query');
    if (path !== undefined) {
      const [file] = await loadLibraryFiles(ctx.db, { path });
      if (!file) throw new ApiError(404, 'not_found', `No library file at ${JSON.stringify(path)}`);
      return c.json(file, 200);
    }
    const items = await loadLibraryFiles(ctx.db, { afterId: cursor, limit });
    const last = items.at(-1);
    return c.json({ items, next_cursor: items.length === limit && last ? last.id : null }, 200);
  });

  app.openapi(fileRoute, async (c) => {
    const { id } = c.req.valid('param');
    const [file] = await loadLibraryFiles(ctx.db, { id });
    if (!file) throw new ApiError(404, 'not_found', `No library file ${id}`);
    return c.json(file, 200);
  });

  app.openapi(runRoute, async (c) => {
    const { wait, timeout } = c.req.valid('query');
    const job = await ctx.queues.enqueue(calibrateHeadsJob, {});
    if (!wait) return c.json(jobAccepted(job), 202);
    const deadline = Date.now() + timeout * 1000;
    const outcome = await ctx.waiter.waitForJob(job, deadline - Date.now());
    if (outcome.state !== 'completed') return respondAfterWait(c, job, outcome);
    // The run's answer is only given once its reference updates are installed too.
    const updates = await ctx.waiter.waitForDownstream(jobKey(job), deadline);
    return respondAfterWait(c, job, updates.state === 'completed' ? outcome : updates, outcome.result);
  });

  app.openapi(historyRoute, async (c) => {
    const { model, head, limit } = c.req.valid('query');
    const r = calibrationRuns;
    const runs = await ctx.db
      .select({
        id: r.id,
        model_name: r.modelName,
        head_name: r.headName,
        version: r.version,
        file_count: r.fileCount,
        timestamp: r.timestamp,
        p5: r.p5,
        p95: r.p95,
        range: r.range,
        reference_version: r.referenceVersion,
        apd_p5: r.apdP5,
        apd_p95: r.apdP95,
        srd: r.srd,
        jsd: r.jsd,
        median_drift: r.medianDrift,
        iqr_drift: r.iqrDrift,
        is_stable: r.isStable,
        failed_metrics: sql<string[]>`coalesce(${r.details} -> 'failed_metrics', '[]'::jsonb)`,
      })
      .from(r)
      .where(and(model !== undefined ? eq(r.modelName, model) : undefined, head !== undefined ? eq(r.headName, head) : undefined))
      .orderBy(desc(r.version), r.modelName, r.headName)
      .limit(limit);
    // The seed's history gives Unix ms.
    const items = runs.map((run) => ({ ...run, timestamp: run.timestamp.getTime() }));
    return c.json({ status: 'ok' as const, count: items.length, runs: items }, 200);
  });

  app.openapi(retagAllRoute, async (c) => {
    const result = await enqueueRetagBacklog(ctx, config);
    const message = `Enqueued ${result.enqueued} tagged files for re-tagging${result.already_queued > 0 ? ` (${result.already_queued} already queued)` : ''}`;
    return c.json({ ...result, message }, 200);
  });

  app.openapi(retagStatusRoute, async (c) => c.json(await retagStatus(ctx), 200));

  app.openapi(importRoute, async (c) => {
    const entries: BundleEntry[] = Object.entries(c.req.valid('json').files).map(([file, content]) => ({ file, content }));
    try {
      return c.json({ status: 'ok' as const, imported: await importCalibrationBundle(ctx.db, config.MODELS_DIR, entries) }, 200);
    } catch (err) {
      if (err instanceof InvalidBundleError) throw new ApiError(400, 'invalid_bundle', err.message, { files: err.problems });
      throw err;
    }
  });

  app.openapi(referencesRoute, async (c) => {
    const rows = await ctx.db.select().from(calibrationReferences).orderBy(calibrationReferences.modelName, calibrationReferences.headName);
    const items = rows.map((r) => ({
      model_name: r.modelName,
      head_name: r.headName,
      version: r.version,
      source: r.source,
      updated_at: r.updatedAt.toISOString(),
      path: referenceCalibrationPath(config.MODELS_DIR, r.modelName, r.headName),
      labels: r.labels,
    }));
    return c.json({ items }, 200);
  });

  return app;
}
