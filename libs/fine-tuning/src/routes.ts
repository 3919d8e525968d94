import { ApiError, createRouter, errorSchema, jsonContent, standardErrors, waitQuerySchema, type GatewayContext } from '@caliber/platform';
import { createRoute, z } from '@hono/zod-openapi';
import { and, asc, desc, eq, gt, sql, type SQL } from 'drizzle-orm';
import { baseModelFor } from './auto.ts';
import { PROVIDER_NAMES, providerProblem, type FineTuningConfig, type ProviderName } from './config.ts';
import { accountCredits, grantCredits, ledgerPage } from './credits.ts';
import { computeFineTuneStats, decideFineTune } from './criteria.ts';
import { addEvents, describeFineTuneJob, endJobInTx, isTerminal, loadJob, startJobInTx, type FineTuneJobRow } from './jobs.ts';
import { fineTuningJobEvents, fineTuningJobs, FINE_TUNE_STATUSES } from './schema.ts';

const json = jsonContent;
const PREFIX = '/api/analytics/model-improvement/fine-tuning';

const noNul = (s: string) => !s.includes('\u0000');
const modelId = z.string().min(1).max(200).refine(noNul, 'must not contain NUL characters');
const accountId = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9._:@-]+$/, 'letters, digits and . _ : @ - only')
  .openapi({ description: 'A credit account', example: 'acme' });

const jobSchema = z
  .object({
    id: z.string().uuid(),
    model_id: z.string(),
    account_id: z.string(),
    status: z.enum(FINE_TUNE_STATUSES),
    provider: z.string(),
    base_model: z.string(),
    trigger: z.enum(['api', 'auto']),
    analysis_run_id: z.number().int().nullable(),
    provider_job_id: z.string().nullable(),
    fine_tuned_model: z.string().nullable(),
    dataset_path: z.string().nullable(),
    dataset_rows: z.number().int().nullable().openapi({ description: 'Training examples' }),
    validation_rows: z.number().int().nullable(),
    dataset_bytes: z.number().int().nullable(),
    credits_reserved: z.number().int(),
    credits: z.enum(['none', 'reserved', 'charged', 'refunded']),
    error: z.string().nullable(),
    runs: z.number().int().openapi({ description: 'Times the training was started (a command restarts after losing its worker)' }),
    queue_job: z.object({ jobId: z.string(), queue: z.string(), status: z.string() }).nullable(),
    cancel_requested_at: z.string().nullable(),
    created_at: z.string(),
    updated_at: z.string(),
    started_at: z.string().nullable(),
    prepared_at: z.string().nullable(),
    submitted_at: z.string().nullable(),
    finished_at: z.string().nullable(),
  })
  .openapi('FineTuningJob');

const jobBody = z.object({ job: jobSchema });
const jobParams = z.object({ job_id: z.uuid({ error: 'must be a job id (UUID)' }).openapi({ param: { name: 'job_id', in: 'path' } }) });
const notFound = json(errorSchema, 'No such job');

const checkRoute = createRoute({
  method: 'post',
  path: `${PREFIX}/check`,
  tags: ['fine-tuning'],
  summary: 'Whether a model should be fine-tuned now, by the trigger policy, with the numbers behind it',
  description:
    'All must hold: FINE_TUNE_MIN_CORRECTIONS corrected problematic responses since its last successful job; a dataset of FINE_TUNE_MIN_EXAMPLES; an error rate (negative share of feedback over FINE_TUNE_WINDOW_DAYS) of FINE_TUNE_MIN_ERROR_RATE; no job running and FINE_TUNE_COOLDOWN_HOURS since its last job that did not fail; FINE_TUNE_CREDIT_COST credits in the account (account_id, default FINE_TUNE_ACCOUNT).',
  security: [{ bearer: [] }],
  request: { body: { required: true, content: { 'application/json': { schema: z.object({ model_id: modelId, account_id: accountId.optional() }).strict() } } } },
  responses: {
    200: json(
      z.object({
        should_fine_tune: z.boolean(),
        reasons: z.array(z.string()),
        criteria: z.array(z.object({ name: z.string(), passed: z.boolean(), message: z.string() })),
        stats: z.object({}).passthrough(),
      }),
      'The decision',
    ),
    ...standardErrors,
  },
});

