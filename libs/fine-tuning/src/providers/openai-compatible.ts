import { createReadStream } from 'node:fs';
import OpenAI from 'openai';
import type { FineTuningConfig } from '../config.ts';
import { PermanentProviderError, type FineTuneProvider, type ProviderEvent, type ProviderState } from './provider.ts';

type RemoteStatus = OpenAI.FineTuning.FineTuningJob['status'];

/** The provider's job status in Caliber's lifecycle; statuses this code does not know count as running. */
export function mapRemoteStatus(status: RemoteStatus | string): ProviderState['status'] {
  switch (status) {
    case 'validating_files':
    case 'queued':
      return 'submitted';
    case 'succeeded':
    case 'failed':
    case 'cancelled':
      return status;
    default:
      return 'running'; // running, and newer non-terminal states (paused…)
  }
}

/** 4xx answers other than timeouts, conflicts and rate limits will not change on retry. */
function isPermanent(err: unknown): boolean {
  if (!(err instanceof OpenAI.APIError) || typeof err.status !== 'number') return false;
  return err.status >= 400 && err.status < 500 && ![408, 409, 429].includes(err.status);
}

function describe(err: unknown, doing: string): Error {
  if (err instanceof OpenAI.APIError && typeof err.status === 'number') {
    const hint = err.status === 401 || err.status === 403 ? ' (check FINE_TUNE_API_KEY)' : '';
    const message = `provider answered HTTP ${err.status} to ${doing}: ${err.message}${hint}`;
    return isPermanent(err) ? new PermanentProviderError(message) : new Error(message);
  }
  return new Error(`provider did not answer ${doing}: ${(err as Error).message}`);
}

async function call<T>(doing: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw describe(err, doing);
  }
}

function stateOf(job: OpenAI.FineTuning.FineTuningJob): ProviderState {
  const status = mapRemoteStatus(job.status);
  return {
    status,
    providerStatus: job.status,
    fineTunedModel: job.fine_tuned_model ?? null,
    error: status === 'failed' ? [job.error?.code, job.error?.message].filter(Boolean).join(': ') || 'the provider reported the job failed' : null,
  };
}

/**
 * Any API that speaks OpenAI's files and `/fine_tuning/jobs` endpoints, through the official
 * client (its retries of 429, 5xx and network errors, honouring Retry-After, included). Submit is
 * safe to repeat: the uploaded file ids are remembered before the job is created, and a retry
 * looks for a provider job already training on that file before it creates one.
 */
export function openAiCompatibleProvider(config: Pick<FineTuningConfig, 'FINE_TUNE_BASE_URL' | 'FINE_TUNE_API_KEY' | 'FINE_TUNE_REQUEST_TIMEOUT_MS' | 'FINE_TUNE_POLL_MS'>): FineTuneProvider {
  const client = new OpenAI({
    baseURL: config.FINE_TUNE_BASE_URL,
    // A self-hosted endpoint may need no key; the client insists on one.
    apiKey: config.FINE_TUNE_API_KEY ?? 'none',
    organization: null,
    project: null,
    timeout: config.FINE_TUNE_REQUEST_TIMEOUT_MS,
    maxRetries: 2,
  });

  async function upload(path: string): Promise<string> {
    const file = await call('the file upload', () => client.files.create({ file: createReadStream(path), purpose: 'fine-tune' }));
    return file.id;
  }

  /** The provider job already training on `fileId`, if an earlier attempt created it. */
  async function findJobFor(fileId: string): Promise<OpenAI.FineTuning.FineTuningJob | undefined> {
    let page = await call('listing fine-tuning jobs', () => client.fineTuning.jobs.list({ limit: 100 }));
    for (let pages = 0; pages < 10; pages++) {
      const found = page.data.find((j) => j.training_file === fileId);
      if (found || !page.hasNextPage()) return found;
      page = await call('listing fine-tuning jobs', () => page.getNextPage());
    }
    return undefined;
  }

  return {
    name: 'openai-compatible',
    pollMs: config.FINE_TUNE_POLL_MS,

    async submit(job, dataset, ctx) {
      const retried = Boolean(job.providerTrainingFileId);
      if (!retried && ctx.cancelRequested) return null;
      const trainingFile = job.providerTrainingFileId ?? (await upload(dataset.trainingPath));
      if (!retried) await ctx.remember({ providerTrainingFileId: trainingFile });
      let validationFile = job.providerValidationFileId;
      if (dataset.validationPath && !validationFile) {
        validationFile = await upload(dataset.validationPath);
        await ctx.remember({ providerValidationFileId: validationFile });
      }
      if (retried) {
        const existing = await findJobFor(trainingFile);
        if (existing) {
          ctx.log.info({ providerJobId: existing.id }, 'found the provider job an earlier attempt created');
          return { providerJobId: existing.id, state: stateOf(existing) };
        }
        if (ctx.cancelRequested) return null;
      }
      const created = await call('creating the fine-tuning job', () =>
        client.fineTuning.jobs.create({ model: job.baseModel, training_file: trainingFile, ...(validationFile ? { validation_file: validationFile } : {}) }),
      );
      return { providerJobId: created.id, state: stateOf(created) };
    },

    async follow(job, ctx) {
      const remote = await call('the status poll', () => client.fineTuning.jobs.retrieve(job.providerJobId));
      let events: ProviderEvent[] | undefined;
      try {
        const page = await client.fineTuning.jobs.listEvents(job.providerJobId, { limit: 50 });
        events = page.data.map((e) => ({ id: e.id, at: new Date(e.created_at * 1000), message: `${e.level === 'info' ? '' : `[${e.level}] `}${e.message}` }));
      } catch (err) {
        // Events are a nicety: a provider without them still trains.
        ctx.log.debug({ err: (err as Error).message }, 'provider events unavailable');
      }
      return { ...stateOf(remote), events };
    },

    async cancel(job, ctx, opts = {}) {
      if (job.cancelSentAt && !opts.final) return false; // asked once; the polls read when it takes effect
      try {
        await client.fineTuning.jobs.cancel(job.providerJobId);
      } catch (err) {
        // A job that has just ended cannot be cancelled; the next poll reads how it ended.
        if (!isPermanent(err)) throw describe(err, 'the cancel request');
        ctx.log.info({ err: (err as Error).message }, 'provider refused the cancel; reading the job status instead');
      }
      return true;
    },
  };
}
