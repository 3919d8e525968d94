import { envVar, parseEnv } from '@caliber/platform';
import { z } from 'zod';

export const confidenceEnvSchema = z.object({
  /** Temperature fits for every tenant's models (BullMQ job scheduler, in TZ). Empty disables it. */
  CONFIDENCE_CALIBRATION_CRON: envVar.cron('30 4 * * *'),
  /** Outcomes a model needs before a temperature is fitted for it. */
  CONFIDENCE_MIN_OUTCOMES: envVar.int(30, 2),
  /** Reliability bins of the calibration metrics unless a request names its own. */
  CONFIDENCE_BINS: envVar.int(15, 1, 100),
});

export type ConfidenceConfig = z.infer<typeof confidenceEnvSchema>;

export function loadConfidenceConfig(env: Record<string, string | undefined> = process.env): ConfidenceConfig {
  return parseEnv(confidenceEnvSchema, env);
}
