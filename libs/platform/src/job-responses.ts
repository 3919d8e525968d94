import { z } from '@hono/zod-openapi';
import { QueueEvents, type Job } from 'bullmq';
import type { Context } from 'hono';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { PlatformConfig } from './config.ts';
import { ApiError, errorBody, errorSchema, jsonContent, type AppEnv } from './http.ts';
import { outboxJobId } from './outbox.ts';
import { isQueueName, queuePrefix, type JobDefinition, type QueueName, type Queues } from './queues.ts';
import { delay } from './util.ts';

export const waitQuerySchema = z.object({
  wait: z.stringbool().optional().default(false).openapi({ description: 'Wait for the job (and the work it starts) to finish' }),
  timeout: z.coerce.number().positive().max(3600).optional().default(60).openapi({ description: 'Seconds to wait, with wait=true' }),
});

export const jobAcceptedSchema = z
  .object({
    jobId: z.string(),
    queue: z.string(),
    status: z.string().openapi({ example: '/admin/jobs/calibrate/42' }),
  })
  .openapi('JobAccepted');

export function jobStatusPath(queue: string, id: string): string {
  return `/admin/jobs/${queue}/${encodeURIComponent(id)}`;
}

export function jobAccepted(job: Job) {
  const id = job.id ?? '';
  return { jobId: id, queue: job.queueName, status: jobStatusPath(job.queueName, id) };
}

const iso = (ms: number | undefined | null) => (ms ? new Date(ms).toISOString() : null);

/**
 * A job as the job route shows it. `state` must be read before `job` was fetched: the other way
 * round a job finishing in between shows as completed without its result.
 */
export function describeJob(job: Job, state: string) {
  return {
    id: job.id ?? '',
    queue: job.queueName,
    name: job.name,
    state,
    progress: job.progress,
    data: job.data,
    result: job.returnvalue ?? null,
    failedReason: job.failedReason ?? null,
    attemptsMade: job.attemptsMade,
    timestamps: { created: iso(job.timestamp), processed: iso(job.processedOn), finished: iso(job.finishedOn) },
  };
}

export type WaitOutcome =
  | { state: 'completed'; result: unknown }
  | { state: 'failed'; reason: string; refused: boolean; job: Job }
  | { state: 'timeout' };

/**
 * Waits on jobs for `?wait=true`. One QueueEvents stream per queue is opened on first use and
 * shared by every waiting request of this process.
 */
export class JobWaiter {
  readonly #events = new Map<QueueName, { events?: QueueEvents; ready: Promise<QueueEvents> }>();

  constructor(
    private readonly opts: { connection: Redis; config: PlatformConfig; queues: Queues; pool: pg.Pool },
  ) {}

