import { QueueEvents } from 'bullmq';
import pg from 'pg';
import { queuePrefix } from '../../libs/platform/src/index.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libraryBatch, skewed } from '../fixtures.ts';
import { createTestEnv, Harness, waitFor, type TestEnv } from '../harness.ts';
import { ProcessStack, report } from './stack.ts';

// Workers as real processes, killed with SIGKILL at the worst moment or stopped with SIGTERM
// under load; the end state is read from Postgres and Redis.
let env: TestEnv;
let stack: ProcessStack;
let h: Harness;

async function query<T extends pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<T[]> {
  return h.ownerQuery<T>(text, params);
}

beforeAll(async () => {
  // Schedules off: their next runs wait in the delayed sets, which must empty here.
  const off = Object.fromEntries(['MAP_MODELS_CRON', 'ANALYZE_ERRORS_CRON', 'FINE_TUNE_RECONCILE_CRON', 'CONFIDENCE_CALIBRATION_CRON', 'MODEL_SELECTION_CRON', 'NOTIFY_RECONCILE_CRON'].map((k) => [k, 'off']));
  env = await createTestEnv({ CALIBRATION_MIN_SAMPLES: '50', RETAG_BATCH_SIZE: '50', JOB_BACKOFF_MS: '200', OUTBOX_POLL_MS: '500', ...off });
  h = await Harness.start(env); // looks at queues and the database
  stack = new ProcessStack(env);
  await stack.gateway();
});

afterAll(async () => {
  await stack?.stop();
  await h?.stop();
  await env?.cleanup();
});

