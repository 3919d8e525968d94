import { describe, expect, it } from 'vitest';
import { useHarness } from '../harness.ts';

// A fresh install: every page answers, and says what to do first.
const t = useHarness({ env: { CALIBRATE_HEADS: 'false' } });

describe('the dashboard before there is any data', () => {
  it.each([
    ['heads', 'No calibration runs yet.', 'CALIBRATE_HEADS=true'],
    ['retag', 'No re-tag backlog has run yet.', 'POST /admin/calibration/retag-all'],
    ['models', 'No models in working_version yet.', 'POST /admin/models/map'],
    ['model-selection', 'No evaluation results yet.', 'POST /admin/model-selection/results'],
    ['quality', 'No responses recorded yet.', 'POST /api/analytics/response-quality/response'],
    ['fine-tuning', 'No fine-tuning jobs or credit accounts yet.', 'POST /admin/credits/:account_id/grant'],
    ['confidence', 'No tenants yet.', 'POST /admin/tenants'],
  ])('%s says "%s" and what to do', async (page, message, next) => {
    const res = await t.h.request('GET', `/dashboard/${page}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(res.text).toContain(message);
    expect(res.text).toContain(next);
  });

  it('redirects /dashboard to the first page, and serves its assets', async () => {
    const res = await t.h.request('GET', '/dashboard');
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/dashboard/heads');
    const chart = await t.h.request('GET', '/dashboard/assets/chart.js');
    expect(chart.status).toBe(200);
    expect(chart.text).toContain('Chart');
    expect((await t.h.request('GET', '/dashboard/retag/data.json')).body).toMatchObject({ state: 'idle', total: 0 });
  });

  it('shows a head that has only an imported reference (production mode)', async () => {
    const bundle = { 'effnet/heads/mood_happy-calibration.json': { model_name: 'effnet', head_name: 'mood_happy', version: 3, labels: { happy: { p5: 0.1, p95: 0.8, method: 'minmax' } } } };
    expect((await t.h.request('POST', '/admin/calibration/import', { json: { files: bundle } })).status).toBe(200);
    const res = await t.h.request('GET', '/dashboard/heads');
    expect(res.status).toBe(200);
    expect(res.text).toContain('effnet/mood_happy');
    expect(res.text).toContain('Reference v3 (import)');
    expect(res.text).toMatch(/<td>happy<\/td><td>0\.1<\/td><td>0\.8<\/td>/);
  });

  it('escapes what it shows', async () => {
    const evil = '<script>alert(1)</script>';
    await t.h.createTenant(evil);
    const res = await t.h.request('GET', '/dashboard/confidence');
    expect(res.text).not.toContain(evil);
    expect(res.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
  });
});
