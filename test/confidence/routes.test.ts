import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '../harness.ts';

const t = useHarness({ workers: ['calibrate'] });
let tenant: { id: string; key: string };

const score = (request_id: string, conf: number, extra: Record<string, unknown> = {}) => ({
  request_id,
  model: 'gpt-4o',
  factual_confidence: conf,
  reasoning_confidence: conf,
  contextual_relevance: conf,
  uncertainty_lower: Math.max(0, conf - 0.1),
  uncertainty_upper: Math.min(1, conf + 0.1),
  created_at: '2026-11-30T10:15:00Z',
  ...extra,
});
const post = (path: string, json: Record<string, unknown>, key = tenant.key) => t.h.request('POST', path, { json, key });
const get = (path: string, key = tenant.key) => t.h.request('GET', path, { key });
const stored = async (table: string) => (await t.h.ownerQuery(`SELECT count(*)::int AS n FROM ${table}`))[0]!.n as number;

beforeAll(async () => {
  tenant = await t.h.createTenant('acme');
});

describe('tenants', () => {
  it('documents the tenant and confidence routes in the OpenAPI document, from their zod schemas', async () => {
    const doc = await t.h.request('GET', '/openapi.json', { key: null });
    expect(doc.status).toBe(200);
    for (const path of ['/admin/tenants', '/confidence/scores', '/confidence/outcomes', '/metrics/performance', '/confidence/trends', '/confidence/dashboard', '/confidence/calibration', '/confidence/calibrate']) {
      expect(Object.keys(doc.body.paths)).toContain(path);
    }
    const body = doc.body.paths['/confidence/scores'].post.requestBody.content['application/json'].schema;
    expect(JSON.stringify(body)).toContain('maxItems');
    expect(JSON.stringify(doc.body.components.schemas.ConfidenceScore)).toContain('factual_confidence');
  });


  it('creates a tenant with a key shown once, refuses a second of the same name, and lists keys by prefix', async () => {
    const created = await t.h.request('POST', '/admin/tenants', { json: { name: 'globex' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), name: 'globex', api_key: expect.stringMatching(/^clbt_[\w-]{32}$/) });
    expect((await t.h.request('POST', '/admin/tenants', { json: { name: 'globex' } })).status).toBe(409);
    expect((await t.h.request('POST', '/admin/tenants', { json: { name: '' } })).status).toBe(400);

    const list = await t.h.request('GET', '/admin/tenants');
    const globex = list.body.items.find((x: { name: string }) => x.name === 'globex');
    expect(globex.keys).toEqual([{ id: created.body.key_id, prefix: created.body.api_key.slice(0, 11), created_at: expect.any(String), revoked_at: null }]);
    expect(list.text).not.toContain(created.body.api_key);
    const [row] = await t.h.ownerQuery('SELECT key_hash FROM tenant_api_keys WHERE id = $1', [created.body.key_id]);
    expect(row!.key_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(row!.key_hash).not.toContain(created.body.api_key);
  });

  it('rotates keys: a second key works, a revoked one gets 401', async () => {
    const { id, key } = await t.h.createTenant('initech');
    const second = await t.h.request('POST', `/admin/tenants/${id}/keys`);
    expect(second.status).toBe(201);
    expect((await get('/confidence/dashboard', second.body.api_key)).status).toBe(200);
    const [first] = await t.h.ownerQuery('SELECT id FROM tenant_api_keys WHERE tenant_id = $1 ORDER BY id LIMIT 1', [id]);
    const revoked = await t.h.request('DELETE', `/admin/tenants/${id}/keys/${first!.id}`);
    expect(revoked).toMatchObject({ status: 200, body: { id: first!.id, revoked_at: expect.any(String) } });
    expect((await get('/confidence/dashboard', key)).status).toBe(401);
    expect((await get('/confidence/dashboard', second.body.api_key)).status).toBe(200);
    expect((await t.h.request('DELETE', `/admin/tenants/${id}/keys/999999`)).status).toBe(404);
    expect((await t.h.request('POST', '/admin/tenants/00000000-0000-0000-0000-000000000000/keys')).status).toBe(404);
  });
});

describe('scores, outcomes and performance metrics', () => {
  it('stores a batch of scores with overall_confidence the mean of the three, and a resent batch once', async () => {
    const batch = {
      scores: [
        score('s-1', 0.9, { factual_confidence: 0.9, reasoning_confidence: 0.6, contextual_relevance: 0.3, uncertainty_lower: 0.5, uncertainty_upper: 0.7, model_consensus: { 'gpt-4o': 0.9, claude: 0.8 } }),
        score('s-2', 0.5),
        score('s-3', 0.7, { model: 'claude', created_at: '2026-11-30T12:59:59.999Z' }),
      ],
    };
    expect(await post('/confidence/scores', batch)).toMatchObject({ status: 201, body: { inserted: 3, duplicates: 0 } });
    expect(await post('/confidence/scores', batch)).toMatchObject({ status: 201, body: { inserted: 0, duplicates: 3 } });
    // Half of a batch sent before: the new half is stored and counted, the rest skipped.
    expect(await post('/confidence/scores', { scores: [batch.scores[1], score('s-0', 0.00015, { created_at: Date.UTC(2026, 10, 28, 10), model: 'rounding', model_consensus: { quote: 'a"b\\c\ttab' } })] })).toMatchObject({
      status: 201,
      body: { inserted: 1, duplicates: 1 },
    });
    // 0.00015 rounds as numeric(5,4) rounds the decimal sent; Unix ms and escapes are stored as sent.
    const [s0] = await t.h.ownerQuery("SELECT factual_confidence, created_at, model_consensus FROM confidence_scores WHERE request_id = 's-0'");
    expect(s0).toMatchObject({ factual_confidence: '0.0002', model_consensus: { quote: 'a"b\\c\ttab' } });
    expect(new Date(s0!.created_at).toISOString()).toBe('2026-11-28T10:00:00.000Z');
    const [s1] = await t.h.ownerQuery("SELECT overall_confidence, model_consensus, tenant_id FROM confidence_scores WHERE request_id = 's-1'");
    expect(s1).toEqual({ overall_confidence: '0.6000', model_consensus: { 'gpt-4o': 0.9, claude: 0.8 }, tenant_id: tenant.id });
    // The rollup counted each score once, in its UTC hour.
    const hourly = await t.h.ownerQuery("SELECT model, bucket, count::int FROM confidence_hourly WHERE model NOT IN ('rounding', '') ORDER BY bucket, model");
    expect(hourly.map((r) => [r.model, new Date(r.bucket).toISOString(), r.count])).toEqual([
      ['gpt-4o', '2026-11-30T10:00:00.000Z', 2],
      ['claude', '2026-11-30T12:00:00.000Z', 1],
    ]);
  });

  it.each([
    ['a confidence of 1.2', { scores: [score('b-1', 0.5), score('b-2', 0.5, { factual_confidence: 1.2 })] }, [1]],
    ['lower above upper', { scores: [score('b-1', 0.5, { uncertainty_lower: 0.8, uncertainty_upper: 0.2 }), score('b-2', 0.5)] }, [0]],
    ['a negative bound', { scores: [score('b-1', 0.5, { uncertainty_lower: -0.1 })] }, [0]],
    ['an unknown field', { scores: [score('b-1', 0.5), score('b-2', 0.5, { mood: 'sure' })] }, [1]],
    ['no model', { scores: [{ ...score('b-1', 0.5), model: undefined }] }, [0]],
    ['a request_id twice in the batch', { scores: [score('b-1', 0.5), score('b-2', 0.5), score('b-1', 0.6)] }, [2]],
    ['an unpaired surrogate in a request_id', { scores: [score('b-1', 0.5), score('b-2\ud800', 0.5)] }, [1]],
    ['an unpaired surrogate in model_consensus', { scores: [score('b-1', 0.5, { model_consensus: { 'gpt\udc00': 1 } })] }, [0]],
    ['NUL in model_consensus', { scores: [score('b-1', 0.5, { model_consensus: { a: 'x\u0000' } })] }, [0]],
    ['year 0000', { scores: [score('b-1', 0.5, { created_at: '0000-06-01T00:00:00.000Z' })] }, [0]],
    ['Unix ms past year 9999', { scores: [score('b-1', 0.5, { created_at: 253_402_300_800_000 })] }, [0]],
    ['model_consensus over 10 000 characters of JSON', { scores: [score('b-1', 0.5, { model_consensus: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`m${i}`, '\u0001'.repeat(150)])) })] }, [0]],
    ['an empty batch', { scores: [] }, undefined],
    ['more than 10 000 scores', { scores: Array.from({ length: 10_001 }, (_, i) => score(`b-${i}`, 0.5)) }, undefined],
  ])('refuses %s with 400, the failing indexes, and writes nothing', async (_what, body, indexes) => {
    const before = await stored('confidence_scores');
    const res = await post('/confidence/scores', body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    if (indexes) expect(res.body.error.failed_indexes).toEqual(indexes);
    expect(res.body.error.message).toMatch(/nothing was written|Too big|Too small/i);
    expect(await stored('confidence_scores')).toBe(before);
  });

  it('records outcomes against scores, updates a changed verdict, and refuses unknown requests or methods', async () => {
    const outcomes = [
      { request_id: 's-1', correct: true, validation_method: 'human_review' },
      { request_id: 's-1', correct: false, validation_method: 'automated_test' },
      { request_id: 's-2', correct: false, validation_method: 'cross_validation', validated_at: '2026-11-30T11:00:00Z' },
    ];
    expect(await post('/confidence/outcomes', { outcomes })).toMatchObject({ status: 201, body: { inserted: 3, updated: 0, unchanged: 0 } });
    const again = await post('/confidence/outcomes', { outcomes: [{ ...outcomes[0], correct: false }, outcomes[1]] });
    expect(again.body).toEqual({ inserted: 0, updated: 1, unchanged: 1 });
    const rows = await t.h.ownerQuery("SELECT request_id, predicted_confidence, actual_outcome, validation_method, calibration_error FROM confidence_calibration ORDER BY id");
    expect(rows[0]).toEqual({ request_id: 's-1', predicted_confidence: '0.6000', actual_outcome: false, validation_method: 'human_review', calibration_error: '0.6000' });

    const before = await stored('confidence_calibration');
    const missing = await post('/confidence/outcomes', { outcomes: [{ request_id: 's-3', correct: true, validation_method: 'human_review' }, { request_id: 'never', correct: true, validation_method: 'human_review' }] });
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ code: 'not_found', failed_indexes: [1] });
    expect(missing.body.error.message).toContain('never');
    const badMethod = await post('/confidence/outcomes', { outcomes: [{ request_id: 's-3', correct: true, validation_method: 'gut_feeling' }] });
    expect(badMethod).toMatchObject({ status: 400, body: { error: { code: 'invalid_request', failed_indexes: [0] } } });
    expect((await post('/confidence/outcomes', { outcomes: [{ request_id: 's-3', correct: 'yes', validation_method: 'human_review' }] })).status).toBe(400);
    expect(await stored('confidence_calibration')).toBe(before);
  });

  it('stores performance metrics, a resent one with its request_id once, and refuses impossible values', async () => {
    const metrics = [
      { endpoint: '/chat', request_id: 'm-1', model: 'gpt-4o', response_time_ms: 120, tokens_used: 300, cache_hit_rate: 0.5, cpu_usage_percent: 40, created_at: '2026-11-30T10:00:00Z' },
      { endpoint: '/chat', request_id: 'm-2', response_time_ms: 80, tokens_used: 100, memory_usage_mb: 512, system_load: 1.5 },
      { endpoint: '/search', response_time_ms: 20 },
    ];
    expect(await post('/metrics/performance', { metrics })).toMatchObject({ status: 201, body: { inserted: 3, duplicates: 0 } });
    expect((await post('/metrics/performance', { metrics: metrics.slice(0, 2) })).body).toEqual({ inserted: 0, duplicates: 2 });
    const before = await stored('performance_metrics');
    const bad = await post('/metrics/performance', { metrics: [metrics[2], { endpoint: '/x', response_time_ms: 5, cpu_usage_percent: 150 }, { endpoint: '/x', response_time_ms: -1 }] });
    expect(bad).toMatchObject({ status: 400, body: { error: { failed_indexes: [1, 2] } } });
    expect(await stored('performance_metrics')).toBe(before);
  });
});

