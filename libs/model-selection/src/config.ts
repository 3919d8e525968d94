import { envVar, parseEnv } from '@caliber/platform';
import { z } from 'zod';

export const modelSelectionEnvSchema = z
  .object({
    /** Recalibration schedule (BullMQ job scheduler, TZ); empty disables it. */
    MODEL_SELECTION_CRON: envVar.cron('0 5 * * *'),
    /** Results a model needs for a (language, size) before it is a candidate there. */
    MODEL_SELECTION_MIN_SAMPLES: envVar.int(5, 1, 1_000_000),
    /** Weights of the score's three parts; they are divided by their sum, so only their ratio counts. */
    MODEL_SELECTION_QUALITY_WEIGHT: envVar.number(0.6, 0, 1_000_000),
    MODEL_SELECTION_LATENCY_WEIGHT: envVar.number(0.2, 0, 1_000_000),
    MODEL_SELECTION_COST_WEIGHT: envVar.number(0.2, 0, 1_000_000),
    /** The median latency that scores 0.5 on latency (ref / (ref + latency)). */
    MODEL_SELECTION_LATENCY_REF_MS: envVar.number(2_000, Number.MIN_VALUE, 86_400_000),
    /** The mean cost per evaluation that scores 0.5 on cost. */
    MODEL_SELECTION_COST_REF_USD: envVar.number(0.01, Number.MIN_VALUE, 1_000_000),
    /** A new best replaces the chosen model only when it scores more than this higher (no flapping). */
    MODEL_SELECTION_CHANGE_MARGIN: envVar.number(0.02, 0, 1),
    /** Only results tested within this many days count; 0 counts every result. */
    MODEL_SELECTION_WINDOW_DAYS: envVar.int(90, 0, 36_500),
  })
  .superRefine((env, ctx) => {
    if (env.MODEL_SELECTION_QUALITY_WEIGHT + env.MODEL_SELECTION_LATENCY_WEIGHT + env.MODEL_SELECTION_COST_WEIGHT <= 0) {
      ctx.addIssue({ code: 'custom', path: ['MODEL_SELECTION_QUALITY_WEIGHT'], message: 'the three MODEL_SELECTION_*_WEIGHT values must not all be 0' });
    }
  });

export type ModelSelectionConfig = z.infer<typeof modelSelectionEnvSchema>;

export function loadModelSelectionConfig(env: Record<string, string | undefined> = process.env): ModelSelectionConfig {
  return parseEnv(modelSelectionEnvSchema, env);
}
