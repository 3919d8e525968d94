import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import { z } from 'zod';
import { parseEnv } from './config.ts';
import type { PlatformContext } from './context.ts';
import { JobDurationRecorder } from './metrics.ts';
import { OutboxRelay } from './outbox.ts';
import { createQueueProcessor, type JobHandler } from './processor.ts';
import { jobKey } from './queues.ts';
import { QUEUE_NAMES, queuePrefix, type QueueName } from './queues.ts';
import { groupBy } from './util.ts';

/** Jobs one process runs at once per queue, unless `<QUEUE>_CONCURRENCY` says otherwise. */
const DEFAULT_CONCURRENCY: Record<QueueName, number> = {
  calibrate: 1,
  // Each job re-tags a range of files with one set-based write; a few at once keep Postgres busy.
  'retag-file': 2,
  'map-models': 1,
  'analyze-errors': 1,
  // Each run is a short step (build a dataset, submit, one poll); trainings are polled, not waited for.
  'fine-tune': 4,
  'update-reference': 4,
  notify: 8,
};

export function concurrencyEnvName(queue: QueueName): string {
  return `${queue.replaceAll('-', '_').toUpperCase()}_CONCURRENCY`;
}

export function loadQueueConcurrency(env: Record<string, string | undefined> = process.env): Record<QueueName, number> {
  const schema = z.object(
    Object.fromEntries(QUEUE_NAMES.map((q) => [concurrencyEnvName(q), z.coerce.number().int().min(1).max(1000).default(DEFAULT_CONCURRENCY[q])])),
  );
  const parsed = parseEnv(schema, env) as Record<string, number>;
  return Object.fromEntries(QUEUE_NAMES.map((q) => [q, parsed[concurrencyEnvName(q)] ?? DEFAULT_CONCURRENCY[q]])) as Record<QueueName, number>;
}

export interface QueueLimits {
  /** Jobs of the queue running at once across every process (BullMQ global concurrency); 0 lifts it. */
  globalConcurrency?: number;
  /** At most `max` jobs of the queue start per `duration` ms, across every process (BullMQ's limiter). */
  rateLimit?: { max: number; duration: number };
}

const envStem = (queue: QueueName) => queue.replaceAll('-', '_').toUpperCase();

/**
 * `<QUEUE>_GLOBAL_CONCURRENCY` and `<QUEUE>_RATE_LIMIT` (`<max>/<ms>`, e.g. `10/1000`): limits that
 * hold across all worker processes, because BullMQ keeps them in Redis. Give every process the same.
 */
export function loadQueueLimits(env: Record<string, string | undefined> = process.env): Partial<Record<QueueName, QueueLimits>> {
  const rate = z
    .string()
    .regex(/^\d{1,9}\/\d{1,9}$/, 'must be <max jobs>/<milliseconds>, e.g. 10/1000')
    .transform((v) => {
      const [max, duration] = v.split('/').map(Number) as [number, number];
      return { max, duration };
    })
    .refine((r) => r.max >= 1 && r.duration >= 1, 'max and milliseconds must be at least 1');
  const schema = z.object(
    Object.fromEntries(
      QUEUE_NAMES.flatMap((q) => [
        [`${envStem(q)}_GLOBAL_CONCURRENCY`, z.string().trim().regex(/^\d{1,6}$/, 'must be a whole number (0 lifts the cap)').transform(Number).optional()],
        [`${envStem(q)}_RATE_LIMIT`, rate.optional()],
      ]),
    ),
  );
  const parsed = parseEnv(schema, env) as Record<string, number | { max: number; duration: number } | undefined>;
  const limits: Partial<Record<QueueName, QueueLimits>> = {};
  for (const q of QUEUE_NAMES) {
    const globalConcurrency = parsed[`${envStem(q)}_GLOBAL_CONCURRENCY`] as number | undefined;
    const rateLimit = parsed[`${envStem(q)}_RATE_LIMIT`] as QueueLimits['rateLimit'];
    if (globalConcurrency !== undefined || rateLimit) limits[q] = { globalConcurrency, rateLimit };
  }
  return limits;
}

export interface RunningWorkers {
  queues: QueueName[];
  workers: Worker[];
  relay: OutboxRelay;
  /** Stops taking jobs and waits for active ones up to `timeoutMs`; after that they are released. */
  close(timeoutMs: number): Promise<{ forced: boolean }>;
}

/**
 * One BullMQ Worker per selected queue, plus an outbox relay. `queues` defaults to every queue that
 * has a handler.
 */
