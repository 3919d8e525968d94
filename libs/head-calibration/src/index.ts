import { jobHandler, type DomainModule } from '@caliber/platform';
import { runHeadCalibration } from './calibrate-heads.ts';
import { loadHeadCalibrationConfig, type HeadCalibrationConfig } from './config.ts';
import { calibrateHeadsJob, retagBacklogJob, retagFileJob, updateReferenceJob } from './jobs.ts';
import { countFailedRetag, enqueueRetagBacklog, retagFilesProcessor } from './retag.ts';
import { headCalibrationDashboard } from './dashboard.ts';
import { headCalibrationRoutes } from './routes.ts';
import { updateHeadReference } from './update-reference.ts';

export { loadHeadCalibrationConfig, type HeadCalibrationConfig } from './config.ts';
export { calibrateHeadsJob, retagBacklogJob, retagFileJob, updateReferenceJob } from './jobs.ts';
export { enqueueRetagBacklog, loadReferenceLabels, referenceDigest, retagRange, retagStatement, retagStatus } from './retag.ts';
export { writeCalibratedTags, AudioFileError } from './audio-tags.ts';
export { runHeadCalibration, decodeFloat8Array, type CalibrationResult } from './calibrate-heads.ts';
export { importCalibrationBundle, readBundleDir, validateBundle, InvalidBundleError } from './import-bundle.ts';
export { ingestLibraryFiles } from './library.ts';
export { referenceCalibrationPath, versionedCalibrationPath } from './calibration-files.ts';

/** Head calibration: library ingest, calibration runs, reference updates, bundle import. */
export function headCalibrationModule(config: HeadCalibrationConfig = loadHeadCalibrationConfig()): DomainModule {
  return {
    name: 'head-calibration',
    routes: (ctx) => headCalibrationRoutes(ctx, config),
    dashboard: (ctx) => headCalibrationDashboard(ctx, config),
    jobs: [
      jobHandler(calibrateHeadsJob, (_payload, job) =>
        runHeadCalibration(job.platform, config, {
          jobKey: job.jobKey,
          log: job.log,
          progress: (p) => job.job.updateProgress(p),
        }),
      ),
      jobHandler(updateReferenceJob, (payload, job) => updateHeadReference(job.platform.db, config, payload, job)),
      jobHandler(retagFileJob, retagFilesProcessor(config), { onFailedForGood: countFailedRetag }),
      jobHandler(retagBacklogJob, async (payload, job) => {
        const result = await enqueueRetagBacklog(job.platform, config, { heads: payload.heads, fromJob: true });
        job.log.info({ ...result, reason: payload.reason, heads: payload.heads?.length ?? 'all' }, 'retag backlog enqueued');
        return result;
      }),
    ],
    schedules: (platform) => [
      {
        id: 'calibrate-heads',
        description: 'Head calibration run over the whole library (CALIBRATION_CRON, development mode only)',
        job: calibrateHeadsJob,
        payload: { requested_by: 'schedule' },
        pattern: (config.CALIBRATE_HEADS && config.CALIBRATION_CRON) || undefined,
        tz: platform.TZ,
      },
    ],
  };
}
