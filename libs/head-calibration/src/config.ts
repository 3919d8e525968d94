import { envVar, parseEnv } from '@caliber/platform';
import { z } from 'zod';
import type { DriftThresholds } from './math.ts';

const threshold = (def: number) => envVar.number(def, 0, 1e6);

const overridesSchema = z.record(
  z.string().regex(/^[^/]+\/[^/]+$/, 'keys are "<model>/<head>"'),
  z
    .object({ apd: z.number().min(0), srd: z.number().min(0), jsd: z.number().min(0), median: z.number().min(0), iqr: z.number().min(0) })
    .partial()
    .strict(),
);

export const headCalibrationEnvSchema = z.object({
  /** Development mode: the calibration API runs; otherwise it answers 403 and references are imported. */
  CALIBRATE_HEADS: envVar.bool(false),
  MODELS_DIR: z.string().min(1).default('./models'),
  CALIBRATION_MIN_SAMPLES: envVar.int(1000, 1),
  JSD_BINS: envVar.int(100, 2, 10_000),
  CALIBRATION_DRIFT_APD: threshold(0.01),
  CALIBRATION_DRIFT_SRD: threshold(0.05),
  CALIBRATION_DRIFT_JSD: threshold(0.1),
  CALIBRATION_DRIFT_MEDIAN: threshold(0.05),
  CALIBRATION_DRIFT_IQR: threshold(0.1),
  /** Per-head thresholds, e.g. `{"effnet/mood_happy":{"jsd":0.15}}`. */
  CALIBRATION_DRIFT_OVERRIDES: envVar.json(overridesSchema, {}, 'e.g. {"effnet/mood_happy":{"jsd":0.15}}'),
  /** Optional cron pattern for a recurring calibration run (development mode only). */
  CALIBRATION_CRON: envVar.cron(''),
  /** Once every reference update of a run is installed, re-tag the files of the heads it moved. */
  AUTO_RETAG: envVar.bool(false),
  /** Start a calibration run after this many new tagged files since the last run (0: never). */
  NEW_FILES_RECALIBRATE: envVar.int(0, 0),
  /** File ids one retag-file job covers (its files are re-tagged with one database write). */
  RETAG_BATCH_SIZE: envVar.int(1_000, 1, 100_000),
  /** Jobs `retag-all` adds per BullMQ `addBulk` call. */
  RETAG_ENQUEUE_CHUNK: envVar.int(1_000, 1, 100_000),
  /** Completed retag-file jobs kept for inspection (failed ones are kept for JOB_KEEP_FAILED_SECONDS). */
  RETAG_KEEP_COMPLETED: envVar.int(1_000, 0),
  /** Also write the calibrated tags into the audio files themselves. */
  RETAG_WRITE_FILES: envVar.bool(false),
  /** Audio files one worker process rewrites at once. */
  RETAG_FILE_WRITES: envVar.int(4, 1, 256),
});

export type HeadCalibrationConfig = z.infer<typeof headCalibrationEnvSchema>;

export function loadHeadCalibrationConfig(env: Record<string, string | undefined> = process.env): HeadCalibrationConfig {
  return parseEnv(headCalibrationEnvSchema, env);
}

export function thresholdsFor(config: HeadCalibrationConfig, model: string, head: string): DriftThresholds {
  return {
    apd: config.CALIBRATION_DRIFT_APD,
    srd: config.CALIBRATION_DRIFT_SRD,
    jsd: config.CALIBRATION_DRIFT_JSD,
    median: config.CALIBRATION_DRIFT_MEDIAN,
    iqr: config.CALIBRATION_DRIFT_IQR,
    ...config.CALIBRATION_DRIFT_OVERRIDES[`${model}/${head}`],
  };
}
