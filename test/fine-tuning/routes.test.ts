import { randomUUID } from 'node:crypto';
import { Worker, UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { loadFineTuningConfig } from '../../libs/fine-tuning/src/config.ts';
import { reconcileFineTuning } from '../../libs/fine-tuning/src/reconcile.ts';
import { createProviders } from '../../libs/fine-tuning/src/run-job.ts';
import { queuePrefix } from '../../libs/platform/src/index.ts';
import { useHarness, waitFor } from '../harness.ts';
import { createJob, FT, grant, ledgerKinds } from './seed.ts';

// No fine-tune worker runs here: jobs stay where the routes put them. The relay runs (in the
// analyze-errors worker), so started jobs reach their queue.
const env = { FINE_TUNE_BASE_URL: 'http://127.0.0.1:9/v1', FINE_TUNE_RECONCILE_CRON: '' };

describe('fine-tuning and credit routes refuse bad input and write nothing', () => {
  const t = useHarness({ env, workers: ['analyze-errors'] });

  it.each<[string, string, unknown, number, RegExp]>([
    ['POST', `${FT}/jobs`, {}, 400, /model_id/],
    ['POST', `${FT}/jobs`, { model_id: 'm', account_id: 'has space' }, 400, /account_id: letters, digits/],
    ['POST', `${FT}/jobs`, { model_id: 'm', account_id: 'acme', provider: 'gpu-farm' }, 400, /provider/],
    ['POST', `${FT}/jobs`, { model_id: 'm', account_id: 'acme', extra: 1 }, 400, /extra/],
    ['POST', `${FT}/jobs`, { model_id: 'm\u0000', account_id: 'acme' }, 400, /NUL/],
    ['POST', `${FT}/jobs`, { model_id: 'm', account_id: 'acme', provider: 'command' }, 400, /provider "command" needs FINE_TUNE_COMMAND/],
    ['POST', `${FT}/jobs`, { model_id: 'm', account_id: 'unknown-account' }, 404, /No credit account "unknown-account"; grant it credits first/],
    ['POST', `${FT}/check`, { model_id: '' }, 400, /model_id/],
    ['POST', `/admin/credits/acme/grant`, { amount: 0 }, 400, /amount/],
    ['POST', `/admin/credits/acme/grant`, { amount: 1.5 }, 400, /amount/],
    ['POST', `/admin/credits/acme/grant`, { amount: -100 }, 400, /amount/],
    ['POST', `/admin/credits/a%2Fb/grant`, { amount: 10 }, 400, /account_id/],
    ['GET', `${FT}/jobs/not-a-uuid`, undefined, 400, /must be a job id/],
    ['GET', `${FT}/jobs/${randomUUID()}`, undefined, 404, /No fine-tuning job/],
    ['POST', `${FT}/jobs/${randomUUID()}/start`, undefined, 404, /No fine-tuning job/],
    ['POST', `${FT}/jobs/${randomUUID()}/cancel`, undefined, 404, /No fine-tuning job/],
    ['GET', `${FT}/jobs/${randomUUID()}/events`, undefined, 404, /No fine-tuning job/],
    ['GET', `${FT}/jobs?status=done`, undefined, 400, /status/],
    ['GET', `${FT}/jobs?cursor=${randomUUID()}`, undefined, 400, /cursor/],
    ['GET', `${FT}/jobs?limit=0`, undefined, 400, /limit/],
    ['GET', `/admin/credits/nobody`, undefined, 404, /No credit account "nobody"/],
    ['GET', `/admin/credits/acme?cursor=x`, undefined, 400, /cursor/],
  ])('%s %s %j → %i', async (method, path, json, status, message) => {
    const counts = async () => (await t.h.query('SELECT (SELECT count(*) FROM fine_tuning_jobs)::int AS jobs, (SELECT count(*) FROM credit_ledger)::int AS ledger'))[0];
    const before = await counts();
    const res = await t.h.request(method, path, json === undefined ? {} : { json: json as Record<string, unknown> });
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    expect(res.body.error.message).toMatch(message);
    expect(await counts()).toEqual(before);
  });

  it('needs the admin key on every route', async () => {
    for (const [method, path] of [
      ['GET', `${FT}/jobs`],
      ['POST', `${FT}/check`],
      ['POST', `/admin/credits/acme/grant`],
      ['GET', `/admin/credits/acme`],
    ] as const) {
      const body = method === 'POST' ? { json: {} } : {};
      expect((await t.h.request(method, path, { key: null, ...body })).status).toBe(401);
      expect((await t.h.request(method, path, { key: 'wrong-key-wrong-key', ...body })).status).toBe(401);
    }
  });

  it('stores a grant sent twice with one idempotency key once, and refuses the key for another grant', async () => {
    const first = await t.h.request('POST', '/admin/credits/idem/grant', { json: { amount: 70, idempotency_key: 'invoice-7' } });
    const again = await t.h.request('POST', '/admin/credits/idem/grant', { json: { amount: 70, idempotency_key: 'invoice-7' } });
    expect([first.status, first.body.duplicate, again.status, again.body.duplicate]).toEqual([201, false, 200, true]);
    expect(again.body.balance).toBe(70);
    const other = await t.h.request('POST', '/admin/credits/idem/grant', { json: { amount: 80, idempotency_key: 'invoice-7' } });
    expect(other.status).toBe(409);
    expect(await ledgerKinds(t.h, 'idem')).toEqual(['grant']);
  });

  it('keeps the ledger append-only, whoever asks', async () => {
    await grant(t.h, 'append', 10);
    await expect(t.h.query("UPDATE credit_ledger SET amount = 1000 WHERE account_id = 'append'")).rejects.toThrow(/permission denied|append-only/);
    await expect(t.h.query("DELETE FROM credit_ledger WHERE account_id = 'append'")).rejects.toThrow(/permission denied|append-only/);
    expect((await t.h.request('GET', '/admin/credits/append')).body.balance).toBe(10);
  });

  it('lets only one of two jobs spend the last credits when both start at once', async () => {
    await grant(t.h, 'last-credits', 150);
    const [a, b] = await Promise.all([createJob(t.h, { model_id: 'm', account_id: 'last-credits' }), createJob(t.h, { model_id: 'm', account_id: 'last-credits' })]);
    const answers = await Promise.all([a, b].map((j) => t.h.request('POST', `${FT}/jobs/${j.id}/start`)));
    expect(answers.map((r) => r.status).sort()).toEqual([202, 402]);
    expect((await t.h.request('GET', '/admin/credits/last-credits')).body).toMatchObject({ balance: 50, reserved: 100 });
  });

  it('refuses to start or cancel a job that has ended', async () => {
    await grant(t.h, 'ended', 500);
    const job = await createJob(t.h, { model_id: 'm', account_id: 'ended' });
    await t.h.query("UPDATE fine_tuning_jobs SET status = 'succeeded' WHERE id = $1", [job.id]);
    const start = await t.h.request('POST', `${FT}/jobs/${job.id}/start`);
    const cancel = await t.h.request('POST', `${FT}/jobs/${job.id}/cancel`);
    expect([start.status, start.body.error.message, cancel.status, cancel.body.error.message]).toEqual([
      409,
      'The job has succeeded; create a new one',
      409,
      'The job has already succeeded',
    ]);
  });

  it('pages jobs newest first', async () => {
    await grant(t.h, 'pages', 10);
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await createJob(t.h, { model_id: 'paged', account_id: 'pages' })).id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: { items: { id: string }[]; next_cursor: string | null } } = await t.h.request('GET', `${FT}/jobs?model_id=paged&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...page.body.items.map((j) => j.id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual(made.reverse());
  });

  it('describes the routes in the OpenAPI document', async () => {
    const doc = (await t.h.request('GET', '/openapi.json', { key: null })).body;
    for (const path of [`${FT}/check`, `${FT}/jobs`, `${FT}/jobs/{job_id}`, `${FT}/jobs/{job_id}/start`, `${FT}/jobs/{job_id}/cancel`, `${FT}/jobs/{job_id}/events`, '/admin/credits/{account_id}/grant', '/admin/credits/{account_id}']) {
      expect(Object.keys(doc.paths)).toContain(path);
    }
    expect(Object.keys(doc.paths[`${FT}/jobs/{job_id}/start`].post.responses)).toEqual(expect.arrayContaining(['202', '402', '409']));
  });

  it('the reconciler fails and refunds a job whose queue job failed for good, and queues again one whose queue job was lost', async () => {
    await grant(t.h, 'reconcile', 1000);
    const [doomed, lost] = [await createJob(t.h, { model_id: 'm', account_id: 'reconcile' }), await createJob(t.h, { model_id: 'm', account_id: 'reconcile' })];
    const started = await Promise.all([doomed, lost].map(async (j) => (await t.h.request('POST', `${FT}/jobs/${j.id}/start`)).body.jobId as string));
    const queue = t.h.platform.queues.get('fine-tune');
    await waitFor(async () => (await Promise.all(started.map((id) => queue.getJob(id)))).every(Boolean), { what: 'both relayed' });

    // Redis loses one queue job; a worker that never runs the failure hook fails the other.
    await (await queue.getJob(started[1]!))!.remove();
    const failing = new Worker('fine-tune', async () => {
      throw new UnrecoverableError('worker exploded');
    }, { connection: t.h.platform.blockingRedis.duplicate(), prefix: queuePrefix(t.h.platform.config, 'fine-tune') });
    await waitFor(async () => (await (await queue.getJob(started[0]!))?.getState()) === 'failed', { what: 'queue job failed' });
    await failing.close();
    expect((await t.h.request('GET', '/admin/credits/reconcile')).body.reserved).toBe(200);

    const config = loadFineTuningConfig({ ...t.env.env, ...env });
    const result = await reconcileFineTuning({ platform: t.h.platform, config, providers: createProviders(config) }, t.h.platform, t.h.platform.log);
    // (The exploding worker also failed the queue job an earlier test started.)
    expect(result.failed).toContain(doomed.id);
    expect(result.requeued).toEqual([lost.id]);

    expect((await t.h.request('GET', `${FT}/jobs/${doomed.id}`)).body.job).toMatchObject({ status: 'failed', credits: 'refunded', error: 'gave up: worker exploded' });
    const requeued = (await t.h.request('GET', `${FT}/jobs/${lost.id}`)).body.job;
    expect(requeued.status).toBe('pending');
    expect(requeued.queue_job.jobId).not.toBe(started[1]);
    await waitFor(() => queue.getJob(requeued.queue_job.jobId), { what: 'the new queue job' });
    expect((await t.h.request('GET', '/admin/credits/reconcile')).body).toMatchObject({ balance: 900, reserved: 100 });
    // Nothing more to do the second time.
    expect(await reconcileFineTuning({ platform: t.h.platform, config, providers: createProviders(config) }, t.h.platform, t.h.platform.log)).toMatchObject({ failed: [], requeued: [] });
  });
});
