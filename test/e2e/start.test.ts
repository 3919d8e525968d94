import { readdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libraryBatch, skewed } from '../fixtures.ts';
import { createTestEnv, spawnService, waitFor, type ChildService, type TestEnv } from '../harness.ts';

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

beforeAll(async () => {
  env = await createTestEnv();
  // A database that does not exist yet: `start` must create and migrate it.
  const u = new URL(env.databaseUrl);
  u.pathname = `${u.pathname}_fresh`;
  freshDatabaseUrl = u.toString();
});
afterAll(async () => {
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
      LOG_LEVEL: 'warn',
      CALIBRATION_MIN_SAMPLES: '1000',
    });
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, { timeoutMs: 60_000, what: 'gateway ready' });
  });
  afterAll(() => {
    if (app?.child.exitCode === null) app.child.kill('SIGKILL');
  });

  it('created and migrated the database, and says what it started', () => {
    expect(app.output()).toMatch(/created database caliber_t_\w+_fresh/);
    expect(app.output()).toMatch(/migrations applied/);
    expect(app.output()).toMatch(/starting gateway on :\d+ and 3 worker process\(es\): calibrate,update-reference \| retag-file \| map-models/);
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