const createJobRoute = createRoute({
  method: 'post',
  path: `${PREFIX}/jobs`,
  tags: ['fine-tuning'],
  summary: 'Create a fine-tuning job (pending until started)',
  security: [{ bearer: [] }],
  request: {
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .object({
              model_id: modelId.openapi({ description: 'The served model whose corrected responses make the dataset' }),
              account_id: accountId,
              provider: z.enum(PROVIDER_NAMES).optional().openapi({ description: 'Default FINE_TUNE_PROVIDER' }),
              base_model: z.string().min(1).max(200).refine(noNul, 'must not contain NUL characters').optional().openapi({ description: 'What the provider fine-tunes; default FINE_TUNE_BASE_MODELS[model_id], else model_id' }),
            })
            .strict(),
        },
      },
    },
  },
  responses: {
    201: json(jobBody, 'Created'),
    404: json(errorSchema, 'No such credit account'),
    ...standardErrors,
  },
});

const listJobsRoute = createRoute({
  method: 'get',
  path: `${PREFIX}/jobs`,
  tags: ['fine-tuning'],
  summary: 'Fine-tuning jobs, newest first',
  security: [{ bearer: [] }],
  request: {
    query: z.object({
      model_id: modelId.optional(),
      account_id: accountId.optional(),
      status: z.enum(FINE_TUNE_STATUSES).optional(),
      limit: z.coerce.number().int().min(1).max(200).optional().default(50),
      cursor: z.uuid({ error: 'not a cursor this route gave' }).optional().openapi({ description: 'next_cursor of the previous page' }),
    }),
  },
  responses: { 200: json(z.object({ items: z.array(jobSchema), next_cursor: z.string().nullable() }), 'A page of jobs'), ...standardErrors },
});

const getJobRoute = createRoute({
  method: 'get',
  path: `${PREFIX}/jobs/{job_id}`,
  tags: ['fine-tuning'],
  summary: 'A fine-tuning job',
  security: [{ bearer: [] }],
  request: { params: jobParams },
  responses: { 200: json(jobBody, 'The job'), 404: notFound, ...standardErrors },
});

const startedSchema = jobBody.extend({ jobId: z.string(), queue: z.string(), status: z.string(), timed_out: z.boolean().optional() });

const startJobRoute = createRoute({
  method: 'post',
  path: `${PREFIX}/jobs/{job_id}/start`,
  tags: ['fine-tuning'],
  summary: 'Start a job: reserve FINE_TUNE_CREDIT_COST credits and queue it (202, or ?wait=true → 200 once it ended)',
  description: 'Starting a job that is already started changes nothing and answers 202 again.',
  security: [{ bearer: [] }],
  request: { params: jobParams, query: waitQuerySchema },
  responses: {
    200: json(jobBody, 'The job once it ended (with ?wait=true)'),
    202: json(startedSchema, 'Queued; `status` is its queue job'),
    402: json(errorSchema, 'insufficient_credits: the account cannot pay for the job; nothing was written'),
    404: notFound,
    409: json(errorSchema, 'The job has ended or is being cancelled'),
    ...standardErrors,
  },
});

const cancelJobRoute = createRoute({
  method: 'post',
  path: `${PREFIX}/jobs/{job_id}/cancel`,
  tags: ['fine-tuning'],
  summary: 'Cancel a job; its reserved credits are refunded',
  description:
    'A job not yet picked up by a worker is cancelled at once. Otherwise the cancel is recorded (`cancel_requested_at`) and its worker stops it (at the provider, or the training command) within moments; ?wait=true answers once it has.',
  security: [{ bearer: [] }],
  request: { params: jobParams, query: waitQuerySchema },
  responses: {
    200: json(jobBody.extend({ timed_out: z.boolean().optional() }), 'Cancelled, or being cancelled (timed_out: ?wait=true ran out first)'),
    404: notFound,
    409: json(errorSchema, 'The job has already succeeded or failed'),
    ...standardErrors,
  },
});

