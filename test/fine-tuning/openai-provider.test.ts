import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '../harness.ts';
import { ProviderStandIn } from './provider-stand-in.ts';
import { createJob, FT, grant, ledgerKinds, seedCorrections } from './seed.ts';

const standIn = new ProviderStandIn();
const dataDir = mkdtempSync(join(tmpdir(), 'caliber-ft-'));
const env: Record<string, string> = {
  FINE_TUNE_API_KEY: standIn.apiKey,
  FINE_TUNE_POLL_MS: '30',
  FINE_TUNE_DATA_DIR: dataDir,
  FINE_TUNE_RECONCILE_CRON: '',
  FINE_TUNE_CREDIT_COST: '100',
  FINE_TUNE_SYSTEM_PROMPT: 'You are the support assistant.',
};
beforeAll(async () => {
  await standIn.start();
  env.FINE_TUNE_BASE_URL = standIn.url;
});
afterAll(() => standIn.stop());

describe('fine-tuning at an OpenAI-compatible provider', () => {
  const t = useHarness({ env, workers: ['fine-tune'] });
  let corrected: string[];

  beforeAll(async () => {
    // 24 corrected problematic responses: two repeat another's query and correction (whitespace
    // aside), one correction is only whitespace; plus one corrected response nobody marked as bad.
    corrected = await seedCorrections(t.h, 'support-bot', 21);
    await seedCorrections(t.h, 'support-bot', 2, { query: () => '  What is the capital of country 0-0? ', correction: () => 'The capital is   City 0-0.' });
    await seedCorrections(t.h, 'support-bot', 1, { correction: () => ' \n\t ' });
    await seedCorrections(t.h, 'support-bot', 1, { negative: false });
    await grant(t.h, 'acme', 250);
  });

  it('builds the dataset, trains at the provider to a fine-tuned model and charges the account once', async () => {
    const job = await createJob(t.h, { model_id: 'support-bot', account_id: 'acme', base_model: 'gpt-4o-mini-2024-07-18' });
    expect(job).toMatchObject({ status: 'pending', provider: 'openai-compatible', credits: 'none', fine_tuned_model: null });

    const started = await t.h.request('POST', `${FT}/jobs/${job.id}/start?wait=true&timeout=30`);
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    const done = started.body.job;
    expect(done).toMatchObject({
      status: 'succeeded',
      credits: 'charged',
      credits_reserved: 100,
      dataset_rows: 19,
      validation_rows: 2,
      error: null,
      runs: 1,
    });
    expect(done.fine_tuned_model).toMatch(/^ft:gpt-4o-mini-2024-07-18:caliber::/);

    // The provider got a training and a validation file of chat examples, and one job on them.
    const remote = [...standIn.jobs.values()];
    expect(remote).toHaveLength(1);
    expect(remote[0]).toMatchObject({ id: done.provider_job_id, model: 'gpt-4o-mini-2024-07-18' });
    const training = standIn.files.get(remote[0]!.training_file)!;
    const validation = standIn.files.get(remote[0]!.validation_file!)!;
    expect([training.lines.length, validation.lines.length]).toEqual([19, 2]);
    const all = [...training.lines, ...validation.lines] as { messages: { role: string; content: string }[] }[];
    expect(all.every((l) => l.messages.map((m) => m.role).join() === 'system,user,assistant' && l.messages[0]!.content === 'You are the support assistant.')).toBe(true);
    expect(all.map((l) => l.messages[2]!.content)).toContain('The capital is City 0-0.');
    expect(new Set(all.map((l) => l.messages[1]!.content)).size).toBe(21);
    // The same rows are on disk, where dataset_path says.
    expect(readFileSync(done.dataset_path, 'utf8').trim().split('\n')).toHaveLength(19);
    expect(standIn.requests.every((r) => r.authorization === `Bearer ${standIn.apiKey}`)).toBe(true);

    // Credits: reserved at start, then settled; the balance is the ledger's sum.
    const credits = await t.h.request('GET', '/admin/credits/acme');
    expect(credits.body).toMatchObject({ account_id: 'acme', balance: 150, reserved: 0 });
    expect(credits.body.ledger.map((e: { kind: string; amount: number }) => [e.kind, e.amount])).toEqual([
      ['settle', 0],
      ['reserve', -100],
      ['grant', 250],
    ]);

    // The log has every status, the provider's own events, and the charge.
    const events = (await t.h.request('GET', `${FT}/jobs/${job.id}/events`)).body.items.map((e: { kind: string; message: string }) => `${e.kind}: ${e.message}`);
    for (const s of ['pending', 'preparing', 'dataset_ready', 'submitted', 'running', 'succeeded']) expect(events.some((e: string) => e.startsWith(`status: ${s}:`))).toBe(true);
    expect(events).toContain(`provider: Created fine-tuning job: ${done.provider_job_id}`);
    expect(events).toContain('info: 100 credits charged');

    // The queue job finished with the job as its result, for Bull Board and the job route.
    const queueJob = await t.h.request('GET', done.queue_job.status);
    expect(queueJob.body).toMatchObject({ queue: 'fine-tune', name: 'run', state: 'completed', result: { id: job.id, status: 'succeeded' } });
    const board = await t.h.request('GET', '/admin/queues/api/queues?activeQueue=fine-tune&status=completed&page=1&jobsPerPage=10');
    const fineTune = board.body.queues.find((q: { name: string }) => q.name === 'fine-tune');
    expect(fineTune.jobs.map((j: { id: string }) => j.id)).toContain(done.queue_job.jobId);

    const listed = await t.h.request('GET', `${FT}/jobs?model_id=support-bot&status=succeeded`);
    expect(listed.body.items.map((j: { id: string }) => j.id)).toContain(job.id);
  });

  it('fails a job the provider fails, with its reason, and refunds it', async () => {
    const job = await createJob(t.h, { model_id: 'support-bot', account_id: 'acme', base_model: 'will-fail-base' });
    const res = await t.h.request('POST', `${FT}/jobs/${job.id}/start?wait=true&timeout=30`);
    expect(res.status).toBe(200);
    expect(res.body.job).toMatchObject({ status: 'failed', credits: 'refunded', fine_tuned_model: null });
    expect(res.body.job.error).toBe('invalid_training_file: The training file does not suit will-fail-base');
    expect((await t.h.request('GET', '/admin/credits/acme')).body).toMatchObject({ balance: 150, reserved: 0 });
    expect((await ledgerKinds(t.h, 'acme')).slice(0, 2)).toEqual(['refund', 'reserve']);
    expect((await t.h.request('GET', res.body.job.queue_job.status)).body).toMatchObject({ state: 'failed', failedReason: res.body.job.error });
  });

  it('cancels a running job at the provider and refunds it', async () => {
    standIn.hold = true;
    try {
      const job = await createJob(t.h, { model_id: 'support-bot', account_id: 'acme', base_model: 'gpt-4o-mini' });
      expect((await t.h.request('POST', `${FT}/jobs/${job.id}/start`)).status).toBe(202);
      expect((await t.h.request('GET', '/admin/credits/acme')).body).toMatchObject({ balance: 50, reserved: 100 });
      await waitFor(async () => (await t.h.request('GET', `${FT}/jobs/${job.id}`)).body.job.status === 'running', { what: 'job running at the provider' });

      const cancelled = await t.h.request('POST', `${FT}/jobs/${job.id}/cancel?wait=true&timeout=30`);
      expect(cancelled.status).toBe(200);
      expect(cancelled.body.job).toMatchObject({ status: 'cancelled', credits: 'refunded' });
      expect(cancelled.body.job.cancel_requested_at).not.toBeNull();
      expect(standIn.jobs.get(cancelled.body.job.provider_job_id)!.status).toBe('cancelled');
      expect((await t.h.request('GET', '/admin/credits/acme')).body).toMatchObject({ balance: 150, reserved: 0 });
      // Cancelling again answers the same; starting a cancelled job does not.
      expect((await t.h.request('POST', `${FT}/jobs/${job.id}/cancel`)).body.job.status).toBe('cancelled');
      expect((await t.h.request('POST', `${FT}/jobs/${job.id}/start`)).status).toBe(409);
    } finally {
      standIn.release();
    }
  });

  it('cancels a job not yet picked up at once, refunding it', async () => {
    const job = await createJob(t.h, { model_id: 'support-bot', account_id: 'acme' });
    const res = await t.h.request('POST', `${FT}/jobs/${job.id}/cancel`);
    expect(res.body.job).toMatchObject({ status: 'cancelled', credits: 'none', started_at: null });
    expect((await t.h.request('GET', '/admin/credits/acme')).body.balance).toBe(150);
  });

  it('answers 402 when the account cannot pay, and writes nothing', async () => {
    await grant(t.h, 'poor', 60);
    const job = await createJob(t.h, { model_id: 'support-bot', account_id: 'poor' });
    const outboxBefore = await t.h.query('SELECT count(*)::int AS n FROM outbox');
    const res = await t.h.request('POST', `${FT}/jobs/${job.id}/start`);
    expect(res.status).toBe(402);
    expect(res.body.error).toMatchObject({ code: 'insufficient_credits', balance: 60, required: 100 });
    expect(res.body.error.message).toBe('Account "poor" has 60 credits; a fine-tuning job needs 100');
    expect((await t.h.request('GET', `${FT}/jobs/${job.id}`)).body.job).toMatchObject({ status: 'pending', started_at: null, credits_reserved: 0 });
    expect(await ledgerKinds(t.h, 'poor')).toEqual(['grant']);
    expect(await t.h.query('SELECT count(*)::int AS n FROM outbox')).toEqual(outboxBefore);
  });

  it('starts a job once however often it is started, even at the same moment', async () => {
    await grant(t.h, 'twice', 1000);
    standIn.hold = true;
    try {
      const job = await createJob(t.h, { model_id: 'support-bot', account_id: 'twice' });
      const answers = await Promise.all(Array.from({ length: 5 }, () => t.h.request('POST', `${FT}/jobs/${job.id}/start`)));
      expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202, 202]);
      expect(new Set(answers.map((a) => a.body.jobId)).size).toBe(1);
      expect((await t.h.request('GET', '/admin/credits/twice')).body).toMatchObject({ balance: 900, reserved: 100 });
      await t.h.request('POST', `${FT}/jobs/${job.id}/cancel?wait=true`);
    } finally {
      standIn.release();
    }
    expect((await t.h.request('GET', '/admin/credits/twice')).body).toMatchObject({ balance: 1000, reserved: 0 });
  });

  it('fails a job whose dataset is too small, naming why, before anything reaches the provider', async () => {
    await seedCorrections(t.h, 'tiny-bot', 4);
    const uploads = standIn.files.size;
    const job = await createJob(t.h, { model_id: 'tiny-bot', account_id: 'acme' });
    const res = await t.h.request('POST', `${FT}/jobs/${job.id}/start?wait=true&timeout=30`);
    expect(res.body.job).toMatchObject({ status: 'failed', credits: 'refunded' });
    expect(res.body.job.error).toBe(
      'only 4 usable training examples (problematic responses with a correction, after removing duplicates); FINE_TUNE_MIN_EXAMPLES is 10',
    );
    expect(standIn.files.size).toBe(uploads);
  });

  it('retries a submit the provider failed without a second upload or a second provider job', async () => {
    const before = { files: standIn.files.size, jobs: standIn.jobs.size };
    // The uploads succeed; job creation answers 503 to the client's first try and both its
    // retries, so this run of the queue job fails and BullMQ runs it again.
    standIn.failNext(3, 503, (method, path) => method === 'POST' && path === '/fine_tuning/jobs');
    const job = await createJob(t.h, { model_id: 'support-bot', account_id: 'acme', base_model: 'gpt-4o-mini' });
    const res = await t.h.request('POST', `${FT}/jobs/${job.id}/start?wait=true&timeout=30`);
    expect(res.body.job).toMatchObject({ status: 'succeeded', credits: 'charged' });
    expect(standIn.files.size - before.files).toBe(2); // training + validation, once each
    expect(standIn.jobs.size - before.jobs).toBe(1);
    // One failed attempt, then the one that finished (polls re-run the job without counting).
    expect((await t.h.request('GET', res.body.job.queue_job.status)).body.attemptsMade).toBe(2);
    await grant(t.h, 'acme', 100);
  });

  it('fails at once, refunded, when the provider refuses the key, and never shows the key', async () => {
    const key = standIn.apiKey;
    standIn.apiKey = 'sk-some-other-key';
    try {
      const job = await createJob(t.h, { model_id: 'support-bot', account_id: 'acme' });
      const res = await t.h.request('POST', `${FT}/jobs/${job.id}/start?wait=true&timeout=30`);
      expect(res.body.job).toMatchObject({ status: 'failed', credits: 'refunded' });
      expect(res.body.job.error).toMatch(/^provider answered HTTP 401 to the file upload: .*Incorrect API key provided.* \(check FINE_TUNE_API_KEY\)$/);
      const events = JSON.stringify((await t.h.request('GET', `${FT}/jobs/${job.id}/events`)).body);
      expect(events).not.toContain(key);
      expect(JSON.stringify(res.body)).not.toContain(key);
    } finally {
      standIn.apiKey = key;
    }
  });
});
