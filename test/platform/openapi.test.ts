import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import { useHarness } from '../harness.ts';

const t = useHarness();

// Pages and assets for browsers, not API routes.
const NOT_API = [/^\/widget\//, /^\/dashboard(\/|$)/, /^\/docs(\/|$)/, /^\/admin\/queues(\/|$)/, /^\/login$/, /^\/logout$/, /^\/favicon\.ico$/, /^\/openapi\.json$/];

describe('/openapi.json', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const { status, body } = await t.h.request('GET', '/openapi.json', { key: null });
    expect(status).toBe(200);
    const validator = new Validator();
    const result = await validator.validate(body);
    expect(result.errors ?? [], JSON.stringify(result.errors, null, 1)?.slice(0, 3000)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });

  it('describes every route the gateway serves', async () => {
    const doc = (await t.h.request('GET', '/openapi.json', { key: null })).body as { paths: Record<string, Record<string, unknown>> };
    const routes = t.h.gateway.app.routes
      .filter((r) => r.method !== 'ALL' && !NOT_API.some((re) => re.test(r.path)))
      .map((r) => ({ method: r.method.toLowerCase(), path: r.path.replace(/:([A-Za-z_]+)/g, '{$1}') }));
    const unique = [...new Map(routes.map((r) => [`${r.method} ${r.path}`, r])).values()];
    expect(unique.length).toBeGreaterThan(50);
    const missing = unique.filter((r) => !doc.paths[r.path]?.[r.method]).map((r) => `${r.method.toUpperCase()} ${r.path}`);
    expect(missing).toEqual([]);
  });

  it('serves the interactive docs without a key', async () => {
    const res = await t.h.request('GET', '/docs', { key: null });
    expect(res.status).toBe(200);
    expect(res.text).toContain('/docs/assets/swagger-ui.js');
    const js = await t.h.request('GET', '/docs/assets/swagger-ui.js', { key: null });
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toContain('javascript');
    expect(js.text.length).toBeGreaterThan(100_000);
  });

  it('keeps the dashboard behind the admin key', async () => {
    expect((await t.h.request('GET', '/dashboard/queues', { key: null, headers: { accept: 'text/html' } })).status).toBe(302);
    expect((await t.h.request('GET', '/dashboard/queues', { key: null })).status).toBe(401);
    expect((await t.h.request('GET', '/dashboard/assets/chart.js', { key: null })).status).toBe(401);
    const tenant = await t.h.createTenant('openapi-test');
    expect((await t.h.request('GET', '/dashboard/queues', { key: tenant.key })).status).toBe(403);
    const page = await t.h.request('GET', '/dashboard/queues');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<canvas id="queue-chart"');
  });
});