describe('the hourly rollup', () => {
  it('adds up to exactly the stored scores, with concurrent batches sharing request ids', async () => {
    const { key } = await t.h.createTenant('rollup-check');
    let seed = 5;
    const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const batch = (b: number) => ({
      scores: Array.from({ length: 400 }, (_, i) => {
        const id = (b * 200 + i) % 1000; // each batch shares half its ids with the next
        const [lo, hi] = [random(), random()].sort((x, y) => x - y);
        return {
          request_id: `c-${id}`,
          model: ['m1', 'm2', 'm3'][id % 3],
          factual_confidence: random(),
          reasoning_confidence: Math.round(random() * 1e4) / 1e4,
          contextual_relevance: random() < 0.1 ? 0.00005 : random(),
          uncertainty_lower: lo,
          uncertainty_upper: hi,
          created_at: new Date(Date.UTC(2026, 10, 29) + Math.floor(random() * 6 * 3_600_000)).toISOString(),
        };
      }),
    });
    // Twelve batches at once, each sharing half its ids with the next, odd ones in reverse order.
    const batches = Array.from({ length: 12 }, (_, b) => {
      const body = batch(b % 6);
      if (b % 2) body.scores.reverse();
      return body;
    });
    const answers = await Promise.all(batches.map((body) => post('/confidence/scores', body, key)));
    expect(answers.map((a) => a.status)).toEqual(Array(12).fill(201));
    const stored = (await t.h.ownerQuery("SELECT count(*)::int AS n FROM confidence_scores s JOIN tenants t ON t.id = s.tenant_id WHERE t.name = 'rollup-check'"))[0]!.n;
    expect(stored).toBe(1000);
    expect(answers.reduce((sum, a) => sum + a.body.inserted, 0)).toBe(1000);
    expect(answers.reduce((sum, a) => sum + a.body.duplicates, 0)).toBe(12 * 400 - 1000);
    const [truth, rolled] = await Promise.all([
      t.h.ownerQuery(`
        SELECT model, date_trunc('hour', s.created_at, 'UTC') AS bucket, count(*)::int AS count, sum(overall_confidence)::float8 AS sum,
               min(overall_confidence)::float8 AS min, max(overall_confidence)::float8 AS max, sum(factual_confidence)::float8 AS factual,
               sum(uncertainty_upper - uncertainty_lower)::float8 AS width
          FROM confidence_scores s JOIN tenants t ON t.id = s.tenant_id WHERE t.name = 'rollup-check' GROUP BY 1, 2 ORDER BY 1, 2`),
      t.h.ownerQuery(`
        SELECT model, bucket, sum(count)::int AS count, sum(sum_overall) AS sum, min(min_overall) AS min, max(max_overall) AS max,
               sum(sum_factual) AS factual, sum(sum_uncertainty_width) AS width
          FROM (SELECT * FROM confidence_hourly WHERE model <> '' UNION ALL SELECT * FROM confidence_hourly_pending) r JOIN tenants t ON t.id = r.tenant_id
         WHERE t.name = 'rollup-check' GROUP BY 1, 2 ORDER BY 1, 2`),
    ]);
    expect(rolled.length).toBe(truth.length);
    // The daily rollup (plus what is pending) holds the same scores.
    const [daily] = await t.h.ownerQuery(`
      SELECT (SELECT sum(count)::int FROM confidence_daily d JOIN tenants t ON t.id = d.tenant_id WHERE t.name = 'rollup-check' AND model <> '') AS daily,
             (SELECT sum(count)::int FROM confidence_daily d JOIN tenants t ON t.id = d.tenant_id WHERE t.name = 'rollup-check' AND model = '') AS daily_all,
             (SELECT coalesce(sum(count), 0)::int FROM confidence_hourly_pending p JOIN tenants t ON t.id = p.tenant_id WHERE t.name = 'rollup-check') AS pending`);
    expect(daily!.daily + daily!.pending).toBe(1000);
    expect(daily!.daily_all).toBe(daily!.daily); // the all-models rows add up to the per-model ones
    truth.forEach((row, i) => {
      const r = rolled[i]!;
      expect([r.model, new Date(r.bucket).getTime(), r.count, r.min, r.max]).toEqual([row.model, new Date(row.bucket).getTime(), row.count, row.min, row.max]);
      for (const k of ['sum', 'factual', 'width']) expect(r[k]).toBeCloseTo(row[k], 9);
    });
  });
});

