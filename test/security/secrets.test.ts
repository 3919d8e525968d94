import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, spawnService, waitFor, type ChildService, type TestEnv } from '../harness.ts';

// The gateway and a worker run as real processes at LOG_LEVEL=trace with every kind of secret set,
// and are made to fail at everything that might log one: wrong keys, a refusing provider, an
// unreachable Artificial Analysis, a failing webhook. Their whole output must hold none of them.
const SECRET = {
  admin: 'admin-SECRET-a1-0123456789',
  aa: 'aa-SECRET-b2-0123456789',
  fineTune: 'ft-SECRET-c3-0123456789',
  webhook: 'whsec-SECRET-d4-0123456789',
  hookToken: 'hook-SECRET-e5',
  dbPassword: 'db-SECRET-f6',
  wrongKey: 'wrong-SECRET-g7-0123456789',
};

let env: TestEnv;
let stub: Server;
let stubUrl = '';
const children: ChildService[] = [];
let gateway = '';
let hookCalls = 0;

async function call(method: string, path: string, key: string | null, body?: unknown) {
  const res = await fetch(`${gateway}${path}`, {
    method,
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, body: json };
}

beforeAll(async () => {
  // Stands in for Artificial Analysis (always 500), an OpenAI-compatible provider (refuses the key)
  // and the webhook receiver (500, then 200).
  stub = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url?.startsWith('/aa')) return res.writeHead(500).end('upstream down');
      if (req.url?.startsWith('/v1')) {
        return res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } }));
      }
      hookCalls++;
      res.writeHead(hookCalls === 1 ? 500 : 200).end();
    });
  });
  await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve));
  stubUrl = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;

  env = await createTestEnv();
  const db = new URL(env.databaseUrl);
  db.password = SECRET.dbPassword; // trust auth ignores it; the logs must not show it
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const processEnv = {
    ...env.env,
    NODE_ENV: 'production',
    LOG_LEVEL: 'trace',
    PORT: String(port),
    DATABASE_URL: db.toString(),
    CALIBER_API_KEY: SECRET.admin,
    AA_API_KEY: SECRET.aa,
    AA_API_URL: `${stubUrl}/aa/models`,
    AA_MAX_ATTEMPTS: '2',
    AA_RETRY_BASE_MS: '0',
    FINE_TUNE_BASE_URL: `${stubUrl}/v1`,
    FINE_TUNE_API_KEY: SECRET.fineTune,
    FINE_TUNE_MIN_EXAMPLES: '2',
    NOTIFY_WEBHOOK_URL: `${stubUrl}/hook?token=${SECRET.hookToken}`,
    NOTIFY_WEBHOOK_SECRET: SECRET.webhook,
    NOTIFY_BACKOFF_MS: '50',
    MAP_MODELS_CRON: 'off',
    ANALYZE_ERRORS_CRON: 'off',
    FINE_TUNE_RECONCILE_CRON: 'off',
    CONFIDENCE_CALIBRATION_CRON: 'off',
    MODEL_SELECTION_CRON: 'off',
    NOTIFY_RECONCILE_CRON: 'off',
  };
  const g = spawnService('apps/gateway/src/main.ts', [], processEnv);
  const w = spawnService('apps/worker/src/main.ts', ['--queues', 'calibrate,map-models,fine-tune,notify'], processEnv);
  children.push(g, w);
  await g.waitForOutput(/gateway listening/);
  await w.waitForOutput(/workers started/);
  gateway = `http://127.0.0.1:${port}`;
}, 60_000);

afterAll(async () => {
  for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGTERM');
  await Promise.all(children.map((c) => c.exited));
  await new Promise<void>((resolve) => stub?.close(() => resolve()));
  await env?.cleanup();
});

describe('secrets in logs', () => {
  it('never appear in the output of the gateway or the workers', async () => {
    // Keys right and wrong, a login, a tenant and its key.
    expect((await call('GET', '/admin/schedules', SECRET.wrongKey)).status).toBe(401);
    expect((await call('GET', '/admin/schedules', SECRET.admin)).status).toBe(200);
    const login = await fetch(`${gateway}/login`, { method: 'POST', body: new URLSearchParams({ key: SECRET.wrongKey }), redirect: 'manual' });
    expect(login.status).toBe(401);
    const tenant = await call('POST', '/admin/tenants', SECRET.admin, { name: 'secret-test' });
    expect(tenant.status).toBe(201);
    const tenantKey = tenant.body.api_key as string;
    expect((await call('GET', '/confidence/trends', tenantKey)).status).toBe(200);
    expect((await call('GET', '/admin/schedules', tenantKey)).status).toBe(403);

    // Artificial Analysis fails: the key was sent (the stub saw it) and the run fails.
    const map = await call('POST', '/admin/models/map?wait=true', SECRET.admin);
    expect(map.status).toBeGreaterThanOrEqual(422);

    // The provider refuses the fine-tuning key.
    const items = Array.from({ length: 3 }, (_, i) => ({
      response_id: `s-${i}`,
      model_id: 'bot',
      query: `question ${i}`,
      response: 'wrong',
      feedback: { type: 'full', categories: ['factual_error'], correction: `right ${i}` },
    }));
    expect((await call('POST', '/api/analytics/response-quality/response', SECRET.admin, { items })).status).toBe(201);
    expect((await call('POST', '/admin/credits/acct/grant', SECRET.admin, { amount: 500 })).status).toBe(201);
    const job = await call('POST', '/api/analytics/model-improvement/fine-tuning/jobs', SECRET.admin, { model_id: 'bot', account_id: 'acct' });
    expect(job.status).toBe(201);
    const started = await call('POST', `/api/analytics/model-improvement/fine-tuning/jobs/${job.body.job.id}/start?wait=true&timeout=30`, SECRET.admin);
    expect(started.status).toBeLessThan(500);
    await waitFor(async () => (await call('GET', `/api/analytics/model-improvement/fine-tuning/jobs/${job.body.job.id}`, SECRET.admin)).body.job.status === 'failed', { what: 'the refused fine-tune' });

    // A model-selection change, notified to a webhook that fails once.
    const results = Array.from({ length: 5 }, (_, i) => ({ run_id: 'r', language: 'go', size_category: 'small', model_id: 'm', provider: 'p', repository: `r${i}`, quality_score: 0.9, latency_ms: 10, cost_usd: 0 }));
    expect((await call('POST', '/admin/model-selection/results', SECRET.admin, { results })).status).toBe(200);
    expect((await call('POST', '/admin/model-selection/calibrate?wait=true', SECRET.admin)).status).toBe(200);
    await waitFor(async () => (await call('GET', '/admin/notifications?status=delivered', SECRET.admin)).body.items.length === 3, { what: 'delivered notifications' });
    expect(hookCalls).toBe(4);

    const output = children.map((c) => c.output()).join('\n');
    // The failures were logged (so their messages were there to leak from).
    for (const logged of ['Artificial Analysis request failed', 'notification attempt failed', 'job failed for good', '"status":401']) expect(output).toContain(logged);
    for (const [name, secret] of Object.entries({ ...SECRET, tenantKey })) {
      expect(output.includes(secret), `${name} appears in the logs`).toBe(false);
    }
    expect(output).not.toMatch(/SECRET/);
  }, 120_000);
});
