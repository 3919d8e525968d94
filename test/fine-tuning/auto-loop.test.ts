import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useHarness, waitFor, type Harness } from '../harness.ts';
import { ProviderStandIn } from './provider-stand-in.ts';
import { FT, grant, seedCorrections } from './seed.ts';

const M = '/api/analytics/model-improvement';
const standIn = new ProviderStandIn();
const env: Record<string, string> = {
  AUTO_FINE_TUNE: 'true',
  FINE_TUNE_ACCOUNT: 'acme',
  FINE_TUNE_API_KEY: standIn.apiKey,
  FINE_TUNE_BASE_MODELS: '{"support-bot":"gpt-4o-mini-2024-07-18"}',
  FINE_TUNE_MIN_CORRECTIONS: '20',
  FINE_TUNE_POLL_MS: '30',
  FINE_TUNE_DATA_DIR: mkdtempSync(join(tmpdir(), 'caliber-ft-auto-')),
  FINE_TUNE_RECONCILE_CRON: '',
  ANALYZE_ERRORS_CRON: '',
};
beforeAll(async () => {
  await standIn.start();
  env.FINE_TUNE_BASE_URL = standIn.url;
});
afterAll(() => standIn.stop());

/** The check-criteria queue job an analyze-errors run started, once it has finished. */
async function checkResult(h: Harness, runId: number): Promise<any> {
  return waitFor(async () => {
    const [row] = await h.query("SELECT id FROM outbox WHERE queue = 'fine-tune' AND job_name = 'check-criteria' AND (payload->>'analysis_run_id')::int = $1", [runId]);
    if (!row) return undefined;
    const job = await h.request('GET', `/admin/jobs/fine-tune/outbox-${row.id}`);
    return job.status === 200 && job.body.state === 'completed' ? job.body : undefined;
  }, { what: `the fine-tune check of run ${runId}` });
}

describe('the model improvement loop: feedback → analyze-errors → automatic fine-tuning', () => {
  const t = useHarness({ env, workers: ['analyze-errors', 'fine-tune'] });

  beforeAll(async () => {
    // support-bot: 25 corrected factual errors against 20 happy users (56% negative).
    await seedCorrections(t.h, 'support-bot', 25);
    await seedCorrections(t.h, 'support-bot', 20, { negative: false });
    // other-bot: 3 corrected errors, too few to learn from.
    await seedCorrections(t.h, 'other-bot', 3);
    await grant(t.h, 'acme', 500);
  });

  it('says which model should be fine-tuned, and why', async () => {
    const yes = await t.h.request('POST', `${FT}/check`, { json: { model_id: 'support-bot' } });
    expect(yes.status).toBe(200);
    expect(yes.body).toMatchObject({ should_fine_tune: true, stats: { examples: 25, new_corrections: 25, feedback: 45, negative_feedback: 25, error_rate: 0.5556, account_id: 'acme', balance: 500 } });
    expect(yes.body.reasons).toHaveLength(5);
    const no = await t.h.request('POST', `${FT}/check`, { json: { model_id: 'other-bot', account_id: 'nobody' } });
    expect(no.body.should_fine_tune).toBe(false);
    expect(no.body.reasons).toEqual([
      '3 corrected problematic responses since the last successful fine-tune (20 needed)',
      '3 examples after removing duplicates (10 needed)',
      'account "nobody" has 0 credits (100 needed); it has never been granted any',
    ]);
  });

  it('creates and runs a job for the model that meets the criteria, to a fine-tuned model', async () => {
    const run = await t.h.request('POST', `${M}/analyze?wait=true`);
    expect(run.status, JSON.stringify(run.body)).toBe(200);
    const check = await checkResult(t.h, run.body.run_id);
    expect(check.result.created).toHaveLength(1);
    expect(check.result.created[0].model_id).toBe('support-bot');
    expect(check.result.skipped).toEqual([{ model_id: 'other-bot', reasons: expect.arrayContaining(['3 examples after removing duplicates (10 needed)']) }]);

    const jobId = check.result.created[0].job_id;
    const job = await waitFor(async () => {
      const j = (await t.h.request('GET', `${FT}/jobs/${jobId}`)).body.job;
      return j.status === 'succeeded' ? j : undefined;
    }, { what: 'the automatic job to succeed' });
    expect(job).toMatchObject({
      model_id: 'support-bot',
      account_id: 'acme',
      trigger: 'auto',
      analysis_run_id: run.body.run_id,
      base_model: 'gpt-4o-mini-2024-07-18',
      provider: 'openai-compatible',
      dataset_rows: 23,
      validation_rows: 2,
      credits: 'charged',
    });
    expect(job.fine_tuned_model).toMatch(/^ft:gpt-4o-mini-2024-07-18:caliber::/);
    expect(standIn.jobs.get(job.provider_job_id)!.status).toBe('succeeded');
    expect((await t.h.request('GET', '/admin/credits/acme')).body).toMatchObject({ balance: 400, reserved: 0 });

    // Visible in Bull Board: the check and the run, both completed.
    const board = await t.h.request('GET', '/admin/queues/api/queues?activeQueue=fine-tune&status=completed&page=1&jobsPerPage=50');
    const names = board.body.queues.find((q: { name: string }) => q.name === 'fine-tune').jobs.map((j: { name: string; id: string }) => `${j.name}:${j.id}`);
    expect(names).toEqual(expect.arrayContaining([`check-criteria:${check.id}`, `run:${job.queue_job.jobId}`]));
    expect((await t.h.request('GET', `${FT}/jobs?status=succeeded`)).body.items.map((j: { id: string }) => j.id)).toEqual([jobId]);
  });

  it('does not fine-tune the model again inside the cooldown, and says so', async () => {
    const run = await t.h.request('POST', `${M}/analyze?wait=true`);
    const check = await checkResult(t.h, run.body.run_id);
    expect(check.result.created).toEqual([]);
    const skipped = check.result.skipped.find((s: { model_id: string }) => s.model_id === 'support-bot');
    expect(skipped.reasons.join(' ')).toMatch(/0 corrected problematic responses since the last successful fine-tune .*cooldown ends at/);
    expect((await t.h.request('GET', `${FT}/jobs`)).body.items).toHaveLength(1);
  });
});

describe('with AUTO_FINE_TUNE off', () => {
  const t = useHarness({ env: { ...env, AUTO_FINE_TUNE: 'false', FINE_TUNE_BASE_URL: 'http://127.0.0.1:9/v1' }, workers: ['analyze-errors', 'fine-tune'] });

  it('an analysis creates no job', async () => {
    await seedCorrections(t.h, 'support-bot', 25);
    await grant(t.h, 'acme', 500);
    const run = await t.h.request('POST', `${M}/analyze?wait=true`);
    const check = await checkResult(t.h, run.body.run_id);
    expect(check.result).toEqual({ auto_fine_tune: false, analysis_run_id: run.body.run_id, created: [], skipped: [] });
    expect(await t.h.query('SELECT id FROM fine_tuning_jobs')).toEqual([]);
  });
});
