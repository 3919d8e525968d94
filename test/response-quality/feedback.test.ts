import { describe, expect, it } from 'vitest';
import { useHarness } from '../harness.ts';

const t = useHarness();
const R = '/api/analytics/response-quality';
const counts = async () => ({
  responses: (await t.h.query('SELECT count(*)::int AS n FROM llm_responses'))[0]!.n as number,
  feedback: (await t.h.query('SELECT count(*)::int AS n FROM response_feedback'))[0]!.n as number,
});
const response = (id: string, model = 'mistral-small', extra: Record<string, unknown> = {}) => ({
  response_id: id,
  model_id: model,
  query: `question ${id}`,
  response: `answer ${id}`,
  ...extra,
});

describe('recording responses and feedback', () => {
  it('records a response, alone or in a batch, and keeps the first version of a repeated id', async () => {
    expect((await t.h.request('POST', `${R}/response`, { json: response('r1', 'mistral-small', { timestamp: '2026-11-16T10:00:00Z', metadata: { app: 'chat' } }) })))
      .toMatchObject({ status: 201, body: { recorded: 1, already_recorded: 0, feedback: 0 } });
    const batch = await t.h.request('POST', `${R}/response`, {
      json: { items: [response('r1', 'other-model'), response('r2', 'gpt-4o', { timestamp: 1_763_287_200_000 }), response('r3', 'gpt-4o')] },
    });
    expect(batch).toMatchObject({ status: 201, body: { recorded: 2, already_recorded: 1 } });
    const [r1] = await t.h.query("SELECT model_id, metadata, responded_at FROM llm_responses WHERE response_id = 'r1'");
    expect(r1).toMatchObject({ model_id: 'mistral-small', metadata: { app: 'chat' } });
    expect(new Date(r1!.responded_at).toISOString()).toBe('2026-11-16T10:00:00.000Z');
  });

  it('takes feedback of each variant, and a response with its feedback', async () => {
    const variants = [
      { response_id: 'r1', type: 'thumbs', thumbs_up: false, comment: 'wrong date' },
      { response_id: 'r1', type: 'stars', stars: 2 },
      { response_id: 'r2', type: 'stars', stars: 5 },
      { response_id: 'r2', type: 'thumbs', thumbs_up: true },
      {
        response_id: 'r3',
        type: 'full',
        categories: ['outdated_information', 'incomplete'],
        comment: 'the prices are from 2023',
        correction: 'answer with 2026 prices',
        idempotency_key: 'fb-r3-1',
      },
    ];
    for (const v of variants) expect((await t.h.request('POST', `${R}/feedback`, { json: v })).status).toBe(201);
    const rows = await t.h.query('SELECT type, negative, categories FROM response_feedback ORDER BY id');
    expect(rows.map((r) => [r.type, r.negative])).toEqual([
      ['thumbs', true],
      ['stars', true],
      ['stars', false],
      ['thumbs', false],
      ['full', true],
    ]);
    expect(rows[4]!.categories).toEqual(['outdated_information', 'incomplete']);

    const withFeedback = response('r4', 'gpt-4o', { feedback: { type: 'full', categories: ['hallucination'] } });
    expect((await t.h.request('POST', `${R}/response`, { json: withFeedback })).body).toMatchObject({ recorded: 1, feedback: 1 });
    // Sent again (a client retrying): neither the response nor its feedback is stored twice.
    expect((await t.h.request('POST', `${R}/response`, { json: withFeedback })).body).toMatchObject({ recorded: 0, already_recorded: 1, feedback: 0 });
  });

  it('stores feedback sent twice with the same idempotency key once', async () => {
    const fb = { response_id: 'r3', type: 'thumbs', thumbs_up: false, idempotency_key: 'fb-r3-2' };
    expect((await t.h.request('POST', `${R}/feedback`, { json: fb })).body).toEqual({ recorded: 1, duplicates: 0 });
    expect((await t.h.request('POST', `${R}/feedback`, { json: fb })).body).toEqual({ recorded: 0, duplicates: 1 });
    expect((await t.h.request('POST', `${R}/feedback`, { json: { items: [fb, { ...fb, idempotency_key: 'fb-r3-3' }] } })).body).toEqual({
      recorded: 1,
      duplicates: 1,
    });
  });

  it.each([
    ['stars 7', { response_id: 'r1', type: 'stars', stars: 7 }],
    ['an unknown category', { response_id: 'r1', type: 'full', categories: ['rude'] }],
    ['an empty body', {}],
    ['no type', { response_id: 'r1', stars: 3 }],
    ['thumbs without a verdict', { response_id: 'r1', type: 'thumbs' }],
    ['an unknown field', { response_id: 'r1', type: 'stars', stars: 3, mood: 'meh' }],
    ['an empty batch', { items: [] }],
    ['a repeated category', { response_id: 'r1', type: 'full', categories: ['formatting', 'formatting'] }],
    ['a NUL character', { response_id: 'r1', type: 'thumbs', thumbs_up: false, comment: 'bad\u0000' }],
  ])('refuses feedback with %s: 400, nothing written', async (_what, body) => {
    const before = await counts();
    const res = await t.h.request('POST', `${R}/feedback`, { json: body });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(await counts()).toEqual(before);
  });

  it('answers 404 for feedback on an unknown response, and writes none of its batch', async () => {
    const before = await counts();
    const res = await t.h.request('POST', `${R}/feedback`, {
      json: { items: [{ response_id: 'r1', type: 'stars', stars: 1 }, { response_id: 'nope', type: 'stars', stars: 1 }] },
    });
    expect(res.status).toBe(404);
    expect(res.body.error.message).toContain('nope');
    expect(await counts()).toEqual(before);
  });

  it('refuses a bad response (missing model, bad timestamp, repeated id in a batch)', async () => {
    const before = await counts();
    for (const body of [
      { response_id: 'x', query: 'q', response: 'a' },
      response('x', 'm', { timestamp: 'yesterday' }),
      { items: [response('y'), response('y')] },
      response('z', 'm', { timestamp: 9e15 }),
      response('z', 'm', { metadata: { note: 'a\u0000b' } }),
    ]) {
      expect((await t.h.request('POST', `${R}/response`, { json: body })).status).toBe(400);
    }
    expect(await counts()).toEqual(before);
  });
});

