import { runAgainLater, type Database, type JobContext, type Logger, type PlatformContext } from '@caliber/platform';
import { UnrecoverableError, type Job } from 'bullmq';
import { eq, sql } from 'drizzle-orm';
import pg from 'pg';
import { providerProblem, type FineTuningConfig, type ProviderName } from './config.ts';
import { buildDataset, datasetPaths, DatasetTooSmallError, existingDataset, type BuiltDataset } from './dataset.ts';
import { addEvents, describeFineTuneJob, endJob, isTerminal, loadJob, patchActiveJob, transition, type FineTuneJobRow, type FineTuneJobView } from './jobs.ts';
import { commandProvider } from './providers/command.ts';
import { openAiCompatibleProvider } from './providers/openai-compatible.ts';
import { PermanentProviderError, type FineTuneProvider, type ProviderContext, type ProviderDataset, type ProviderJob, type ProviderState } from './providers/provider.ts';
import { fineTuningJobs } from './schema.ts';

export type ProviderRegistry = Map<ProviderName, FineTuneProvider>;

/** The providers this configuration can use. */
export function createProviders(config: FineTuningConfig): ProviderRegistry {
  const providers: ProviderRegistry = new Map();
  if (!providerProblem(config, 'openai-compatible')) providers.set('openai-compatible', openAiCompatibleProvider(config));
  if (!providerProblem(config, 'command')) providers.set('command', commandProvider(config));
  return providers;
}

export interface FineTuningDeps {
  platform: Pick<PlatformContext, 'db' | 'pool'>;
  config: FineTuningConfig;
  providers: ProviderRegistry;
}

/** Statuses in which nothing has reached the provider yet: a cancel takes effect at once. */
const BEFORE_PROVIDER = ['pending', 'preparing', 'dataset_ready'];

/**
 * Lines for a job's log, written to its events (and to the BullMQ job log, shown in Bull Board) in
 * batches. A run keeps at most `maxOutputLines` lines of command output; the rest are counted.
 */
class JobLog {
  #pending: { kind: 'status' | 'provider' | 'output' | 'info'; message: string }[] = [];
  #outputLines = 0;
  #dropped = 0;
  #flushing: Promise<void> = Promise.resolve();
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly db: Database,
    private readonly jobId: string,
    private readonly queueJob: Job | undefined,
    private readonly maxOutputLines: number,
    private readonly log: Logger,
  ) {
    this.#timer = setInterval(() => void this.flush(), 500);
    this.#timer.unref();
  }

  add(kind: 'output' | 'info', lines: string[]): void {
    for (const line of lines) {
      if (kind === 'output' && this.#outputLines++ >= this.maxOutputLines) {
        this.#dropped++;
        continue;
      }
      // Postgres text cannot hold NUL.
      this.#pending.push({ kind, message: line.replaceAll('\u0000', '').slice(0, 4000) });
    }
    if (this.#pending.length >= 200) void this.flush();
  }

  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      const batch = this.#pending.splice(0);
      if (batch.length === 0) return;
      try {
        await addEvents(this.db, this.jobId, batch);
        await this.queueJob?.log(batch.map((b) => b.message).join('\n'));
      } catch (err) {
        this.log.warn({ err: (err as Error).message, lines: batch.length }, 'could not write job log lines');
      }
    });
    return this.#flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    if (this.#dropped > 0) this.#pending.push({ kind: 'info', message: `${this.#dropped} more output lines not kept (FINE_TUNE_LOG_MAX_LINES=${this.maxOutputLines})` });
    this.#dropped = 0;
    await this.flush();
  }
}

const NOT_LOCKED = Symbol('not locked');

/**
 * Runs `fn` holding a session advisory lock on the job, on a connection of its own: two workers
 * never step one job at once (BullMQ may hand a job to a second worker while the first still runs
 * it), and the lock goes with the connection if the worker dies.
 */
async function withJobLock<T>(pool: pg.Pool, jobId: string, fn: () => Promise<T>): Promise<T | typeof NOT_LOCKED> {
  const client = new pg.Client(pool.options);
  client.on('error', () => {});
  await client.connect();
  try {
    const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock(hashtext('caliber:fine-tune'), hashtext($1)) AS locked", [jobId]);
    if (!rows[0]?.locked) return NOT_LOCKED;
    return await fn();
  } finally {
    await client.end().catch(() => {});
  }
}

