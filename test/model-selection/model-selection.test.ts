import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertResults, loadModelSelectionConfig, resultBatchSchema, runModelSelection } from '../../libs/model-selection/src/index.ts';
import { useHarness, waitFor } from '../harness.ts';
import { WebhookReceiver } from '../webhook-receiver.ts';

const SECRET = 'whsec-test-0123456789';
const receiver = new WebhookReceiver(SECRET);
// Filled in before the harness starts (hooks run in order): the receiver's port is known only then.
const env: Record<string, string> = {
  MODEL_SELECTION_CRON: '',
  MODEL_SELECTION_MIN_SAMPLES: '5',
  MODEL_SELECTION_CHANGE_MARGIN: '0.02',
  NOTIFY_WEBHOOK_SECRET: SECRET,
  NOTIFY_TIMEOUT_MS: '1500',
  NOTIFY_RECONCILE_CRON: 'off',
  NOTIFY_RECONCILE_IDLE_MS: '60000',
  NOTIFY_BACKOFF_MS: '20',
  NOTIFY_BACKOFF_MAX_MS: '200',
  NOTIFY_MAX_ATTEMPTS: '4',
};
beforeAll(async () => {
  env.NOTIFY_WEBHOOK_URL = await receiver.start();
});
afterAll(() => receiver.stop());
const t = useHarness({ env, workers: ['calibrate', 'notify'] });

interface Quality {
  quality: number;
  latency_ms?: number;
  cost_usd?: number;
}

let runCounter = 0;
/** `n` results of one model on one (language, size), each on its own repository of a fresh test run. */
function results(language: string, size: string, model: string, n: number, q: Quality, provider = 'openai') {
  const run = `run-${++runCounter}`;
  return Array.from({ length: n }, (_, i) => ({
    run_id: run,
    language,
    size_category: size,
    model_id: model,
    provider,
    repository: `repo-${i}`,
    quality_score: q.quality,
    latency_ms: q.latency_ms ?? 1000,
    cost_usd: q.cost_usd ?? 0.01,
  }));
}

async function ingest(rows: unknown[]) {
  const res = await t.h.request('POST', '/admin/model-selection/results', { json: { results: rows } });
  expect(res.status, res.text).toBe(200);
  return res.body as { inserted: number; duplicates: number };
}

async function calibrate() {
  const res = await t.h.request('POST', '/admin/model-selection/calibrate?wait=true');
  expect(res.status, res.text).toBe(200);
  return res.body;
}

const changedPairs = (run: any) => run.changed.map((c: any) => `${c.language}/${c.size_category}:${c.from?.model_id ?? null}->${c.to.model_id}`).sort();

async function notificationsAbout(language: string, size: string) {
  return t.h.query<{ id: number; status: string; attempts: number; round: number; body: string }>(
    `SELECT id, status, attempts, round, body FROM notifications WHERE body::jsonb->>'language' = $1 AND body::jsonb->>'size_category' = $2 ORDER BY id`,
    [language, size],
  );
}

async function settled(language: string, size: string, count: number) {
  return waitFor(
    async () => {
      const rows = await notificationsAbout(language, size);
      return rows.length === count && rows.every((r) => r.status !== 'pending') && rows;
    },
    { what: `${count} settled notification(s) about ${language}/${size}` },
  );
}

