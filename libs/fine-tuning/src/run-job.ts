import { isDelayedError, runAgainLater, tryAdvisoryLock, unavailableService, type Database, type JobContext, type Logger, type PlatformContext } from '@caliber/platform';
import { UnrecoverableError } from 'bullmq';
import { dirname } from 'node:path';
import { eq, sql } from 'drizzle-orm';
import pg from 'pg';
import { providerProblem, type FineTuningConfig, type ProviderName } from './config.ts';
import { buildDataset, datasetPaths, DatasetTooSmallError, existingDataset, type BuiltDataset } from './dataset.ts';
import { addEvents, describeFineTuneJob, endJob, isTerminal, loadJob, patchActiveJob, transition, type FineTuneJobRow, type FineTuneJobView } from './jobs.ts';
import { commandProvider } from './providers/command.ts';
import { openAiCompatibleProvider } from './providers/openai-compatible.ts';
import { PermanentProviderError, type FineTuneProvider, type FollowResult, type ProviderContext, type ProviderDataset, type ProviderJob } from './providers/provider.ts';
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

const NOT_LOCKED = Symbol('not locked');

/**
 * Runs `fn` holding an advisory lock on the job, if it is free: two workers never step one job at
 * once (BullMQ may hand a job to a second worker while the first still runs it), and the lock goes
 * with its connection if the worker dies. A transaction lock (see tryAdvisoryLock), so it holds
 * behind a transaction-mode pooler.
 */
async function withJobLock<T>(pool: pg.Pool, jobId: string, fn: () => Promise<T>): Promise<T | typeof NOT_LOCKED> {
  const outcome = await tryAdvisoryLock(pool, ['caliber:fine-tune', jobId], fn);
  return outcome.locked ? outcome.value : NOT_LOCKED;
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
    outputOffset: row.outputOffset,
    cancelSentAt: row.cancelSentAt,
    dir: row.datasetPath ? dirname(row.datasetPath) : null,
  };
}

const started = (row: FineTuneJobRow) => ({ ...providerJob(row), providerJobId: row.providerJobId! });

function datasetStats(ds: BuiltDataset) {
  return {
    datasetPath: ds.paths.training,
    datasetRows: ds.trainingRows,
    validationRows: ds.validationRows,
    datasetBytes: ds.bytes,
    datasetSha256: ds.sha256,
  };
}

/** Errors that end an attempt on purpose (delayed, or failed for good), not failures of a step. */
const passThrough = (err: unknown) => isDelayedError(err) || err instanceof UnrecoverableError;

/**
 * One step run of a fine-tuning job, from wherever it stands: build the dataset, submit it, then
 * poll the provider — the queue job is delayed by the provider's poll interval and runs again, so
 * no worker waits on a training. Each step is a compare-and-set on the job's status, so a retry
 * after a crash resumes where the last committed step left off.
 */
export async function processFineTuneRun(deps: FineTuningDeps, jobId: string, ctx: JobContext): Promise<FineTuneJobView> {
  try {
    const outcome = await withJobLock(deps.platform.pool, jobId, () => new FineTuneRun(deps, jobId, ctx).run());
    if (outcome === NOT_LOCKED) {
      ctx.log.info('another worker is stepping this job; checking again later');
      return await runAgainLater(ctx, 1_000);
    }
    return outcome;
  } catch (err) {
    // Postgres not answering says nothing about the training: try again later rather than spend
    // the queue job's attempts, which last the job's whole life.
    if (passThrough(err) || unavailableService(err) !== 'postgres') throw err;
    ctx.log.warn({ err: (err as Error).message }, 'Postgres is not answering; trying this fine-tuning job again shortly');
    return runAgainLater(ctx, Math.min(deps.config.FINE_TUNE_POLL_MS, 10_000));
  }
}

class FineTuneRun {
  readonly #db: Database;

  constructor(
    private readonly deps: FineTuningDeps,
    private readonly id: string,
    private readonly ctx: JobContext,
  ) {
    this.#db = deps.platform.db;
  }

