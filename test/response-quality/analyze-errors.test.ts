import { describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '../harness.ts';

const R = '/api/analytics/response-quality';
const M = '/api/analytics/model-improvement';
const DAY = 86_400_000;

/** ISO-8601 week ("2026-W47") of a UTC date. */
function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(t.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((t.getTime() - yearStart) / DAY + 1) / 7);
  return `${t.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

describe('analyze-errors over a week-over-week data set', () => {
  const t = useHarness({ env: { ANALYZE_ERRORS_CRON: '' }, workers: ['analyze-errors'] });
  const now = Date.now();
  const thisWeek = new Date(now - 2 * DAY);
  const lastWeek = new Date(now - 9 * DAY);

  /** Records one response with one feedback, then dates the feedback. */
  let n = 0;
  async function feedback(model: string, at: Date, fb: Record<string, unknown>) {
    const id = `resp-${n++}`;
    const res = await t.h.request('POST', `${R}/response`, {
      json: { response_id: id, model_id: model, query: 'q', response: 'a', feedback: { ...fb, idempotency_key: `k-${id}` } },
    });
    expect(res.status).toBe(201);
    await t.h.query('UPDATE response_feedback SET created_at = $1 WHERE idempotency_key = $2', [at, `k-${id}`]);
  }

  it('stores patterns, weekly trends and suggestions that match the counts by hand', async () => {
    // mistral-small, last week: 2 outdated, 8 incomplete. This week: 6 outdated given, 1 read from a
    // comment, 3 incomplete, and 5 positive (not counted).
    for (let i = 0; i < 2; i++) await feedback('mistral-small', lastWeek, { type: 'full', categories: ['outdated_information'] });
    for (let i = 0; i < 8; i++) await feedback('mistral-small', lastWeek, { type: 'full', categories: ['incomplete'] });
    for (let i = 0; i < 6; i++) await feedback('mistral-small', thisWeek, { type: 'full', categories: ['outdated_information'], comment: `old prices ${i}` });
    await feedback('mistral-small', thisWeek, { type: 'thumbs', thumbs_up: false, comment: 'totally outdated' });
    for (let i = 0; i < 3; i++) await feedback('mistral-small', thisWeek, { type: 'full', categories: ['incomplete'] });
    for (let i = 0; i < 5; i++) await feedback('mistral-small', thisWeek, { type: 'thumbs', thumbs_up: true });
    // gpt-4o: 2 factual errors this week (too few for a suggestion).
    for (let i = 0; i < 2; i++) await feedback('gpt-4o', thisWeek, { type: 'full', categories: ['factual_error'] });

    const run = await t.h.request('POST', `${M}/analyze?wait=true`);
    expect(run.status, JSON.stringify(run.body)).toBe(200);
    expect(run.body).toMatchObject({ negative_feedback: 22, patterns: 3, suggestions: 1 });

    const patterns = (await t.h.request('GET', `${M}/error-patterns`)).body;
    expect(patterns.run_id).toBe(run.body.run_id);
    expect(patterns.patterns.map((p: { model_id: string; category: string; count: number; share: number }) => [p.model_id, p.category, p.count, p.share])).toEqual([
      ['gpt-4o', 'factual_error', 2, 1],
      ['mistral-small', 'incomplete', 11, 0.55],
      ['mistral-small', 'outdated_information', 9, 0.45],
    ]);
    const outdated = patterns.patterns.find((p: { category: string }) => p.category === 'outdated_information');
    expect(outdated.examples).toHaveLength(3);
    expect(outdated.examples.every((e: { comment: string | null }) => e.comment !== null)).toBe(true);

    // The weeks from last week's reports to the week the run falls in (zero-filled where empty).
    const weeks = [...new Set([isoWeek(lastWeek), isoWeek(thisWeek), isoWeek(new Date(run.body.as_of))])].sort();
    const counts: Record<string, Record<string, number>> = {
      incomplete: { [isoWeek(lastWeek)]: 8, [isoWeek(thisWeek)]: 3 },
      outdated_information: { [isoWeek(lastWeek)]: 2, [isoWeek(thisWeek)]: 7 },
    };
    const expected = Object.entries(counts).flatMap(([category, byWeek]) =>
      weeks.map((week, i) => ({
        model_id: 'mistral-small',
        category,
        week,
        count: byWeek[week] ?? 0,
        change: (byWeek[week] ?? 0) - (i === 0 ? 0 : (byWeek[weeks[i - 1]!] ?? 0)),
      })),
    );
    const trends = (await t.h.request('GET', `${M}/error-trends?model_id=mistral-small&weeks=${weeks.length}`)).body.trends;
    expect(trends).toEqual(expected);

    const suggestions = (await t.h.request('POST', `${M}/improvement-suggestions`, { json: {} })).body.suggestions;
    expect(suggestions).toEqual([
      {
        model_id: 'mistral-small',
        category: 'outdated_information',
        share: 0.7,
        previous_share: 0.2,
        count: 7,
        evidence: "70% of mistral-small's negative feedback this week is outdated_information (7 reports), up from 20%",
        action: 'add retrieval for dates and current facts, or state the knowledge cut-off',
      },
    ]);
    expect((await t.h.request('POST', `${M}/improvement-suggestions`, { json: { model_id: 'gpt-4o' } })).body.suggestions).toEqual([]);
  });

  it("counts the week the run falls in, even when it has only just begun", async () => {
    const run = await t.h.query('SELECT id, as_of FROM error_analysis_runs ORDER BY id DESC LIMIT 1');
    const weeks = await t.h.query('SELECT DISTINCT week FROM error_trends WHERE run_id = $1 ORDER BY week DESC LIMIT 1', [run[0]!.id]);
    expect(weeks[0]!.week).toBe(isoWeek(new Date(new Date(run[0]!.as_of).getTime() - 1)));
  });

  it('stores a run per job, queues the fine-tune check, and a run over the same data finds the same', async () => {
    const first = await t.h.query('SELECT count(*)::int AS n FROM error_patterns');
    const again = await t.h.request('POST', `${M}/analyze?wait=true`);
    expect(again.body).toMatchObject({ negative_feedback: 22, patterns: 3, suggestions: 1 });
    const runs = await t.h.query('SELECT id FROM error_analysis_runs ORDER BY id');
    expect(runs).toHaveLength(2);
    const [a, b] = await Promise.all(
      runs.map(async (r) => t.h.query('SELECT model_id, category, count, share FROM error_patterns WHERE run_id = $1 ORDER BY 1, 2', [r.id])),
    );
    expect(b).toEqual(a);
    expect((await t.h.query('SELECT count(*)::int AS n FROM error_patterns'))[0]!.n).toBe(first[0]!.n * 2);
    const events = await t.h.query("SELECT job_name, payload FROM outbox WHERE queue = 'fine-tune' ORDER BY id");
    expect(events.map((e) => e.payload.analysis_run_id)).toEqual(runs.map((r) => r.id));
  });
});

describe('the analyze-errors schedule', () => {
  const t = useHarness({ env: { ANALYZE_ERRORS_CRON: '*/1 * * * * *' }, workers: ['analyze-errors'] });

  it('is listed and fires on its own', async () => {
    const schedules = (await t.h.request('GET', '/admin/schedules')).body;
    expect(JSON.stringify(schedules)).toContain('analyze-errors');
    await waitFor(async () => (await t.h.query('SELECT count(*)::int AS n FROM error_analysis_runs'))[0]!.n > 0, { what: 'a scheduled run', timeoutMs: 15_000 });
    const [run] = await t.h.query('SELECT job_id FROM error_analysis_runs ORDER BY id LIMIT 1');
    expect(run!.job_id).toMatch(/^analyze-errors\/repeat:/);
  });
});
