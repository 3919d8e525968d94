import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../../libs/platform/src/db.ts';
import { libraryBatch, skewed } from '../fixtures.ts';
import { createTestEnv, Harness, waitFor, type TestEnv } from '../harness.ts';
import { ProcessStack, report } from './stack.ts';

// A Postgres cluster of this scenario's own (initdb into a temporary directory), so restarting it
// in the middle of a backlog touches no other test.
const BIN = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').map((v) => `/usr/lib/postgresql/${v}/bin`).find((d) => existsSync(join(d, 'initdb'))) : undefined;
if (!BIN && process.env.CALIBER_FAULTS === 'required') throw new Error('CALIBER_FAULTS=required but no Postgres server binaries (initdb, pg_ctl) under /usr/lib/postgresql');
const PORT = 18_000 + Math.floor(Math.random() * 2_000);
let dataDir = '';

function asPostgres(cmd: string, args: string[]) {
  const root = process.getuid?.() === 0;
  const r = root ? spawnSync('runuser', ['-u', 'postgres', '--', join(BIN!, cmd), ...args], { encoding: 'utf8' }) : spawnSync(join(BIN!, cmd), args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr || r.stdout}`);
}
const pgCtl = (...args: string[]) => asPostgres('pg_ctl', ['-D', dataDir, '-l', join(dataDir, 'log'), '-w', ...args]);

let env: TestEnv;
let stack: ProcessStack;
let h: Harness;
const url = `postgres://postgres@127.0.0.1:${PORT}/caliber`;

beforeAll(async () => {
  if (!BIN) return;
  dataDir = await mkdtemp(join(tmpdir(), 'caliber-pg-'));
  if (process.getuid?.() === 0) chownSync(dataDir, Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim()), Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim()));
  asPostgres('initdb', ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  pgCtl('-o', `-p ${PORT} -k ${dataDir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start');
  const admin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${PORT}/postgres` });
  await admin.connect();
  await admin.query('CREATE DATABASE caliber');
  await admin.end();
  await runMigrations(url);
  const overrides = { DATABASE_URL: url, CALIBRATION_MIN_SAMPLES: '50', RETAG_BATCH_SIZE: '50', RETAG_FILE_CONCURRENCY: '1', JOB_BACKOFF_MS: '300', JOB_ATTEMPTS: '8', DB_QUERY_TIMEOUT_MS: '5000' };
  env = await createTestEnv(overrides);
  h = await Harness.start(env); // to look at the queues
  stack = new ProcessStack(env);
  await stack.gateway();
  await stack.worker('calibrate,update-reference,retag-file');
});

afterAll(async () => {
  await stack?.stop();
  await h?.stop();
  await env?.cleanup().catch(() => {});
  if (dataDir) {
    try {
      pgCtl('-m', 'immediate', 'stop');
    } catch {
      // already down
    }
    await rm(dataDir, { recursive: true, force: true });
  }
});

async function query<T extends pg.QueryResultRow>(text: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(text)).rows;
  } finally {
    await c.end();
  }
}

describe.skipIf(!BIN)('Postgres restarts in the middle of a backlog', () => {
  it('fails the jobs it interrupts, retries them with backoff and finishes with every value right', async () => {
    const heads = { 'effnet/mood_happy': skewed(2), 'effnet/danceability': skewed(1) };
    expect((await stack.request('POST', '/library/files', libraryBatch(0, 5_000, heads))).status).toBe(200);
    expect((await stack.request('POST', '/admin/calibration/run?wait=true')).status).toBe(200);
    await waitFor(async () => (await query<{ n: number }>('SELECT count(*)::int AS n FROM calibration_references'))[0]!.n === 2, { what: 'references' });

    const queued = await stack.request('POST', '/admin/calibration/retag-all');
    expect(queued.status).toBe(200);
    expect(queued.body.jobs).toBe(100);
    // Once the backlog is under way, the server restarts (fast shutdown: sessions are cut off).
    // Restarted while a job is running and most of the backlog is still to do.
    await waitFor(async () => (await stack.request('GET', '/admin/calibration/retag-status')).body.done > 0 && ((await h.platform.queues.get('retag-file').getJobCounts('active')).active ?? 0) > 0, { what: 'the backlog under way' });
    const doneAtRestart = (await stack.request('GET', '/admin/calibration/retag-status')).body.done as number;
    expect(doneAtRestart).toBeLessThan(5_000);
    const t0 = performance.now();
    pgCtl('-m', 'fast', 'restart');
    const restartMs = Math.round(performance.now() - t0);

    await waitFor(async () => {
      const s = (await stack.request('GET', '/admin/calibration/retag-status')).body;
      return s.state === 'idle' && s.done + s.failed === 5_000 && s;
    }, { timeoutMs: 120_000, what: 'the backlog to finish' });
    const status = (await stack.request('GET', '/admin/calibration/retag-status')).body;
    expect(status.failed).toBe(0);

    // Every tag computed exactly as min-max calibration with its head's reference: no partial write.
    const wrong = await query<{ n: number }>(`
      SELECT count(*)::int AS n
        FROM library_tags t JOIN calibration_references r USING (model_name, head_name)
        CROSS JOIN LATERAL (SELECT (r.labels->t.label->>'p5')::float8 AS p5, (r.labels->t.label->>'p95')::float8 AS p95) b
       WHERE t.calibration_version IS DISTINCT FROM r.version
          -- min-max calibration, the raw score itself when the bounds are degenerate
          OR (abs(t.calibrated_score - CASE WHEN b.p95 > b.p5 THEN least(1, greatest(0, (t.raw_score - b.p5) / (b.p95 - b.p5))) ELSE t.raw_score END) > 1e-12) IS NOT FALSE`);
    expect(wrong[0]!.n).toBe(0);
    const retag = h.platform.queues.get('retag-file');
    const done = (await retag.getJobs(['completed'])).filter((j) => j.name === 'files');
    expect(done).toHaveLength(100);
    expect((await retag.getJobCounts('failed')).failed).toBe(0);
    // The jobs the outage reached failed an attempt and were retried (a failed attempt leaves its reason).
    const retried = done.filter((j) => j.attemptsMade > 1 || Boolean(j.failedReason)).length;
    expect(retried).toBeGreaterThan(0);

    // The relay and the gateway's pool came back too: a new run starts its reference updates.
    const again = await stack.request('POST', '/admin/calibration/run?wait=true');
    expect(again.status).toBe(200);
    await report('postgres-restart', { files: 5_000, jobs: 100, files_done_at_restart: doneAtRestart, restart_ms: restartMs, jobs_retried: retried, failed_for_good: status.failed, wrong_values: wrong[0]!.n });
  });
});