  async run(): Promise<FineTuneJobView> {
    for (;;) {
      const job = await loadJob(this.#db, this.id);
      if (!job) throw new UnrecoverableError(`No fine-tuning job ${this.id}`);
      if (isTerminal(job.status)) return describeFineTuneJob(job);
      if (job.queueJobId && job.queueJobId !== this.ctx.job.id) {
        // A queue job the reconciler replaced: the job is followed by its newer one.
        this.ctx.log.info({ current: job.queueJobId }, 'not the current queue job of this fine-tuning job; leaving it');
        return describeFineTuneJob(job);
      }
      await this.ctx.job.updateProgress({ status: job.status }).catch(() => {});
      const provider = this.deps.providers.get(job.provider as ProviderName);
      if (!provider) {
        const problem = `this worker cannot use provider "${job.provider}": ${providerProblem(this.deps.config, job.provider as ProviderName) ?? 'unknown provider'}`;
        if (!job.providerJobId) return this.#fail(job, problem);
        // The training runs: a worker configured for it can follow it.
        this.ctx.log.warn(problem);
        return runAgainLater(this.ctx, this.deps.config.FINE_TUNE_POLL_MS);
      }
      if (job.cancelRequestedAt && (job.status === 'pending' || job.status === 'preparing')) {
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
          return await this.#poll(job, provider);
      }
    }
  }

  /**
   * Ends the job as failed (refunding it) and fails the queue job without retries. Unless the
   * provider itself reported the failure, what it runs is stopped.
   */
  async #fail(job: FineTuneJobRow, reason: string, provider?: FineTuneProvider): Promise<never> {
    const { ended } = await endJob(this.#db, job.id, 'failed', { error: reason, message: reason });
    if (ended && provider && job.providerJobId) {
      await provider.cancel(started(job), this.ctx, { final: true }).catch((err: unknown) => this.ctx.log.warn({ err: (err as Error).message }, 'could not stop the training of a failed job'));
    }
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
    await addEvents(this.#db, job.id, [
      { kind: 'info', message: `dataset written again on this worker${same ? '' : ` and it differs (responses were deleted since): ${ds.trainingRows} training, ${ds.validationRows} validation examples`}` },
    ]);
    await patchActiveJob(this.#db, job.id, datasetStats(ds));
    return { trainingPath: ds.paths.training, validationPath: ds.validationPath, dir: paths.dir };
  }

  async #submit(job: FineTuneJobRow, provider: FineTuneProvider): Promise<void> {
    const dataset = await this.#dataset(job);
    const ctx: ProviderContext = {
      log: this.ctx.log,
      cancelRequested: Boolean(job.cancelRequestedAt),
      remember: async (patch) => {
        await patchActiveJob(this.#db, job.id, patch);
      },
    };
    let submitted: Awaited<ReturnType<FineTuneProvider['submit']>>;
    try {
      submitted = await provider.submit(providerJob(job), dataset, ctx);
    } catch (err) {
      if (err instanceof PermanentProviderError) return this.#fail(job, err.message);
      throw err;
    }
    if (!submitted) {
      await endJob(this.#db, job.id, 'cancelled', { message: 'cancelled before the training started' });
      return;
    }
    const moved = await transition(
      this.#db,
      job.id,
      ['dataset_ready'],
      submitted.state.status === 'submitted' ? 'submitted' : 'running',
      { providerJobId: submitted.providerJobId, submittedAt: sql`now()`, runs: job.runs + 1, pollFailures: 0, outputOffset: 0 },
      `provider job ${submitted.providerJobId} (${submitted.state.providerStatus})`,
    );
    if (!moved) {
      // Ended while this worker was submitting: the training must not run for nothing.
      await provider.cancel({ ...providerJob(job), dir: dataset.dir, runs: job.runs + 1, providerJobId: submitted.providerJobId }, this.ctx, { final: true }).catch((err: unknown) =>
        this.ctx.log.warn({ err: (err as Error).message }, 'could not stop the training of an ended job'),
      );
    }
  }

  /** Ask the provider once, store what it says, and come back in its poll interval. */
  async #poll(job: FineTuneJobRow, provider: FineTuneProvider): Promise<FineTuneJobView> {
    const next = await this.#pollOnce(job, provider);
    if ('view' in next) return next.view;
    return runAgainLater(this.ctx, next.againInMs);
  }

  async #pollOnce(job: FineTuneJobRow, provider: FineTuneProvider): Promise<{ view: FineTuneJobView } | { againInMs: number }> {
    const { config } = this.deps;
    // Right after a cancel is passed on, look again soon to see it take effect.
    let cancelJustSent = false;
    try {
      if (job.cancelRequestedAt && (await provider.cancel(started(job), this.ctx)) && !job.cancelSentAt) {
        cancelJustSent = true;
        job = (await patchActiveJob(this.#db, job.id, { cancelSentAt: sql`now()` })) ?? job;
      }
      const state = await provider.follow(started(job), this.ctx);
      const fineTunedModel = await this.#record(job, state);
      switch (state.status) {
        case 'succeeded': {
          const { row } = await endJob(this.#db, job.id, 'succeeded', {
            fineTunedModel,
            message: fineTunedModel ? `fine-tuned model ${fineTunedModel}` : 'training finished (the provider named no model)',
          });
          return { view: describeFineTuneJob(row!) };
        }
        case 'failed':
          return await this.#fail(job, state.error ?? `the provider reported the job ${state.providerStatus}`);
        case 'cancelled': {
          const { row } = await endJob(this.#db, job.id, 'cancelled', { message: job.cancelRequestedAt ? 'cancelled as requested' : `cancelled at the provider (${state.providerStatus})` });
          return { view: describeFineTuneJob(row!) };
        }
        case 'elsewhere': {
          // Only a worker on that host can see the process: hand the job back until one takes it,
          // and give up when none has for FINE_TUNE_MAX_POLL_FAILURES polls in a row (that host,
          // or container, is gone).
          const misses = job.pollFailures + 1;
          if (misses >= config.FINE_TUNE_MAX_POLL_FAILURES) {
            return await this.#fail(job, `the training command ${state.providerStatus}, and no fine-tune worker there has looked at it in ${misses} polls; that host may be gone`);
          }
          await patchActiveJob(this.#db, job.id, { pollFailures: misses });
          if (misses === 1) await addEvents(this.#db, job.id, [{ kind: 'info', message: `the training command ${state.providerStatus}; waiting for a fine-tune worker there` }]);
          return { againInMs: provider.pollMs };
        }
        default: {
          if (state.status === 'running' && job.status === 'submitted') {
            await transition(this.#db, job.id, ['submitted'], 'running', { pollFailures: 0 }, `provider says ${state.providerStatus}`);
          } else if (job.pollFailures > 0) {
            await patchActiveJob(this.#db, job.id, { pollFailures: 0 });
          }
          await this.ctx.job.updateProgress({ status: state.status, provider_status: state.providerStatus }).catch(() => {});
          // Output left to copy is read at once rather than a poll interval per MiB.
          if (state.output?.more) return { againInMs: 0 };
          return { againInMs: cancelJustSent ? Math.min(provider.pollMs, 1_000) : provider.pollMs };
        }
      }
    } catch (err) {
      if (passThrough(err) || unavailableService(err) === 'postgres') throw err;
      if (err instanceof PermanentProviderError) return this.#fail(job, err.message, provider);
      // The provider did not answer: polls keep trying, and the queue job's attempts are left for
      // the steps that build and submit.
      const failures = job.pollFailures + 1;
      const message = (err as Error).message;
      if (failures >= config.FINE_TUNE_MAX_POLL_FAILURES) return this.#fail(job, `gave up after ${failures} failed polls in a row: ${message}`, provider);
      await patchActiveJob(this.#db, job.id, { pollFailures: failures });
      await addEvents(this.#db, job.id, [{ kind: 'info', message: `poll failed (${failures} of ${config.FINE_TUNE_MAX_POLL_FAILURES} in a row): ${message}` }]);
      return { againInMs: provider.pollMs };
    }
  }

  /**
   * Stores a poll's news in one transaction: the provider's events (once each), a command's new
   * output lines (FINE_TUNE_LOG_MAX_LINES of them) with the offset to read from next, and a model
   * the output named. Returns the fine-tuned model known so far.
   */
  async #record(job: FineTuneJobRow, state: FollowResult): Promise<string | null> {
    const max = this.deps.config.FINE_TUNE_LOG_MAX_LINES;
    const lines = state.output?.lines ?? [];
    const room = Math.max(0, max - job.outputLines);
    const kept = lines.slice(0, room).map((l) => l.replaceAll('\u0000', '').slice(0, 4000));
    const crossed = job.outputLines <= max && job.outputLines + lines.length > max;
    const events = [...(state.events ?? [])].sort((a, b) => a.at.getTime() - b.at.getTime() || (a.id < b.id ? -1 : 1));
    const fineTunedModel = state.fineTunedModel ?? job.fineTunedModel;
    if (events.length === 0 && lines.length === 0 && fineTunedModel === job.fineTunedModel) return fineTunedModel;
    await this.#db.transaction(async (tx) => {
      await addEvents(tx, job.id, [
        ...events.map((e) => ({ kind: 'provider' as const, message: e.message.slice(0, 4000), at: e.at, providerEventId: e.id })),
        ...kept.map((message) => ({ kind: 'output' as const, message })),
        ...(crossed ? [{ kind: 'info' as const, message: `output past ${max} lines is not copied here (FINE_TUNE_LOG_MAX_LINES); the whole of it is in the run's log file` }] : []),
      ]);
      if (state.output || fineTunedModel !== job.fineTunedModel) {
        await tx
          .update(fineTuningJobs)
          .set({
            ...(state.output ? { outputOffset: state.output.offset, outputLines: job.outputLines + lines.length } : {}),
            ...(fineTunedModel !== job.fineTunedModel ? { fineTunedModel } : {}),
            updatedAt: sql`now()`,
          })
          .where(eq(fineTuningJobs.id, job.id));
      }
    });
    if (kept.length > 0) await this.ctx.job.log(kept.join('\n')).catch(() => {});
    return fineTunedModel;
  }
}

/**
 * When the current queue job of a fine-tuning job fails for good (out of attempts, or its workers
 * kept dying), the fine-tuning job fails with the reason and its credits are refunded; what runs at
 * the provider is stopped. A queue job the reconciler already replaced changes nothing.
 */
export async function failFineTuneJobForGood(deps: FineTuningDeps, jobId: string, queueJobId: string | undefined, err: Error, log: Logger): Promise<boolean> {
  const job = await loadJob(deps.platform.db, jobId);
  if (!job || isTerminal(job.status) || (queueJobId !== undefined && job.queueJobId !== queueJobId)) return false;
  const { ended } = await endJob(deps.platform.db, jobId, 'failed', { error: `gave up: ${err.message}`, message: `the queue job failed for good: ${err.message}` });
  const provider = deps.providers.get(job.provider as ProviderName);
  if (ended && provider && job.providerJobId) {
    await provider.cancel(started(job), { log }, { final: true }).catch((cancelErr: unknown) => log.warn({ err: (cancelErr as Error).message }, 'could not stop the training of a job given up'));
  }
  return ended;
}
