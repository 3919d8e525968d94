import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { libraryBatch, skewed } from '../fixtures.ts';
import { createTestEnv, Harness, spawnService, waitFor, type ChildService, type TestEnv } from '../harness.ts';

// Workers run as real processes here, so they can be killed; short locks make a dead worker's job
// come back within seconds instead of 30.
let env: TestEnv;
let h: Harness;
const children: ChildService[] = [];
const workerEnv = () => ({ ...env.env, LOG_LEVEL: 'info', WORKER_LOCK_DURATION_MS: '5000', WORKER_STALLED_INTERVAL_MS: '1000' });
const startWorker = async () => {
  const w = spawnService('apps/worker/src/main.ts', ['--queues', 'calibrate,update-reference'], workerEnv());
  children.push(w);
  await w.waitForOutput(/"msg":"workers started"/);
  return w;
};

/** Holds the lock calibration runs take, so a run can be caught mid-flight. */
async function holdRunLock(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: env.databaseUrl });
  await client.connect();
  await client.query('SELECT pg_advisory_lock(hashtext($1))', ['caliber:calibrate-heads']);
  return client;
}

const waitingOnRunLock = async () =>
  (
    await h.query(
      "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory' AND query LIKE '%pg_advisory_xact_lock%'",
    )
  ).length > 0;

/** Starts a calibration run and catches it mid-flight: active in a worker, blocked on the run lock. */
async function runInFlight() {
  const lock = await holdRunLock();
  const { body } = await h.request('POST', '/admin/calibration/run');
  const job = () => h.platform.queues.get('calibrate').getJob(body.jobId);
  await waitFor(async () => (await (await job())?.getState()) === 'active' && (await waitingOnRunLock()), { what: 'run in flight' });
  return { jobId: body.jobId as string, job, lock };
}

beforeAll(async () => {
  env = await createTestEnv();
  h = await Harness.start(env); // gateway only
  await h.request('POST', '/library/files', {
    json: libraryBatch(0, 500, { 'effnet/mood_happy': skewed(2), 'effnet/danceability': skewed(1) }),
  });
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.child.exitCode === null) c.child.kill('SIGKILL');
});
afterAll(async () => {
  await h?.stop();
  await env?.cleanup();
});

describe('a worker killed in the middle of a calibration run', () => {
  it('has its job picked up by another worker, which produces exactly one set of runs', async () => {
    const first = await startWorker();
    const { jobId, job, lock } = await runInFlight();

    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    await startWorker();
    await lock.end(); // releases the lock: the orphaned session and the new worker may proceed

    await waitFor(async () => (await (await job())?.getState()) === 'completed', { timeoutMs: 30_000, what: 'job completed by the second worker' });
    const done = await job();
    expect(done?.returnvalue.calibration.version).toBe(1);
    expect(await h.query('SELECT version, count(*)::int AS heads FROM calibration_runs GROUP BY version')).toEqual([{ version: 1, heads: 2 }]);
    expect(await h.query('SELECT job_id FROM calibration_versions')).toEqual([{ job_id: `calibrate/${jobId}@${(await job())?.timestamp}` }]);
    expect(await h.query("SELECT payload->>'head_name' AS head FROM outbox ORDER BY 1")).toEqual([{ head: 'danceability' }, { head: 'mood_happy' }]);
    await waitFor(async () => (await h.query('SELECT 1 FROM calibration_references WHERE version = 1')).length === 2, { what: 'references installed' });
  });
});

describe('graceful shutdown', () => {
  it('lets an active job finish on SIGTERM, then exits 0', async () => {
    const worker = await startWorker();
    const { job, lock } = await runInFlight();

    worker.child.kill('SIGTERM');
    await worker.waitForOutput(/"msg":"shutting down"/);
    expect(worker.child.exitCode).toBeNull(); // still finishing its job
    await lock.end();

    expect((await worker.exited).code).toBe(0);
    expect(await (await job())?.getState()).toBe('completed');
    expect(worker.output()).toMatch(/"forced":false,"msg":"workers stopped"/);
  });
});
