import { envVar, parseEnv } from '@caliber/platform';
import { z } from 'zod';

export const modelCatalogEnvSchema = z.object({
  /** Artificial Analysis models endpoint. */
  AA_API_URL: envVar.url('https://artificialanalysis.ai/api/v2/data/llms/models', /^https?$/),
  /** Sent as `x-api-key`; never logged. */
  AA_API_KEY: z.string().min(1).optional(),
  /** A saved AA response (same JSON shape) to load instead of calling the API. */
  AA_METRICS_FILE: z.string().min(1).optional(),
  AA_TIMEOUT_MS: envVar.int(30_000, 100),
  /** Attempts per AA request on 429/5xx/network errors (with backoff, honouring Retry-After). */
  AA_MAX_ATTEMPTS: envVar.int(4, 1, 20),
  AA_RETRY_BASE_MS: envVar.int(1_000, 0),
  /** Daily mapping run (BullMQ job scheduler); empty disables it. */
  MAP_MODELS_CRON: envVar.cron('0 4 * * *'),
  /** Seconds a best-model answer is cached in Redis (invalidated when mappings change). */
  BEST_MODEL_TTL: envVar.int(24 * 3600, 1),
  /** Matches scoring below this are left unmapped. */
  MAPPING_MIN_SCORE: envVar.number(0.75, 0, 1),
});

export type ModelCatalogConfig = z.infer<typeof modelCatalogEnvSchema>;

export function loadModelCatalogConfig(env: Record<string, string | undefined> = process.env): ModelCatalogConfig {
  return parseEnv(modelCatalogEnvSchema, env);
}
