import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, Harness, spawnService, waitFor, type ChildService, type TestEnv } from '../harness.ts';
import { ProviderStandIn } from './provider-stand-in.ts';
import { alive, createJob, FT, grant, jobWhen, letGo, scriptPids, seedCorrections, TRAIN_SCRIPT } from './seed.ts';

// Workers are real processes here, so one can be killed in the middle of a job; short locks bring
// its job back within a couple of seconds.
const standIn = new ProviderStandIn();
const dataDir = mkdtempSync(join(tmpdir(), 'caliber-ft-crash-'));
let env: TestEnv;
let h: Harness;
const children: ChildService[] = [];

async function startWorker(extra: Record<string, string> = {}): Promise<ChildService> {
  const w = spawnService('apps/worker/src/main.ts', ['--queues', 'fine-tune'], {
    ...env.env,
    LOG_LEVEL: 'info',
    WORKER_LOCK_DURATION_MS: '2000',
    WORKER_STALLED_INTERVAL_MS: '1000',
    ...extra,
  });
  children.push(w);
  await w.waitForOutput(/"msg":"workers started"/);
  return w;
}

async function kill(w: ChildService): Promise<void> {
  w.child.kill('SIGKILL');
  await w.exited;
}

const ledger = async (account: string) => (await h.request('GET', `/admin/credits/${account}`)).body;

beforeAll(async () => {
  await standIn.start();
  env = await createTestEnv({
    FINE_TUNE_BASE_URL: standIn.url,
    FINE_TUNE_API_KEY: standIn.apiKey,
    FINE_TUNE_COMMAND: `sh ${TRAIN_SCRIPT}`,
    FINE_TUNE_DATA_DIR: dataDir,
    FINE_TUNE_POLL_MS: '50',
    FINE_TUNE_CANCEL_CHECK_MS: '50',
    FINE_TUNE_RECONCILE_CRON: '',
  });
  h = await Harness.start(env);
  await seedCorrections(h, 'crash-bot', 20);
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.child.exitCode === null) await kill(c);
});
afterAll(async () => {
  await h?.stop();
  await env?.cleanup();
  await standIn.stop();
});

describe('a fine-tuning worker that dies in the middle of a job', () => {
  it('has its training command stopped and started again by the next worker, charged once', async () => {
    await grant(h, 'crash-a', 300);
    const first = await startWorker();
    const job = await createJob(h, { model_id: 'crash-bot', account_id: 'crash-a', provider: 'command', base_model: 'wait-crash' });
    await h.request('POST', `${FT}/jobs/${job.id}/start`);
    await waitFor(() => scriptPids(dataDir, job.id).length === 1, { what: 'training started' });
    const running = await jobWhen(h, job.id, (j) => j.status === 'running', 'job running');
    const [orphan] = scriptPids(dataDir, job.id);
    const leader = Number(running.provider_job_id.slice(4).split('@')[0]);

    await kill(first);
    expect(alive(orphan!)).toBe(true); // the command outlives its worker…
    await startWorker();
    // …until the next worker takes the job over: it stops what is left and runs the command again.
    await waitFor(() => scriptPids(dataDir, job.id).length === 2, { what: 'training started again', timeoutMs: 20_000 });
    expect(alive(orphan!)).toBe(false);
    expect(alive(leader)).toBe(false);
    letGo(dataDir, job.id);

    const done = await jobWhen(h, job.id, (j) => j.status === 'succeeded', 'job succeeded');
    expect(done).toMatchObject({ runs: 2, fine_tuned_model: 'local/wait-crash-run2', credits: 'charged' });
    const credits = await ledger('crash-a');
    expect(credits).toMatchObject({ balance: 200, reserved: 0 });
    expect(credits.ledger.map((e: { kind: string }) => e.kind)).toEqual(['settle', 'reserve', 'grant']);
    const log = (await h.request('GET', `${FT}/jobs/${job.id}/events?limit=1000`)).body.items.map((e: { message: string }) => e.message);
    expect(log.some((m: string) => m.startsWith('the training process was lost with its worker (stopped)'))).toBe(true);
  });

  it('finds the provider job it created before dying instead of creating another', async () => {
    await grant(h, 'crash-b', 300);
    const before = { files: standIn.files.size, jobs: standIn.jobs.size };
    const release = standIn.holdCreate();
    const first = await startWorker();
    const job = await createJob(h, { model_id: 'crash-bot', account_id: 'crash-b', base_model: 'gpt-4o-mini' });
    await h.request('POST', `${FT}/jobs/${job.id}/start`);
    // The provider has made the job; its answer never reaches the worker, which dies.
    await waitFor(() => standIn.jobs.size === before.jobs + 1, { what: 'provider job created' });
    await kill(first);
    release();
    await startWorker();

    const done = await jobWhen(h, job.id, (j) => j.status === 'succeeded', 'job succeeded', 30_000);
    expect(standIn.jobs.size).toBe(before.jobs + 1);
    expect(standIn.files.size).toBe(before.files + 2);
    expect(done.provider_job_id).toBe([...standIn.jobs.keys()].at(-1));
    expect(await ledger('crash-b')).toMatchObject({ balance: 200, reserved: 0 });
  });

  it('stops the command on SIGTERM after SHUTDOWN_TIMEOUT_MS, exits 0, and the next worker runs it again', async () => {
    await grant(h, 'crash-c', 300);
    const first = await startWorker({ SHUTDOWN_TIMEOUT_MS: '500' });
    const job = await createJob(h, { model_id: 'crash-bot', account_id: 'crash-c', provider: 'command', base_model: 'wait-term' });
    await h.request('POST', `${FT}/jobs/${job.id}/start`);
    await waitFor(() => scriptPids(dataDir, job.id).length === 1, { what: 'training started' });
    const [pid] = scriptPids(dataDir, job.id);

    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    expect(alive(pid!)).toBe(false); // not left behind
    const queued = await h.platform.queues.get('fine-tune').getJob((await jobWhen(h, job.id, () => true, 'job')).queue_job.jobId);
    expect(['delayed', 'waiting']).toContain(await queued!.getState());

    await startWorker();
    await waitFor(() => scriptPids(dataDir, job.id).length === 2, { what: 'training started again' });
    letGo(dataDir, job.id);
    const done = await jobWhen(h, job.id, (j) => j.status === 'succeeded', 'job succeeded');
    expect(done).toMatchObject({ runs: 2, fine_tuned_model: 'local/wait-term-run2' });
    expect(await ledger('crash-c')).toMatchObject({ balance: 200, reserved: 0 });
  });
});
