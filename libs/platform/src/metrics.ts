import type { MiddlewareHandler } from 'hono';
import type { Redis } from 'ioredis';
import { Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { PlatformConfig } from './config.ts';
import type { AppEnv } from './http.ts';
import { QUEUE_NAMES, queuePrefix, type QueueName, type Queues } from './queues.ts';

/** Upper bounds (seconds) of the job-duration histogram buckets. */
export const JOB_DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600];

/**
 * Job durations are observed in worker processes but scraped from the gateway, so workers add them
 * to a histogram kept in Redis (one hash per queue, in that queue's hash slot).
 */
function durationKey(config: Pick<PlatformConfig, 'QUEUE_PREFIX'>, queue: QueueName): string {
  return `${queuePrefix(config, queue)}:${queue}:caliber-durations`;
}

/**
 * Adds job durations to the Redis histogram. Observations are summed in memory and written once a
 * second per queue, so a queue running thousands of short jobs a second costs one Redis write a
 * second rather than one per job.
 */
export class JobDurationRecorder {
  readonly #pending = new Map<QueueName, Map<string, number>>();
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly redis: Redis,
    private readonly config: Pick<PlatformConfig, 'QUEUE_PREFIX'>,
    flushMs = 1_000,
  ) {
    this.#timer = setInterval(() => void this.flush().catch(() => {}), flushMs);
    this.#timer.unref();
  }

  record(queue: QueueName, status: 'completed' | 'failed', seconds: number): void {
    const bucket = JOB_DURATION_BUCKETS.find((b) => seconds <= b) ?? '+Inf';
    const fields = this.#pending.get(queue) ?? new Map<string, number>();
    fields.set(`${status}|${bucket}`, (fields.get(`${status}|${bucket}`) ?? 0) + 1);
    fields.set(`${status}|sum`, (fields.get(`${status}|sum`) ?? 0) + seconds);
    this.#pending.set(queue, fields);
  }

  async flush(): Promise<void> {
    if (this.#pending.size === 0) return;
    const pending = [...this.#pending];
    this.#pending.clear();
    // One MULTI per queue: each queue's hash lives in that queue's Redis Cluster slot.
    const results = await Promise.allSettled(
      pending.map(([queue, fields]) => {
        const multi = this.redis.multi();
        for (const [field, value] of fields) {
          if (field.endsWith('|sum')) multi.hincrbyfloat(durationKey(this.config, queue), field, value);
          else multi.hincrby(durationKey(this.config, queue), field, value);
        }
        return multi.exec();
      }),
    );
    // What could not be written is kept for the next flush.
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') return;
      const [queue, fields] = pending[i]!;
      const current = this.#pending.get(queue) ?? new Map<string, number>();
      for (const [field, value] of fields) current.set(field, (current.get(field) ?? 0) + value);
      this.#pending.set(queue, current);
    });
  }

  /** Writes what is pending and stops the timer. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush().catch(() => {});
  }
}

async function renderJobDurations(redis: Redis, config: PlatformConfig): Promise<string> {
  const lines = [
    '# HELP caliber_job_duration_seconds Time a job took in a worker, by queue and outcome.',
    '# TYPE caliber_job_duration_seconds histogram',
  ];
  const hashes = await Promise.all(QUEUE_NAMES.map((q) => redis.hgetall(durationKey(config, q))));
  QUEUE_NAMES.forEach((queue, i) => {
    const hash = hashes[i] ?? {};
    for (const status of ['completed', 'failed']) {
      if (hash[`${status}|sum`] === undefined) continue;
      let cumulative = 0;
      for (const bound of [...JOB_DURATION_BUCKETS, '+Inf'] as const) {
        cumulative += Number(hash[`${status}|${bound}`] ?? 0);
        lines.push(`caliber_job_duration_seconds_bucket{queue="${queue}",status="${status}",le="${bound}"} ${cumulative}`);
      }
      lines.push(`caliber_job_duration_seconds_sum{queue="${queue}",status="${status}"} ${Number(hash[`${status}|sum`])}`);
      lines.push(`caliber_job_duration_seconds_count{queue="${queue}",status="${status}"} ${cumulative}`);
    }
  });
  return `${lines.join('\n')}\n`;
}

/** The gateway's metrics: HTTP latencies, queue depths by state, and job durations from Redis. */
export function createGatewayMetrics(opts: { queues: Queues; redis: Redis; config: PlatformConfig }) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'caliber_gateway_' });

  const httpDuration = new Histogram({
    name: 'caliber_http_request_duration_seconds',
    help: 'HTTP request latency by method, route and status.',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });

  new Gauge({
    name: 'caliber_queue_jobs',
    help: 'Jobs per queue and state.',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      // With Redis away the gauge is left empty rather than failing (or stalling) the whole scrape.
      const counts = await Promise.all(
        QUEUE_NAMES.map(async (q) =>
          opts.queues.connected(q).getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'completed', 'failed'),
        ),
      ).catch(() => []);
      QUEUE_NAMES.forEach((queue, i) => {
        for (const [state, count] of Object.entries(counts[i] ?? {})) this.set({ queue, state }, count);
      });
    },
  });

  const middleware: MiddlewareHandler<AppEnv> = async (c, next) => {
    const started = performance.now();
    await next();
    httpDuration.observe(
      { method: c.req.method, route: c.req.routePath || 'unmatched', status: String(c.res.status) },
      (performance.now() - started) / 1000,
    );
  };

  return {
    middleware,
    async render(): Promise<string> {
      const [base, durations] = await Promise.all([
        registry.metrics(),
        renderJobDurations(opts.redis, opts.config).catch(() => ''),
      ]);
      return `${base}\n${durations}`;
    },
    contentType: registry.contentType,
  };
}
