import { beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { withTenant } from '../../libs/platform/src/index.ts';
import { useHarness } from '../harness.ts';

// Tenant A and tenant B send the same request ids; every read and write must stay on its side.
const t = useHarness({ workers: ['calibrate'] });
let a: { id: string; key: string };
let b: { id: string; key: string };

const TABLES = ['confidence_scores', 'confidence_hourly', 'confidence_daily', 'confidence_hourly_pending', 'confidence_calibration', 'performance_metrics', 'confidence_temperature_fits'];
const score = (request_id: string, conf: number, model: string) => ({
  request_id,
  model,
  factual_confidence: conf,
  reasoning_confidence: conf,
  contextual_relevance: conf,
  uncertainty_lower: 0,
  uncertainty_upper: 1,
  created_at: '2026-11-30T10:00:00Z',
});
const as = (key: string) => ({
  get: (path: string) => t.h.request('GET', path, { key }),
  post: (path: string, json?: Record<string, unknown>) => t.h.request('POST', path, { key, json }),
});

beforeAll(async () => {
  a = await t.h.createTenant('tenant-a');
  b = await t.h.createTenant('tenant-b');
  for (const [tenant, conf, model] of [
    [a, 0.9, 'model-a'],
    [b, 0.2, 'model-b'],
  ] as const) {
    const api = as(tenant.key);
    const scores = Array.from({ length: 40 }, (_, i) => score(`req-${i}`, conf, model));
    expect((await api.post('/confidence/scores', { scores })).body).toEqual({ inserted: 40, duplicates: 0 });
    const outcomes = scores.map((s, i) => ({ request_id: s.request_id, correct: i % 4 !== 0, validation_method: 'human_review' }));
    expect((await api.post('/confidence/outcomes', { outcomes })).status).toBe(201);
    expect((await api.post('/metrics/performance', { metrics: [{ endpoint: `/${model}`, response_time_ms: 10, request_id: 'req-1' }] })).status).toBe(201);
  }
  expect((await as(a.key).post('/confidence/calibrate?wait=true')).status).toBe(200);
  expect((await as(b.key).post('/confidence/calibrate?wait=true')).status).toBe(200);
});

describe('row-level security, enforced by Postgres', () => {
  it("runs as a role that is neither superuser, BYPASSRLS nor the tables' owner", async () => {
    const [me] = await t.h.query(`
      SELECT current_user AS name, r.rolsuper, r.rolbypassrls
        FROM pg_roles r WHERE r.rolname = current_user`);
    expect(me).toEqual({ name: 'caliber_app', rolsuper: false, rolbypassrls: false });
    const tables = await t.h.query('SELECT relname, relrowsecurity, relforcerowsecurity, pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname = ANY($1) ORDER BY relname', [TABLES]);
    expect(tables).toHaveLength(TABLES.length);
    for (const table of tables) expect(table).toMatchObject({ relrowsecurity: true, relforcerowsecurity: true, owner: expect.not.stringMatching(/^caliber_app$/) });
  });

  it('shows a query without the tenant setting nothing, and one with it only that tenant', async () => {
    // Both tenants' rows are there (seen by the owner's superuser login)…
    expect((await t.h.ownerQuery('SELECT count(DISTINCT tenant_id)::int AS n FROM confidence_scores'))[0]!.n).toBe(2);
    // …yet Caliber's role sees none of them without app.tenant_id, through tables and views alike.
    for (const relation of [...TABLES, 'confidence_trends_hourly', 'performance_dashboard', 'calibration_analysis']) {
      expect([relation, (await t.h.query(`SELECT count(*)::int AS n FROM ${relation}`))[0]!.n]).toEqual([relation, 0]);
    }
    const client = await t.h.platform.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query("SELECT set_config('app.tenant_id', $1, true)", [a.id]);
      const seen = await client.query('SELECT DISTINCT tenant_id, model FROM confidence_scores');
      expect(seen.rows).toEqual([{ tenant_id: a.id, model: 'model-a' }]);
      expect((await client.query('SELECT DISTINCT model FROM calibration_analysis')).rows).toEqual([{ model: 'model-a' }]);
      // Writing a row of B while acting as A is refused by the policy's WITH CHECK.
      await expect(
        client.query(
          "INSERT INTO confidence_scores (tenant_id, request_id, model, factual_confidence, reasoning_confidence, contextual_relevance, uncertainty_lower, uncertainty_upper) VALUES ($1, 'sneak', 'x', 0.5, 0.5, 0.5, 0, 1)",
          [b.id],
        ),
      ).rejects.toThrow(/row-level security/);
      await client.query('ROLLBACK');
      // Nor may the role update or delete B's rows: they are invisible to it.
      await client.query('BEGIN');
      await client.query("SELECT set_config('app.tenant_id', $1, true)", [a.id]);
      expect((await client.query("UPDATE confidence_scores SET model = 'moved' WHERE tenant_id = $1", [b.id])).rowCount).toBe(0);
      expect((await client.query('DELETE FROM confidence_calibration WHERE tenant_id = $1', [b.id])).rowCount).toBe(0);
      await client.query('COMMIT');
      // The setting was for that transaction only: the pooled connection carries nothing on.
      expect((await client.query('SELECT count(*)::int AS n FROM confidence_scores')).rows[0].n).toBe(0);
      await expect(client.query('TRUNCATE confidence_scores CASCADE')).rejects.toThrow(/permission denied/);
    } finally {
      client.release();
    }
    expect((await t.h.ownerQuery("SELECT count(*)::int AS n FROM confidence_scores WHERE model = 'moved'"))[0]!.n).toBe(0);
  });
});