describe('analytics', () => {
  it('gives hourly and daily trends from the rollup, every bucket listed', async () => {
    const res = await get('/confidence/trends?from=2026-11-30T09:30:00Z&to=2026-11-30T13:00:00Z&bucket=hour');
    expect(res.status).toBe(200);
    expect(res.body.from).toBe('2026-11-30T09:00:00.000Z');
    expect(res.body.buckets.map((b: { bucket: string; count: number }) => [b.bucket.slice(11, 16), b.count])).toEqual([
      ['09:00', 0],
      ['10:00', 2],
      ['11:00', 0],
      ['12:00', 1],
    ]);
    // s-1 overall 0.6, s-2 overall 0.5.
    expect(res.body.buckets[1]).toMatchObject({ avg_overall: 0.55, avg_factual: 0.7, min_overall: 0.5, max_overall: 0.6, stddev_overall: 0.05 });
    const gpt = await get('/confidence/trends?from=2026-11-30T00:00:00Z&to=2026-12-01T00:00:00Z&bucket=day&model=gpt-4o');
    expect(gpt.body.buckets).toEqual([expect.objectContaining({ bucket: '2026-11-30T00:00:00.000Z', count: 2, avg_overall: 0.55 })]);
    // Default: from the day 30 days ago through today.
    expect((await get("/confidence/trends?bucket=day")).body.buckets).toHaveLength(31);
  });

  it.each([
    ['from after to', '?from=2026-11-30T10:00:00Z&to=2026-11-30T09:00:00Z'],
    ['a range of too many hours', '?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&bucket=hour'],
    ['an unknown bucket', '?bucket=week'],
    ['a date that is not one', '?from=yesterday'],
  ])('refuses trends with %s', async (_what, query) => {
    expect((await get(`/confidence/trends${query}`)).status).toBe(400);
  });

  it('reports calibration: the golden case through HTTP', async () => {
    const conf = [0.95, 0.9, 0.8, 0.75, 0.6, 0.55, 0.3, 0.2];
    const outcome = [1, 1, 0, 1, 1, 0, 0, 0];
    await post('/confidence/scores', { scores: conf.map((c, i) => score(`g-${i}`, c, { model: 'golden' })) });
    await post('/confidence/outcomes', { outcomes: outcome.map((o, i) => ({ request_id: `g-${i}`, correct: o === 1, validation_method: 'human_review' })) });
    const res = await get('/confidence/calibration?model=golden&bins=10');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ model: 'golden', n: 8, ece: 0.16875, mce: 0.3, brier: 0.163438, temperature: null, calibrated: null });
    expect(res.body.bins).toHaveLength(10);
    expect(res.body.bins[7]).toEqual({ lo: 0.7, hi: 0.8, count: 2, avg_confidence: 0.775, accuracy: 0.5 });
    expect((await get('/confidence/calibration?model=golden')).body.bins).toHaveLength(15);
    expect((await get('/confidence/calibration?model=golden&validation_method=automated_test')).body.n).toBe(0);
    expect((await get('/confidence/calibration?bins=0')).status).toBe(400);
  });

  it('shows the dashboard of the last hours: per model and per endpoint', async () => {
    const now = new Date().toISOString();
    await post('/confidence/scores', { scores: [score('d-1', 0.8, { created_at: now, model: 'dash' }), score('d-2', 0.4, { created_at: now, model: 'dash' })] });
    await post('/confidence/outcomes', { outcomes: [{ request_id: 'd-1', correct: true, validation_method: 'automated_test' }, { request_id: 'd-2', correct: true, validation_method: 'automated_test' }] });
    await post('/metrics/performance', { metrics: Array.from({ length: 20 }, (_, i) => ({ endpoint: '/answer', response_time_ms: (i + 1) * 10, tokens_used: 10 })) });
    const res = await get('/confidence/dashboard?hours=6');
    expect(res.status).toBe(200);
    expect(res.body.window.hours).toBe(6);
    const dash = res.body.models.find((m: { model: string }) => m.model === 'dash');
    expect(dash).toMatchObject({ scores: 2, avg_overall: 0.6, outcomes: 2, accuracy: 1 });
    expect(dash.ece).toBeCloseTo(0.4, 6);
    const answer = res.body.performance.find((p: { endpoint: string }) => p.endpoint === '/answer');
    expect(answer).toMatchObject({ requests: 20, avg_response_time_ms: 105, p95_response_time_ms: 190.5, total_tokens: 200 });
    // Rows of 30 November are outside the last 6 hours of a test run on another day, or inside on that day.
    expect(res.body.scores).toBeGreaterThanOrEqual(2);
  });
});

