import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libraryBatch, skewed } from '../fixtures.ts';
import { createTestEnv, waitFor, type TestEnv } from '../harness.ts';
import { ProcessStack, report } from './stack.ts';

// A Redis of this scenario's own, with AOF on, so stopping and starting it loses nothing.
const REDIS_PORT = 16_000 + Math.floor(Math.random() * 2_000);
const hasRedis = spawnSync('redis-server', ['--version']).status === 0 && spawnSync('redis-cli', ['--version']).status === 0;
if (!hasRedis && process.env.CALIBER_FAULTS === 'required') throw new Error('CALIBER_FAULTS=required but redis-server / redis-cli are not installed');
let redisDir = '';
let redis: ChildProcess | undefined;

async function startRedis() {
  // The port must be free: a ping answered before we start would be another Redis, which we would then stop.
  const before = new Redis({ port: REDIS_PORT, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  before.on('error', () => {});
  const taken = await before.ping().then(() => true, () => false);
  before.disconnect();
  if (taken && !redis) throw new Error(`port ${REDIS_PORT} already has a Redis`);
  redis = spawn('redis-server', ['--port', String(REDIS_PORT), '--bind', '127.0.0.1', '--dir', redisDir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], { stdio: 'ignore' });
  const probe = new Redis({ port: REDIS_PORT, lazyConnect: true, retryStrategy: () => 50, maxRetriesPerRequest: 1 });
  probe.on('error', () => {});
  await waitFor(async () => (await probe.ping().catch(() => '')) === 'PONG', { what: 'redis up' });
  probe.disconnect();
}
async function stopRedis() {
  spawnSync('redis-cli', ['-p', String(REDIS_PORT), 'shutdown']);
  await new Promise<void>((resolve) => (redis?.exitCode !== null ? resolve() : redis.once('exit', () => resolve())));
}

let env: TestEnv;
let stack: ProcessStack;

beforeAll(async () => {
  if (!hasRedis) return;
  redisDir = await mkdtemp(join(tmpdir(), 'caliber-redis-'));
  await startRedis();
  env = await createTestEnv({ REDIS_URL: `redis://127.0.0.1:${REDIS_PORT}`, CALIBRATION_MIN_SAMPLES: '50', RETAG_BATCH_SIZE: '100', JOB_BACKOFF_MS: '200' });
  stack = new ProcessStack(env);
  await stack.gateway();
  await stack.worker('calibrate,update-reference');
});

afterAll(async () => {
  await stack?.stop();
  await stopRedis().catch(() => {});
  await env?.cleanup().catch(() => {});
  if (redisDir) await rm(redisDir, { recursive: true, force: true });
});

describe.skipIf(!hasRedis)('Redis goes away and comes back', () => {
  it('answers job starts with 503 at once while reads go on; queued jobs survive; workers reconnect and finish', async () => {
    const heads = { 'effnet/mood_happy': skewed(2), 'effnet/danceability': skewed(1) };
    expect((await stack.request('POST', '/library/files', libraryBatch(0, 2_000, heads))).status).toBe(200);
    expect((await stack.request('POST', '/admin/calibration/run?wait=true')).status).toBe(200);
    await waitFor(async () => (await stack.request('GET', '/admin/calibration/references')).body.items?.length === 2 || undefined, { what: 'references' });
    // A backlog queued while no retag worker runs: it waits in Redis through the outage.
    const queued = await stack.request('POST', '/admin/calibration/retag-all');
    expect(queued.status).toBe(200);
    expect(queued.body.jobs).toBe(20);

    await stopRedis();
    const t0 = performance.now();
    const refused = await stack.request('POST', '/admin/calibration/run');
    const refusedMs = performance.now() - t0;
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('queue_unavailable');
    expect(refusedMs).toBeLessThan(1_000);
    for (const path of ['/admin/calibration/retag-all', '/admin/models/map', '/admin/schedules/model-selection/run', '/admin/model-selection/calibrate']) {
      const started = performance.now();
      const res = await stack.request('POST', path);
      expect(res.status, path).toBe(503);
      expect(performance.now() - started, path).toBeLessThan(1_000);
    }
    expect((await stack.request('GET', '/library/files?limit=5')).status).toBe(200);
    expect((await stack.request('GET', '/readyz', undefined, null)).status).toBe(503);
    // A worker started during the outage waits for Redis instead of dying.
    const late = await stack.worker('retag-file', { ready: false });
    await new Promise((r) => setTimeout(r, 1_500)); // an outage of some length: the point of the scenario
    expect(late.child.exitCode).toBeNull();

    await startRedis();
    await late.waitForOutput(/workers started/, 60_000);
    // Every queued file is re-tagged with its head's reference: the end state in Postgres.
    await waitFor(async () => {
      const s = (await stack.request('GET', '/admin/calibration/retag-status')).body;
      return s.state === 'idle' && s.done === 2_000 && s;
    }, { timeoutMs: 60_000, what: 'the backlog' });
    const stale = await queryDb(`SELECT count(*)::int AS n FROM library_tags t JOIN calibration_references r USING (model_name, head_name)
                                  WHERE t.calibration_version IS DISTINCT FROM r.version`);
    expect(stale).toBe(0);
    // The worker that was connected before the outage runs jobs again.
    const again = await stack.request('POST', '/admin/calibration/run?wait=true');
    expect(again.status).toBe(200);
    await report('redis-restart', { refused_ms: Math.round(refusedMs), files_retagged_after_restart: 2_000, jobs_survived: 20 });
  });
});

async function queryDb(text: string): Promise<number> {
  const pg = (await import('pg')).default;
  const c = new pg.Client({ connectionString: env.databaseUrl });
  await c.connect();
  try {
    return (await c.query<{ n: number }>(text)).rows[0]!.n;
  } finally {
    await c.end();
  }
}
