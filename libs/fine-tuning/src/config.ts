import { envVar, parseEnv } from '@caliber/platform';
import { z } from 'zod';

export const PROVIDER_NAMES = ['openai-compatible', 'command'] as const;
export type ProviderName = (typeof PROVIDER_NAMES)[number];

export const fineTuningEnvSchema = z
  .object({
    /** Let an analyze-errors run create (and start) a job for every model that meets the criteria. */
    AUTO_FINE_TUNE: envVar.bool(false),
    /** The credit account automatic jobs are charged to, and the default of the check route. */
    FINE_TUNE_ACCOUNT: z.string().min(1).max(200).optional(),
    /** The provider a job uses unless it names one. */
    FINE_TUNE_PROVIDER: z.enum(PROVIDER_NAMES).default('openai-compatible'),
    /** An OpenAI-compatible API root, including its version: https://api.openai.com/v1, https://api.together.xyz/v1, … */
    FINE_TUNE_BASE_URL: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
    /** Sent as `Authorization: Bearer …`; never logged. */
    FINE_TUNE_API_KEY: z.string().min(1).optional(),
    /** A shell command for self-hosted training; gets the training (and validation) file paths as arguments. */
    FINE_TUNE_COMMAND: z.string().min(1).optional(),
    /** Base model per served model id, for jobs that do not name one; default: the model id itself. */
    FINE_TUNE_BASE_MODELS: envVar.json(
      z.record(z.string().min(1), z.string().min(1).max(200), { error: 'must map model ids to base model names' }),
      {},
      'e.g. {"support-bot":"gpt-4o-mini-2024-07-18"}',
    ),
    /** Credits one job costs: reserved at start, charged on success, refunded on failure or cancel. */
    FINE_TUNE_CREDIT_COST: envVar.int(100, 0, 1_000_000_000),
    /** A dataset with fewer examples fails its job. */
    FINE_TUNE_MIN_EXAMPLES: envVar.int(10, 1),
    /** Share of the examples held out for validation (the training set keeps FINE_TUNE_MIN_EXAMPLES). */
    FINE_TUNE_VALIDATION_SPLIT: envVar.number(0.1, 0, 0.5),
    /** Written as the first (system) message of every example when set. */
    FINE_TUNE_SYSTEM_PROMPT: z.string().min(1).max(100_000).optional(),
    /** Where datasets (and a command's output directory) are written, one directory per job. */
    FINE_TUNE_DATA_DIR: z.string().min(1).default('./data/fine-tuning'),
    /** How often a provider's job is polled. */
    FINE_TUNE_POLL_MS: envVar.int(30_000, 10),
    /** Polls in a row that may fail (provider down) before the job is given up as failed. */
    FINE_TUNE_MAX_POLL_FAILURES: envVar.int(20, 1, 10_000),
    /** Per-request timeout for the provider API; the client retries 429/5xx/network errors twice. */
    FINE_TUNE_REQUEST_TIMEOUT_MS: envVar.int(120_000, 100),
    /** How often a running training command is looked at (new output, still running, cancel). */
    FINE_TUNE_COMMAND_POLL_MS: envVar.int(2_000, 10),
    /** After SIGTERM, how long a cancelled command has before its process group gets SIGKILL. */
    FINE_TUNE_KILL_GRACE_MS: envVar.int(10_000, 0),
    /** Lines of a command's output copied into the job's log; the rest stays in its log file only. */
    FINE_TUNE_LOG_MAX_LINES: envVar.int(5_000, 10),
    // The trigger policy (POST …/fine-tuning/check and AUTO_FINE_TUNE).
    /** Corrected problematic responses since the model's last successful job. */
    FINE_TUNE_MIN_CORRECTIONS: envVar.int(50, 1),
    /** Negative share of the model's feedback over FINE_TUNE_WINDOW_DAYS. */
    FINE_TUNE_MIN_ERROR_RATE: envVar.number(0.1, 0, 1),
    FINE_TUNE_WINDOW_DAYS: envVar.int(30, 1, 3650),
    /** Hours after a job (not failed or cancelled) before the model may be fine-tuned again. */
    FINE_TUNE_COOLDOWN_HOURS: envVar.number(168, 0),
    /** Checks for jobs whose queue job was lost or failed without settling (BullMQ job scheduler). Empty disables it. */
    FINE_TUNE_RECONCILE_CRON: envVar.cron('*/5 * * * *'),
  })
  .superRefine((env, ctx) => {
    if (env.AUTO_FINE_TUNE && !env.FINE_TUNE_ACCOUNT) {
      ctx.addIssue({ code: 'custom', path: ['FINE_TUNE_ACCOUNT'], message: 'is required with AUTO_FINE_TUNE=true (the credit account automatic jobs are charged to)' });
    }
    const problem = env.AUTO_FINE_TUNE ? providerProblem(env, env.FINE_TUNE_PROVIDER) : undefined;
    if (problem) ctx.addIssue({ code: 'custom', path: ['FINE_TUNE_PROVIDER'], message: `AUTO_FINE_TUNE=true, but ${problem}` });
  });

export type FineTuningConfig = z.infer<typeof fineTuningEnvSchema>;

export function loadFineTuningConfig(env: Record<string, string | undefined> = process.env): FineTuningConfig {
  return parseEnv(fineTuningEnvSchema, env);
}

/** Why a provider cannot be used with this configuration, or undefined when it can. */
export function providerProblem(config: Pick<FineTuningConfig, 'FINE_TUNE_BASE_URL' | 'FINE_TUNE_COMMAND'>, provider: ProviderName): string | undefined {
  if (provider === 'openai-compatible' && !config.FINE_TUNE_BASE_URL) return 'provider "openai-compatible" needs FINE_TUNE_BASE_URL (e.g. https://api.openai.com/v1)';
  if (provider === 'command' && !config.FINE_TUNE_COMMAND) return 'provider "command" needs FINE_TUNE_COMMAND';
  return undefined;
}
