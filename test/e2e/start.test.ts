import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { libraryBatch, skewed } from '../fixtures.ts';
import { ProviderStandIn } from '../fine-tuning/provider-stand-in.ts';
import { createTestEnv, ROOT, spawnService, waitFor, type ChildService, type TestEnv } from '../harness.ts';

const AA_KEY = 'aa-e2e-secret-4242';
/** Artificial Analysis as seen from outside: the real response shape, behind x-api-key. */
let aaServer: Server;
let aaUrl: string;
const aaRequests: (string | undefined)[] = [];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

let env: TestEnv;
let freshDatabaseUrl: string;
/** A fine-tuning provider as seen from outside: the OpenAI files and fine-tuning API. */
const provider = new ProviderStandIn('sk-e2e-fine-tune-secret-77');

beforeAll(async () => {
  const body = readFileSync(join(ROOT, 'test/fixtures/model-catalog/aa-models.json'));
  aaServer = createHttpServer((req, res) => {
    aaRequests.push(req.headers['x-api-key'] as string | undefined);
    if (req.headers['x-api-key'] !== AA_KEY) return res.writeHead(401).end('{"status":401}');
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((r) => aaServer.listen(0, '127.0.0.1', () => r()));
  await provider.start();
  aaUrl = `http://127.0.0.1:${(aaServer.address() as { port: number }).port}/api/v2/data/llms/models`;
  env = await createTestEnv();
  // A database that does not exist yet: `start` must create and migrate it.
  const u = new URL(env.databaseUrl);
  u.pathname = `${u.pathname}_fresh`;
  freshDatabaseUrl = u.toString();
});
afterAll(async () => {
  await new Promise<void>((r) => aaServer.close(() => r()));
  await provider.stop();
  const admin = new pg.Client({ connectionString: env.databaseUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${new URL(freshDatabaseUrl).pathname.slice(1)} WITH (FORCE)`);
  await admin.end();
  await env?.cleanup();
});

describe('caliber start (npm start)', () => {
  let app: ChildService;
  let base: string;
  const call = async (method: string, path: string, json?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${env.apiKey}`, ...(json ? { 'content-type': 'application/json' } : {}) },
      body: json ? JSON.stringify(json) : undefined,
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    app = spawnService('apps/cli/src/main.ts', ['start'], {
      ...env.env,
      NODE_ENV: 'production',
      DATABASE_URL: freshDatabaseUrl,
      PORT: String(port),
      LOG_LEVEL: 'info',
      CALIBRATION_MIN_SAMPLES: '1000',
      AA_API_URL: aaUrl,
      AA_API_KEY: AA_KEY,
      AUTO_FINE_TUNE: 'true',
      FINE_TUNE_ACCOUNT: 'e2e-team',
      FINE_TUNE_BASE_URL: provider.url,
      FINE_TUNE_API_KEY: provider.apiKey,
      FINE_TUNE_POLL_MS: '100',
      FINE_TUNE_MIN_CORRECTIONS: '20',
      FINE_TUNE_DATA_DIR: mkdtempSync(join(tmpdir(), 'caliber-e2e-ft-')),
    });
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, { timeoutMs: 60_000, what: 'gateway ready' });
  });
  afterAll(() => {
    if (app?.child.exitCode === null) app.child.kill('SIGKILL');
  });

  it('created and migrated the database, and says what it started', () => {
    expect(app.output()).toMatch(/created database caliber_t_\w+_fresh/);
    expect(app.output()).toMatch(/migrations applied/);
    expect(app.output()).toMatch(/starting gateway on :\d+ and 3 worker process\(es\): calibrate,update-reference \| retag-file \| map-models,analyze-errors,fine-tune,notify$/m);
  });

  it('runs the seed’s development workflow over HTTP', async () => {
    const heads = { 'effnet/mood_happy': skewed(2), 'effnet/danceability': skewed(1) };
    expect((await call('POST', '/library/files', libraryBatch(0, 1000, heads))).body).toEqual({ files: 1000, tags: 4000 });
    const first = await call('POST', '/admin/calibration/run?wait=true');
    expect(first.status).toBe(200);
    expect(first.body.calibration).toMatchObject({ version: 1, summary: { total_heads: 2, unstable_heads: 2 } });

    await call('POST', '/library/files', libraryBatch(1000, 1000, heads));
    const second = await call('POST', '/admin/calibration/run?wait=true');
    expect(second.body.calibration).toMatchObject({ version: 2, library_size: 2000 });
    expect(second.body.calibration.heads['effnet/mood_happy'].reference_version).toBe(1);

    const history = await call('GET', '/admin/calibration/history?model=effnet&head=mood_happy');
    expect(history.body.runs.map((r: { version: number }) => r.version)).toEqual([2, 1]);
    const files = await readdir(join(env.modelsDir, 'effnet', 'heads'));
    expect(files).toEqual(expect.arrayContaining(['mood_happy-calibration-v1.json', 'mood_happy-calibration-v2.json', 'mood_happy-calibration.json']));
  });

  it('maps the pipeline’s models from the Artificial Analysis API and answers best-model', async () => {
    const rows = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/model-catalog/working-version.json'), 'utf8')) as {
      inference_provider: string;
      model_id: string;
      human_readable_name: string | null;
    }[];
    // The discovery pipeline writes working_version with its own login.
    const pipeline = new pg.Client({ connectionString: freshDatabaseUrl });
    await pipeline.connect();
    await pipeline.query(
      'INSERT INTO working_version (inference_provider, model_id, human_readable_name) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])',
      [rows.map((r) => r.inference_provider), rows.map((r) => r.model_id), rows.map((r) => r.human_readable_name)],
    );
    await pipeline.end();

    const run = await call('POST', '/admin/models/map?wait=true');
    expect(run.status, JSON.stringify(run.body)).toBe(200);
    expect(run.body).toMatchObject({ source: 'api', total_models: new Set(rows.map((r) => r.model_id)).size });
    expect(run.body.coverage).toBeGreaterThan(0.7);
    expect(aaRequests.every((k) => k === AA_KEY)).toBe(true);
    const best = await call('GET', '/best-model?provider=groq&metric=coding_index');
    expect(best).toMatchObject({ status: 200, body: { provider: 'groq', metric: 'coding_index' } });
    // The AA key never reaches the logs.
    expect(app.output()).not.toContain(AA_KEY);
  });

  it('turns corrected feedback into a fine-tuned model: analyze-errors, an automatic job, the provider', async () => {
    const items = Array.from({ length: 24 }, (_, i) => ({
      response_id: `e2e-${i}`,
      model_id: 'helpdesk',
      query: `How do I reset password ${i}?`,
      response: 'Call us.',
      feedback: { type: 'full', categories: ['incomplete'], correction: `Open Settings → Security → Reset (${i}).` },
    }));
    expect((await call('POST', '/api/analytics/response-quality/response', { items })).status).toBe(201);
    expect((await call('POST', '/admin/credits/e2e-team/grant', { amount: 300 })).status).toBe(201);
    const run = await call('POST', '/api/analytics/model-improvement/analyze?wait=true');
    expect(run.status, JSON.stringify(run.body)).toBe(200);

    const job = await waitFor(async () => {
      const [j] = (await call('GET', '/api/analytics/model-improvement/fine-tuning/jobs?model_id=helpdesk')).body.items;
      return j?.status === 'succeeded' ? j : undefined;
    }, { what: 'the automatic fine-tuning job to succeed', timeoutMs: 30_000 });
    expect(job).toMatchObject({ trigger: 'auto', analysis_run_id: run.body.run_id, dataset_rows: 22, validation_rows: 2, credits: 'charged' });
    expect(job.fine_tuned_model).toMatch(/^ft:helpdesk:caliber::/);
    // The job row says succeeded a moment before BullMQ marks its queue job completed.
    const queueJob = await waitFor(async () => {
      const body = (await call('GET', job.queue_job.status)).body;
      return body.state === 'completed' ? body : undefined;
    }, { what: 'the queue job to complete' });
    expect(queueJob).toMatchObject({ state: 'completed', result: { status: 'succeeded' } });
    expect((await call('GET', '/admin/credits/e2e-team')).body).toMatchObject({ balance: 200, reserved: 0 });
    expect(provider.requests.every((r) => r.authorization === `Bearer ${provider.apiKey}`)).toBe(true);
    expect(app.output()).not.toContain(provider.apiKey);
  });

  it('stops every process cleanly on Ctrl-C', async () => {
    app.child.kill('SIGINT');
    const { code } = await app.exited;
    expect(code).toBe(0);
    expect(app.output()).toMatch(/\[caliber\] stopped/);
    expect(app.output()).not.toMatch(/did not stop cleanly/);
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });
});