describe('quality reports', () => {
  it('gives per-model metrics with error rates by category', async () => {
    const { body } = await t.h.request('GET', `${R}/metrics`);
    const byModel = Object.fromEntries(body.models.map((m: { model_id: string }) => [m.model_id, m]));
    // mistral-small: r1 with thumbs down + 2 stars → 2 feedback, both negative.
    expect(byModel['mistral-small']).toMatchObject({ responses: 1, feedback: 2, positive_rate: 0, avg_stars: 2, error_rate_by_category: {} });
    // gpt-4o: r2 (5 stars, thumbs up), r3 (full with 2 categories, 2 thumbs down), r4 (full: hallucination).
    expect(byModel['gpt-4o']).toMatchObject({
      responses: 3,
      feedback: 6,
      positive_rate: Number((2 / 6).toFixed(4)),
      avg_stars: 5,
      error_rate_by_category: { outdated_information: Number((1 / 6).toFixed(4)), incomplete: Number((1 / 6).toFixed(4)), hallucination: Number((1 / 6).toFixed(4)) },
    });
    const filtered = await t.h.request('GET', `${R}/metrics?model_id=mistral-small&from=2026-11-16T00:00:00Z&to=2026-11-17T00:00:00Z`);
    expect(filtered.body.models).toHaveLength(1);
    expect((await t.h.request('GET', `${R}/metrics?from=2026-11-17T00:00:00Z&to=2026-11-16T00:00:00Z`)).status).toBe(400);
  });

  it('ranks problematic responses, most negative feedback first, a page at a time', async () => {
    const first = await t.h.request('GET', `${R}/problematic?limit=2`);
    expect(first.body.items.map((i: { response_id: string; negative_feedback: number }) => [i.response_id, i.negative_feedback])).toEqual([
      ['r3', 3],
      ['r1', 2],
    ]);
    expect(first.body.items[0]).toMatchObject({ categories: ['incomplete', 'outdated_information'], correction: 'answer with 2026 prices' });
    const second = await t.h.request('GET', `${R}/problematic?limit=2&cursor=${first.body.next_cursor}`);
    expect(second.body.items.map((i: { response_id: string }) => i.response_id)).toEqual(['r4']);
    expect(second.body.next_cursor).toBeNull();
    expect((await t.h.request('GET', `${R}/problematic?cursor=99999999999.1`)).status).toBe(400);
  });

  it('needs the admin key', async () => {
    expect((await t.h.request('GET', `${R}/metrics`, { key: null })).status).toBe(401);
    expect((await t.h.request('POST', `${R}/feedback`, { key: 'wrong-key-0123456789', json: {} })).status).toBe(401);
  });
});
