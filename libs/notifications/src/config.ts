import { envVar, parseEnv } from '@caliber/platform';
import { z } from 'zod';

export const notificationsEnvSchema = z
  .object({
    /** Where change notifications are POSTed; unset: they are recorded as `skipped`. */
    NOTIFY_WEBHOOK_URL: z
      .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
      .refine((u) => {
        const url = new URL(u);
        return !url.username && !url.password;
      }, 'must not contain a user or password (fetch refuses them): put a token in the path or query, and check the signature')
      .optional(),
    /** Key of the `X-Caliber-Signature` HMAC-SHA256; never logged. */
    NOTIFY_WEBHOOK_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
    /** Per attempt, connecting through reading the answer. */
    NOTIFY_TIMEOUT_MS: envVar.int(10_000, 50, 600_000),
    /** Attempts per notification before it is marked failed (5xx, 408, 429, timeouts, network errors). */
    NOTIFY_MAX_ATTEMPTS: envVar.int(8, 1, 100),
    /** Wait before the second attempt; doubled before each next one (with jitter), up to the cap. */
    NOTIFY_BACKOFF_MS: envVar.int(2_000, 0),
    NOTIFY_BACKOFF_MAX_MS: envVar.int(3_600_000, 0),
    /** Sweep for pending notifications whose job was lost (Redis flushed, a worker failed it mid-send); empty or off disables it. */
    NOTIFY_RECONCILE_CRON: envVar.cron('*/5 * * * *'),
    /** A pending notification idle this long without a live job is queued again by the sweep. */
    NOTIFY_RECONCILE_IDLE_MS: envVar.int(600_000, 0),
  })
  .superRefine((env, ctx) => {
    if (env.NOTIFY_WEBHOOK_URL && !env.NOTIFY_WEBHOOK_SECRET) {
      ctx.addIssue({ code: 'custom', path: ['NOTIFY_WEBHOOK_SECRET'], message: 'is required when NOTIFY_WEBHOOK_URL is set (receivers verify the signature with it)' });
    }
  });

export type NotificationsConfig = z.infer<typeof notificationsEnvSchema>;

export function loadNotificationsConfig(env: Record<string, string | undefined> = process.env): NotificationsConfig {
  return parseEnv(notificationsEnvSchema, env);
}
