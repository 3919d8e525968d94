import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libraryBatch, skewed } from '../fixtures.ts';
import { createTestEnv, Harness, spawnService, waitFor, type ChildService, type TestEnv } from '../harness.ts';
import { inject } from 'vitest';
import { PGBOUNCER, startPgBouncer } from './pgbouncer.ts';
import { REDIS_SERVER, startRedisCluster } from './redis-cluster.ts';
import { tagsAgainstReferences } from './tags.ts';

// Caliber on a 3-master Redis Cluster: the gateway (here) and three worker processes share the
// queues through it; the end state is checked in Postgres.
if (process.env.CALIBER_CLUSTER_TEST === 'required' && !REDIS_SERVER) throw new Error('CALIBER_CLUSTER_TEST=required but redis-server is not installed');
const MOOD = 'effnet/mood_happy';
const DANCE = 'effnet/danceability';
const FILES = 20_000;
const CAP = process.env.CLUSTER_TEST_CAP ?? '3';

// The second time, Postgres is behind PgBouncer (transaction mode) as well, and the retag jobs
// are rate limited across the processes.
const scenarios = [
  { name: 'on a Redis Cluster with three worker processes', pooler: false },
  { name: 'on a Redis Cluster with three worker processes, Postgres behind PgBouncer', pooler: true },
];
const RATE = { max: 20, ms: 1000 };

describe.skipIf(!REDIS_SERVER).each(scenarios.filter((s) => !s.pooler || PGBOUNCER))('$name', ({ pooler }) => {
  let cluster: Awaited<ReturnType<typeof startRedisCluster>>;
  let bouncer: Awaited<ReturnType<typeof startPgBouncer>> | undefined;
  let env: TestEnv;
  let h: Harness;
  const workers: ChildService[] = [];

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
    env = await createTestEnv({ REDIS_URL: cluster.url, RETAG_BATCH_SIZE: '250', ...(pooler ? { RETAG_FILE_RATE_LIMIT: `${RATE.max}/${RATE.ms}` } : {}) });
    if (pooler) {
      bouncer = await startPgBouncer(inject('databaseUrl'), { role: 'caliber_app' });
      Object.assign(env.env, { DATABASE_URL: bouncer.url(new URL(env.databaseUrl).pathname.slice(1)), DATABASE_LISTEN_URL: env.databaseUrl, DATABASE_ROLE: 'none' });
    }
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
    await bouncer?.stop();
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
    if (pooler) {
      // The rate limit held across the processes: no window of RATE.ms saw more than RATE.max starts.
      const starts = completed.map((j) => j.processedOn!).sort((a, b) => a - b);
      let worst = 0;
      for (let i = 0, j = 0; i < starts.length; i++) {
        while (starts[i]! - starts[j]! >= RATE.ms) j++;
        worst = Math.max(worst, i - j + 1);
      }
      // BullMQ counts in fixed windows, so a sliding one may see up to twice the limit; and 80
      // starts at 20 a second cannot span less than 3 s (without the limit they take about 1).
      expect(worst).toBeLessThanOrEqual(2 * RATE.max);
      expect(starts.at(-1)! - starts[0]!).toBeGreaterThanOrEqual((Math.ceil(starts.length / RATE.max) - 1) * RATE.ms - 50);
      const [me] = await h.query<{ who: string }>('SELECT current_user AS who');
      expect(me?.who).toBe('caliber_app');
    }

    const { tags, wrong } = await tagsAgainstReferences(h);
    expect(tags).toBe(FILES * 4);
    expect(wrong).toEqual([]);
    expect(await h.ownerQuery('SELECT count(*)::int AS n FROM outbox WHERE relayed_at IS NULL')).toEqual([{ n: 0 }]);
    // What reads Redis beside the queues works on the cluster too: schedules, metrics, Bull Board, the queues page.
    for (const path of ['/admin/schedules', '/metrics', '/admin/queues/api/queues', '/dashboard/queues', '/admin/calibration/retag-status']) {
      const res = await h.request('GET', path);
      expect(res.status, `${path}: ${res.text.slice(0, 200)}`).toBe(200);
    }
    // The queues' keys are spread over the masters (each queue in its own slot).
    const perNode = await cluster.keysPerNode(`{${env.queuePrefix}:*`);
    expect(perNode.filter((n) => n > 0).length, JSON.stringify(perNode)).toBeGreaterThanOrEqual(2);
  });
});