export function startWorkers(
  ctx: PlatformContext,
  handlers: JobHandler[],
  opts: { queues?: QueueName[]; concurrency?: Partial<Record<QueueName, number>>; limits?: Partial<Record<QueueName, QueueLimits>>; relay?: boolean },
): RunningWorkers {
  const byQueue = groupBy(handlers, (h) => h.definition.queue);
  const selected = opts.queues ?? QUEUE_NAMES.filter((q) => byQueue.has(q));
  const missing = selected.filter((q) => !byQueue.has(q));
  if (missing.length > 0) throw new Error(`No processors for queue(s): ${missing.join(', ')}`);
  const concurrency = { ...DEFAULT_CONCURRENCY, ...opts.concurrency };

  const durations = new JobDurationRecorder(ctx.redis, ctx.config);
  const workers = selected.map((queue) => {
    const worker = new Worker(queue, createQueueProcessor(queue, byQueue.get(queue) ?? [], ctx, durations), {
      connection: ctx.blockingRedis,
      prefix: queuePrefix(ctx.config, queue),
      concurrency: concurrency[queue],
      // Each job records which process ran it (processedBy; Bull Board shows it): host and pid.
      name: `${hostname()}:${process.pid}`,
      lockDuration: ctx.config.WORKER_LOCK_DURATION_MS,
      stalledInterval: ctx.config.WORKER_STALLED_INTERVAL_MS,
      // A job whose worker died is retried once more before it counts as failed.
      maxStalledCount: 2,
      ...(opts.limits?.[queue]?.rateLimit ? { limiter: opts.limits[queue]!.rateLimit } : {}),
      // With a global cap, the worker starts taking jobs only once the cap is written.
      autorun: opts.limits?.[queue]?.globalConcurrency === undefined,
    });
    const cap = opts.limits?.[queue]?.globalConcurrency;
    if (cap !== undefined) {
      const q = ctx.queues.get(queue);
      void (cap === 0 ? q.removeGlobalConcurrency() : q.setGlobalConcurrency(cap))
        .then(
          () => ctx.log.info({ queue, globalConcurrency: cap || 'none' }, 'global concurrency set'),
          (err: unknown) => ctx.log.warn({ err, queue }, 'could not set the global concurrency now (Redis down?); it is set at the next start'),
        )
        .finally(() => {
          if (!worker.closing) worker.run().catch((err: unknown) => ctx.log.warn({ err, queue }, 'worker stopped'));
        });
    }
    worker.on('error', (err) => ctx.log.warn({ err, queue }, 'worker error'));
    const handlers = new Map((byQueue.get(queue) ?? []).map((h) => [h.definition.name, h]));
    worker.on('failed', (job, err) => {
      // BullMQ sets finishedOn only when the failure is final (no attempt left, or unrecoverable).
      if (!job || typeof job.finishedOn !== 'number') return;
      const log = ctx.log.child({ queue, jobId: job.id, job: job.name });
      log.error({ err }, 'job failed for good');
      const handler = handlers.get(job.name);
      const parsed = handler?.onFailedForGood ? handler.definition.schema.safeParse(job.data) : undefined;
      if (handler?.onFailedForGood && parsed?.success) {
        handler.onFailedForGood(parsed.data, { job, platform: ctx, log, jobKey: jobKey(job) }, err).catch((hookErr: unknown) => log.warn({ err: hookErr }, 'failure hook failed'));
      }
    });
    return worker;
  });
  ctx.log.info({ queues: selected.map((q) => `${q}×${concurrency[q]}`) }, 'workers started');

  const relay = new OutboxRelay({
    pool: ctx.pool,
    queues: ctx.queues,
    log: ctx.log,
    pollMs: ctx.config.OUTBOX_POLL_MS,
    listenUrl: ctx.config.DATABASE_LISTEN_URL,
    retentionMs: ctx.config.OUTBOX_RETENTION_HOURS * 3_600_000,
  });
  if (opts.relay !== false) relay.start();

  return {
    queues: selected,
    workers,
    relay,
    async close(timeoutMs) {
      await relay.stop();
      let timer: NodeJS.Timeout | undefined;
      const graceful = Promise.all(workers.map((w) => w.close())).then(() => 'done' as const);
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs);
      });
      const outcome = await Promise.race([graceful, timeout]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        // Their locks lapse and any worker's stall check puts the jobs back in the wait list.
        ctx.log.warn({ timeoutMs }, 'active jobs did not finish in time; releasing them');
        await Promise.allSettled(workers.map((w) => w.close(true)));
      }
      await durations.close();
      return { forced: outcome === 'timeout' };
    },
  };
}
