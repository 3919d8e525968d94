import { DelayedError, UnrecoverableError, type Job, type Processor } from 'bullmq';
import type { z } from 'zod';
import type { PlatformContext } from './context.ts';
import type { Logger } from './logger.ts';
import type { JobDurationRecorder } from './metrics.ts';
import { jobKey, type JobDefinition, type QueueName } from './queues.ts';
import { summarizeIssues } from './util.ts';

export interface JobContext {
  job: Job;
  platform: PlatformContext;
  log: Logger;
  /** `jobKey(job)`: the job's idempotency key, also recorded on the outbox events it writes. */
  jobKey: string;
  /** The worker's lock token for this job, needed to move it (see `runAgainLater`). */
  token?: string;
}

/**
 * Puts the job back in the delayed set for `ms` and ends this attempt without counting it as one:
 * a job that follows something slow (a provider's training run) checks again later instead of
 * holding a worker while it waits. Throws BullMQ's DelayedError; let it propagate.
 */
export async function runAgainLater(ctx: Pick<JobContext, 'job' | 'token'>, ms: number): Promise<never> {
  if (!ctx.token) throw new Error('runAgainLater needs the worker token of the job');
  await ctx.job.moveToDelayed(Date.now() + ms, ctx.token);
  throw new DelayedError();
}

/** Whether `err` is the DelayedError that ends an attempt moved to the delayed set. */
export function isDelayedError(err: unknown): boolean {
  return err instanceof DelayedError || (err as Error | undefined)?.name === 'DelayedError';
}

export interface JobHandler<S extends z.ZodType = z.ZodType> {
  definition: JobDefinition<S>;
  handle(payload: z.infer<S>, ctx: JobContext): Promise<unknown>;
  /**
   * Called once a job has failed for good: after its last attempt, an unrecoverable error, or
   * BullMQ failing it for stalling too often (then the processor never ran for that attempt).
   */
  onFailedForGood?(payload: z.infer<S>, ctx: JobContext, err: Error): Promise<void>;
}

export function jobHandler<S extends z.ZodType>(
  definition: JobDefinition<S>,
  handle: (payload: z.infer<S>, ctx: JobContext) => Promise<unknown>,
  hooks: Pick<JobHandler<S>, 'onFailedForGood'> = {},
): JobHandler<S> {
  return { definition, handle, ...hooks };
}

/**
 * The processor of one queue: picks the handler by job name, rejects a payload that fails its
 * schema at once (no retries: it would fail the same way again), logs with the job's identity and
 * records the duration for `/metrics`.
 */
export function createQueueProcessor(
  queue: QueueName,
  handlers: JobHandler[],
  platform: PlatformContext,
  durations?: JobDurationRecorder,
): Processor {
  const byName = new Map(handlers.map((h) => [h.definition.name, h]));
  return async (job, token) => {
    const log = platform.log.child({ queue, jobId: job.id, job: job.name, attempt: job.attemptsMade + 1 });
    const handler = byName.get(job.name);
    if (!handler) throw new UnrecoverableError(`No handler for job "${job.name}" on queue "${queue}"`);
    const parsed = handler.definition.schema.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError(`Invalid payload: ${summarizeIssues(parsed.error.issues)}`);
    const started = performance.now();
    let status: 'completed' | 'failed' | 'delayed' = 'failed';
    try {
      const result = await handler.handle(parsed.data, { job, platform, log, jobKey: jobKey(job), token });
      status = 'completed';
      return result;
    } catch (err) {
      if (isDelayedError(err)) {
        status = 'delayed';
        log.debug('job delayed until its next check');
      } else log.warn({ err }, 'job attempt failed');
      throw err;
    } finally {
      const seconds = (performance.now() - started) / 1000;
      if (status === 'completed') log.info({ seconds: Number(seconds.toFixed(3)) }, 'job completed');
      if (status !== 'delayed') durations?.record(queue, status, seconds);
    }
  };
}
