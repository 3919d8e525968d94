import { envVar, parseEnv } from '@caliber/platform';
import { z } from 'zod';

export const responseQualityEnvSchema = z.object({
  /** analyze-errors schedule (BullMQ job scheduler, in TZ): Mondays 03:00. Empty disables it. */
  ANALYZE_ERRORS_CRON: envVar.cron('0 3 * * 1'),
  /** Weeks of feedback a run looks at (patterns over all of them, trends week by week). */
  ANALYZE_ERRORS_WEEKS: envVar.int(8, 2, 104),
  /** A pattern is suggested on when it is at least this share of a model's negative feedback this week… */
  SUGGESTION_MIN_SHARE: envVar.number(0.2, 0, 1),
  /** …and has at least this many reports this week. */
  SUGGESTION_MIN_COUNT: envVar.int(5, 1),
});

export type ResponseQualityConfig = z.infer<typeof responseQualityEnvSchema>;

export function loadResponseQualityConfig(env: Record<string, string | undefined> = process.env): ResponseQualityConfig {
  return parseEnv(responseQualityEnvSchema, env);
}
