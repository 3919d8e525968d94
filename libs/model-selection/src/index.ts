import { modelSelectionDashboard } from './dashboard.ts';
import { jobHandler, type DomainModule } from '@caliber/platform';
import { calibrateModelSelectionJob, runModelSelection } from './calibrate.ts';
import { loadModelSelectionConfig, type ModelSelectionConfig } from './config.ts';
import { modelSelectionRoutes } from './routes.ts';

export { calibrateModelSelectionJob, candidateStats, runModelSelection, CHANGE_EVENT, type ModelSelectionRunResult } from './calibrate.ts';
export { loadModelSelectionConfig, modelSelectionEnvSchema, type ModelSelectionConfig } from './config.ts';
export { insertResults, resultBatchSchema, resultSchema, MAX_RESULTS } from './ingest.ts';
export { chooseModel, rankCandidates, scoreCandidate, sizeCategoryOf, SIZE_THRESHOLDS, type CandidateStats, type ScoringParams } from './scoring.ts';
export { ANY, SIZE_CATEGORIES } from './schema.ts';

/** Model selection: from evaluation results per (language, size), the model to use, and a notification when it changes. */
export function modelSelectionModule(config: ModelSelectionConfig = loadModelSelectionConfig()): DomainModule {
  return {
    name: 'model-selection',
    routes: (ctx) => modelSelectionRoutes(ctx, config),
    dashboard: (ctx) => modelSelectionDashboard(ctx),
    jobs: [jobHandler(calibrateModelSelectionJob, (payload, job) => runModelSelection(job, config, payload))],
    schedules: (platform) => [
      {
        id: 'model-selection',
        description: 'Choose the model of every (language, size) from the evaluation results (MODEL_SELECTION_CRON)',
        job: calibrateModelSelectionJob,
        payload: { requested_by: 'schedule' },
        pattern: config.MODEL_SELECTION_CRON || undefined,
        tz: platform.TZ,
      },
    ],
  };
}
