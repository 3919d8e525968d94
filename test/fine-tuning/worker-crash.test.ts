import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, Harness, spawnService, waitFor, type ChildService, type TestEnv } from '../harness.ts';
import { ProviderStandIn } from './provider-stand-in.ts';
import { alive, createJob, FT, grant, jobWhen, letGo, scriptPids, seedCorrections, TRAIN_SCRIPT } from './seed.ts';

// Workers are real processes here, so one can be killed in the middle of a job; short locks bring
// its job back within seconds (not so short that a starved worker on a busy CI host loses its own).
const standIn = new ProviderStandIn();
const dataDir = mkdtempSync(join(tmpdir(), 'caliber-ft-crash-'));
let env: TestEnv;
let h: Harness;
const children: ChildService[] = [];

async function startWorker(extra: Record<string, string> = {}): Promise<ChildService> {
  const w = spawnService('apps/worker/src/main.ts', ['--queues', 'fine-tune'], {
    ...env.env,
    LOG_LEVEL: 'info',
    WORKER_LOCK_DURATION_MS: '5000',
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
    FINE_TUNE_COMMAND_POLL_MS: '50',
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
  it('leaves its training command running, and the next worker follows it to the end, charged once', async () => {
    await grant(h, 'crash-a', 300);
    const first = await startWorker();
    const job = await createJob(h, { model_id: 'crash-bot', account_id: 'crash-a', provider: 'command', base_model: 'wait-crash' });
    await h.request('POST', `${FT}/jobs/${job.id}/start`);
    await waitFor(() => scriptPids(dataDir, job.id).length === 1, { what: 'training started' });
    await jobWhen(h, job.id, (j) => j.status === 'running', 'job running');
    const [pid] = scriptPids(dataDir, job.id);

    await kill(first);
    expect(alive(pid!)).toBe(true); // the training does not depend on its worker
    await startWorker();
    const log = async () => (await h.request('GET', `${FT}/jobs/${job.id}/events?limit=1000`)).body.items.map((e: { message: string }) => e.message);
    await waitFor(async () => (await log()).includes('waiting for go'), { what: 'the output, copied by either worker' });
    letGo(dataDir, job.id);

    const done = await jobWhen(h, job.id, (j) => j.status === 'succeeded', 'job succeeded');
    expect(done).toMatchObject({ runs: 1, fine_tuned_model: 'local/wait-crash-run1', credits: 'charged' });
    expect(scriptPids(dataDir, job.id)).toEqual([pid]); // started once
    const credits = await ledger('crash-a');
    expect(credits).toMatchObject({ balance: 200, reserved: 0 });
    expect(credits.ledger.map((e: { kind: string }) => e.kind)).toEqual(['settle', 'reserve', 'grant']);
    // Every output line once, though two workers copied it.
    expect((await log()).filter((m: string) => m === 'waiting for go')).toHaveLength(1);
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

  it('lets a worker stop at once on SIGTERM while a command trains; the next worker follows it', async () => {
    await grant(h, 'crash-c', 300);
    const first = await startWorker();
    const job = await createJob(h, { model_id: 'crash-bot', account_id: 'crash-c', provider: 'command', base_model: 'wait-term' });
    await h.request('POST', `${FT}/jobs/${job.id}/start`);
    await waitFor(() => scriptPids(dataDir, job.id).length === 1, { what: 'training started' });
    const [pid] = scriptPids(dataDir, job.id);

    const stopping = Date.now();
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(4_000); // nothing to wait for: no job holds a worker
    expect(alive(pid!)).toBe(true);

    await startWorker();
    letGo(dataDir, job.id);
    const done = await jobWhen(h, job.id, (j) => j.status === 'succeeded', 'job succeeded');
    expect(done).toMatchObject({ runs: 1, fine_tuned_model: 'local/wait-term-run1' });
    expect(await ledger('crash-c')).toMatchObject({ balance: 200, reserved: 0 });
  });
});