describe('a worker killed between a commit and the relay of its outbox events', () => {
  it('leaves every downstream job to exist, and run, exactly once', async () => {
    // The test hears the outbox's NOTIFY as soon as the worker's relay does, and kills the worker
    // then: the run has committed its events, the relay has not finished moving them to BullMQ.
    const listener = new pg.Client({ connectionString: env.databaseUrl });
    listener.on('error', () => {});
    await listener.connect();
    await listener.query('LISTEN caliber_outbox');
    const phases: { pending_at_kill: number; relayed_at_kill: number }[] = [];
    let files = 0;
    for (let round = 0; round < 4; round++) {
      // Each round's library is drifted (another skew), so the run finds the heads unstable and
      // writes an update-reference event per head.
      const power = [2, 4, 1.2, 6][round]!;
      expect((await stack.request('POST', '/library/files', libraryBatch(files, 800, { 'effnet/mood_happy': skewed(power), 'effnet/danceability': skewed(power / 2) }, round + 11))).status).toBe(200);
      files += 800;
      const worker = await stack.worker('calibrate,update-reference');
      const notified = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no outbox NOTIFY within 30 s')), 30_000);
        listener.once('notification', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      const started = await stack.request('POST', '/admin/calibration/run');
      expect(started.status).toBe(202);
      await notified;
      worker.child.kill('SIGKILL');
      await worker.exited;
      const [state] = await query<{ pending: number; relayed: number }>(
        `SELECT count(*) FILTER (WHERE relayed_at IS NULL)::int AS pending, count(*) FILTER (WHERE relayed_at IS NOT NULL)::int AS relayed FROM outbox WHERE queue = 'update-reference'`,
      );
      phases.push({ pending_at_kill: state!.pending, relayed_at_kill: state!.relayed });
      // Another worker takes over: the killed job comes back (stalled) or is done; the relay moves what is pending.
      const next = await stack.worker('calibrate,update-reference');
      await waitFor(async () => {
        const c = await h.platform.queues.get('calibrate').getJobCounts('waiting', 'active', 'delayed');
        const u = await h.platform.queues.get('update-reference').getJobCounts('waiting', 'active', 'delayed');
        const [o] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox WHERE relayed_at IS NULL`);
        return (c.waiting ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) + (u.waiting ?? 0) + (u.active ?? 0) + (u.delayed ?? 0) === 0 && o!.n === 0;
      }, { timeoutMs: 60_000, what: `round ${round} to settle` });
      next.child.kill('SIGTERM');
      await next.exited;
    }
    await listener.end();

    // One BullMQ job per outbox row, each completed once; every head's reference is the run's.
    const events = await query<{ id: number; payload: { model_name: string; head_name: string; version: number } }>(`SELECT id, payload FROM outbox WHERE queue = 'update-reference' ORDER BY id`);
    expect(events.length).toBeGreaterThanOrEqual(8);
    const queue = h.platform.queues.get('update-reference');
    const jobs = await queue.getJobs(['completed', 'failed', 'waiting', 'active', 'delayed']);
    expect(jobs.map((j) => j.id).sort()).toEqual(events.map((e) => `outbox-${e.id}`).sort());
    expect(jobs.every((j) => j.finishedOn && !j.failedReason)).toBe(true);
    // Every killed run was taken over and completed; none failed for good.
    const runs = await h.platform.queues.get('calibrate').getJobCounts('completed', 'failed');
    expect(runs).toMatchObject({ completed: 4, failed: 0 });
    const versions = await query<{ version: number }>(`SELECT version FROM calibration_versions ORDER BY version`);
    expect(versions.map((v) => v.version)).toEqual([1, 2, 3, 4]); // one run per request, however often its worker died
    const refs = await query<{ model_name: string; head_name: string; version: number }>(`SELECT model_name, head_name, version FROM calibration_references ORDER BY 1, 2`);
    const latest = new Map<string, number>();
    for (const e of events) latest.set(`${e.payload.model_name}/${e.payload.head_name}`, Math.max(latest.get(`${e.payload.model_name}/${e.payload.head_name}`) ?? 0, e.payload.version));
    expect(refs.map((r) => [`${r.model_name}/${r.head_name}`, r.version])).toEqual([...latest.entries()].sort());
    const landed = phases.filter((p) => p.pending_at_kill > 0).length;
    expect(landed, JSON.stringify(phases)).toBeGreaterThan(0);
    await report('kill-relay', { rounds: phases.length, killed_with_events_pending: landed, events: events.length, jobs: jobs.length, phases });
  });
});

describe('SIGTERM to a worker in the middle of a backlog', () => {
  it('finishes or hands back its active jobs, exits 0, and another worker finishes the rest: nothing lost, nothing twice', async () => {
    await stack.worker('calibrate,update-reference');
    const total = (await query<{ n: number }>(`SELECT count(*)::int AS n FROM library_files`))[0]!.n;
    const queued = await stack.request('POST', '/admin/calibration/retag-all');
    expect(queued.status).toBe(200);
    const jobs = queued.body.jobs as number;
    const first = await stack.worker('retag-file', { more: { RETAG_FILE_CONCURRENCY: '2', SHUTDOWN_TIMEOUT_MS: '10000' } });
    // SIGTERM while jobs are running and the backlog is far from done.
    await waitFor(async () => (await stack.request('GET', '/admin/calibration/retag-status')).body.done > 0 && ((await h.platform.queues.get('retag-file').getJobCounts('active')).active ?? 0) > 0, { what: 'the backlog under way' });
    const stalled: string[] = [];
    const events = new QueueEvents('retag-file', { connection: h.platform.blockingRedis.duplicate(), prefix: queuePrefix(h.platform.config, 'retag-file') });
    events.on('stalled', ({ jobId }) => stalled.push(jobId));
    await events.waitUntilReady();
    const t0 = performance.now();
    first.child.kill('SIGTERM');
    const exit = await first.exited;
    expect(first.output()).toMatch(/"forced":false,"msg":"workers stopped"/);
    const stopMs = Math.round(performance.now() - t0);
    expect(exit.code).toBe(0);
    const doneAtStop = (await stack.request('GET', '/admin/calibration/retag-status')).body.done as number;
    expect(doneAtStop).toBeGreaterThan(0);
    expect(doneAtStop).toBeLessThan(total);
    await stack.worker('retag-file');
    await waitFor(async () => {
      const s = (await stack.request('GET', '/admin/calibration/retag-status')).body;
      return s.state === 'idle' && s.done + s.failed === total && s;
    }, { timeoutMs: 60_000, what: 'the rest of the backlog' });
    const status = (await stack.request('GET', '/admin/calibration/retag-status')).body;
    expect(status).toMatchObject({ done: total, failed: 0 });
    const retag = h.platform.queues.get('retag-file');
    const finished = (await retag.getJobs(['completed', 'failed'])).filter((j) => j.name === 'files' && j.timestamp >= Date.now() - 600_000);
    expect(finished.filter((j) => j.failedReason)).toEqual([]); // none failed
    await events.close();
    expect(stalled).toEqual([]); // none left to stall: the stopping worker finished what it had
    const [wrong] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM library_tags t JOIN calibration_references r USING (model_name, head_name) WHERE t.calibration_version IS DISTINCT FROM r.version`);
    expect(wrong!.n).toBe(0);
    await report('sigterm-under-load', { files: total, jobs, stop_ms: stopMs, files_done_by_first_worker: doneAtStop, failed: 0 });
  });
});
