import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { minmaxCalibrate } from '../../libs/head-calibration/src/math.ts';
import { libraryBatch, skewed } from '../fixtures.ts';
import { createTestEnv, Harness, spawnService, waitFor, type ChildService, type TestEnv } from '../harness.ts';
import { REDIS_SERVER, startRedisCluster } from './redis-cluster.ts';

// Caliber on a 3-master Redis Cluster: the gateway (here) and three worker processes share the
// queues through it; the end state is checked in Postgres.
if (process.env.CALIBER_CLUSTER_TEST === 'required' && !REDIS_SERVER) throw new Error('CALIBER_CLUSTER_TEST=required but redis-server is not installed');
const MOOD = 'effnet/mood_happy';
const DANCE = 'effnet/danceability';
const FILES = 20_000;
const CAP = process.env.CLUSTER_TEST_CAP ?? '3';

describe.skipIf(!REDIS_SERVER)('on a Redis Cluster with three worker processes', () => {
  let cluster: Awaited<ReturnType<typeof startRedisCluster>>;
  let env: TestEnv;
  let h: Harness;
  const workers: ChildService[] = [];

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
    env = await createTestEnv({ REDIS_URL: cluster.url, RETAG_BATCH_SIZE: '250' });
    h = await Harness.start(env); // the gateway; the workers are processes of their own
    // Overlapping groups: two processes share retag-file, as hosts of a fleet would.
    for (const queues of ['calibrate,update-reference,retag-file', 'retag-file', 'map-models,analyze-errors,fine-tune,notify,retag-file']) {
      // Three processes × 2 retag jobs each, capped at 3 running at once across all of them.
      const w = spawnService('apps/worker/src/main.ts', ['--queues', queues], { ...env.env, LOG_LEVEL: 'info', RETAG_FILE_GLOBAL_CONCURRENCY: String(CAP) });
      workers.push(w);
      await w.waitForOutput(/"msg":"workers started"/);
    }
  }, 60_000);
  afterAll(async () => {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.exited));
    await h?.stop();
    await env?.cleanup();
    await cluster?.stop();
  });

  it('ingests, calibrates and re-tags a 20 000-file backlog shared by the workers, every tag right', { timeout: 240_000 }, async () => {
    expect((await h.request('GET', '/readyz', { key: null })).body).toMatchObject({ redis: 'ok' });
    for (let from = 0; from < FILES; from += 5_000) {
      const res = await h.request('POST', '/library/files', { json: libraryBatch(from, 5_000, { [MOOD]: skewed(2), [DANCE]: skewed(1) }) });
      expect(res.status, res.text).toBe(200);
    }
    const run = await h.request('POST', '/admin/calibration/run?wait=true&timeout=120');
    expect(run.status, run.text).toBe(200);
    expect(run.body.calibration).toMatchObject({ version: 1, library_size: FILES });
    const before = (await h.request('GET', '/admin/calibration/retag-status')).body.started_at;
    const started = await h.request('POST', '/admin/calibration/retag-all');
    expect(started.status, started.text).toBe(200);
    expect(started.body.jobs).toBe(FILES / 250);
    const done = await waitFor(async () => {
      const { body } = await h.request('GET', '/admin/calibration/retag-status');
      return body.state === 'idle' && body.started_at !== before ? body : undefined;
    }, { what: 'the retag backlog', timeoutMs: 120_000 });
    expect(done).toMatchObject({ total: FILES, done: FILES, failed: 0 });

    // Every retag job ran once, and the three processes shared them.
    const completed = await h.platform.queues.get('retag-file').getCompleted(0, -1);
    expect(completed.length).toBe(FILES / 250);
    const byWorker = new Map<string, number>();
    for (const job of completed) byWorker.set(String(job.processedBy ?? '?'), (byWorker.get(String(job.processedBy ?? '?')) ?? 0) + 1);
    expect(byWorker.size, JSON.stringify([...byWorker])).toBeGreaterThanOrEqual(2);
    // The global cap held across the processes: never more retag jobs running at once than it.
    const edges = completed.flatMap((j) => [[j.processedOn!, 1] as const, [j.finishedOn!, -1] as const]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let running = 0;
    let most = 0;
    for (const [, d] of edges) most = Math.max(most, (running += d));
    if (process.env.CLUSTER_TEST_CAP) console.log("most running at once", most);
    expect(most).toBeLessThanOrEqual(Number(CAP));

    const refs = await h.ownerQuery<{ model_name: string; head_name: string; version: number; labels: Record<string, { p5: number; p95: number }> }>('SELECT model_name, head_name, version, labels FROM calibration_references');
    const byHead = new Map(refs.map((r) => [`${r.model_name}/${r.head_name}`, r]));
    const tags = await h.ownerQuery<{ model_name: string; head_name: string; label: string; raw_score: number; calibrated_score: number; calibration_version: number }>(
      'SELECT model_name, head_name, label, raw_score, calibrated_score, calibration_version FROM library_tags',
    );
    expect(tags).toHaveLength(FILES * 4);
    const wrong = tags.filter((t) => {
      const ref = byHead.get(`${t.model_name}/${t.head_name}`)!;
      const label = ref.labels[t.label]!;
      return t.calibration_version !== ref.version || t.calibrated_score !== minmaxCalibrate(t.raw_score, label.p5, label.p95);
    });
    expect(wrong).toEqual([]);
    expect(await h.ownerQuery('SELECT count(*)::int AS n FROM outbox WHERE relayed_at IS NULL')).toEqual([{ n: 0 }]);
    // The queues' keys are spread over the masters (each queue in its own slot).
    const perNode = await cluster.keysPerNode(`{${env.queuePrefix}:*`);
    expect(perNode.filter((n) => n > 0).length, JSON.stringify(perNode)).toBeGreaterThanOrEqual(2);
  });
});
