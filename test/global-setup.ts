import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { runMigrations } from '../libs/platform/src/db.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A server URL; each test file creates its own database from `templateDatabase`. */
    databaseUrl: string;
    redisUrl: string;
    templateDatabase: string;
  }
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * Uses TEST_DATABASE_URL / TEST_REDIS_URL when set (CI, this machine); otherwise starts Postgres
 * and Redis with testcontainers. Migrations run once into a template database that every test file
 * copies, which is much faster than migrating per file.
 */
export default async function setup(project: TestProject) {
  const stops: (() => Promise<unknown>)[] = [];
  let databaseUrl = process.env.TEST_DATABASE_URL;
  let redisUrl = process.env.TEST_REDIS_URL;
  if (!databaseUrl) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:16-alpine').start();
    databaseUrl = container.getConnectionUri();
    stops.push(() => container.stop());
  }
  if (!redisUrl) {
    const { RedisContainer } = await import('@testcontainers/redis');
    const container = await new RedisContainer('redis:7-alpine').start();
    redisUrl = container.getConnectionUrl();
    stops.push(() => container.stop());
  }

  const templateDatabase = `caliber_tpl_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${templateDatabase}`);
  await runMigrations(withDatabase(databaseUrl, templateDatabase));
  // Tests look at what workers' sessions are doing (pg_stat_activity), which Caliber's role may
  // not see by itself; granted here rather than to every installation.
  await admin.query('GRANT pg_read_all_stats TO caliber_app').catch(() => {});

  project.provide('databaseUrl', databaseUrl);
  project.provide('redisUrl', redisUrl);
  project.provide('templateDatabase', templateDatabase);

  return async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${templateDatabase} WITH (FORCE)`).catch(() => {});
    await admin.end();
    for (const stop of stops) await stop();
  };
}
