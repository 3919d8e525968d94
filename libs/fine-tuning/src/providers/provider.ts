import type { Logger } from '@caliber/platform';
import type { ProviderName } from '../config.ts';

/** What a provider needs to know of a job. */
export interface ProviderJob {
  id: string;
  modelId: string;
  baseModel: string;
  providerJobId: string | null;
  providerTrainingFileId: string | null;
  providerValidationFileId: string | null;
  /** Times the training has been started before this one. */
  runs: number;
}

export interface ProviderDataset {
  trainingPath: string;
  validationPath: string | null;
  /** The job's own directory (a command gets `<dir>/output` to write into). */
  dir: string;
}

/** Where the training stands, in Caliber's terms. `lost`: a local process that died with its worker. */
export interface ProviderState {
  status: 'submitted' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'lost';
  /** The provider's own word for it (`validating_files`, `queued`, an exit code…). */
  providerStatus: string;
  fineTunedModel?: string | null;
  error?: string | null;
}

export interface ProviderEvent {
  id: string;
  at: Date;
  message: string;
}

export interface ProviderContext {
  log: Logger;
  /** Stops a provider that waits (a training command): cancel, or the worker shutting down. */
  signal: AbortSignal;
  /** Stores what must survive a crash in the middle of a submit (uploaded file ids). */
  remember(patch: Partial<Pick<ProviderJob, 'providerTrainingFileId' | 'providerValidationFileId'>>): Promise<void>;
  /** Appends lines to the job's log. */
  output(lines: string[]): void;
}

/**
 * A place training runs. `submit` hands the dataset over and starts the training; `follow` says
 * where it stands (a remote API answers at once and is asked again later; a local process is
 * waited for, `waits`); `cancel` stops it. Every method may be called again after a crash.
 */
export interface FineTuneProvider {
  readonly name: ProviderName;
  readonly waits: boolean;
  submit(job: ProviderJob, dataset: ProviderDataset, ctx: ProviderContext): Promise<{ providerJobId: string; state: ProviderState }>;
  follow(job: ProviderJob & { providerJobId: string }, ctx: ProviderContext): Promise<ProviderState & { events?: ProviderEvent[] }>;
  cancel(job: ProviderJob & { providerJobId: string }, ctx: Pick<ProviderContext, 'log'>): Promise<void>;
}

/** A failure retrying will not fix (the provider refused the request): the job fails at once. */
export class PermanentProviderError extends Error {
  override name = 'PermanentProviderError';
}
