import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { HonoAdapter } from '@bull-board/hono';
import { createRoute, z } from '@hono/zod-openapi';
import { serveStatic } from '@hono/node-server/serve-static';
import { sql } from 'drizzle-orm';
import type { GatewayContext } from './context.ts';
import { ApiError, createRouter, errorSchema } from './http.ts';
import { assertQueueName, describeJob, jobAccepted, jobAcceptedSchema } from './job-responses.ts';
import { pingRedis } from './redis.ts';
import { describeSchedules, runScheduleNow, type ScheduleDefinition } from './schedules.ts';

const jobSchema = z
  .object({
    id: z.string(),
    queue: z.string(),
    name: z.string(),
    state: z.string(),
    progress: z.any(),
    data: z.any(),
    result: z.any(),
    failedReason: z.string().nullable(),
    attemptsMade: z.number(),
    timestamps: z.object({ created: z.string().nullable(), processed: z.string().nullable(), finished: z.string().nullable() }),
  })
  .openapi('Job');

const healthRoute = createRoute({
  method: 'get',
  path: '/healthz',
  tags: ['platform'],
  summary: 'Liveness: the process is up',
  responses: { 200: { description: 'Up', content: { 'application/json': { schema: z.object({ status: z.literal('ok') }) } } } },
});

const readySchema = z.object({
  status: z.enum(['ok', 'unavailable']),
  postgres: z.enum(['ok', 'down']),
  redis: z.enum(['ok', 'down']),
});
const readyRoute = createRoute({
  method: 'get',
  path: '/readyz',
  tags: ['platform'],
  summary: 'Readiness: Postgres and Redis both answer',
  responses: {
    200: { description: 'Ready', content: { 'application/json': { schema: readySchema } } },
    503: { description: 'A dependency is down', content: { 'application/json': { schema: readySchema } } },
  },
});

const metricsRoute = createRoute({
  method: 'get',
  path: '/metrics',
  tags: ['platform'],
  summary: 'Prometheus metrics: queue depths, job durations, HTTP latencies',
  security: [{ bearer: [] }],
  responses: { 200: { description: 'Prometheus text format', content: { 'text/plain': { schema: z.string() } } } },
});

const jobRoute = createRoute({
  method: 'get',
  path: '/admin/jobs/{queue}/{id}',
  tags: ['platform'],
  summary: 'A job: state, progress, payload, result',
  security: [{ bearer: [] }],
  request: { params: z.object({ queue: z.string(), id: z.string() }) },
  responses: {
    200: { description: 'The job', content: { 'application/json': { schema: jobSchema } } },
    404: { description: 'Unknown queue or job', content: { 'application/json': { schema: errorSchema } } },
  },
});

const scheduleSchema = z
  .object({
    id: z.string(),
    description: z.string(),
    queue: z.string(),
    job: z.string(),
    pattern: z.string().nullable(),
    tz: z.string(),
    enabled: z.boolean(),
    registered: z.boolean(),
    next_run_at: z.string().nullable(),
  })
  .openapi('Schedule');

const schedulesRoute = createRoute({
  method: 'get',
  path: '/admin/schedules',
  tags: ['platform'],
  summary: 'Recurring jobs with their next run time',
  security: [{ bearer: [] }],
  responses: {
    200: { description: 'Schedules', content: { 'application/json': { schema: z.object({ items: z.array(scheduleSchema) }) } } },
  },
});

const runScheduleRoute = createRoute({
  method: 'post',
  path: '/admin/schedules/{id}/run',
  tags: ['platform'],
  summary: "Run a schedule's job now",
  security: [{ bearer: [] }],
  request: { params: z.object({ id: z.string() }) },
  responses: {
    202: { description: 'Started', content: { 'application/json': { schema: jobAcceptedSchema } } },
    404: { description: 'Unknown schedule', content: { 'application/json': { schema: errorSchema } } },
  },
});

export function platformRoutes(
  ctx: GatewayContext,
  opts: { schedules: ScheduleDefinition[]; metrics: { render(): Promise<string>; contentType: string } },
) {
  const app = createRouter();

  app.openapi(healthRoute, (c) => c.json({ status: 'ok' as const }, 200));

  app.openapi(readyRoute, async (c) => {
    const [postgres, redis] = await Promise.all([
      ctx.db.execute(sql`select 1`).then(
        () => 'ok' as const,
        () => 'down' as const,
      ),
      pingRedis(ctx.redis).then((up) => (up ? ('ok' as const) : ('down' as const))),
    ]);
    const ready = postgres === 'ok' && redis === 'ok';
    return c.json({ status: ready ? ('ok' as const) : ('unavailable' as const), postgres, redis }, ready ? 200 : 503);
  });

  app.openapi(metricsRoute, async (c) => c.text(await opts.metrics.render(), 200, { 'content-type': opts.metrics.contentType }));

  app.openapi(jobRoute, async (c) => {
    const { queue, id } = c.req.valid('param');
    const q = ctx.queues.connected(assertQueueName(queue));
    const state = await q.getJobState(id);
    const job = await q.getJob(id);
    if (!job || state === 'unknown') throw new ApiError(404, 'not_found', `No job ${id} in queue ${queue}`);
    return c.json(describeJob(job, state), 200);
  });

  app.openapi(schedulesRoute, async (c) => c.json({ items: await describeSchedules(ctx.queues, opts.schedules) }, 200));

  app.openapi(runScheduleRoute, async (c) => {
    const schedule = opts.schedules.find((s) => s.id === c.req.valid('param').id);
    if (!schedule) throw new ApiError(404, 'not_found', `No schedule "${c.req.valid('param').id}"`);
    return c.json(jobAccepted(await runScheduleNow(ctx.queues, schedule)), 202);
  });

  return app;
}

/** Bull Board at `basePath`, showing every queue. Mount it behind the admin auth middleware. */
export function bullBoard(ctx: GatewayContext, basePath = '/admin/queues') {
  const serverAdapter = new HonoAdapter(serveStatic).setBasePath(basePath);
  createBullBoard({
    queues: ctx.queues.all().map((q) => new BullMQAdapter(q)),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Caliber queues' } },
  });
  return serverAdapter.registerPlugin();
}