describe('tenant transactions', () => {
  it('retry a deadlock, raised through Drizzle, with the tenant set again', async () => {
    let attempts = 0;
    const seen = await withTenant(t.h.platform.db, a.id, async (tx) => {
      attempts++;
      if (attempts === 1) await tx.execute(sql`DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '40P01'; END $$`);
      return (await tx.execute<{ n: number }>(sql`SELECT count(DISTINCT tenant_id)::int AS n FROM confidence_scores`)).rows[0]!.n;
    });
    expect({ attempts, seen }).toEqual({ attempts: 2, seen: 1 });
    await expect(withTenant(t.h.platform.db, a.id, (tx) => tx.execute(sql`SELECT 1/0`))).rejects.toThrow();
  });
});

describe("a tenant key cannot reach another tenant's rows through any route", () => {
  it('reads only its own scores, outcomes, metrics and fits', async () => {
    const api = as(a.key);
    const trends = await api.get('/confidence/trends?from=2026-11-30T00:00:00Z&to=2026-12-01T00:00:00Z&bucket=day');
    expect(trends.body.buckets[0]).toMatchObject({ count: 40, avg_overall: 0.9 });
    expect((await api.get('/confidence/trends?from=2026-11-30T00:00:00Z&to=2026-12-01T00:00:00Z&bucket=day&model=model-b')).body.buckets[0].count).toBe(0);
    const calibration = await api.get('/confidence/calibration');
    expect(calibration.body).toMatchObject({ n: 40 });
    expect(calibration.body.bins.filter((x: { count: number }) => x.count > 0).map((x: { hi: number }) => x.hi)).toEqual([14 / 15].map((v) => Number(v.toFixed(6))));
    expect((await api.get('/confidence/calibration?model=model-b')).body).toMatchObject({ n: 0, temperature: null });
    const dash = await api.get('/confidence/dashboard?hours=2160');
    expect(dash.body.models.map((m: { model: string }) => m.model)).toEqual(['model-a']);
    expect(dash.body.performance.map((p: { endpoint: string }) => p.endpoint)).toEqual(['/model-a']);
  });

  it("writes only its own rows: B's request ids are separate, B's scores are never touched", async () => {
    const api = as(a.key);
    // req-0 exists for both tenants: an outcome from A is recorded against A's score only.
    expect((await api.post('/confidence/outcomes', { outcomes: [{ request_id: 'req-0', correct: true, validation_method: 'automated_test' }] })).body).toMatchObject({ inserted: 1 });
    const rows = await t.h.ownerQuery("SELECT tenant_id FROM confidence_calibration WHERE request_id = 'req-0' AND validation_method = 'automated_test'");
    expect(rows).toEqual([{ tenant_id: a.id }]);
    // A request id only B has is unknown to A.
    await as(b.key).post('/confidence/scores', { scores: [score('only-b', 0.5, 'model-b')] });
    const refused = await api.post('/confidence/outcomes', { outcomes: [{ request_id: 'only-b', correct: false, validation_method: 'human_review' }] });
    expect(refused.status).toBe(404);
    expect((await t.h.ownerQuery("SELECT count(*)::int AS n FROM confidence_calibration WHERE request_id = 'only-b'"))[0]!.n).toBe(0);
    // Fields naming a tenant are not accepted: the tenant is the key's.
    const named = await api.post('/confidence/scores', { scores: [{ ...score('x-1', 0.5, 'model-a'), tenant_id: b.id }] });
    expect(named.status).toBe(400);
    // A tenant key's X-Tenant-Id is ignored: it acts for its own tenant.
    const header = await t.h.request('GET', '/confidence/calibration', { key: a.key, headers: { 'x-tenant-id': b.id } });
    expect(header.body.n).toBe(41);
  });

  it("cannot see B's jobs, nor any admin route", async () => {
    const bJob = await as(b.key).post('/confidence/calibrate');
    expect(bJob.status).toBe(202);
    expect((await as(a.key).get(bJob.body.status)).status).toBe(404);
    expect((await as(b.key).get(bJob.body.status)).status).toBe(200);
    for (const [method, path] of [
      ['GET', '/admin/tenants'],
      ['POST', '/admin/tenants'],
      ['GET', `/admin/jobs/calibrate/${bJob.body.jobId}`],
      ['GET', '/admin/queues'],
      ['GET', '/metrics'],
      ['GET', '/admin/schedules'],
      ['POST', '/library/files'],
      ['GET', '/api/analytics/response-quality/problematic'],
    ]) {
      const res = await t.h.request(method!, path!, { key: a.key, json: method === 'POST' ? {} : undefined });
      expect([method, path, res.status]).toEqual([method, path, 403]);
    }
    expect((await t.h.request('GET', '/confidence/dashboard', { key: 'clbt_not-a-key-of-anyone-at-all-000' })).status).toBe(401);
  });

  it('lets the admin key act for a named tenant, and only then', async () => {
    const none = await t.h.request('GET', '/confidence/calibration');
    expect(none).toMatchObject({ status: 400, body: { error: { code: 'tenant_required' } } });
    const forB = await t.h.request('GET', '/confidence/calibration?model=model-b', { headers: { 'x-tenant-id': b.id } });
    expect(forB.body).toMatchObject({ n: 40, model: 'model-b' });
    expect((await t.h.request('GET', '/confidence/calibration', { headers: { 'x-tenant-id': '00000000-0000-0000-0000-000000000000' } })).status).toBe(404);
    expect((await t.h.request('GET', '/confidence/calibration', { headers: { 'x-tenant-id': 'tenant-b' } })).status).toBe(400);
  });
});