describe('POST /admin/model-selection/results', () => {
  const good = results('python', 'small', 'gpt-4o', 1, { quality: 0.9 })[0]!;
  it.each([
    ['quality above 1', { ...good, quality_score: 1.2 }],
    ['negative latency', { ...good, latency_ms: -1 }],
    ['negative cost', { ...good, cost_usd: -0.01 }],
    ['unknown size category', { ...good, size_category: 'huge' }],
    ['the reserved language "any"', { ...good, language: 'ANY' }],
    ['an empty model id', { ...good, model_id: ' ' }],
    ['a missing provider', { ...good, provider: undefined }],
    ['a field that does not exist', { ...good, latency: 3 }],
    ['a NUL in the run id', { ...good, run_id: 'a\u0000b' }],
    ['a timestamp without zone', { ...good, tested_at: '2026-11-01T10:00:00' }],
    ['a timestamp in the future', { ...good, tested_at: new Date(Date.now() + 2 * 3_600_000).toISOString() }],
    ['a latency over a day', { ...good, latency_ms: 86_400_001 }],
    ['a cost that would overflow an average', { ...good, cost_usd: 1e160 }],
    ['a repository over 1000 bytes of UTF-8', { ...good, repository: '漢'.repeat(334) }],
  ])('refuses %s with 400 and stores nothing of the batch', async (_name, bad) => {
    const batch = [...results('python', 'small', 'gpt-4o', 3, { quality: 0.9 }), bad];
    const res = await t.h.request('POST', '/admin/model-selection/results', { json: { results: batch } });
    expect(res.status, res.text).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(JSON.stringify(res.body.error.issues)).toContain('results');
    expect((await t.h.query('SELECT count(*)::int AS n FROM calibration_results'))[0]!.n).toBe(0);
  });

  it('refuses a latency that is not finite (1e400 in JSON) and a repeated result', async () => {
    const body = `{"results":[${JSON.stringify(good).replace('"latency_ms":1000', '"latency_ms":1e400')}]}`;
    const inf = await t.h.request('POST', '/admin/model-selection/results', { body, headers: { 'content-type': 'application/json' } });
    expect(inf.status, inf.text).toBe(400);
    const twice = await t.h.request('POST', '/admin/model-selection/results', { json: { results: [good, { ...good, quality_score: 0.1 }] } });
    expect(twice.status).toBe(400);
    expect(twice.body.error.message).toContain('repeats results[0]');
    expect((await t.h.query('SELECT count(*)::int AS n FROM calibration_results'))[0]!.n).toBe(0);
  });

  it('needs the admin key', async () => {
    expect((await t.h.request('POST', '/admin/model-selection/results', { json: { results: [good] }, key: null })).status).toBe(401);
    expect((await t.h.request('GET', '/model-config?language=python&size=small', { key: 'wrong-key-0123456789' })).status).toBe(401);
    const tenant = await t.h.createTenant('ms-tenant');
    expect((await t.h.request('GET', '/model-config?language=python&size=small', { key: tenant.key })).status).toBe(403);
  });

  it('stores a batch once: the same results sent again are duplicates', async () => {
    const batch = results('scratch', 'large', 'm', 4, { quality: 0.5 });
    expect(await ingest(batch)).toEqual({ inserted: 4, duplicates: 0 });
    expect(await ingest(batch)).toEqual({ inserted: 0, duplicates: 4 });
    const stored = await t.h.query(`SELECT language, size_category FROM calibration_results WHERE run_id = $1`, [batch[0]!.run_id]);
    expect(stored).toHaveLength(4);
    await t.h.query(`DELETE FROM calibration_results WHERE language = 'scratch'`);
  });

  it('lower-cases languages and providers, and stores any ISO offset as UTC', async () => {
    const batch = results('TypeScript', 'small', 'GPT-4o', 1, { quality: 0.5 }, 'OpenAI').map((r) => ({ ...r, tested_at: '2026-11-30T23:30:00.1234567+16:00' }));
    await ingest(batch);
    const [row] = await t.h.query(`SELECT language, provider, model_id, tested_at FROM calibration_results WHERE run_id = $1`, [batch[0]!.run_id]);
    expect(row).toMatchObject({ language: 'typescript', provider: 'openai', model_id: 'GPT-4o' });
    expect(new Date(row!.tested_at).toISOString()).toBe('2026-11-30T07:30:00.123Z');
    await t.h.query(`DELETE FROM calibration_results WHERE run_id = $1`, [batch[0]!.run_id]);
  });

  it('takes overlapping batches at once without deadlocking, storing each result once', async () => {
    const rows = results('scratch', 'medium', 'm', 5_000, { quality: 0.5 });
    // Five orders of the same rows (a seeded Fisher–Yates each): inserted in request order, they deadlock.
    const shuffled = (seed: number) => {
      const copy = [...rows];
      for (let i = copy.length - 1; i > 0; i--) {
        seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
        const j = seed % (i + 1);
        [copy[i], copy[j]] = [copy[j]!, copy[i]!];
      }
      return copy;
    };
    // Straight to the insert, so the five statements really run at once (through HTTP, parsing
    // in this one process spaces them out).
    const batches = [1, 2, 3, 4, 5].map((seed) => resultBatchSchema.parse({ results: shuffled(seed) }).results);
    const answers = await Promise.all(batches.map((batch) => insertResults(t.h.platform.db, batch)));
    expect(answers.reduce((s, a) => s + a.inserted, 0)).toBe(5_000);
    expect(answers.reduce((s, a) => s + a.duplicates, 0)).toBe(20_000);
    expect((await t.h.query(`SELECT count(*)::int AS n FROM calibration_results WHERE language = 'scratch'`))[0]!.n).toBe(5_000);
    await t.h.query(`DELETE FROM calibration_results WHERE language = 'scratch'`);
  });
});

