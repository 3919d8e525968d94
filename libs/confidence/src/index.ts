import { confidenceDashboard } from './dashboard.ts';
import { jobHandler, type DomainModule } from '@caliber/platform';
import { calibrateConfidenceJob, runConfidenceCalibration } from './calibrate-confidence.ts';
import { loadConfidenceConfig, type ConfidenceConfig } from './config.ts';
import { confidenceRoutes } from './routes.ts';

export { applyTemperature, binIndex, calibrationMetrics, fitTemperature, groupOutcomes, logLoss, scaleGroups, type ConfidenceGroup } from './calibration-math.ts';
export { calibrateConfidenceJob, fitModel, runConfidenceCalibration } from './calibrate-confidence.ts';
export { insertScores, insertPerformanceMetrics, recordOutcomes, scoreSchema, scoreBatchSchema, outcomeSchema, performanceMetricSchema, MAX_BATCH } from './ingest.ts';
export { loadConfidenceConfig, type ConfidenceConfig } from './config.ts';

/** Confidence scoring: per-tenant scores, outcomes and performance metrics, and how well confidence predicts outcomes. */
export function confidenceModule(config: ConfidenceConfig = loadConfidenceConfig()): DomainModule {
  return {
    name: 'confidence',
    tenantRoutes: (ctx) => confidenceRoutes(ctx, config),
    dashboard: (ctx) => confidenceDashboard(ctx, config),
    jobs: [jobHandler(calibrateConfidenceJob, (payload, job) => runConfidenceCalibration(job, config, payload))],
    schedules: (platform) => [
      {
        id: 'confidence-calibration',
        description: "Fit a confidence temperature to every tenant's models from their outcomes (CONFIDENCE_CALIBRATION_CRON)",
        job: calibrateConfidenceJob,
        payload: { requested_by: 'schedule' },
        pattern: config.CONFIDENCE_CALIBRATION_CRON || undefined,
        tz: platform.TZ,
      },
    ],
  };
}