function providerJob(row: FineTuneJobRow): ProviderJob {
  return {
    id: row.id,
    modelId: row.modelId,
    baseModel: row.baseModel,
    providerJobId: row.providerJobId,
    providerTrainingFileId: row.providerTrainingFileId,
    providerValidationFileId: row.providerValidationFileId,
    runs: row.runs,
  };
}

function datasetStats(ds: BuiltDataset) {
  return {
    datasetPath: ds.paths.training,
    datasetRows: ds.trainingRows,
    validationRows: ds.validationRows,
    datasetBytes: ds.bytes,
    datasetSha256: ds.sha256,
  };
}

/**
 * One step run of a fine-tuning job, from wherever it stands: build the dataset, submit it, then
 * follow the provider — a remote one by polling (the queue job is delayed FINE_TUNE_POLL_MS and
 * runs again; no worker waits), a command by waiting for it. Each step is a compare-and-set on
 * the job's status, so a retry after a crash resumes where the last committed step left off.
 */
export async function processFineTuneRun(deps: FineTuningDeps, jobId: string, ctx: JobContext): Promise<FineTuneJobView> {
  const outcome = await withJobLock(deps.platform.pool, jobId, () => new FineTuneRun(deps, jobId, ctx).run());
  if (outcome === NOT_LOCKED) {
    ctx.log.info('another worker is stepping this job; checking again later');
    return runAgainLater(ctx, deps.config.FINE_TUNE_POLL_MS);
  }
  return outcome;
}

class FineTuneRun {
  readonly #db: Database;
  readonly #log: JobLog;

  constructor(
    private readonly deps: FineTuningDeps,
    private readonly id: string,
    private readonly ctx: JobContext,
  ) {
    this.#db = deps.platform.db;
    this.#log = new JobLog(this.#db, id, ctx.job, deps.config.FINE_TUNE_LOG_MAX_LINES, ctx.log);
  }

  async run(): Promise<FineTuneJobView> {
    try {
      for (;;) {
        const job = await loadJob(this.#db, this.id);
        if (!job) throw new UnrecoverableError(`No fine-tuning job ${this.id}`);
        if (isTerminal(job.status)) return describeFineTuneJob(job);
        await this.ctx.job.updateProgress({ status: job.status }).catch(() => {});
        const provider = this.deps.providers.get(job.provider as ProviderName);
        if (!provider) {
          return this.#fail(job, `this worker cannot use provider "${job.provider}": ${providerProblem(this.deps.config, job.provider as ProviderName) ?? 'unknown provider'}`);
        }
        // dataset_ready after an upload means an earlier submit may have created a provider job:
        // submitting again finds it, and the cancel then reaches the provider.
        if (job.cancelRequestedAt && BEFORE_PROVIDER.includes(job.status) && !job.providerTrainingFileId) {
          await endJob(this.#db, job.id, 'cancelled', { message: 'cancelled before it reached the provider' });
          continue;
        }
        switch (job.status) {
          case 'pending':
            await transition(this.#db, job.id, ['pending'], 'preparing', {}, 'building the dataset');
            break;
          case 'preparing':
            await this.#prepare(job);
            break;
          case 'dataset_ready':
            await this.#submit(job, provider);
            break;
          default:
            return await this.#follow(job, provider);
        }
      }
    } finally {
      await this.#log.close();
    }
  }

  /** Ends the job as failed (refunding it) and fails the queue job without retries. */
  async #fail(job: FineTuneJobRow, reason: string): Promise<never> {
    await endJob(this.#db, job.id, 'failed', { error: reason, message: reason });
    throw new UnrecoverableError(reason);
  }

  async #build(job: FineTuneJobRow): Promise<BuiltDataset> {
    try {
      return await buildDataset(this.deps.platform.pool, this.deps.config, job);
    } catch (err) {
      if (err instanceof DatasetTooSmallError) return this.#fail(job, err.message);
      throw err;
    }
  }

  async #prepare(job: FineTuneJobRow): Promise<void> {
    const ds = await this.#build(job);
    this.ctx.log.info({ trainingRows: ds.trainingRows, validationRows: ds.validationRows, bytes: ds.bytes }, 'dataset written');
    await transition(
      this.#db,
      job.id,
      ['preparing'],
      'dataset_ready',
      { ...datasetStats(ds), preparedAt: sql`now()` },
      `${ds.trainingRows} training and ${ds.validationRows} validation examples, ${ds.bytes} bytes`,
    );
  }

  /** The job's dataset on this host: the files written earlier, or the same rows written again. */
  async #dataset(job: FineTuneJobRow): Promise<ProviderDataset> {
    const paths = datasetPaths(this.deps.config, job.id);
    const existing = await existingDataset(paths, { bytes: job.datasetBytes, validationRows: job.validationRows });
    if (existing) return { trainingPath: paths.training, validationPath: existing.validationPath, dir: paths.dir };
    const ds = await this.#build(job);
    const same = ds.sha256 === job.datasetSha256;
    this.#log.add('info', [`dataset written again on this worker${same ? '' : ` and it differs (responses were deleted since): ${ds.trainingRows} training, ${ds.validationRows} validation examples`}`]);
    if (!same) await patchActiveJob(this.#db, job.id, datasetStats(ds));
    return { trainingPath: ds.paths.training, validationPath: ds.validationPath, dir: paths.dir };
  }

  #providerContext(job: FineTuneJobRow, signal: AbortSignal): ProviderContext {
    return {
      log: this.ctx.log,
      signal,
      remember: async (patch) => {
        await patchActiveJob(this.#db, job.id, patch);
      },
      output: (lines) => this.#log.add('output', lines),
    };
  }

  async #submit(job: FineTuneJobRow, provider: FineTuneProvider): Promise<void> {
    const dataset = await this.#dataset(job);
    let submitted: Awaited<ReturnType<FineTuneProvider['submit']>>;
    try {
      submitted = await provider.submit(providerJob(job), dataset, this.#providerContext(job, this.ctx.signal ?? new AbortController().signal));
    } catch (err) {
      if (err instanceof PermanentProviderError) return this.#fail(job, err.message);
      throw err;
    }
    const to = submitted.state.status === 'running' ? 'running' : 'submitted';
    const moved = await transition(
      this.#db,
      job.id,
      ['dataset_ready'],
      to,
      { providerJobId: submitted.providerJobId, submittedAt: sql`now()`, runs: job.runs + 1, pollFailures: 0 },
      `provider job ${submitted.providerJobId} (${submitted.state.providerStatus})`,
    );
    if (!moved) {
      // Ended while this worker was submitting: the provider's job must not train for nothing.
      await provider.cancel({ ...providerJob(job), providerJobId: submitted.providerJobId }, this.ctx).catch((err: unknown) =>
        this.ctx.log.warn({ err: (err as Error).message }, 'could not cancel the provider job of an ended job'),
      );
    }
  }

  async #follow(job: FineTuneJobRow, provider: FineTuneProvider): Promise<FineTuneJobView> {
    return provider.waits ? this.#wait(job, provider) : this.#poll(job, provider);
  }

