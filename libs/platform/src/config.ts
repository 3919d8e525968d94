import { parseClusterUrl } from './redis.ts';
import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';

/** Raised when an environment variable has a wrong value; the message names every bad variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** Variables where an empty value means something (a schedule turned off) rather than "unset". */
const emptyIsAValue = new WeakSet<z.ZodType>();

/**
 * Parses the variables a schema declares out of an environment. Empty strings count as unset, so
 * `PORT=` falls back to the default instead of becoming 0, except for `envVar.cron` variables,
 * where `X_CRON=` turns the schedule off.
 */
export function parseEnv<S extends z.ZodObject>(schema: S, env: Env = process.env): z.infer<S> {
  const picked: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = env[key];
    if (value !== undefined && (value !== '' || emptyIsAValue.has(schema.shape[key] as z.ZodType))) picked[key] = value;
  }
  const result = schema.safeParse(picked);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => {
        const name = issue.path.length > 0 ? issue.path.join('.') : '(environment)';
        const raw = typeof issue.path[0] === 'string' && !/KEY|SECRET|PASSWORD|TOKEN|WEBHOOK/.test(issue.path[0]) ? picked[issue.path[0]] : undefined;
        // A URL may carry a password: never echo it.
        const shown = raw?.replace(/\/\/([^/@:]*):[^/@]*@/, '//$1:***@');
        return `${name}: ${issue.message}${shown !== undefined ? ` (got "${shown}")` : ''}`;
      }),
    );
  }
  return result.data;
}

/** Helpers for the shapes environment variables take. */
export const envVar = {
  int: (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
    z.coerce.number().int().min(min).max(max).default(def),
  number: (def: number, min = 0, max = Number.MAX_VALUE) =>
    z.coerce.number().min(min).max(max).default(def),
  bool: (def: boolean) => z.stringbool().default(def),
  url: (def: string, protocols: RegExp) =>
    z.url({ protocol: protocols, error: `must be a URL (${protocols.source})` }).default(def),
  /** JSON text checked against `schema`; `hint` is shown when it is not JSON at all. */
  json: <S extends z.ZodType>(schema: S, def: z.input<S>, hint: string) =>
    z
      .string()
      .transform((text, ctx) => {
        try {
          return JSON.parse(text) as unknown;
        } catch {
          ctx.addIssue({ code: 'custom', message: `must be JSON, ${hint}` });
          return z.NEVER;
        }
      })
      .pipe(schema)
      .default(def as never),
  /**
   * A schedule: a cron pattern (5 fields, or 6 with seconds), checked now so a typo stops start-up
   * rather than the worker; empty or `off` turns it off ('').
   */
  cron: (def: string) => {
    const schema = z
      .string()
      .transform((value, ctx) => {
        const pattern = value.trim();
        if (pattern === '' || pattern.toLowerCase() === 'off') return '';
        try {
          CronExpressionParser.parse(pattern);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: `must be a cron pattern such as "0 5 * * *", or empty / "off" to disable (${(err as Error).message})` });
          return z.NEVER;
        }
        return pattern;
      })
      .default(def);
    emptyIsAValue.add(schema);
    return schema;
  },
};

export const platformEnvSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    DATABASE_URL: envVar.url('postgres://postgres:postgres@127.0.0.1:5432/caliber', /^postgres(ql)?$/),
    /** One server (`redis://`, `rediss://`), or a Redis Cluster's seed nodes (`redis-cluster://h1:7000,h2:7001`). */
    REDIS_URL: z
      .string()
      .default('redis://127.0.0.1:6379')
      .refine((v) => parseClusterUrl(v) !== undefined || /^rediss?:\/\/[^\s]+$/.test(v) && URL.canParse(v), 'must be a redis:// or rediss:// URL, or redis-cluster://host:port,host:port,…'),
    PORT: envVar.int(8356, 0, 65535),
    CALIBER_API_KEY: z.string().min(16, 'must be at least 16 characters').optional(),
    QUEUE_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, ".", "_" and "-" only')
      .default('caliber'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    DB_POOL_SIZE: envVar.int(10, 1, 1000),
    /**
     * Where migrations run, as the schema's owner: when DATABASE_URL logs in as a role that may not
     * change the schema (e.g. through a pooler as `caliber_app`). Default: DATABASE_URL.
     */
    MIGRATE_DATABASE_URL: z
      .string()
      .refine((v) => /^postgres(ql)?:\/\//.test(v), 'a postgres:// URL')
      .optional(),
    /**
     * Where the outbox relay LISTENs (a session): behind a transaction-mode pooler, Postgres itself;
     * `off` relays by polling alone (OUTBOX_POLL_MS). Default: DATABASE_URL.
     */
    DATABASE_LISTEN_URL: z
      .string()
      .refine((v) => v === 'off' || /^postgres(ql)?:\/\//.test(v), 'a postgres:// URL, or "off"')
      .optional(),
    /** A plain query not answered after this is abandoned and its connection closed (0: never); cursors are exempt. */
    DB_QUERY_TIMEOUT_MS: envVar.int(600_000, 0, 2_147_483_647),
    /**
     * The role every pooled connection takes (SET ROLE) after logging in: the migrations create
     * `caliber_app` with rights on Caliber's tables and SELECT only on working_version. `none`
     * keeps the login user's own rights.
     */
    DATABASE_ROLE: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a Postgres role name (lower case, digits, _) or "none"')
      .default('caliber_app'),
    /** How long a process waits for active work on SIGTERM before it gives up and exits. */
    SHUTDOWN_TIMEOUT_MS: envVar.int(30_000, 0),
    JOB_ATTEMPTS: envVar.int(5, 1, 100),
    JOB_BACKOFF_MS: envVar.int(1_000, 0),
    JOB_KEEP_COMPLETED_SECONDS: envVar.int(24 * 3600, 0),
    JOB_KEEP_FAILED_SECONDS: envVar.int(7 * 24 * 3600, 0),
    WORKER_LOCK_DURATION_MS: envVar.int(30_000, 1_000),
    WORKER_STALLED_INTERVAL_MS: envVar.int(30_000, 500),
    OUTBOX_POLL_MS: envVar.int(1_000, 10),
    /** Hours relayed outbox rows are kept before the relay deletes them. */
    OUTBOX_RETENTION_HOURS: envVar.int(7 * 24, 1),
    TZ: z.string().default('UTC'),
    /** Behind a proxy you run: take client IPs (publishable-key rate limits) from X-Forwarded-For. */
    TRUST_PROXY: envVar.bool(false),
  })
  .superRefine((env, ctx) => {
    if (env.NODE_ENV !== 'test' && !env.CALIBER_API_KEY) {
      ctx.addIssue({
        code: 'custom',
        path: ['CALIBER_API_KEY'],
        message: 'is required (the admin API key, at least 16 characters)',
      });
    }
  });

export type PlatformConfig = z.infer<typeof platformEnvSchema>;

export function loadPlatformConfig(env: Env = process.env): PlatformConfig {
  return parseEnv(platformEnvSchema, env);
}
