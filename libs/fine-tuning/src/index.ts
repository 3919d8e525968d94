import { fineTuningDashboard } from './dashboard.ts';
import { jobHandler, type DomainModule } from '@caliber/platform';
import { fineTuneCheckJob } from '@caliber/response-quality';
import { runAutoFineTune } from './auto.ts';
import { loadFineTuningConfig, type FineTuningConfig } from './config.ts';
import { reconcileFineTuneJobs, runFineTuneJob } from './jobs.ts';
import { reconcileFineTuning } from './reconcile.ts';
import { fineTuningRoutes } from './routes.ts';
import { createProviders, failFineTuneJobForGood, processFineTuneRun } from './run-job.ts';

export { loadFineTuningConfig, providerProblem, PROVIDER_NAMES, type FineTuningConfig, type ProviderName } from './config.ts';
export { decideFineTune, computeFineTuneStats, type FineTuneDecision, type FineTuneStats } from './criteria.ts';
export { buildDataset, exampleLine, validationSize, DatasetTooSmallError } from './dataset.ts';
export { accountCredits, closeReservation, grantCredits, reserveCredits, InsufficientCreditsError } from './credits.ts';
export { describeFineTuneJob, reconcileFineTuneJobs, runFineTuneJob } from './jobs.ts';
export { mapRemoteStatus, openAiCompatibleProvider } from './providers/openai-compatible.ts';
export { commandProvider, fineTunedModelFrom } from './providers/command.ts';
export type { FineTuneProvider } from './providers/provider.ts';
export { runAutoFineTune } from './auto.ts';

/** Fine-tuning: the trigger policy, jobs run at a provider from corrected responses, and credits. */
export function fineTuningModule(config: FineTuningConfig = loadFineTuningConfig()): DomainModule {
  const providers = createProviders(config);
  return {
    name: 'fine-tuning',
    dashboard: (ctx) => fineTuningDashboard(ctx),
    routes: (ctx) => fineTuningRoutes(ctx, config),
    jobs: [
      jobHandler(runFineTuneJob, (payload, job) => processFineTuneRun({ platform: job.platform, config, providers }, payload.fine_tuning_job_id, job), {
        onFailedForGood: async (payload, job, err) => {
          await failFineTuneJobForGood({ platform: job.platform, config, providers }, payload.fine_tuning_job_id, job.job.id, err, job.log);
        },
      }),
      jobHandler(fineTuneCheckJob, (payload, job) => runAutoFineTune(job.platform, config, payload.analysis_run_id, job)),
      jobHandler(reconcileFineTuneJobs, (_payload, job) => reconcileFineTuning({ platform: job.platform, config, providers }, job.platform, job.log)),
    ],
    schedules: (platform) => [
      {
        id: 'fine-tune-reconcile',
        description: 'Fail (and refund) fine-tuning jobs whose queue job failed for good, queue again those whose queue job was lost (FINE_TUNE_RECONCILE_CRON)',
        job: reconcileFineTuneJobs,
        payload: { requested_by: 'schedule' },
        pattern: config.FINE_TUNE_RECONCILE_CRON || undefined,
        tz: platform.TZ,
      },
    ],
  };
}