  /** A remote provider: ask once, store what it says, and come back in FINE_TUNE_POLL_MS. */
  async #poll(job: FineTuneJobRow, provider: FineTuneProvider): Promise<FineTuneJobView> {
    const { config } = this.deps;
    const pjob = { ...providerJob(job), providerJobId: job.providerJobId! };
    let state: Awaited<ReturnType<FineTuneProvider['follow']>>;
    try {
      if (job.cancelRequestedAt) await provider.cancel(pjob, this.ctx);
      state = await provider.follow(pjob, this.#providerContext(job, new AbortController().signal));
    } catch (err) {
      if (err instanceof PermanentProviderError) return this.#fail(job, err.message);
      const failures = job.pollFailures + 1;
      const message = (err as Error).message;
      if (failures >= config.FINE_TUNE_MAX_POLL_FAILURES) return this.#fail(job, `gave up after ${failures} failed polls in a row: ${message}`);
      await patchActiveJob(this.#db, job.id, { pollFailures: failures });
      this.#log.add('info', [`poll failed (${failures} of ${config.FINE_TUNE_MAX_POLL_FAILURES} in a row): ${message}`]);
      return runAgainLater(this.ctx, config.FINE_TUNE_POLL_MS);
    }
    if (state.events?.length) {
      const events = [...state.events].sort((a, b) => a.at.getTime() - b.at.getTime() || (a.id < b.id ? -1 : 1));
      await addEvents(this.#db, job.id, events.map((e) => ({ kind: 'provider' as const, message: e.message.slice(0, 4000), at: e.at, providerEventId: e.id })));
    }
    return this.#settle(job, state);
  }

  /** A local provider: wait for the command, stopping it on cancel (checked every FINE_TUNE_CANCEL_CHECK_MS) or shutdown. */
  async #wait(job: FineTuneJobRow, provider: FineTuneProvider): Promise<FineTuneJobView> {
    const cancel = new AbortController();
    const watch = setInterval(() => {
      this.#db
        .select({ cancelRequestedAt: fineTuningJobs.cancelRequestedAt, status: fineTuningJobs.status })
        .from(fineTuningJobs)
        .where(eq(fineTuningJobs.id, job.id))
        .then(([row]) => {
          if (!row || row.cancelRequestedAt || isTerminal(row.status)) cancel.abort('cancel');
        })
        .catch(() => {});
    }, this.deps.config.FINE_TUNE_CANCEL_CHECK_MS);
    const shutdown = this.ctx.signal;
    const signal = shutdown ? AbortSignal.any([cancel.signal, shutdown]) : cancel.signal;
    const pjob = { ...providerJob(job), providerJobId: job.providerJobId! };
    let state: ProviderState;
    try {
      if (job.cancelRequestedAt) cancel.abort('cancel');
      state = await provider.follow(pjob, this.#providerContext(job, signal));
    } finally {
      clearInterval(watch);
    }
    if (state.status === 'lost' && !cancel.signal.aborted) {
      this.#log.add('info', [`the training process was lost with its worker (${state.providerStatus}); starting it again`]);
      const dataset = await this.#dataset(job);
      const again = await provider.submit(pjob, dataset, this.#providerContext(job, signal));
      const restarted = await patchActiveJob(this.#db, job.id, { providerJobId: again.providerJobId, runs: job.runs + 1 });
      if (!restarted) return this.run();
      return this.#wait(restarted, provider);
    }
    if (state.status === 'lost') state = { status: 'cancelled', providerStatus: 'lost' };
    if (shutdown?.aborted && !cancel.signal.aborted) {
      this.#log.add('info', ['worker stopping: the training command was stopped and starts again on the next worker']);
      await this.#log.flush();
      return runAgainLater(this.ctx, 0);
    }
    return this.#settle(job, state);
  }

  async #settle(job: FineTuneJobRow, state: ProviderState): Promise<FineTuneJobView> {
    switch (state.status) {
      case 'succeeded': {
        const { row } = await endJob(this.#db, job.id, 'succeeded', {
          fineTunedModel: state.fineTunedModel,
          message: state.fineTunedModel ? `fine-tuned model ${state.fineTunedModel}` : 'training finished (the provider named no model)',
        });
        return describeFineTuneJob(row!);
      }
      case 'failed':
        return this.#fail(job, state.error ?? `the provider reported the job ${state.providerStatus}`);
      case 'cancelled': {
        const { row } = await endJob(this.#db, job.id, 'cancelled', { message: job.cancelRequestedAt ? 'cancelled as requested' : `cancelled at the provider (${state.providerStatus})` });
        return describeFineTuneJob(row!);
      }
      default: {
        if (state.status === 'running' && job.status === 'submitted') {
          await transition(this.#db, job.id, ['submitted'], 'running', { pollFailures: 0 }, `provider says ${state.providerStatus}`);
        } else if (job.pollFailures > 0) {
          await patchActiveJob(this.#db, job.id, { pollFailures: 0 });
        }
        await this.ctx.job.updateProgress({ status: state.status, provider_status: state.providerStatus }).catch(() => {});
        await this.#log.flush();
        const poll = this.deps.config.FINE_TUNE_POLL_MS;
        return runAgainLater(this.ctx, job.cancelRequestedAt ? Math.min(poll, 1_000) : poll);
      }
    }
  }
}

/**
 * When the queue job fails for good (out of attempts, or its workers kept dying), the fine-tuning
 * job fails with the reason and its credits are refunded; what runs at the provider is stopped.
 */
export async function failFineTuneJobForGood(deps: FineTuningDeps, jobId: string, err: Error, log: Logger): Promise<void> {
  const job = await loadJob(deps.platform.db, jobId);
  if (!job || isTerminal(job.status)) return;
  const { ended } = await endJob(deps.platform.db, jobId, 'failed', { error: `gave up: ${err.message}`, message: `the queue job failed for good: ${err.message}` });
  const provider = deps.providers.get(job.provider as ProviderName);
  if (ended && provider && job.providerJobId) {
    await provider.cancel({ ...providerJob(job), providerJobId: job.providerJobId }, { log }).catch((cancelErr: unknown) =>
      log.warn({ err: (cancelErr as Error).message }, 'could not stop the provider job of a job given up'),
    );
  }
}
