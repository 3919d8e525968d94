import { fileURLToPath } from 'node:url';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';
import type { Logger } from './logger.ts';

export type Database = NodePgDatabase;
/** A Drizzle handle or a transaction opened from one: what a write helper needs. */
export type Executor = Pick<Database, 'execute' | 'select' | 'insert' | 'update' | 'delete'>;

export interface DatabaseHandle {
  pool: pg.Pool;
  db: Database;
  close(): Promise<void>;
}

// bigint (int8) columns come back as JS numbers: our ids and counts stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export function createDatabase(url: string, options: { max: number; applicationName: string; role?: string; log?: Logger; queryTimeoutMs?: number }): DatabaseHandle {
  const role = options.role && options.role !== 'none' ? options.role : undefined;
  const pool = new pg.Pool({
    connectionString: url,
    // Taken at login (a startup parameter), so no query ever runs without it; a role that does
    // not exist fails the connection with Postgres' own message rather than running with more rights.
    ...(role ? { options: `-c role=${role}` } : {}),
    max: options.max,
    application_name: options.applicationName,
    connectionTimeoutMillis: 10_000,
    // Notices a vanished server on idle connections instead of waiting on them forever.
    keepAlive: true,
  });
  // An idle client losing its server emits here; without a listener it would crash the process.
  pool.on('error', (err) => options.log?.warn({ err }, 'idle Postgres connection failed'));
  pool.on('connect', (client) => {
    // A checked-out connection the server closes between two queries emits 'error' with nobody
    // listening (pg-pool listens only while it is idle), which would kill the process; its next
    // query fails instead, and the pool drops it on release. Idle failures are logged above.
    client.on('error', () => {});
    if (options.queryTimeoutMs) guardQueries(client, options.queryTimeoutMs, options.log);
  });
  // Advisory locks are held by connections of their own (see withAdvisoryLock), from a pool apart
  // so that lock holders waiting for a worker connection can never take them all.
  const lockPool = new pg.Pool({
    connectionString: url,
    ...(role ? { options: `-c role=${role}` } : {}),
    max: Math.max(2, Math.ceil(options.max / 2)),
    application_name: `${options.applicationName}-locks`,
    // Work waiting for a lock connection waits as it would for the lock itself, never failing.
    connectionTimeoutMillis: 0,
    keepAlive: true,
  });
  lockPool.on('error', (err) => options.log?.warn({ err }, 'idle Postgres lock connection failed'));
  lockPool.on('connect', (client) => client.on('error', () => {}));
  (pool as PoolWithLocks)[LOCK_POOL] = lockPool;
  const end = pool.end.bind(pool);
  (pool as { end: () => Promise<void> }).end = async () => {
    await Promise.all([end(), lockPool.end()]);
  };
  const db = drizzle({ client: pool });
  return { pool, db, close: () => pool.end() };
}

const LOCK_POOL = Symbol('caliber.lockPool');
type PoolWithLocks = pg.Pool & { [LOCK_POOL]?: pg.Pool };

/**
 * A query can be left waiting for ever on a connection a restarting server closed (seen in the
 * Postgres-restart drill: 1 run in 4 hung its job). Plain queries get a read timeout; one that
 * runs out fails, and its connection is ended, never reused: the server may still be running the
 * statement, or be about to grant the lock it waited for. Cursors and streams (submittables) are
 * read at their own pace between reads, so they get no timeout: pg's would cut them short.
 */
function guardQueries(client: pg.PoolClient, timeoutMs: number, log?: Logger): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (config: unknown, ...rest: unknown[]) => {
    if (config && typeof config === 'object' && typeof (config as { submit?: unknown }).submit === 'function') return query(config, ...rest);
    const timed = typeof config === 'string' ? { text: config, query_timeout: timeoutMs } : { ...(config as object), query_timeout: timeoutMs };
    const result = query(timed, ...rest);
    if (result && typeof (result as Promise<unknown>).catch === 'function') {
      (result as Promise<unknown>).catch((err: Error) => {
        if (err?.message === 'Query read timeout') {
          log?.warn({ timeoutMs }, 'Postgres query not answered in DB_QUERY_TIMEOUT_MS; closing its connection');
          void client.end().catch(() => {});
        }
      });
    }
    return result;
  };
}

/**
 * Runs `fn` while holding an advisory lock on `key`, so work that spans several transactions (or
 * none) is serialised across processes. The lock is a transaction lock held by a connection of
 * its own, in a transaction left open until `fn` is done, while `fn` works on another connection:
 * no session state is involved, so it holds behind a transaction-mode pooler (PgBouncer) too, and
 * ending the transaction (or losing its connection) always releases it.
 */
