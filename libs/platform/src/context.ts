import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { PlatformConfig } from './config.ts';
import { createDatabase, type Database } from './db.ts';
import type { DashboardPage } from './dashboard.ts';
import type { AppEnv } from './http.ts';
import type { JobWaiter } from './job-responses.ts';
import { createLogger, type Logger } from './logger.ts';
import type { JobHandler } from './processor.ts';
import { Queues } from './queues.ts';
import { closeRedis, createRedis } from './redis.ts';
import type { ScheduleDefinition } from './schedules.ts';
import { delay } from './util.ts';

/** What every process (gateway, worker, CLI) shares with the domain libs. */
export interface PlatformContext {
  config: PlatformConfig;
  log: Logger;
  db: Database;
  pool: pg.Pool;
  /** Fail-fast connection for producing jobs and short commands. */
  redis: Redis;
  /** Connection for blocking consumers (workers, queue events); it waits out a Redis restart. */
  blockingRedis: Redis;
  queues: Queues;
}

export interface GatewayContext extends PlatformContext {
  waiter: JobWaiter;
}

/** A domain lib's public face: its routes, job handlers and schedules, composed by the apps. */
export interface DomainModule {
  name: string;
  routes?(ctx: GatewayContext): OpenAPIHono<AppEnv>;
  /**
   * Routes a tenant key may call (the admin key may too, naming the tenant in X-Tenant-Id). Each
   * works on one tenant's rows: read the tenant with `tenantOf(c)` and query through `withTenant`.
   */
  tenantRoutes?(ctx: GatewayContext): OpenAPIHono<AppEnv>;
  jobs?: JobHandler[];
  /** Pages of `/dashboard` showing this domain's data (admin only). */
  dashboard?(ctx: GatewayContext): DashboardPage[];
  /** Recurring jobs; `tz` comes from the platform's TZ setting. */
  schedules?(config: PlatformConfig): ScheduleDefinition[];
}

export function createPlatform(
  config: PlatformConfig,
  opts: { name: string; log?: Logger },
): PlatformContext & { close(timeoutMs?: number): Promise<void> } {
  const log = opts.log ?? createLogger({ level: config.LOG_LEVEL, name: opts.name });
  const { db, pool } = createDatabase(config.DATABASE_URL, {
    max: config.DB_POOL_SIZE,
    applicationName: `caliber-${opts.name}`,
    role: config.DATABASE_ROLE,
    log,
    queryTimeoutMs: config.DB_QUERY_TIMEOUT_MS,
  });
  const redis = createRedis(config.REDIS_URL, 'producer', `caliber-${opts.name}`);
  const blockingRedis = createRedis(config.REDIS_URL, 'blocking', `caliber-${opts.name}-blocking`);
  const queues = new Queues(redis, config);
  return {
    config,
    log,
    db,
    pool,
    redis,
    blockingRedis,
    queues,
    /** Bounded: a handler that was cut off at shutdown may still hold a pool client. */
    async close(timeoutMs = 5_000) {
      await queues.close();
      await Promise.race([Promise.allSettled([pool.end(), closeRedis(redis), closeRedis(blockingRedis)]), delay(timeoutMs)]);
    },
  };
}