  #eventsFor(queue: QueueName): Promise<QueueEvents> {
    let entry = this.#events.get(queue);
    if (!entry) {
      const created: { events?: QueueEvents; ready: Promise<QueueEvents> } = { ready: Promise.resolve(undefined as never) };
      created.ready = (async () => {
        // Read the stream from its current end, not from "whenever the first read starts": a job
        // finishing in between (a wider window on a Redis Cluster) would otherwise go unheard.
        const prefix = queuePrefix(this.opts.config, queue);
        const last = await this.opts.connection.xrevrange(`${prefix}:${queue}:events`, '+', '-', 'COUNT', 1);
        const events = new QueueEvents(queue, { connection: this.opts.connection, prefix, lastEventId: last[0]?.[0] ?? '0-0' });
        created.events = events;
        events.on('error', () => {});
        await events.waitUntilReady();
        return events;
      })();
      entry = created;
      this.#events.set(queue, entry);
      created.ready.catch(() => {
        this.#events.delete(queue);
        void created.events?.close().catch(() => {});
      });
    }
    return entry.ready;
  }

  async waitForJob(job: Job, timeoutMs: number): Promise<WaitOutcome> {
    if (!isQueueName(job.queueName)) throw new Error(`unknown queue ${job.queueName}`);
    const events = await this.#eventsFor(job.queueName);
    const queue = this.opts.queues.get(job.queueName);
    // Events are the fast path; the job's state is also polled, slowly, as a safety net for an
    // event lost some other way (the stream trimmed under a burst, a reconnect).
    let settled = false;
    const deadline = Date.now() + Math.max(1, timeoutMs);
    const polled = (async (): Promise<{ result: unknown } | undefined> => {
      while (!settled && Date.now() < deadline) {
        await delay(Math.min(2_000, Math.max(1, deadline - Date.now())));
        if (settled) return undefined;
        const state = await queue.getJobState(job.id ?? '').catch(() => 'unknown');
        if (state === 'completed') return { result: (await queue.getJob(job.id ?? ''))?.returnvalue };
        if (state === 'failed') throw new Error('job failed');
      }
      return undefined;
    })();
    try {
      const result = await Promise.race([
        job.waitUntilFinished(events, Math.max(1, timeoutMs)),
        polled.then((p) => (p ? p.result : new Promise<never>(() => {}))),
      ]);
      return { state: 'completed', result };
    } catch (err) {
      const fresh = await this.opts.queues.get(job.queueName).getJob(job.id ?? '');
      if (!fresh || (await fresh.getState()) !== 'failed') return { state: 'timeout' };
      // A job that failed before using all its attempts was refused by its processor on purpose
      // (bad input, nothing to do): 422. One that ran out of retries, or kept losing its worker: 500.
      const reason = fresh.failedReason ?? String((err as Error).message);
      const refused = fresh.attemptsMade < (fresh.opts.attempts ?? 1) && !/stalled more than allowable limit/i.test(reason);
      return { state: 'failed', reason, refused, job: fresh };
    } finally {
      settled = true;
      polled.catch(() => {});
    }
  }

  /**
   * Waits for the job `id` of `queue`, which an outbox relay may not have added to BullMQ yet (it
   * is polled for until it is there), until `deadline` (epoch ms).
   */
  async waitForJobById(queue: QueueName, id: string, deadline: number): Promise<WaitOutcome> {
    const q = this.opts.queues.get(queue);
    let job: Job | undefined;
    while (!(job = await q.getJob(id))) {
      if (Date.now() >= deadline) return { state: 'timeout' };
      await delay(25);
    }
    return this.waitForJob(job, deadline - Date.now());
  }

  /** Waits for every job that `causedBy` started through the outbox, until `deadline` (epoch ms). */
  async waitForDownstream(causedBy: string, deadline: number): Promise<WaitOutcome> {
    const { rows } = await this.opts.pool.query<{ id: number; queue: string }>(
      'SELECT id, queue FROM outbox WHERE caused_by = $1 ORDER BY id',
      [causedBy],
    );
    const results: unknown[] = [];
    for (const row of rows) {
      if (!isQueueName(row.queue)) continue;
      const outcome = await this.waitForJobById(row.queue, outboxJobId(row.id), deadline);
      if (outcome.state !== 'completed') return outcome;
      results.push(outcome.result);
    }
    return { state: 'completed', result: results };
  }

  async close(): Promise<void> {
    const all = [...this.#events.values()];
    this.#events.clear();
    await Promise.race([Promise.allSettled(all.map((e) => e.events?.close())), delay(2_000)]);
  }
}

/** The answer of a job-starting route once the job finished, failed or the wait ran out. */
export function respondAfterWait(c: Context<AppEnv>, job: Job, outcome: WaitOutcome, body?: unknown) {
  switch (outcome.state) {
    case 'completed':
      return c.json(body ?? outcome.result ?? {}, 200);
    case 'failed':
      return c.json(errorBody('job_failed', outcome.reason, { job: jobAccepted(outcome.job) }), outcome.refused ? 422 : 500);
    case 'timeout':
      return c.json({ ...jobAccepted(job), timed_out: true }, 202);
  }
}

/** OpenAPI responses of a route that starts a job and, with ?wait=true, answers with its result. */
export function jobRunResponses(result: string, refused: string) {
  return {
    200: jsonContent(z.object({}).passthrough(), `${result} (with ?wait=true)`),
    202: jsonContent(jobAcceptedSchema, 'Queued (or still running when ?timeout= ran out)'),
    422: jsonContent(errorSchema, refused),
    500: jsonContent(errorSchema, 'The job failed after all its retries'),
  };
}

/** Queues a job; with ?wait=true answers its result (200), its failure (422/500) or, on timeout, 202. */
export async function startJob<S extends z.ZodType>(
  c: Context<AppEnv>,
  ctx: { queues: Queues; waiter: JobWaiter },
  def: JobDefinition<S>,
  payload: z.input<S>,
  query: { wait: boolean; timeout: number },
) {
  const job = await ctx.queues.enqueue(def, payload);
  if (!query.wait) return c.json(jobAccepted(job), 202);
  return respondAfterWait(c, job, await ctx.waiter.waitForJob(job, query.timeout * 1000));
}

export function assertQueueName(queue: string): QueueName {
  if (!isQueueName(queue)) throw new ApiError(404, 'not_found', `Unknown queue "${queue}"`);
  return queue;
}
