import { describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '../harness.ts';

// No NOTIFY_WEBHOOK_URL: changes are still recorded, as skipped, and can be sent once one is set.
const t = useHarness({ env: { MODEL_SELECTION_CRON: '' }, workers: ['calibrate', 'notify'] });

describe('without a webhook', () => {
  it('records each change as a skipped notification, and a redelivery stays skipped', async () => {
    const rows = Array.from({ length: 5 }, (_, i) => ({
      run_id: 'r1',
      language: 'go',
      size_category: 'medium',
      model_id: 'gpt-4o',
      provider: 'openai',
      repository: `repo-${i}`,
      quality_score: 0.8,
      latency_ms: 900,
      cost_usd: 0.02,
    }));
    expect((await t.h.request('POST', '/admin/model-selection/results', { json: { results: rows } })).body).toEqual({ inserted: 5, duplicates: 0 });
    const run = (await t.h.request('POST', '/admin/model-selection/calibrate?wait=true')).body;
    expect(run.changed).toHaveLength(3); // go/medium, go/any, any/any
    const settled = await waitFor(async () => {
      const list = (await t.h.request('GET', '/admin/notifications')).body.items as { id: number; status: string; last_error: string }[];
      return list.length === 3 && list.every((n) => n.status === 'skipped') && list;
    }, { what: 'skipped notifications' });
    expect(settled[0]!.last_error).toBe('NOTIFY_WEBHOOK_URL is not set');
    const again = await t.h.request('POST', `/admin/notifications/${settled[0]!.id}/redeliver`);
    expect(again.status).toBe(202);
    await waitFor(async () => (await t.h.request('GET', `/admin/notifications/${settled[0]!.id}`)).body.status === 'skipped' && true, { what: 'skipped again' });
    expect((await t.h.request('GET', `/admin/notifications/${settled[0]!.id}`)).body).toMatchObject({ round: 1, delivery_attempts: [] });
    expect((await t.h.request('GET', '/admin/notifications/abc')).status).toBe(400);
    expect((await t.h.request('GET', '/admin/notifications/12345')).status).toBe(404);
  });
});
