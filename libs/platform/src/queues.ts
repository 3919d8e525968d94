import { Queue, type Job, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { z } from 'zod';
import type { PlatformConfig } from './config.ts';
import { delay } from './util.ts';

export const QUEUE_NAMES = [
  'calibrate',
  'retag-file',
  'map-models',
  'analyze-errors',
  'fine-tune',
  'update-reference',
  'notify',
] as const;

export type QueueName = (typeof QUEUE_NAMES)[number];

export function isQueueName(value: string): value is QueueName {
  return (QUEUE_NAMES as readonly string[]).includes(value);
}

/**
 * Each queue gets its own hash-tagged prefix (`{caliber:retag-file}`), so all keys of one queue
 * live in one Redis Cluster slot (BullMQ's Lua scripts need that) while queues spread over slots.
 */
export function queuePrefix(config: Pick<PlatformConfig, 'QUEUE_PREFIX'>, queue: QueueName): string {
  return `{${config.QUEUE_PREFIX}:${queue}}`;
}

/**
 * Names one job for good, for idempotency records and outbox causes. BullMQ's ids restart at 1
 * when Redis loses its data, so the job's creation time is part of the key.
 */
export function jobKey(job: Pick<Job, 'queueName' | 'id' | 'timestamp'>): string {
  return `${job.queueName}/${job.id}@${job.timestamp}`;
}

export function defaultJobOptions(config: PlatformConfig): JobsOptions {
  return {
    attempts: config.JOB_ATTEMPTS,
    backoff: { type: 'exponential', delay: config.JOB_BACKOFF_MS },
    removeOnComplete: { age: config.JOB_KEEP_COMPLETED_SECONDS },
    removeOnFail: { age: config.JOB_KEEP_FAILED_SECONDS },
  };
}

/**
 * A kind of job: the queue it runs on, its BullMQ job name and the zod schema of its payload. The
 * same definition types the producer (route, outbox) and the processor.
 */
export interface JobDefinition<S extends z.ZodType = z.ZodType> {
  readonly queue: QueueName;
  readonly name: string;
  readonly schema: S;
}

export function defineJob<S extends z.ZodType>(queue: QueueName, name: string, schema: S): JobDefinition<S> {
  return { queue, name, schema };
}

/**
 * Raised instead of calling BullMQ while the producer connection is down: BullMQ would wait for
 * the connection to come back, and an HTTP client must get 503 at once instead.
 */
export class QueueUnavailableError extends Error {
  override name = 'QueueUnavailableError';
  constructor() {
    super('Redis is not connected');
  }
}

/** One BullMQ `Queue` per queue name, created on first use and sharing one Redis connection. */
export class Queues {
  readonly #queues = new Map<QueueName, Queue>();

  constructor(
    readonly connection: Redis,
    readonly config: PlatformConfig,
  ) {}

  get(name: QueueName): Queue {
    let queue = this.#queues.get(name);
    if (!queue) {
      queue = new Queue(name, {
        connection: this.connection,
        prefix: queuePrefix(this.config, name),
        defaultJobOptions: defaultJobOptions(this.config),
      });
      // Connection errors reach the caller of the failing command; this only keeps them off stderr.
      queue.on('error', () => {});
      this.#queues.set(name, queue);
    }
    return queue;
  }

  /**
   * The queue, for I/O now: throws QueueUnavailableError while the shared connection is down
   * instead of letting BullMQ wait for it. Request paths use this; `get` is for wiring.
   */
  connected(name: QueueName): Queue {
    if (this.connection.status !== 'ready') throw new QueueUnavailableError();
    return this.get(name);
  }

  all(): Queue[] {
    return QUEUE_NAMES.map((name) => this.get(name));
  }

  /** Validates the payload against the job's schema, then adds the job. */
  async enqueue<S extends z.ZodType>(def: JobDefinition<S>, payload: z.input<S>, opts?: JobsOptions): Promise<Job> {
    const data = def.schema.parse(payload);
    return this.connected(def.queue).add(def.name, data, opts);
  }

  /** Closes every queue; bounded, because BullMQ waits for a connection that may never come. */
  async close(timeoutMs = 2_000): Promise<void> {
    const closing = Promise.allSettled([...this.#queues.values()].map((queue) => queue.close()));
    await Promise.race([closing, delay(timeoutMs)]);
    this.#queues.clear();
  }
}