export async function withAdvisoryLock<T>(
  pool: pg.Pool,
  key: string | [namespace: string, id: number | string],
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const outcome = await holdAdvisoryLock(pool, key, 'wait', async () => {
    const client = await pool.connect();
    try {
      return await fn(client);
    } finally {
      client.release();
    }
  });
  return (outcome as { value: T }).value;
}

/** As withAdvisoryLock, but only if the lock is free now: `{ locked: false }` otherwise, and `fn` does not run. */
export async function tryAdvisoryLock<T>(pool: pg.Pool, key: string | [namespace: string, id: number | string], fn: () => Promise<T>): Promise<{ locked: true; value: T } | { locked: false }> {
  return holdAdvisoryLock(pool, key, 'try', fn);
}

async function holdAdvisoryLock<T>(
  pool: pg.Pool,
  key: string | [namespace: string, id: number | string],
  mode: 'wait' | 'try',
  body: () => Promise<T>,
): Promise<{ locked: true; value: T } | { locked: false }> {
  // A name is hashed to 32 bits; many locks of one kind (e.g. one per id range) use the two-key
  // form instead, (hash of the kind, the id), so they cannot collide with each other.
  const pair = Array.isArray(key);
  const args = !pair ? 'hashtext($1)' : typeof key[1] === 'number' ? 'hashtext($1), $2::int' : 'hashtext($1), hashtext($2)';
  const params: unknown[] = pair ? [...key] : [key];
  const holder = await ((pool as PoolWithLocks)[LOCK_POOL] ?? pool).connect();
  let lost = false;
  const onLost = () => {
    lost = true;
  };
  holder.on('error', onLost);
  holder.on('end', onLost);
  let open = false;
  try {
    await holder.query('BEGIN');
    open = true;
    const { rows } = await holder.query<{ locked: boolean }>(`SELECT ${mode === 'try' ? 'pg_try_advisory_xact_lock' : 'pg_advisory_xact_lock'}(${args})${mode === 'try' ? ' AS locked' : ''}`, params);
    if (mode === 'try' && !rows[0]?.locked) return { locked: false };
    // The holder sits idle in its transaction while the work runs: a server-side idle timeout must
    // not end it (and the lock with it). Sent as a simple query, this also lets the transaction
    // drop its snapshot, so it does not hold back VACUUM meanwhile.
    await holder.query('SET LOCAL idle_in_transaction_session_timeout = 0');
    const value = await body();
    // Exclusion was lost if the holder died meanwhile (killed, or its server went away): say so
    // rather than report work done under a lock nobody held to the end.
    if (lost) throw new Error(`the advisory lock ${JSON.stringify(key)} was lost while its work ran (the connection holding it ended)`);
    return { locked: true, value };
  } finally {
    holder.removeListener('end', onLost);
    // A holder that cannot confirm the end of its transaction is destroyed: its session ends, and the lock with it.
    const ended = !open || lost || (await holder.query('ROLLBACK').then(() => true, () => false));
    holder.release(!ended || lost);
    holder.removeListener('error', onLost);
  }
}

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../../drizzle', import.meta.url));

/** Creates the database named in the URL when the server is up but the database is not there yet. */
export async function ensureDatabaseExists(url: string): Promise<boolean> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  if (!name) return false;
  const probe = new pg.Client({ connectionString: url });
  try {
    await probe.connect();
    return false;
  } catch (err) {
    if ((err as { code?: string }).code !== '3D000') throw err; // 3D000: invalid_catalog_name
  } finally {
    await probe.end().catch(() => {});
  }
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } catch (err) {
    if ((err as { code?: string }).code !== '42P04') throw err; // created meanwhile by another process
  } finally {
    await client.end();
  }
  return true;
}

/** Applies the drizzle-kit migrations in `drizzle/`; safe to run from several processes at once. */
export async function runMigrations(url: string): Promise<void> {
  // Two processes migrating at once would race on the migrations table; serialise them. The lock
  // is held by a transaction of its own (as in withAdvisoryLock), so this works through a
  // transaction-mode pooler as well as on Postgres itself.
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on('error', () => {});
  try {
    await holdAdvisoryLock(pool, 'caliber:migrate', 'wait', async () => {
      const client = await pool.connect();
      try {
        await migrate(drizzle({ client }), { migrationsFolder: MIGRATIONS_DIR });
      } finally {
        client.release();
      }
    });
  } finally {
    await pool.end();
  }
}
