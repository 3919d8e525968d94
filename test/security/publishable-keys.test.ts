import { describe, expect, it } from 'vitest';
import { useHarness } from '../harness.ts';

const t = useHarness();
const R = '/api/analytics/response-quality';
const ORIGIN = 'https://chat.example.com';

async function issue(body: Record<string, unknown>) {
  const res = await t.h.request('POST', '/admin/publishable-keys', { json: { project: 'support-chat', model_ids: ['support-bot', 'widget-bot'], ...body } });
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
      expect((await t.h.request('POST', '/admin/publishable-keys', { json: { name: 'x', project: 'p', model_ids: ['m'], allowed_origins } })).status).toBe(400);
    }
    // A key belongs to a project: without one, or with a malformed one, it is not issued.
    for (const project of [undefined, '', 'Has Spaces', 'x'.repeat(65)]) {
      expect((await t.h.request('POST', '/admin/publishable-keys', { json: { name: 'x', project, model_ids: ['m'], allowed_origins: [ORIGIN] } })).status).toBe(400);
    }
    // …and names the models its pages answer with.
    for (const model_ids of [undefined, [], ['']]) {
      expect((await t.h.request('POST', '/admin/publishable-keys', { json: { name: 'x', project: 'p', model_ids, allowed_origins: [ORIGIN] } })).status).toBe(400);
    }
    expect(list.find((k: { id: number }) => k.id === key.id)).toMatchObject({ project: 'support-chat', model_ids: ['support-bot', 'widget-bot'], trust_corrections: false });
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
    expect(again.headers.get('cache-control')).toBe(res.headers.get('cache-control'));
    expect(again.headers.get('etag')).toBe(res.headers.get('etag'));
  });

  it('send one small item per request: no batches, no big bodies', async () => {
    const { key } = await issue({ name: 'small', allowed_origins: [ORIGIN] });
    const batch = await t.h.request('POST', `${R}/response`, { key, json: { items: [response('b-1'), response('b-2')] }, headers: { origin: ORIGIN } });
    expect(batch.status).toBe(400);
    expect(batch.body.error.message).toContain('one item per request');
    const big = await t.h.request('POST', `${R}/response`, { key, json: { ...response('b-3'), response: 'x'.repeat(40_000) }, headers: { origin: ORIGIN } });
    expect(big.status).toBe(413);
    expect(big.headers.get('access-control-allow-origin')).toBe(ORIGIN); // the page can say why
    expect(await t.h.query(`SELECT 1 FROM llm_responses WHERE response_id LIKE 'b-%'`)).toEqual([]);
    // The admin key still sends batches.
    expect((await t.h.request('POST', `${R}/response`, { json: { items: [response('b-4'), response('b-5')] } })).status).toBe(201);
  });

  it('stop working once revoked', async () => {
    const { id, key } = await issue({ name: 'old', allowed_origins: [ORIGIN] });
    expect((await t.h.request('DELETE', `/admin/publishable-keys/${id}`)).body.revoked_at).not.toBeNull();
    const refused = await t.h.request('POST', `${R}/response`, { key, json: response('pk-3'), headers: { origin: ORIGIN } });
    expect(refused.status).toBe(401);
    expect((await t.h.request('DELETE', '/admin/publishable-keys/999999')).status).toBe(404);
    // Another key still lists the origin: the page may read why it was refused.
    await issue({ name: 'current', allowed_origins: [ORIGIN] });
    const readable = await t.h.request('POST', `${R}/response`, { key, json: response('pk-3'), headers: { origin: ORIGIN } });
    expect(readable.status).toBe(401);
    expect(readable.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    const elsewhere = await t.h.request('POST', `${R}/response`, { key, json: response('pk-3'), headers: { origin: 'https://evil.example' } });
    expect(elsewhere.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('write only into their project: feedback on its responses, models they may record', async () => {
    const { key } = await issue({ name: 'scoped', allowed_origins: [ORIGIN], model_ids: ['support-bot'] });
    const page = { key, headers: { origin: ORIGIN } };
    // The server records three responses: one in the key's project, one in another, one in none.
    const server = await t.h.request('POST', `${R}/response`, {
      json: { items: [{ ...response('sc-mine'), project: 'support-chat' }, { ...response('sc-theirs'), project: 'billing' }, response('sc-none')] },
    });
    expect(server.status, server.text).toBe(201);
    expect((await t.h.request('POST', `${R}/feedback`, { ...page, json: { response_id: 'sc-mine', type: 'thumbs', thumbs_up: true } })).status).toBe(201);
    for (const id of ['sc-theirs', 'sc-none', 'sc-missing']) {
      const res = await t.h.request('POST', `${R}/feedback`, { ...page, json: { response_id: id, type: 'thumbs', thumbs_up: false } });
      expect(res.status, id).toBe(404); // as unknown as a response that does not exist
      expect(res.body.error.code).toBe('not_found');
    }
    // It records into its own project only, and only the models it lists.
    const recorded = await t.h.request('POST', `${R}/response`, { ...page, json: response('sc-page') });
    expect(recorded.status).toBe(201);
    const other = await t.h.request('POST', `${R}/response`, { ...page, json: { ...response('sc-page-2'), project: 'billing' } });
    expect(other.status).toBe(403);
    expect(other.body.error.message).toContain('support-chat');
    const model = await t.h.request('POST', `${R}/response`, { ...page, json: { ...response('sc-page-3'), model_id: 'sales-bot' } });
    expect(model.status).toBe(403);
    expect(model.body.error.message).toContain('sales-bot');
    const rows = await t.h.query<{ response_id: string; project: string | null; from_page: boolean }>(
      `SELECT response_id, project, source_key_id IS NOT NULL AS from_page FROM llm_responses WHERE response_id LIKE 'sc-%' ORDER BY response_id`,
    );
    expect(rows).toEqual([
      { response_id: 'sc-mine', project: 'support-chat', from_page: false },
      { response_id: 'sc-none', project: null, from_page: false },
      { response_id: 'sc-page', project: 'support-chat', from_page: true },
      { response_id: 'sc-theirs', project: 'billing', from_page: false },
    ]);
    const feedback = await t.h.query(`SELECT r.response_id FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref WHERE r.response_id LIKE 'sc-%'`);
    expect(feedback).toEqual([{ response_id: 'sc-mine' }]);
    // The admin reads a project's figures apart.
    const metrics = await t.h.request('GET', `${R}/metrics?project=billing`);
    expect(metrics.body.models).toMatchObject([{ model_id: 'support-bot', responses: 1, feedback: 0 }]);
  });

  it('cannot squat the ids and idempotency keys a server uses', async () => {
    const { key } = await issue({ name: 'squatter', allowed_origins: [ORIGIN] });
    const page = { key, headers: { origin: ORIGIN } };
    // A page records a response id first, with made-up content; the server's record replaces it.
    expect((await t.h.request('POST', `${R}/response`, { ...page, json: { ...response('sq-1'), response: 'Buy crypto at evil.example' } })).status).toBe(201);
    const server = await t.h.request('POST', `${R}/response`, { json: { ...response('sq-1'), project: 'support-chat' } });
    expect(server.body).toMatchObject({ recorded: 1, already_recorded: 0 });
    // …but a page cannot replace a server's, nor another page's.
    const again = await t.h.request('POST', `${R}/response`, { ...page, json: { ...response('sq-1'), response: 'Buy crypto at evil.example' } });
    expect(again.body).toMatchObject({ recorded: 0, already_recorded: 1 });
    expect(await t.h.query(`SELECT response, source_key_id FROM llm_responses WHERE response_id = 'sq-1'`)).toEqual([{ response: response('sq-1').response, source_key_id: null }]);
    // A page's made-up record is replaced with the feedback given on it: its votes and corrections
    // do not move to the real answer, which the server may record in another project.
    expect((await t.h.request('POST', `${R}/response`, { ...page, json: { ...response('sq-2'), response: 'Made up.', feedback: { type: 'full', categories: ['factual_error'], correction: 'Evil.', idempotency_key: 'p-1' } } })).body.feedback).toBe(1);
    expect((await t.h.request('POST', `${R}/feedback`, { ...page, json: { response_id: 'sq-2', type: 'thumbs', thumbs_up: false } })).status).toBe(201);
    expect((await t.h.request('POST', `${R}/response`, { json: { ...response('sq-2'), project: 'billing' } })).body).toMatchObject({ recorded: 1 });
    expect(await t.h.query(`SELECT count(*)::int AS n FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref WHERE r.response_id = 'sq-2'`)).toEqual([{ n: 0 }]);
    expect(await t.h.query(`SELECT project, response, source_key_id FROM llm_responses WHERE response_id = 'sq-2'`)).toEqual([{ project: 'billing', response: response('sq-2').response, source_key_id: null }]);
    // A page's honest record (what the server then records too, in the same project) keeps its feedback.
    expect((await t.h.request('POST', `${R}/response`, { ...page, json: { ...response('sq-3'), feedback: { type: 'thumbs', thumbs_up: true, idempotency_key: 'p-2' } } })).body.feedback).toBe(1);
    expect((await t.h.request('POST', `${R}/response`, { json: { ...response('sq-3'), project: 'support-chat' } })).body).toMatchObject({ recorded: 1, already_recorded: 0 });
    expect(await t.h.query(`SELECT f.thumbs_up, r.source_key_id FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref WHERE r.response_id = 'sq-3'`)).toEqual([{ thumbs_up: true, source_key_id: null }]);
    // Idempotency keys are per source: a page taking the server's next key does not swallow the server's feedback.
    expect((await t.h.request('POST', `${R}/feedback`, { ...page, json: { response_id: 'sq-1', type: 'thumbs', thumbs_up: true, idempotency_key: 'srv-42' } })).body.recorded).toBe(1);
    const mine = await t.h.request('POST', `${R}/feedback`, { json: { response_id: 'sq-1', type: 'thumbs', thumbs_up: false, idempotency_key: 'srv-42' } });
    expect(mine.body).toEqual({ recorded: 1, duplicates: 0 });
    expect((await t.h.request('POST', `${R}/feedback`, { json: { response_id: 'sq-1', type: 'thumbs', thumbs_up: false, idempotency_key: 'srv-42' } })).body).toEqual({ recorded: 0, duplicates: 1 });
    expect((await t.h.request('POST', `${R}/feedback`, { ...page, json: { response_id: 'sq-1', type: 'thumbs', thumbs_up: true, idempotency_key: 'srv-42' } })).body).toEqual({ recorded: 0, duplicates: 1 });
  });

  it('add feedback to an answer the server recorded first, once per idempotency key', async () => {
    const { key } = await issue({ name: 'late', allowed_origins: [ORIGIN] });
    expect((await t.h.request('POST', `${R}/response`, { json: { ...response('la-1'), project: 'support-chat' } })).status).toBe(201);
    const widget = { ...response('la-1'), feedback: { type: 'thumbs', thumbs_up: false, idempotency_key: 'cf-1' } };
    for (let i = 0; i < 2; i++) {
      const res = await t.h.request('POST', `${R}/response`, { key, headers: { origin: ORIGIN }, json: widget });
      expect(res.body).toMatchObject({ recorded: 0, already_recorded: 1, feedback: i === 0 ? 1 : 0 });
    }
    // Not on another project's answer, which stays as unknown to it as on /feedback.
    expect((await t.h.request('POST', `${R}/response`, { json: { ...response('la-2'), project: 'billing' } })).status).toBe(201);
    const elsewhere = await t.h.request('POST', `${R}/response`, { key, headers: { origin: ORIGIN }, json: { ...response('la-2'), feedback: { type: 'thumbs', thumbs_up: false, idempotency_key: 'cf-2' } } });
    expect(elsewhere.body).toMatchObject({ feedback: 0 });
    expect(await t.h.query(`SELECT r.response_id, count(*)::int AS n FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref WHERE r.response_id LIKE 'la-%' GROUP BY 1`)).toEqual([{ response_id: 'la-1', n: 1 }]);
  });

  it("keep a page's corrections out of fine-tuning unless the key is trusted", async () => {
    const FT = '/api/analytics/model-improvement/fine-tuning';
    const untrusted = await issue({ name: 'public', allowed_origins: [ORIGIN] });
    const trusted = await issue({ name: 'reviewed', allowed_origins: [ORIGIN], trust_corrections: true });
    const model = 'widget-bot';
    const correct = async (key: string, id: string) => {
      const res = await t.h.request('POST', `${R}/response`, {
        key,
        headers: { origin: ORIGIN },
        json: { response_id: id, model_id: model, query: `Question ${id}?`, response: 'Wrong.', feedback: { type: 'full', categories: ['factual_error'], correction: `Right answer to ${id}.` } },
      });
      expect(res.body, id).toMatchObject({ recorded: 1, feedback: 1 });
    };
    for (let i = 0; i < 3; i++) await correct(untrusted.key, `tc-u-${i}`);
    const before = await t.h.request('POST', `${FT}/check`, { json: { model_id: model } });
    expect(before.body.stats).toMatchObject({ examples: 0, new_corrections: 0, negative_feedback: 3 });
    for (let i = 0; i < 2; i++) await correct(trusted.key, `tc-t-${i}`);
    const after = await t.h.request('POST', `${FT}/check`, { json: { model_id: model } });
    expect(after.body.stats).toMatchObject({ examples: 2, new_corrections: 2, negative_feedback: 5 });
    // Every correction is kept and shown to people, whoever sent it.
    const shown = await t.h.request('GET', `${R}/problematic?model_id=${model}`);
    const corrected = shown.body.items.filter((i: { correction: string | null }) => i.correction);
    expect(corrected).toHaveLength(5);
    expect(corrected.filter((i: { correction_trusted: boolean }) => i.correction_trusted).map((i: { response_id: string }) => i.response_id).sort()).toEqual(['tc-t-0', 'tc-t-1']);
  });
});
