import { describe, expect, it } from 'vitest';
import { safeNext } from '../../libs/platform/src/auth.ts';
import { useHarness, waitFor } from '../harness.ts';

const t = useHarness({ workers: true });

describe('public probes and documents', () => {
  it('answers /healthz and /readyz without a key', async () => {
    expect(await t.h.request('GET', '/healthz', { key: null })).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect(await t.h.request('GET', '/readyz', { key: null })).toMatchObject({
      status: 200,
      body: { status: 'ok', postgres: 'ok', redis: 'ok' },
    });
  });

  it('serves an OpenAPI 3.1 document generated from the routes', async () => {
    const { status, body } = await t.h.request('GET', '/openapi.json', { key: null });
    expect(status).toBe(200);
    expect(body.openapi).toBe('3.1.0');
    for (const path of ['/library/files', '/admin/calibration/run', '/admin/calibration/history', '/admin/jobs/{queue}/{id}']) {
      expect(Object.keys(body.paths)).toContain(path);
    }
    expect(body.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
  });
});

describe('admin authentication', () => {
  it.each([
    ['no key', null, 'Missing bearer token'],
    ['a wrong key', 'not-the-key-at-all', 'Invalid API key'],
  ])('refuses %s with 401 and the error shape', async (_, key, message) => {
    const res = await t.h.request('GET', '/admin/calibration/history', { key });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: { code: 'unauthorized', message } });
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
  });

  it('refuses the admin key with its last character changed', async () => {
    const almost = `${t.env.apiKey.slice(0, -1)}${t.env.apiKey.endsWith('Z') ? 'Y' : 'Z'}`;
    expect((await t.h.request('GET', '/admin/calibration/history', { key: almost })).status).toBe(401);
  });

  it('accepts the admin key', async () => {
    expect((await t.h.request('GET', '/admin/calibration/history')).status).toBe(200);
  });

  it('sends a browser without a session to the login form, and lets it in after signing in', async () => {
    const anonymous = await t.h.request('GET', '/admin/queues', { key: null, headers: { accept: 'text/html' } });
    expect(anonymous.status).toBe(302);
    expect(anonymous.headers.get('location')).toBe('/login?next=%2Fadmin%2Fqueues');

    const form = await t.h.request('GET', '/login?next=/admin/queues', { key: null });
    expect(form.status).toBe(200);
    expect(form.text).toContain('name="key"');

    const wrong = await t.h.request('POST', '/login', {
      key: null,
      body: new URLSearchParams({ key: 'nope', next: '/admin/queues' }).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();

    const ok = await t.h.request('POST', '/login', {
      key: null,
      body: new URLSearchParams({ key: t.env.apiKey, next: '//evil.example/' }).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(ok.status).toBe(303);
    expect(ok.headers.get('location')).toBe('/admin/queues'); // an off-site next is ignored
    const cookie = (ok.headers.get('set-cookie') ?? '').split(';')[0] as string;
    expect(cookie).toMatch(/^caliber_session=/);
    expect(ok.headers.get('set-cookie')).toMatch(/HttpOnly/i);

    const board = await t.h.request('GET', '/admin/queues', { key: null, headers: { cookie, accept: 'text/html' } });
    expect(board.status).toBe(200);
    expect(board.text).toContain('<html');
    const script = board.text.match(/src="(static\/js\/main\.[^"]+\.js)"/)?.[1];
    expect(script).toBeDefined();
    expect((await t.h.request('GET', `/admin/queues/${script}`, { key: null, headers: { cookie } })).status).toBe(200);
    const api = await t.h.request('GET', '/admin/queues/api/queues', { key: null, headers: { cookie } });
    expect(api.status).toBe(200);
    expect(api.body.queues.map((q: { name: string }) => q.name)).toEqual(
      expect.arrayContaining(['calibrate', 'retag-file', 'update-reference', 'notify']),
    );
    const forged = await t.h.request('GET', '/admin/queues/api/queues', { key: null, headers: { cookie: `caliber_session=${Date.now() + 1e6}.forged` } });
    expect(forged.status).toBe(401);

    // A write signed in by the cookie alone must come from this origin (no cross-site request forgery).
    const host = new URL(t.h.url).host;
    const fromElsewhere = await t.h.request('POST', '/admin/schedules/nope/run', { key: null, headers: { cookie, origin: 'https://evil.example' } });
    expect(fromElsewhere.status).toBe(403);
    const crossSite = await t.h.request('POST', '/admin/schedules/nope/run', { key: null, headers: { cookie, 'sec-fetch-site': 'same-site' } });
    expect(crossSite.status).toBe(403);
    const sameOrigin = await t.h.request('POST', '/admin/schedules/nope/run', { key: null, headers: { cookie, origin: `http://${host}`, 'sec-fetch-site': 'same-origin' } });
    expect(sameOrigin.status).toBe(404); // through auth: the schedule does not exist
    const withKey = await t.h.request('POST', '/admin/schedules/nope/run', { headers: { origin: 'https://evil.example' } });
    expect(withKey.status).toBe(404); // a Bearer key is not sent by browsers on their own
  });

  it('keeps the query string of the page a browser was sent to sign in from', async () => {
    const res = await t.h.request('GET', '/dashboard/confidence?tenant=abc', { key: null, headers: { accept: 'text/html' } });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/login?next=%2Fdashboard%2Fconfidence%3Ftenant%3Dabc');
  });

  it.each([
    ['/admin/queues', '/admin/queues'],
    ['/admin/jobs/calibrate/1?x=1', '/admin/jobs/calibrate/1?x=1'],
    ['//evil.example/', '/admin/queues'],
    ['/\t/evil.example', '/admin/queues'],
    ['/\\evil.example', '/admin/queues'],
    ['https://evil.example/admin', '/admin/queues'],
    ['javascript:alert(1)', '/admin/queues'],
  ])('after login goes to %j as %j, never off-site', (next, expected) => {
    expect(safeNext(next)).toBe(expected);
  });

  it('protects Bull Board from API clients without a key', async () => {
    expect((await t.h.request('GET', '/admin/queues/api/queues', { key: null })).status).toBe(401);
  });
});

describe('errors', () => {
  it('answers an unknown route with 404 in the error shape', async () => {
    expect(await t.h.request('GET', '/no/such/route')).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
  });

  it('refuses a body over 10 MiB with 413 and writes nothing', async () => {
    const big = JSON.stringify({ files: [{ path: '/a.mp3', scores: {}, pad: 'x'.repeat(10 * 1024 * 1024) }] });
    const res = await t.h.request('POST', '/library/files', { body: big, headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('payload_too_large');
    expect(await t.h.query('SELECT 1 FROM library_files')).toHaveLength(0);
  });
});

describe('jobs and metrics', () => {
  it('describes a job by queue and id, and 404s unknown ones', async () => {
    const started = await t.h.request('POST', '/admin/schedules/calibrate-heads/run');
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ queue: 'calibrate', status: `/admin/jobs/calibrate/${started.body.jobId}` });
    const job = await t.h.request('GET', started.body.status);
    expect(job.status).toBe(200);
    expect(job.body).toMatchObject({ id: started.body.jobId, queue: 'calibrate', name: 'heads', data: { requested_by: 'schedule' } });
    expect(Object.keys(job.body)).toEqual(
      expect.arrayContaining(['state', 'progress', 'result', 'failedReason', 'attemptsMade', 'timestamps']),
    );
    expect((await t.h.request('GET', '/admin/jobs/calibrate/does-not-exist')).status).toBe(404);
    expect((await t.h.request('GET', '/admin/jobs/no-such-queue/1')).body.error.code).toBe('not_found');
  });

  it('exposes queue depths, job durations and HTTP latencies', async () => {
    // The calibration job started above fails in the worker (an empty library): its duration is
    // recorded by the worker and read back by the gateway.
    const res = await waitFor(async () => {
      const r = await t.h.request('GET', '/metrics');
      return /caliber_job_duration_seconds_count\{queue="calibrate",status="failed"\} [1-9]/.test(r.text) && r;
    }, { what: 'job duration in /metrics' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    expect(res.text).toMatch(/caliber_queue_jobs\{queue="calibrate",state="(waiting|active|completed|failed)"\} \d+/);
    expect(res.text).toMatch(/caliber_http_request_duration_seconds_count\{method="GET",route="\/healthz",status="200"\} \d+/);
    expect(res.text).toContain('# TYPE caliber_job_duration_seconds histogram');
    expect(res.text).toMatch(/caliber_job_duration_seconds_bucket\{queue="calibrate",status="failed",le="\+Inf"\} [1-9]/);
  });
});
