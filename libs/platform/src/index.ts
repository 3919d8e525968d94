export { ConfigError, envVar, loadPlatformConfig, parseEnv, platformEnvSchema, type PlatformConfig } from './config.ts';
export { createLogger, redactUrl, type Logger } from './logger.ts';
export { createDatabase, ensureDatabaseExists, runMigrations, tryAdvisoryLock, withAdvisoryLock, MIGRATIONS_DIR, type Database, type Executor } from './db.ts';
export { closeRedis, createRedis, pingRedis, type Redis } from './redis.ts';
export { defineJob, defaultJobOptions, isQueueName, jobKey, queuePrefix, Queues, QueueUnavailableError, QUEUE_NAMES, type JobDefinition, type QueueName } from './queues.ts';
export { appendOutbox, outboxEvent, outboxJobId, OutboxRelay, type OutboxEvent } from './outbox.ts';
export { createQueueProcessor, isDelayedError, jobHandler, runAgainLater, type JobContext, type JobHandler } from './processor.ts';
export { concurrencyEnvName, loadQueueConcurrency, loadQueueLimits, startWorkers, type QueueLimits, type RunningWorkers } from './worker-runtime.ts';
export { describeSchedules, runScheduleNow, syncSchedules, type ScheduleDefinition } from './schedules.ts';
export { createPlatform, type DomainModule, type GatewayContext, type PlatformContext } from './context.ts';
export { ApiError, createRouter, errorBody, errorSchema, invalidRequest, jsonContent, standardErrors, onError, onNotFound, unavailableService, type AppEnv, type Principal } from './http.ts';
export {
  assertQueueName,
  describeJob,
  jobAccepted,
  jobAcceptedSchema,
  jobRunResponses,
  JobWaiter,
  startJob,
  respondAfterWait,
  waitQuerySchema,
  type WaitOutcome,
} from './job-responses.ts';
export { clientIp, corsHeaders, gatewayAuth, loginRoutes, secretsEqual, type PublishableAccess } from './auth.ts';
export { findPublishableKey, projectSchema, publishableKeyRoutes, rateLimit, PUBLISHABLE_KEY_PREFIX } from './publishable-keys.ts';
export {
  assertTenantExists,
  findTenantKey,
  hashTenantKey,
  newTenantKey,
  tenantAdminRoutes,
  tenantOf,
  withTenant,
  withTenantClient,
  TENANT_HEADER,
  TENANT_KEY_PREFIX,
  TENANT_SETTING,
} from './tenants.ts';
export { createGatewayMetrics, JobDurationRecorder } from './metrics.ts';
export { bullBoard, platformRoutes } from './platform-routes.ts';
export { chart, PALETTE, dashboardRoutes, docsRoutes, emptyState, rowCount, section, showCount, stats, table, type DashboardPage, type Html } from './dashboard.ts';
export { delay, groupBy, summarizeIssues } from './util.ts';
export { isStorableInstant, isStorableJson, isStorableText, MAX_INSTANT_MS, MIN_INSTANT_MS } from './storable.ts';
export { onShutdownSignal, runMain } from './process.ts';