const eventsRoute = createRoute({
  method: 'get',
  path: `${PREFIX}/jobs/{job_id}/events`,
  tags: ['fine-tuning'],
  summary: "A job's log: status changes, the provider's events, a training command's output",
  security: [{ bearer: [] }],
  request: {
    params: jobParams,
    query: z.object({
      after: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional().openapi({ description: 'next_cursor of the previous page' }),
      limit: z.coerce.number().int().min(1).max(1000).optional().default(200),
    }),
  },
  responses: {
    200: json(
      z.object({ items: z.array(z.object({ id: z.number().int(), at: z.string(), kind: z.string(), message: z.string() })), next_cursor: z.string().nullable() }),
      'Oldest first',
    ),
    404: notFound,
    ...standardErrors,
  },
});

const creditsSchema = z.object({ account_id: z.string(), balance: z.number().int(), reserved: z.number().int() });

const grantRoute = createRoute({
  method: 'post',
  path: '/admin/credits/{account_id}/grant',
  tags: ['credits'],
  summary: 'Grant credits to an account (created on its first grant)',
  security: [{ bearer: [] }],
  request: {
    params: z.object({ account_id: accountId }),
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .object({
              amount: z.number().int().min(1).max(1_000_000_000),
              note: z.string().max(500).refine(noNul, 'must not contain NUL characters').optional(),
              idempotency_key: z.string().min(1).max(200).optional().openapi({ description: 'Sent again with the same key, the grant is stored once' }),
            })
            .strict(),
        },
      },
    },
  },
  responses: {
    200: json(creditsSchema.extend({ duplicate: z.boolean() }), 'Stored earlier under this idempotency key; nothing added'),
    201: json(creditsSchema.extend({ duplicate: z.boolean() }), 'Granted'),
    409: json(errorSchema, 'The idempotency key was used for a different grant'),
    ...standardErrors,
  },
});

const ledgerEntrySchema = z.object({
  id: z.number().int(),
  kind: z.enum(['grant', 'reserve', 'settle', 'refund']),
  amount: z.number().int(),
  job_id: z.string().nullable(),
  note: z.string().nullable(),
  created_at: z.string(),
});

const creditsRoute = createRoute({
  method: 'get',
  path: '/admin/credits/{account_id}',
  tags: ['credits'],
  summary: 'Balance (the sum of the ledger), credits held by running jobs, and the ledger, newest first',
  security: [{ bearer: [] }],
  request: {
    params: z.object({ account_id: accountId }),
    query: z.object({
      limit: z.coerce.number().int().min(1).max(500).optional().default(50),
      cursor: z.string().regex(/^\d{1,15}$/, 'not a cursor this route gave').optional(),
    }),
  },
  responses: {
    200: json(creditsSchema.extend({ ledger: z.array(ledgerEntrySchema), next_cursor: z.string().nullable() }), 'The account'),
    404: json(errorSchema, 'No such account'),
    ...standardErrors,
  },
});

function checkProvider(config: FineTuningConfig, provider: string): void {
  const problem = providerProblem(config, provider as ProviderName);
  if (problem) throw new ApiError(400, 'invalid_request', `Cannot use this provider here: ${problem}`);
}

function jobNotFound(id: string): never {
  throw new ApiError(404, 'not_found', `No fine-tuning job ${id}`);
}

