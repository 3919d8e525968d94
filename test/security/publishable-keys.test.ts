import { describe, expect, it } from 'vitest';
import { useHarness } from '../harness.ts';

const t = useHarness();
const R = '/api/analytics/response-quality';
const ORIGIN = 'https://chat.example.com';

async function issue(body: Record<string, unknown>) {
  const res = await t.h.request('POST', '/admin/publishable-keys', { json: body });
  expect(res.status, res.text).toBe(201);
  return res.body as { id: number; key: string; prefix: string; allowed_origins: string[] };
}

const response = (id: string) => ({ response_id: id, model_id: 'support-bot', query: 'How do I reset my password?', response: 'Click "forgot password".' });

describe('publishable keys', () => {
  it('are shown once, listed by prefix, and refuse bad origins lists', async () => {
    const key = await issue({ name: 'chat widget', allowed_origins: [ORIGIN] });
    expect(key.key).toMatch(/^clbp_[A-Za-z0-9_-]{32}$/);
    const list = (await t.h.request('GET', '/admin/publishable-keys')).body.items;
    expect(list.find((k: { id: number }) => k.id === key.id)).toMatchObject({ prefix: key.key.slice(0, 12), allowed_origins: [ORIGIN], revoked_at: null });
    expect(JSON.stringify(list)).not.toContain(key.key);
    for (const allowed_origins of [[], ['https://chat.example.com/path'], ['ftp://x.example'], ['*']]) {
      expect((await t.h.request('POST', '/admin/publishable-keys', { json: { name: 'x', allowed_origins } })).status).toBe(400);
    }
    const tenant = await t.h.createTenant('pk-tenant');
    expect((await t.h.request('POST', '/admin/publishable-keys', { key: tenant.key, json: { name: 'x', allowed_origins: [ORIGIN] } })).status).toBe(403);
  });

  it('record responses and feedback from an allowed origin, with CORS headers', async () => {
    const { key } = await issue({ name: 'widget', allowed_origins: [ORIGIN, 'http://localhost:5173'] });
    const preflight = await t.h.request('OPTIONS', `${R}/feedback`, { key: null, headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');
    // An origin no active key lists gets no permission to even try.
    const stranger = await t.h.request('OPTIONS', `${R}/feedback`, { key: null, headers: { origin: 'https://stranger.example', 'access-control-request-method': 'POST' } });
    expect(stranger.status).toBe(403);
    expect(stranger.headers.get('access-control-allow-origin')).toBeNull();

    const recorded = await t.h.request('POST', `${R}/response`, { key, json: response('pk-1'), headers: { origin: ORIGIN } });
    expect(recorded.status, recorded.text).toBe(201);
    expect(recorded.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    const fb = await t.h.request('POST', `${R}/feedback`, { key, json: { response_id: 'pk-1', type: 'thumbs', thumbs_up: false }, headers: { origin: ORIGIN } });
    expect(fb.status, fb.text).toBe(201);
    const bad = await t.h.request('POST', `${R}/feedback`, { key, json: { response_id: 'pk-1', type: 'stars', stars: 9 }, headers: { origin: ORIGIN } });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('access-control-allow-origin')).toBe(ORIGIN); // the page can read why
    const stored = await t.h.query(`SELECT f.thumbs_up FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref WHERE r.response_id = 'pk-1'`);
    expect(stored).toEqual([{ thumbs_up: false }]);
  });

  it('are refused from another origin, without an origin, and on every other route', async () => {
    const { key } = await issue({ name: 'widget', allowed_origins: [ORIGIN] });
    const elsewhere = await t.h.request('POST', `${R}/response`, { key, json: response('pk-2'), headers: { origin: 'https://evil.example' } });
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.body.error.code).toBe('origin_not_allowed');
    expect(elsewhere.headers.get('access-control-allow-origin')).toBeNull();
    expect((await t.h.request('POST', `${R}/response`, { key, json: response('pk-2') })).status).toBe(403);
    expect((await t.h.query(`SELECT 1 FROM llm_responses WHERE response_id = 'pk-2'`))).toEqual([]);
    for (const [method, path] of [['GET', '/admin/schedules'], ['GET', `${R}/metrics`], ['GET', `${R}/problematic`], ['POST', '/admin/publishable-keys'], ['GET', '/confidence/trends'], ['GET', '/dashboard/queues'], ['GET', '/admin/queues/api/queues']] as const) {
      const res = await t.h.request(method, path, { key, headers: { origin: ORIGIN }, json: method === 'POST' ? {} : undefined });
      expect(res.status, `${method} ${path}`).toBe(403);
    }
  });

  it('are rate limited per key and client, with Retry-After', async () => {
    const { key } = await issue({ name: 'tight', allowed_origins: [ORIGIN], rate_limit_per_minute: 3 });
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    let exposed: string | null = null;
    // Seven requests at 3 a minute: even if the minute turns in between, at least one is refused.
    for (let i = 0; i < 7; i++) {
      const res = await t.h.request('POST', `${R}/response`, { key, json: response(`rl-${i}`), headers: { origin: ORIGIN, 'x-forwarded-for': `10.0.0.${i}` } });
      statuses.push(res.status);
      if (res.status === 429) {
        retryAfter = res.headers.get('retry-after');
        exposed = res.headers.get('access-control-expose-headers');
      }
    }
    expect(statuses.slice(0, 3)).toEqual([201, 201, 201]);
    expect(statuses).toContain(429);
    expect(statuses.filter((s) => s === 201).length).toBeLessThanOrEqual(6);
    expect(Number(retryAfter)).toBeGreaterThan(0);
    expect(Number(retryAfter)).toBeLessThanOrEqual(60);
    expect(exposed).toBe('Retry-After'); // the page's script can read when to try again
    // (A made-up X-Forwarded-For changed nothing: without TRUST_PROXY the socket's address counts.)
    // Another key is counted apart.
    const other = await issue({ name: 'other', allowed_origins: [ORIGIN], rate_limit_per_minute: 3 });
    expect((await t.h.request('POST', `${R}/response`, { key: other.key, json: response('rl-other'), headers: { origin: ORIGIN } })).status).toBe(201);
  });

  it('serves the widget as one ES module, to pages of any origin, with an ETag', async () => {
    const res = await t.h.request('GET', '/widget/caliber-feedback.js', { key: null, headers: { origin: 'https://anywhere.example' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('javascript');
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.text).toContain('caliber-feedback');
    expect(res.text).not.toMatch(/https?:\/\/(fonts|cdn|unpkg)/);
    expect(res.text.length).toBeLessThan(20_000);
    const again = await t.h.request('GET', '/widget/caliber-feedback.js', { key: null, headers: { 'if-none-match': res.headers.get('etag')! } });
    expect(again.status).toBe(304);
  });

  it('send one small item per request: no batches, no big bodies', async () => {
    const { key } = await issue({ name: 'small', allowed_origins: [ORIGIN] });
    const batch = await t.h.request('POST', `${R}/response`, { key, json: { items: [response('b-1'), response('b-2')] }, headers: { origin: ORIGIN } });
    expect(batch.status).toBe(400);
    expect(batch.body.error.message).toContain('one item per request');
    const big = await t.h.request('POST', `${R}/response`, { key, json: { ...response('b-3'), response: 'x'.repeat(40_000) }, headers: { origin: ORIGIN } });
    expect(big.status).toBe(413);
    expect(await t.h.query(`SELECT 1 FROM llm_responses WHERE response_id LIKE 'b-%'`)).toEqual([]);
    // The admin key still sends batches.
    expect((await t.h.request('POST', `${R}/response`, { json: { items: [response('b-4'), response('b-5')] } })).status).toBe(201);
  });

  it('stop working once revoked', async () => {
    const { id, key } = await issue({ name: 'old', allowed_origins: [ORIGIN] });
    expect((await t.h.request('DELETE', `/admin/publishable-keys/${id}`)).body.revoked_at).not.toBeNull();
    expect((await t.h.request('POST', `${R}/response`, { key, json: response('pk-3'), headers: { origin: ORIGIN } })).status).toBe(401);
    expect((await t.h.request('DELETE', '/admin/publishable-keys/999999')).status).toBe(404);
  });
});
