import { describe, expect, it } from 'vitest';
import { useHarness } from '../harness.ts';

// A gateway whose Redis is unreachable (nothing listens on port 1).
const t = useHarness({ env: { REDIS_URL: 'redis://127.0.0.1:1' } });

describe('with Redis down', () => {
  it('answers job-starting routes with 503 at once instead of hanging', async () => {
    const started = performance.now();
    const res = await t.h.request('POST', '/admin/calibration/run');
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ error: { code: 'queue_unavailable', message: 'Redis is not answering; try again shortly' } });
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('answers job and schedule lookups with 503 too', async () => {
    expect((await t.h.request('GET', '/admin/jobs/calibrate/1')).status).toBe(503);
    expect((await t.h.request('GET', '/admin/schedules')).status).toBe(503);
  });

  it('reports not ready, but stays alive and keeps serving reads from Postgres', async () => {
    expect(await t.h.request('GET', '/readyz', { key: null })).toMatchObject({ status: 503, body: { postgres: 'ok', redis: 'down' } });
    expect((await t.h.request('GET', '/healthz', { key: null })).status).toBe(200);
    const ingest = await t.h.request('POST', '/library/files', { json: { files: [{ path: '/a.mp3', scores: { 'm/h': { x: 0.5 } } }] } });
    expect(ingest).toMatchObject({ status: 200, body: { files: 1, tags: 1 } });
    expect((await t.h.request('GET', '/library/files?path=/a.mp3')).status).toBe(200);
    expect((await t.h.request('GET', '/admin/calibration/history')).status).toBe(200);
  });

  it('still serves /metrics', async () => {
    const res = await t.h.request('GET', '/metrics');
    expect(res.status).toBe(200);
    expect(res.text).toContain('caliber_http_request_duration_seconds');
  });
});