export function fineTuningRoutes(ctx: GatewayContext, config: FineTuningConfig) {
  const app = createRouter();

  /** With ?wait=true: waits for the job's current queue job to end, then answers the job as it is. */
  async function waitForEnd(row: FineTuneJobRow, timeoutSeconds: number): Promise<{ row: FineTuneJobRow; ended: boolean }> {
    if (!isTerminal(row.status) && row.queueJobId) {
      await ctx.waiter.waitForJobById('fine-tune', row.queueJobId, Date.now() + timeoutSeconds * 1000);
    }
    const now = (await loadJob(ctx.db, row.id)) ?? row;
    return { row: now, ended: isTerminal(now.status) };
  }

  app.openapi(checkRoute, async (c) => {
    const body = c.req.valid('json');
    const account = body.account_id ?? config.FINE_TUNE_ACCOUNT ?? null;
    const now = new Date();
    const stats = (await computeFineTuneStats(ctx.db, config, [body.model_id], account, now)).get(body.model_id)!;
    return c.json({ ...decideFineTune(stats, config, now), stats }, 200);
  });

  app.openapi(createJobRoute, async (c) => {
    const body = c.req.valid('json');
    const provider = body.provider ?? config.FINE_TUNE_PROVIDER;
    checkProvider(config, provider);
    const row = await ctx.db.transaction(async (tx) => {
      const account = await tx.execute(sql`SELECT 1 FROM credit_accounts WHERE id = ${body.account_id}`);
      if (account.rows.length === 0) throw new ApiError(404, 'not_found', `No credit account "${body.account_id}"; grant it credits first (POST /admin/credits/${body.account_id}/grant)`);
      const [created] = await tx
        .insert(fineTuningJobs)
        .values({ modelId: body.model_id, accountId: body.account_id, provider, baseModel: body.base_model ?? baseModelFor(config, body.model_id) })
        .returning();
      await addEvents(tx, created!.id, [{ kind: 'status', message: `pending: created for ${created!.modelId} (base model ${created!.baseModel}, provider ${provider})` }]);
      return created!;
    });
    return c.json({ job: describeFineTuneJob(row) }, 201);
  });

  app.openapi(listJobsRoute, async (c) => {
    const q = c.req.valid('query');
    const filters: SQL[] = [];
    if (q.model_id) filters.push(eq(fineTuningJobs.modelId, q.model_id));
    if (q.account_id) filters.push(eq(fineTuningJobs.accountId, q.account_id));
    if (q.status) filters.push(eq(fineTuningJobs.status, q.status));
    if (q.cursor) {
      if (!(await loadJob(ctx.db, q.cursor))) throw new ApiError(400, 'invalid_request', 'cursor: not a cursor this route gave');
      // Compared in Postgres, at the timestamp's full (microsecond) precision.
      filters.push(sql`(${fineTuningJobs.createdAt}, ${fineTuningJobs.id}) < (SELECT created_at, id FROM fine_tuning_jobs WHERE id = ${q.cursor})`);
    }
    const rows = await ctx.db
      .select()
      .from(fineTuningJobs)
      .where(and(...filters))
      .orderBy(desc(fineTuningJobs.createdAt), desc(fineTuningJobs.id))
      .limit(q.limit);
    return c.json({ items: rows.map(describeFineTuneJob), next_cursor: rows.length === q.limit ? rows.at(-1)!.id : null }, 200);
  });

  app.openapi(getJobRoute, async (c) => {
    const { job_id } = c.req.valid('param');
    const row = (await loadJob(ctx.db, job_id)) ?? jobNotFound(job_id);
    return c.json({ job: describeFineTuneJob(row) }, 200);
  });

  app.openapi(startJobRoute, async (c) => {
    const { job_id } = c.req.valid('param');
    const query = c.req.valid('query');
    const row = await ctx.db.transaction(async (tx) => {
      const job = (await loadJob(tx, job_id, { lock: true })) ?? jobNotFound(job_id);
      if (isTerminal(job.status)) throw new ApiError(409, 'conflict', `The job has ${job.status === 'cancelled' ? 'been cancelled' : job.status}; create a new one`);
      if (job.cancelRequestedAt) throw new ApiError(409, 'conflict', 'The job is being cancelled');
      if (!job.startedAt) checkProvider(config, job.provider);
      return (await startJobInTx(tx, job, config.FINE_TUNE_CREDIT_COST)).row;
    });
    if (query.wait) {
      const { row: now, ended } = await waitForEnd(row, query.timeout);
      if (ended) return c.json({ job: describeFineTuneJob(now) }, 200);
    }
    const queueJobId = row.queueJobId ?? '';
    return c.json(
      { job: describeFineTuneJob(row), jobId: queueJobId, queue: 'fine-tune', status: `/admin/jobs/fine-tune/${queueJobId}`, ...(query.wait ? { timed_out: true } : {}) },
      202,
    );
  });

  app.openapi(cancelJobRoute, async (c) => {
    const { job_id } = c.req.valid('param');
    const query = c.req.valid('query');
    const row = await ctx.db.transaction(async (tx) => {
      const job = (await loadJob(tx, job_id, { lock: true })) ?? jobNotFound(job_id);
      if (job.status === 'cancelled') return job;
      if (isTerminal(job.status)) throw new ApiError(409, 'conflict', `The job has already ${job.status}`);
      // Nothing has happened at a worker yet: cancelled (and refunded) here, at once.
      if (job.status === 'pending') return (await endJobInTx(tx, job.id, 'cancelled', { message: 'cancelled before a worker picked it up' }, ['pending'])).row!;
      if (job.cancelRequestedAt) return job;
      const [requested] = await tx.update(fineTuningJobs).set({ cancelRequestedAt: sql`now()`, updatedAt: sql`now()` }).where(eq(fineTuningJobs.id, job.id)).returning();
      await addEvents(tx, job.id, [{ kind: 'info', message: 'cancel requested' }]);
      return requested!;
    });
    if (!isTerminal(row.status) && row.queueJobId) {
      // A job waiting for its next poll is looked at now rather than in FINE_TUNE_POLL_MS.
      try {
        const queued = await ctx.queues.connected('fine-tune').getJob(row.queueJobId);
        if (queued && (await queued.isDelayed())) await queued.promote();
      } catch (err) {
        c.get('log').warn({ err: (err as Error).message }, 'could not hurry the cancelled job; its worker sees the cancel at its next poll');
      }
    }
    if (query.wait && !isTerminal(row.status)) {
      const waited = await waitForEnd(row, query.timeout);
      return c.json({ job: describeFineTuneJob(waited.row), ...(waited.ended ? {} : { timed_out: true }) }, 200);
    }
    return c.json({ job: describeFineTuneJob(row) }, 200);
  });

  app.openapi(eventsRoute, async (c) => {
    const { job_id } = c.req.valid('param');
    const q = c.req.valid('query');
    (await loadJob(ctx.db, job_id)) ?? jobNotFound(job_id);
    const rows = await ctx.db
      .select()
      .from(fineTuningJobEvents)
      .where(and(eq(fineTuningJobEvents.jobId, job_id), q.after !== undefined ? gt(fineTuningJobEvents.id, q.after) : undefined))
      .orderBy(asc(fineTuningJobEvents.id))
      .limit(q.limit);
    return c.json(
      {
        items: rows.map((r) => ({ id: r.id, at: r.at.toISOString(), kind: r.kind, message: r.message })),
        next_cursor: rows.length === q.limit ? String(rows.at(-1)!.id) : null,
      },
      200,
    );
  });

  app.openapi(grantRoute, async (c) => {
    const { account_id } = c.req.valid('param');
    const body = c.req.valid('json');
    const granted = await grantCredits(ctx.db, { accountId: account_id, amount: body.amount, note: body.note, idempotencyKey: body.idempotency_key });
    return c.json({ account_id: granted.account_id, balance: granted.balance, reserved: granted.reserved, duplicate: granted.duplicate }, granted.duplicate ? 200 : 201);
  });

  app.openapi(creditsRoute, async (c) => {
    const { account_id } = c.req.valid('param');
    const q = c.req.valid('query');
    const credits = (await accountCredits(ctx.db, [account_id])).get(account_id);
    if (!credits) throw new ApiError(404, 'not_found', `No credit account "${account_id}"`);
    const page = await ledgerPage(ctx.db, account_id, { limit: q.limit, before: q.cursor === undefined ? undefined : Number(q.cursor) });
    return c.json({ ...credits, ledger: page.entries, next_cursor: page.next_cursor }, 200);
  });

  return app;
}
