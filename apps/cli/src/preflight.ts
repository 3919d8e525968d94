import { ensureDatabaseExists, pingRedis, createRedis, closeRedis, redactUrl } from '@caliber/platform';

const LOCAL_SERVICE_HINTS = {
  postgres: 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start',
  redis: 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
};

export class PreflightError extends Error {
  override name = 'PreflightError';
}

function hostOf(url: string, defaultPort: number): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || defaultPort}`;
  } catch {
    // A cluster's node list is not a URL: show it without its password.
    return redactUrl(url);
  }
}

function unreachable(service: 'Postgres' | 'Redis', variable: string, url: string, port: number, cause: string): PreflightError {
  return new PreflightError(
    [
      `${service} is not answering at ${hostOf(url, port)} (${variable}=${redactUrl(url)}): ${cause}`,
      'Start it with one of:',
      '  docker compose up -d postgres redis',
      `  ${service === 'Postgres' ? LOCAL_SERVICE_HINTS.postgres : LOCAL_SERVICE_HINTS.redis}    (${service} installed on this machine)`,
      `or point ${variable} at a running server.`,
    ].join('\n'),
  );
}

/**
 * Checks that Postgres and Redis answer before anything starts, creating the database when the
 * server is up but the database is new, and explains what to run when one is missing.
 */
export async function preflight(config: { DATABASE_URL: string; REDIS_URL: string }): Promise<{ createdDatabase: boolean }> {
  let createdDatabase: boolean;
  try {
    createdDatabase = await ensureDatabaseExists(config.DATABASE_URL);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code && /^(28|42)/.test(e.code)) {
      throw new PreflightError(`Postgres at ${hostOf(config.DATABASE_URL, 5432)} refused the login: ${e.message}. Check DATABASE_URL.`);
    }
    throw unreachable('Postgres', 'DATABASE_URL', config.DATABASE_URL, 5432, e.message ?? String(err));
  }
  // A queueing client: its PING waits for the first connection instead of failing before it.
  const redis = createRedis(config.REDIS_URL, 'blocking', 'caliber-preflight');
  try {
    if (!(await pingRedis(redis, 3_000))) throw unreachable('Redis', 'REDIS_URL', config.REDIS_URL, 6379, 'no answer within 3 s');
  } finally {
    await closeRedis(redis);
  }
  return { createdDatabase };
}
