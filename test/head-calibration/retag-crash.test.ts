import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { minmaxCalibrate } from '../../libs/head-calibration/src/math.ts';
import { libraryBatch, skewed } from '../fixtures.ts';
import { createTestEnv, Harness, spawnService, waitFor, type ChildService, type TestEnv } from '../harness.ts';

// Workers are real processes here so one can be SIGKILLed mid-backlog; short locks bring its job
// back within seconds. At 2 s a worker starved of CPU by the rest of the suite lost the lock of
// its own job three times and BullMQ failed the job for stalling.
let env: TestEnv;
let h: Harness;
const children: ChildService[] = [];
const startWorker = async () => {
  const w = spawnService('apps/worker/src/main.ts', ['--queues', 'retag-file'], {
    ...env.env,
    LOG_LEVEL: 'info',
    RETAG_BATCH_SIZE: '50',
    RETAG_FILE_CONCURRENCY: '1',
    WORKER_LOCK_DURATION_MS: '5000',
    WORKER_STALLED_INTERVAL_MS: '1000',
  });
  children.push(w);
  await w.waitForOutput(/"msg":"workers started"/);
  return w;
};

beforeAll(async () => {
  env = await createTestEnv({ RETAG_BATCH_SIZE: '50' });
  h = await Harness.start(env);
  await h.request('POST', '/library/files', { json: libraryBatch(0, 1000, { 'effnet/mood_happy': skewed(2), 'effnet/danceability': skewed(1) }) });
  const labels = (head: string) => ({ [head]: { p5: 0.1, p95: 0.9, method: 'minmax' }, [`not_${head}`]: { p5: 0.2, p95: 0.7, method: 'minmax' } });
  await h.request('POST', '/admin/calibration/import', {
    json: {
      files: {
        'effnet/heads/mood_happy-calibration.json': { model_name: 'effnet', head_name: 'mood_happy', version: 1, labels: labels('mood_happy') },
        'effnet/heads/danceability-calibration.json': { model_name: 'effnet', head_name: 'danceability', version: 1, labels: labels('danceability') },
      },
    },
  });
});
afterAll(async () => {
  for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL');
  await h?.stop();
  await env?.cleanup();
});

describe('a retag-file worker killed in the middle of a backlog', () => {
  it('leaves nothing skipped and nothing counted twice once another worker finishes it', async () => {
    // Hold the rows of files 501–550 so the worker stops there, mid-backlog, with its job active.
    const blocker = new pg.Client({ connectionString: env.databaseUrl });
    blocker.on('error', () => {});
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query('SELECT 1 FROM library_tags WHERE file_id BETWEEN 501 AND 550 FOR UPDATE');

    expect((await h.request('POST', '/admin/calibration/retag-all')).body).toMatchObject({ enqueued: 1000, jobs: 20 });
    const first = await startWorker();
    const status = () => h.request('GET', '/admin/calibration/retag-status').then((r) => r.body);
    const blocked = async () =>
      (await h.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%UPDATE library_tags t%'")).length > 0;
    await waitFor(async () => (await status()).done > 0 && (await blocked()), { what: 'worker blocked mid-backlog' });
    const midway = await status();
    expect(midway.state).toBe('running');
    expect(midway.done).toBeLessThan(1000);

    first.child.kill('SIGKILL');
    await first.exited;
    await blocker.query('ROLLBACK');
    await blocker.end();
    await startWorker();

    const final = await waitFor(async () => {
      const s = await status();
      return s.state === 'idle' ? s : undefined;
    }, { timeoutMs: 30_000, what: 'backlog finished by the second worker' });
    expect(final).toMatchObject({ total: 1000, done: 1000, failed: 0, remaining: 0 });

    const tags = await h.query<{ raw_score: number; calibrated_score: number | null; calibration_version: number | null; label: string }>(
      'SELECT raw_score, calibrated_score, calibration_version, label FROM library_tags',
    );
    expect(tags).toHaveLength(4000);
    const wrong = tags.filter((t) => {
      const [p5, p95] = t.label.startsWith('not_') ? [0.2, 0.7] : [0.1, 0.9];
      return t.calibration_version !== 1 || t.calibrated_score !== minmaxCalibrate(t.raw_score, p5, p95);
    });
    expect(wrong).toEqual([]);
    const completed = await h.platform.queues.get('retag-file').getJobs(['completed']);
    expect(completed).toHaveLength(20);
  });
});