describe('calibration, configurations and change notifications', () => {
  it('chooses per pair, per language and overall, and notifies each first choice once, signed', async () => {
    await ingest([
      ...results('python', 'small', 'gpt-4o', 6, { quality: 0.9 }),
      ...results('python', 'small', 'gpt-4o-mini', 6, { quality: 0.7, latency_ms: 400, cost_usd: 0.001 }),
      ...results('python', 'small', 'claude', 4, { quality: 1 }), // too few samples: not a candidate
      ...results('python', 'large', 'gpt-4o', 6, { quality: 0.8 }),
    ]);
    const run = await calibrate();
    expect(run.status).toBe('ok');
    // Over both sizes gpt-4o's mean quality is 0.85, and the cheaper, faster mini wins (0.769 to 0.743).
    expect(changedPairs(run)).toEqual(['any/any:null->gpt-4o-mini', 'python/any:null->gpt-4o-mini', 'python/large:null->gpt-4o', 'python/small:null->gpt-4o']);
    expect(run.configurations).toBe(4);
    expect(run.notifications).toBe(4);

    const small = (await t.h.request('GET', '/model-config?language=python&size=small')).body;
    expect(small).toMatchObject({ language: 'python', size_category: 'small', model_id: 'gpt-4o', provider: 'openai', sample_count: 6, match: 'exact', run_id: run.run_id });
    // gpt-4o: 0.6·0.9 + 0.2·2000/3000 + 0.2·0.5; the mini: 0.6·0.7 + 0.2·2000/2400 + 0.2·0.01/0.011
    expect(small.score).toBeCloseTo(0.54 + 0.4 / 3 + 0.1, 6);
    expect(small.runner_up.model_id).toBe('gpt-4o-mini');
    expect(small.runner_up.score).toBeCloseTo(0.42 + (0.2 * 2000) / 2400 + (0.2 * 0.01) / 0.011, 6);

    const medium = (await t.h.request('GET', '/model-config?language=Python&lines=50000')).body;
    expect(medium).toMatchObject({ language: 'python', size_category: 'any', model_id: 'gpt-4o-mini', sample_count: 6, match: 'language' });
    const go = (await t.h.request('GET', '/model-config?language=go&size=small')).body;
    expect(go).toMatchObject({ language: 'any', size_category: 'any', model_id: 'gpt-4o-mini', match: 'default' });
    expect((await t.h.request('GET', '/model-config?language=go')).status).toBe(400);
    expect((await t.h.request('GET', '/model-config?language=go&size=small&files=3')).status).toBe(400);
    expect((await t.h.request('GET', '/model-config?language=go&lines=')).status).toBe(400);
    expect((await t.h.request('GET', '/model-config?language=go&files=0x10')).status).toBe(400);
    expect((await t.h.request('GET', '/model-config?language=any&size=small')).status).toBe(400);
    expect((await t.h.request('GET', '/admin/model-selection/rankings?language=any&size=small')).status).toBe(400);

    const rows = await settled('python', 'small', 1);
    expect(rows[0]!.status).toBe('delivered');
    const [hook] = receiver.about('python/small');
    expect(receiver.about('python/small')).toHaveLength(1);
    expect(hook!.signatureValid).toBe(true);
    expect(hook!.headers['x-caliber-event']).toBe('model_configuration.changed');
    expect(hook!.headers['x-caliber-notification-id']).toBe(String(rows[0]!.id));
    expect(hook!.headers['content-type']).toBe('application/json');
    expect(hook!.body).toEqual({
      event: 'model_configuration.changed',
      language: 'python',
      size_category: 'small',
      from: null,
      to: { model_id: 'gpt-4o', provider: 'openai', score: small.score },
      reason: 'first',
      run_id: run.run_id,
      changed_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    await settled('any', 'any', 1);
    await settled('python', 'any', 1);
    await settled('python', 'large', 1);
  });

  it('a run that changes nothing notifies nothing', async () => {
    const before = receiver.received.length;
    const run = await calibrate();
    expect(run.changed).toEqual([]);
    expect(run.notifications).toBe(0);
    expect(run.configurations).toBe(4);
    expect((await t.h.query('SELECT count(*)::int AS n FROM notifications'))[0]!.n).toBe(4);
    expect(receiver.received.length).toBe(before);
  });

  it('keeps the chosen model while a better one is within the margin (no flapping)', async () => {
    // The mini's quality rises to where it scores 0.01 above gpt-4o: less than the 0.02 margin.
    const target = 0.54 + 0.4 / 3 + 0.1 + 0.01; // gpt-4o's score + 0.01
    const mini = (0.2 * 2000) / 2400 + (0.2 * 0.01) / 0.011;
    const q = (target - mini) / 0.6;
    await t.h.query(`UPDATE calibration_results SET quality_score = $1 WHERE language = 'python' AND size_category = 'small' AND model_id = 'gpt-4o-mini'`, [q]);
    const run = await calibrate();
    expect(run.changed.filter((c: any) => c.language === 'python' && c.size_category === 'small')).toEqual([]);
    const kept = run.within_margin.find((w: any) => w.language === 'python' && w.size_category === 'small');
    expect(kept.kept.model_id).toBe('gpt-4o');
    expect(kept.best.model_id).toBe('gpt-4o-mini');
    expect(kept.best.score - kept.kept.score).toBeCloseTo(0.01, 5);
    const config = (await t.h.request('GET', '/model-config?language=python&size=small')).body;
    expect(config.model_id).toBe('gpt-4o');
    expect(config.runner_up.model_id).toBe('gpt-4o-mini');
    expect(await notificationsAbout('python', 'small')).toHaveLength(1);
  });

  it('changes once the new best is ahead by more than the margin, and the webhook says from and to', async () => {
    await t.h.query(`UPDATE calibration_results SET quality_score = 0.95 WHERE language = 'python' AND size_category = 'small' AND model_id = 'gpt-4o-mini'`);
    const run = await calibrate();
    const change = run.changed.find((c: any) => c.language === 'python' && c.size_category === 'small');
    expect(change).toMatchObject({ from: { model_id: 'gpt-4o' }, to: { model_id: 'gpt-4o-mini' }, reason: 'better' });
    const rows = await settled('python', 'small', 2);
    expect(rows.map((r) => r.status)).toEqual(['delivered', 'delivered']);
    const hook = receiver.about('python/small').at(-1)!;
    expect(hook.signatureValid).toBe(true);
    expect(hook.body).toMatchObject({ from: change.from, to: change.to, run_id: run.run_id });
    // gpt-4o as this run scored it (unchanged results), and the mini at quality 0.95.
    expect(hook.body.from.score).toBeCloseTo(0.54 + 0.4 / 3 + 0.1, 6);
    expect(hook.body.to.score).toBeCloseTo(0.57 + (0.2 * 2000) / 2400 + (0.2 * 0.01) / 0.011, 6);
    const listed = (await t.h.request('GET', '/admin/model-selection/configurations?language=python')).body;
    expect(listed.items.map((i: any) => `${i.size_category}:${i.model_id}`)).toEqual(expect.arrayContaining(['small:gpt-4o-mini', 'large:gpt-4o']));
    const rankingRes = await t.h.request('GET', '/admin/model-selection/rankings?language=python&size=small');
    expect(rankingRes.status, rankingRes.text).toBe(200);
    const ranking = rankingRes.body;
    expect(ranking.candidates.map((c: any) => c.model_id)).toEqual(['gpt-4o-mini', 'gpt-4o']);
    expect(ranking.too_few_samples).toEqual([{ model_id: 'claude', provider: 'openai', samples: 4 }]);
    expect(ranking.configuration.model_id).toBe('gpt-4o-mini');
  });
});

describe('the window of results', () => {
  const age = (model: string) =>
    t.h.query(`UPDATE calibration_results SET tested_at = now() - interval '200 days' WHERE language = 'perl' AND model_id = $1`, [model]);

  it('a chosen model whose results left the window is replaced, and a pair with none left is stale and falls back', async () => {
    await ingest([...results('perl', 'small', 'perl-a', 5, { quality: 0.9 }), ...results('perl', 'small', 'perl-b', 5, { quality: 0.5 })]);
    const first = await calibrate();
    expect(first.changed.find((c: any) => c.language === 'perl' && c.size_category === 'small').to.model_id).toBe('perl-a');
    const stored = (await t.h.request('GET', '/model-config?language=perl&size=small')).body;

    await age('perl-a');
    const second = await calibrate();
    expect(second.changed.find((c: any) => c.language === 'perl' && c.size_category === 'small')).toMatchObject({
      from: { model_id: 'perl-a', provider: 'openai', score: stored.score },
      to: { model_id: 'perl-b' },
      reason: 'current_ineligible',
    });

    await age('perl-b');
    const third = await calibrate();
    expect(third.without_candidates).toEqual(
      expect.arrayContaining([
        { language: 'perl', size_category: 'small', kept: expect.objectContaining({ model_id: 'perl-b' }) },
        { language: 'perl', size_category: 'any', kept: expect.objectContaining({ model_id: 'perl-b' }) },
      ]),
    );
    expect(third.changed.filter((c: any) => c.language === 'perl')).toEqual([]);
    const listed = (await t.h.request('GET', '/admin/model-selection/configurations?language=perl')).body.items;
    expect(listed.map((i: any) => [i.size_category, i.model_id, i.stale])).toEqual([
      ['any', 'perl-b', true],
      ['small', 'perl-b', true],
    ]);
    const served = (await t.h.request('GET', '/model-config?language=perl&size=small')).body;
    expect(served).toMatchObject({ language: 'any', size_category: 'any', match: 'default', stale: false });

    // Fresh results again: chosen, no longer stale.
    await ingest(results('perl', 'small', 'perl-b', 5, { quality: 0.5 }));
    await calibrate();
    expect((await t.h.request('GET', '/model-config?language=perl&size=small')).body).toMatchObject({ model_id: 'perl-b', match: 'exact', stale: false });
  });

  it('pages the configurations with a cursor', async () => {
    const all = (await t.h.request('GET', '/admin/model-selection/configurations')).body.items;
    const paged: any[] = [];
    let cursor: string | null = '';
    while (cursor !== null) {
      const page: any = (await t.h.request('GET', `/admin/model-selection/configurations?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).body;
      paged.push(...page.items);
      cursor = page.next_cursor;
    }
    expect(paged.map((i) => `${i.language}/${i.size_category}`)).toEqual(all.map((i: any) => `${i.language}/${i.size_category}`));
    expect(all.length).toBeGreaterThan(4);
    const nul = Buffer.from(JSON.stringify(['a\u0000', 'b'])).toString('base64url');
    expect((await t.h.request('GET', `/admin/model-selection/configurations?cursor=${nul}`)).status).toBe(400);
    expect((await t.h.request('GET', '/admin/model-selection/configurations?cursor=garbage')).status).toBe(400);
  });
});

describe('webhook delivery', () => {
  it('a receiver failing twice with 5xx gets exactly one successful delivery, every attempt recorded', async () => {
    receiver.plan('rust/small', [503, 500, 200]);
    await ingest([...results('rust', 'small', 'gpt-4o', 5, { quality: 0.9 })]);
    await calibrate();
    const [row] = await settled('rust', 'small', 1);
    expect(row!.status).toBe('delivered');
    const hooks = receiver.about('rust/small');
    expect(hooks.map((h) => h.answered)).toEqual([503, 500, 200]);
    expect(new Set(hooks.map((h) => h.raw)).size).toBe(1);
    expect(new Set(hooks.map((h) => h.headers['x-caliber-signature'])).size).toBe(1);
    expect(hooks.every((h) => h.signatureValid)).toBe(true);
    expect(hooks.map((h) => h.headers['x-caliber-attempt'])).toEqual(['1', '2', '3']);
    const detail = (await t.h.request('GET', `/admin/notifications/${row!.id}`)).body;
    expect(detail.status).toBe('delivered');
    expect(detail.delivery_attempts.map((a: any) => [a.attempt, a.status_code, a.outcome])).toEqual([
      [1, 503, 'retry'],
      [2, 500, 'retry'],
      [3, 200, 'delivered'],
    ]);
    // The same notification's job again (a duplicate): nothing is sent.
    const job = await t.h.platform.queues.get('notify').add('webhook', { notification_id: row!.id });
    await waitFor(async () => (await job.getState()) === 'completed', { what: 'duplicate notify job' });
    expect(receiver.about('rust/small')).toHaveLength(3);
  });

  it('a timeout is retried', async () => {
    receiver.plan('ruby/small', ['hang', 200]);
    await ingest([...results('ruby', 'small', 'gpt-4o', 5, { quality: 0.9 })]);
    await calibrate();
    const [row] = await settled('ruby', 'small', 1);
    expect(row!.status).toBe('delivered');
    const attempts = await t.h.query(`SELECT attempt, status_code, outcome, error FROM notification_attempts WHERE notification_id = $1 ORDER BY id`, [row!.id]);
    expect(attempts).toMatchObject([
      { attempt: 1, status_code: null, outcome: 'retry', error: 'timed out after 1500 ms' },
      { attempt: 2, status_code: 200, outcome: 'delivered' },
    ]);
  });

  it('a 4xx is not retried; a redelivery by hand sends it again in a new round', async () => {
    receiver.plan('java/small', [410]);
    await ingest([...results('java', 'small', 'gpt-4o', 5, { quality: 0.9 })]);
    await calibrate();
    const [row] = await settled('java', 'small', 1);
    expect(row).toMatchObject({ status: 'failed', attempts: 1 });
    expect(receiver.about('java/small')).toHaveLength(1);
    const failed = (await t.h.request('GET', '/admin/notifications?status=failed')).body;
    expect(failed.items.map((n: any) => n.id)).toContain(row!.id);
    expect(failed.items.find((n: any) => n.id === row!.id).last_error).toContain('HTTP 410');

    const again = await t.h.request('POST', `/admin/notifications/${row!.id}/redeliver`);
    expect(again.status, again.text).toBe(202);
    await waitFor(async () => (await notificationsAbout('java', 'small'))[0]!.status === 'delivered', { what: 'redelivered' });
    expect(receiver.about('java/small').map((h) => h.answered)).toEqual([410, 200]);
    const detail = (await t.h.request('GET', `/admin/notifications/${row!.id}`)).body;
    expect(detail).toMatchObject({ round: 1, attempts: 1 });
    expect(detail.delivery_attempts.map((a: any) => [a.round, a.attempt, a.outcome])).toEqual([
      [0, 1, 'failed'],
      [1, 1, 'delivered'],
    ]);
    expect((await t.h.request('POST', `/admin/notifications/${row!.id}/redeliver`)).status).toBe(409);
    expect((await t.h.request('POST', '/admin/notifications/999999/redeliver')).status).toBe(404);
  });

  it('a redirect is not followed and fails at once; a 429 is retried', async () => {
    receiver.plan('scala/small', [{ status: 302, headers: { location: 'https://elsewhere.example/hook' } }]);
    receiver.plan('scala/any', [429, 200]);
    await ingest([...results('scala', 'small', 'gpt-4o', 5, { quality: 0.9 })]);
    await calibrate();
    const [redirected] = await settled('scala', 'small', 1);
    expect(redirected).toMatchObject({ status: 'failed', attempts: 1 });
    const detail = (await t.h.request('GET', `/admin/notifications/${redirected!.id}`)).body;
    expect(detail.last_error).toContain('HTTP 302 redirect to https://elsewhere.example/hook (not followed');
    const [limited] = await settled('scala', 'any', 1);
    expect(limited).toMatchObject({ status: 'delivered', attempts: 2 });
  });

  it('two jobs for one notification at once send it once (the lease)', async () => {
    receiver.plan('clojure/small', [{ status: 200, delayMs: 300 }]);
    await ingest([...results('clojure', 'small', 'gpt-4o', 5, { quality: 0.9 })]);
    await calibrate();
    const id = await waitFor(async () => (await notificationsAbout('clojure', 'small'))[0]?.id, { what: 'the notification' });
    // A second job for it, as a takeover or a reconcile sweep would add, while the first is sending.
    await waitFor(() => receiver.about('clojure/small').length === 1, { what: 'the first POST' });
    const second = await t.h.platform.queues.get('notify').add('webhook', { notification_id: id });
    const [row] = await settled('clojure', 'small', 1);
    expect(row!.status).toBe('delivered');
    await waitFor(async () => (await second.getState()) === 'completed', { timeoutMs: 10_000, what: 'the second job' });
    expect((await t.h.platform.queues.get('notify').getJob(second.id!))!.returnvalue).toMatchObject({ status: 'delivered', note: 'already delivered; not sent again' });
    expect(receiver.about('clojure/small')).toHaveLength(1);
    expect(await t.h.query('SELECT count(*)::int AS n FROM notification_attempts WHERE notification_id = $1', [id])).toEqual([{ n: 1 }]);
  });

  it("a receiver's answer with NUL in it is recorded without it", async () => {
    receiver.plan('ocaml/small', [{ status: 200, body: 'ok\u0000!' }]);
    await ingest([...results('ocaml', 'small', 'gpt-4o', 5, { quality: 0.9 })]);
    await calibrate();
    const [row] = await settled('ocaml', 'small', 1);
    expect(row!.status).toBe('delivered');
    expect(await t.h.query('SELECT response FROM notification_attempts WHERE notification_id = $1', [row!.id])).toEqual([{ response: 'ok!' }]);
  });

  it('when Postgres fails to record a delivery, it is recorded later and not sent again', async () => {
    // Every attempt row of this notification fails to insert, the first 8 times.
    await t.h.ownerQuery(`
      CREATE SEQUENCE attempt_failures;
      CREATE FUNCTION fail_attempt_inserts() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
      BEGIN
        IF (SELECT body::jsonb->>'language' FROM notifications WHERE id = NEW.notification_id) = 'haskell' AND nextval('attempt_failures') <= 8 THEN
          RAISE EXCEPTION 'simulated outage';
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER fail_attempt_inserts BEFORE INSERT ON notification_attempts FOR EACH ROW EXECUTE FUNCTION fail_attempt_inserts();`);
    try {
      await ingest([...results('haskell', 'small', 'gpt-4o', 5, { quality: 0.9 })]);
      await calibrate();
      const [row] = await settled('haskell', 'small', 1);
      expect(row!.status).toBe('delivered');
      expect(receiver.about('haskell/small')).toHaveLength(1);
      expect((await t.h.ownerQuery(`SELECT last_value::int AS n FROM attempt_failures`))[0]!.n).toBeGreaterThan(8);
      expect(await t.h.query('SELECT attempt, outcome FROM notification_attempts WHERE notification_id = $1', [row!.id])).toEqual([{ attempt: 1, outcome: 'delivered' }]);
    } finally {
      await t.h.ownerQuery('DROP TRIGGER fail_attempt_inserts ON notification_attempts; DROP FUNCTION fail_attempt_inserts(); DROP SEQUENCE attempt_failures;');
    }
  });

  it('the reconcile sweep queues again a pending notification whose job was lost', async () => {
    const [lost] = await t.h.query<{ id: number }>(
      `INSERT INTO notifications (event, dedupe_key, body, job_id, created_at)
       VALUES ('test.event', 'lost-1', '{"event":"test.event","language":"dart","size_category":"lost"}', 'outbox-987654', now() - interval '1 hour')
       RETURNING id`,
    );
    const started = await t.h.request('POST', '/admin/schedules/notify-reconcile/run');
    expect(started.status).toBe(202);
    const job = (await t.h.platform.queues.get('notify').getJob(started.body.jobId))!;
    await waitFor(async () => (await job.getState()) === 'completed', { what: 'the sweep' });
    expect((await t.h.platform.queues.get('notify').getJob(started.body.jobId))!.returnvalue.requeued).toEqual([lost!.id]);
    await waitFor(async () => (await t.h.query(`SELECT status FROM notifications WHERE id = $1`, [lost!.id]))[0]!.status === 'delivered', { what: 'delivered' });
    expect(receiver.about('dart/lost')).toHaveLength(1);
  });

  it('gives up after NOTIFY_MAX_ATTEMPTS and says so', async () => {
    receiver.plan('kotlin/small', [500, 500, 500, 500, 500]);
    await ingest([...results('kotlin', 'small', 'gpt-4o', 5, { quality: 0.9 })]);
    await calibrate();
    const [row] = await settled('kotlin', 'small', 1);
    expect(row).toMatchObject({ status: 'failed', attempts: 4 });
    expect(receiver.about('kotlin/small')).toHaveLength(4);
    const detail = (await t.h.request('GET', `/admin/notifications/${row!.id}`)).body;
    expect(detail.last_error).toContain('attempt 4 of 4, giving up');
    expect(detail.delivery_attempts.at(-1).outcome).toBe('failed');
  });
});

describe('runs', () => {
  it('two runs at once make a change, and notify it, once', async () => {
    await ingest([...results('swift', 'small', 'gpt-4o', 5, { quality: 0.9 })]);
    const config = loadModelSelectionConfig(t.env.env);
    const job = (key: string) => ({ platform: t.h.platform, jobKey: key, log: t.h.platform.log });
    const [a, b] = await Promise.all([runModelSelection(job('concurrent-a'), config, {}), runModelSelection(job('concurrent-b'), config, {})]);
    const swift = (r: typeof a) => r.changed.filter((c) => c.language === 'swift' && c.size_category === 'small');
    expect(swift(a).length + swift(b).length).toBe(1);
    await settled('swift', 'small', 1);
    expect(receiver.about('swift/small')).toHaveLength(1);
  });

  it('a retried run returns its result and writes nothing twice', async () => {
    await ingest([...results('elixir', 'small', 'gpt-4o', 5, { quality: 0.9 })]);
    const config = loadModelSelectionConfig(t.env.env);
    const job = { platform: t.h.platform, jobKey: 'retried-run', log: t.h.platform.log };
    const first = await runModelSelection(job, config, {});
    const again = await runModelSelection(job, config, {});
    expect(again).toEqual(first);
    expect((await t.h.query(`SELECT count(*)::int AS n FROM model_selection_runs WHERE job_key = 'retried-run'`))[0]!.n).toBe(1);
    expect(await notificationsAbout('elixir', 'small')).toHaveLength(1);
  });

  it('documents every route in /openapi.json', async () => {
    const doc = (await t.h.request('GET', '/openapi.json', { key: null })).body;
    for (const path of ['/admin/model-selection/results', '/admin/model-selection/calibrate', '/admin/model-selection/configurations', '/admin/model-selection/rankings', '/model-config', '/admin/notifications', '/admin/notifications/{id}', '/admin/notifications/{id}/redeliver']) {
      expect(doc.paths[path], path).toBeDefined();
    }
    expect(doc.paths['/model-config'].get.parameters.map((p: any) => p.name)).toEqual(['language', 'size', 'lines', 'files']);
  });

  it('is a listed schedule that can be started by hand', async () => {
    const list = (await t.h.request('GET', '/admin/schedules')).body;
    const schedule = list.items.find((s: any) => s.id === 'model-selection');
    expect(schedule).toMatchObject({ queue: 'calibrate', job: 'model-selection', enabled: false });
    const started = await t.h.request('POST', '/admin/schedules/model-selection/run');
    expect(started.status).toBe(202);
    const job = (await t.h.platform.queues.get('calibrate').getJob(started.body.jobId))!;
    await waitFor(async () => (await job.getState()) === 'completed', { what: 'scheduled run' });
    const run = (await t.h.platform.queues.get('calibrate').getJob(started.body.jobId))!.returnvalue;
    expect(run).toMatchObject({ status: 'ok', changed: [] });
    expect((await t.h.query(`SELECT requested_by FROM model_selection_runs WHERE id = $1`, [run.run_id]))[0]!.requested_by).toBe('schedule');
  });
});
