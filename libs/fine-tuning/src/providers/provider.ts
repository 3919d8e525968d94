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
  /** Times the training was started, this one included once submitted. */
  runs: number;
  /** Bytes of a command's output already in the job's log. */
  outputOffset: number;
  /** When a cancel was passed on to the provider, if it was. */
  cancelSentAt: Date | null;
  /** The job's directory, where its dataset was written (null before it was). */
  dir: string | null;
}

export interface ProviderDataset {
  trainingPath: string;
  validationPath: string | null;
  /** The job's own directory (a command gets `<dir>/output` to write into). */
  dir: string;
}

/**
 * Where the training stands, in Caliber's terms. `elsewhere`: a command started on another host,
 * which only a worker there can follow.
 */
export interface ProviderState {
  status: 'submitted' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'elsewhere';
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

/** A poll's answer: the state, and what to add to the job's log since the last poll. */
export interface FollowResult extends ProviderState {
  /** The provider's own events, stored once each (by id) however often they are seen. */
  events?: ProviderEvent[];
  /** A command's new output lines, the offset to read from next time, and whether more is waiting. */
  output?: { lines: string[]; offset: number; more?: boolean };
}

export interface ProviderContext {
  log: Logger;
  /** Stores what must survive a crash in the middle of a submit (uploaded file ids). */
  remember(patch: Partial<Pick<ProviderJob, 'providerTrainingFileId' | 'providerValidationFileId'>>): Promise<void>;
  /** A cancel is pending: submit adopts what an earlier attempt started, but starts nothing new. */
  cancelRequested: boolean;
}

/**
 * A place training runs, followed by polling: `submit` hands the dataset over and starts the
 * training (null when a cancel is pending and nothing was started), `follow` says where it stands
 * (asked again every `pollMs`), `cancel` is called on each poll while a cancel is pending and says
 * whether it passed something on (`final`: the job has ended, stop the training now). Every method
 * may be called again after a crash, by another worker.
 */
export interface FineTuneProvider {
  readonly name: ProviderName;
  readonly pollMs: number;
  submit(job: ProviderJob, dataset: ProviderDataset, ctx: ProviderContext): Promise<{ providerJobId: string; state: ProviderState } | null>;
  follow(job: ProviderJob & { providerJobId: string }, ctx: Pick<ProviderContext, 'log'>): Promise<FollowResult>;
  cancel(job: ProviderJob & { providerJobId: string }, ctx: Pick<ProviderContext, 'log'>, opts?: { final?: boolean }): Promise<boolean>;
}

/** A failure retrying will not fix (the provider refused the request): the job fails at once. */
export class PermanentProviderError extends Error {
  override name = 'PermanentProviderError';
}
