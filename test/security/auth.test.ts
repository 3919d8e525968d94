import { describe, expect, it } from 'vitest';
import { useHarness } from '../harness.ts';

// Every route the gateway registers, found by walking its router, so a new route cannot be left
// open by forgetting it here. Only these answer without a key.
const PUBLIC = new Set(['/healthz', '/readyz', '/openapi.json', '/docs', '/favicon.ico', '/login', '/logout', '/widget/caliber-feedback.js']);
const isPublic = (path: string) => PUBLIC.has(path) || path.startsWith('/docs/assets/');

const t = useHarness({ env: { CALIBRATE_HEADS: 'true' } });

/** A concrete path for a route pattern: parameters and wildcards filled with plausible values. */
function concrete(pattern: string): string {
  return pattern
    .replace(/:([A-Za-z_]+)\{[^}]*\}/g, 'x')
    .replace(/:id\b/g, '00000000-0000-4000-8000-000000000001')
    .replace(/:([A-Za-z_]+)/g, (_, name: string) => (/queue/.test(name) ? 'calibrate' : name.endsWith('id') ? '1' : 'x'))
    .replace(/\*$/, 'api/queues')
    .replace(/\/\*\//g, '/x/');
}

function routes() {
  const seen = new Map<string, { method: string; path: string; pattern: string }>();
  for (const r of t.h.gateway.app.routes) {
    if (r.method === 'ALL' && !r.path.startsWith('/admin/queues')) continue; // middleware
    const path = concrete(r.path);
    if (isPublic(path)) continue;
    const method = r.method === 'ALL' ? 'GET' : r.method;
    seen.set(`${method} ${path}`, { method, path, pattern: r.path });
  }
  return [...seen.values()];
}

describe('authentication on every route', () => {
  it('finds the routes to check (the walk works)', () => {
    const all = routes();
    expect(all.length).toBeGreaterThan(60);
    expect(all.map((r) => r.path)).toEqual(expect.arrayContaining(['/admin/queues/api/queues', '/dashboard/x', '/model-config', '/confidence/scores']));
  });

  it('refuses a request without a key, and one with a wrong key, on every route but the public ones', async () => {
    const open: string[] = [];
    for (const r of routes()) {
      const none = await t.h.request(r.method, r.path, { key: null, json: r.method === 'GET' || r.method === 'HEAD' ? undefined : {} });
      const wrong = await t.h.request(r.method, r.path, { key: 'wrong-key-0123456789abcdef', json: r.method === 'GET' || r.method === 'HEAD' ? undefined : {} });
      const almost = await t.h.request(r.method, r.path, { key: `${t.env.apiKey}x`, json: r.method === 'GET' || r.method === 'HEAD' ? undefined : {} });
      for (const [what, res] of [['no key', none], ['wrong key', wrong], ['key with a suffix', almost]] as const) {
        if (res.status !== 401) open.push(`${r.method} ${r.path} (${r.pattern}) with ${what}: ${res.status}`);
        else expect(res.body.error.code, `${r.method} ${r.path}`).toBe('unauthorized');
      }
    }
    expect(open).toEqual([]);
  });

  it("lets a tenant key call only the tenant routes, and another tenant's key never reaches this tenant's data", async () => {
    const a = await t.h.createTenant('auth-a');
    const b = await t.h.createTenant('auth-b');
    const all = routes();
    const tenantRoutes = all.filter((r) => /^\/(confidence|metrics\/performance|mcp)(\/|$)/.test(r.path));
    const adminRoutes = all.filter((r) => !tenantRoutes.includes(r));
    expect(tenantRoutes.length).toBeGreaterThan(5);
    const wrong: string[] = [];
    for (const r of adminRoutes) {
      const res = await t.h.request(r.method, r.path, { key: a.key, json: r.method === 'GET' ? undefined : {} });
      if (res.status !== 403) wrong.push(`${r.method} ${r.path} with a tenant key: ${res.status}`);
    }
    for (const r of tenantRoutes) {
      const res = await t.h.request(r.method, r.path, { key: a.key, json: r.method === 'GET' ? undefined : {} });
      if (res.status === 401 || res.status === 403) wrong.push(`${r.method} ${r.path} refused its own tenant: ${res.status}`);
    }
    expect(wrong).toEqual([]);

    // One score of A; B's key sees none of it, through every read.
    expect((await t.h.request('POST', '/confidence/scores', { key: a.key, json: { scores: [{ request_id: 'only-a', model: 'm', factual_confidence: 0.9, reasoning_confidence: 0.9, contextual_relevance: 0.9, uncertainty_lower: 0.8, uncertainty_upper: 0.95 }] } })).status).toBe(201);
    expect((await t.h.request('POST', '/confidence/outcomes', { key: b.key, json: { outcomes: [{ request_id: 'only-a', correct: true, validation_method: 'human_review' }] } })).status).toBe(404);
    const trendsB = (await t.h.request('GET', '/confidence/trends', { key: b.key })).body;
    expect(trendsB.buckets.reduce((s: number, x: { count: number }) => s + x.count, 0)).toBe(0);
    const trendsA = (await t.h.request('GET', '/confidence/trends', { key: a.key })).body;
    expect(trendsA.buckets.reduce((s: number, x: { count: number }) => s + x.count, 0)).toBe(1);
    // The admin key names a tenant in X-Tenant-Id; a tenant key cannot name another.
    const spoof = await t.h.request('GET', '/confidence/trends', { key: b.key, headers: { 'x-tenant-id': a.id } });
    expect(spoof.status === 400 || spoof.body.buckets.reduce((s: number, x: { count: number }) => s + x.count, 0) === 0).toBe(true);
  });

  it('lets a publishable key record responses and feedback and refuses it everywhere else', async () => {
    const origin = 'https://widget.example';
    const issued = await t.h.request('POST', '/admin/publishable-keys', { json: { name: 'auth-test', project: 'auth-test', model_ids: ['m'], allowed_origins: [origin] } });
    expect(issued.status).toBe(201);
    const publishable = new Set(['POST /api/analytics/response-quality/response', 'POST /api/analytics/response-quality/feedback']);
    const wrong: string[] = [];
    for (const r of routes()) {
      if (publishable.has(`${r.method} ${r.path}`)) continue;
      const res = await t.h.request(r.method, r.path, { key: issued.body.key, headers: { origin }, json: r.method === 'GET' ? undefined : {} });
      if (res.status !== 403) wrong.push(`${r.method} ${r.path} with a publishable key: ${res.status}`);
    }
    expect(wrong).toEqual([]);
  });

  it('keeps Bull Board and the dashboard behind the admin key too', async () => {
    for (const path of ['/admin/queues', '/admin/queues/api/queues', '/dashboard', '/dashboard/queues', '/dashboard/assets/chart.js', '/dashboard/retag/data.json']) {
      expect((await t.h.request('GET', path, { key: null })).status, path).toBe(401);
      expect((await t.h.request('GET', path, { key: null, headers: { accept: 'text/html' } })).status, path).toBe(302);
    }
  });
});