describe('caliber start without its services', () => {
  it.each([
    ['Redis', { REDIS_URL: 'redis://127.0.0.1:1' }, /Redis is not answering at 127\.0\.0\.1:1 \(REDIS_URL=redis:\/\/127\.0\.0\.1:1\)/],
    ['Postgres', { DATABASE_URL: 'postgres://postgres:secret@127.0.0.1:1/caliber' }, /Postgres is not answering at 127\.0\.0\.1:1 \(DATABASE_URL=postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/caliber\)/],
  ])('says %s is missing, where, and how to start it', async (_, overrides, message) => {
    const cli = spawnService('apps/cli/src/main.ts', ['start'], { ...env.env, ...overrides });
    expect((await cli.exited).code).toBe(1);
    expect(cli.output()).toMatch(message);
    expect(cli.output()).toContain('docker compose up -d postgres redis');
    expect(cli.output()).not.toMatch(/\n\s+at /); // no stack trace
    expect(cli.output()).not.toContain('secret');
  });

  it('names every variable with a wrong value and starts nothing', async () => {
    const cli = spawnService('apps/cli/src/main.ts', ['start'], { ...env.env, PORT: 'eighty', CALIBRATION_DRIFT_JSD: '-1' });
    expect((await cli.exited).code).toBe(1);
    expect(cli.output()).toMatch(/PORT: .*\(got "eighty"\)/);
    expect(cli.output()).toMatch(/CALIBRATION_DRIFT_JSD: .*\(got "-1"\)/);
    expect(cli.output()).not.toMatch(/migrations applied/);
  });
});