describe('temperature calibration (calibrate, kind confidence)', () => {
  it('fits a temperature per model, stores ECE before and after, and the report applies it', async () => {
    // Overconfident: says 0.9 and is right 60% of the time, says 0.1 and is wrong 60%.
    const scores = Array.from({ length: 100 }, (_, i) => score(`t-${i}`, i % 2 ? 0.9 : 0.1, { model: 'overconfident' }));
    await post('/confidence/scores', { scores });
    const outcomes = scores.map((s, i) => ({ request_id: s.request_id, correct: i % 2 ? i % 10 < 6 : i % 10 >= 6, validation_method: 'human_review' }));
    await post('/confidence/outcomes', { outcomes });
    const run = await t.h.request('POST', '/confidence/calibrate?wait=true&model=overconfident', { key: tenant.key });
    expect(run.status).toBe(200);
    expect(run.body.fitted).toHaveLength(1);
    const fit = run.body.fitted[0];
    expect(fit).toMatchObject({ tenant_id: tenant.id, model: 'overconfident', outcomes: 100 });
    expect(fit.temperature).toBeGreaterThan(1);
    expect(fit.ece_after).toBeLessThan(fit.ece_before);
    const report = await get('/confidence/calibration?model=overconfident');
    expect(report.body.temperature).toBe(fit.temperature);
    expect(report.body.calibrated.ece).toBeLessThan(report.body.ece);
    expect(report.body.temperature_fit).toMatchObject({ outcomes: 100, ece_before: fit.ece_before, ece_after: fit.ece_after });

    // The whole tenant: models with too few outcomes are skipped with the reason.
    const all = await t.h.request('POST', '/confidence/calibrate', { key: tenant.key });
    expect(all.status).toBe(202);
    expect(all.body.status).toBe(`/confidence/jobs/${all.body.jobId}`);
    const done = await waitForJob(all.body.status);
    expect(done.result.skipped).toEqual(expect.arrayContaining([expect.objectContaining({ model: 'golden', reason: expect.stringContaining('30 needed') })]));
    expect(done.result.fitted.map((f: { model: string }) => f.model)).toContain('overconfident');
  });
});

function waitForJob(path: string) {
  return waitFor(
    async () => {
      const res = await get(path);
      return res.body.state === 'completed' || res.body.state === 'failed' ? res.body : undefined;
    },
    { what: `job ${path} to finish` },
  );
}
