import {
  ConfigError,
  QUEUE_NAMES,
  isQueueName,
  loadQueueConcurrency,
  loadQueueLimits,
  startWorkers,
  syncSchedules,
  type DomainModule,
  type PlatformContext,
  type QueueName,
  type RunningWorkers,
} from '@caliber/platform';

/** Parses `--queues a,b` (or `--queues=a,b`); undefined means every queue with a processor. */
export function parseQueuesArg(argv: string[]): QueueName[] | undefined {
  const i = argv.findIndex((a) => a === '--queues' || a.startsWith('--queues='));
  if (i < 0) return undefined;
  const arg = argv[i] as string;
  const value = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[i + 1];
  const names = (value ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new ConfigError([`--queues needs a comma-separated list of: ${QUEUE_NAMES.join(', ')}`]);
  const unknown = names.filter((n) => !isQueueName(n));
  if (unknown.length > 0) throw new ConfigError([`--queues: unknown queue(s) ${unknown.join(', ')}; known: ${QUEUE_NAMES.join(', ')}`]);
  return names as QueueName[];
}

/**
 * Starts the processors of the selected queues, and registers every module's job schedulers in the
 * background (`schedulesRegistered`): the caller can install its shutdown handler at once rather
 * than after Redis round trips, so a SIGTERM in the first moments still shuts down gracefully.
 */
export function startWorkerProcess(
  platform: PlatformContext,
  modules: DomainModule[],
  opts: { queues?: QueueName[]; env?: Record<string, string | undefined>; relay?: boolean } = {},
): { running: RunningWorkers; schedulesRegistered: Promise<void> } {
  const handlers = modules.flatMap((m) => m.jobs ?? []);
  const running = startWorkers(platform, handlers, {
    queues: opts.queues,
    concurrency: loadQueueConcurrency(opts.env ?? process.env),
    limits: loadQueueLimits(opts.env ?? process.env),
    relay: opts.relay,
  });
  // Upserting is idempotent, so every worker process may do it at start.
  const schedulesRegistered = syncSchedules(platform.queues, modules.flatMap((m) => m.schedules?.(platform.config) ?? []), platform.log).catch(
    (err: unknown) => platform.log.warn({ err }, 'could not register job schedulers now (Redis down?); they are registered at the next start'),
  );
  return { running, schedulesRegistered };
}
