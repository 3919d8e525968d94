import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { MIGRATIONS_DIR, runMigrations, tryAdvisoryLock } from '../../libs/platform/src/index.ts';
import { readdirSync } from 'node:fs';
import pg from 'pg';
import { libraryBatch, skewed } from '../fixtures.ts';
import { createTestEnv, Harness, waitFor, type TestEnv } from '../harness.ts';
import { PGBOUNCER, startPgBouncer } from './pgbouncer.ts';
import { tagsAgainstReferences } from './tags.ts';

// Caliber through a transaction-mode pooler: gateway and workers see Postgres only through
// PgBouncer, where no session state survives a transaction.
if (process.env.CALIBER_POOLER_TEST === 'required' && !PGBOUNCER) throw new Error('CALIBER_POOLER_TEST=required but pgbouncer is not installed');
const MOOD = 'effnet/mood_happy';
const DANCE = 'effnet/danceability';
const FILES = 20_000;

describe.skipIf(!PGBOUNCER)('behind PgBouncer in transaction mode', () => {
  let bouncer: Awaited<ReturnType<typeof startPgBouncer>>;
  let env: TestEnv;
  let h: Harness;

  beforeAll(async () => {
    env = await createTestEnv();
    // The pooler logs in as the server's user and gives each server connection Caliber's role, so
    // the processes ask for no role themselves (a startup parameter a pooler does not pass on).
    bouncer = await startPgBouncer(inject('databaseUrl'), { role: 'caliber_app' });
    const database = new URL(env.databaseUrl).pathname.slice(1);
    // The relay's LISTEN needs a session: it goes to Postgres itself.
    // Polling is slowed to a minute: the relay must hear the events through that LISTEN.
    h = await Harness.start(env, { env: { DATABASE_URL: bouncer.url(database), DATABASE_LISTEN_URL: env.databaseUrl, DATABASE_ROLE: 'none', DB_POOL_SIZE: '8', OUTBOX_POLL_MS: '60000' }, workers: true });
  });
  afterAll(async () => {
    await h?.stop();
    await bouncer?.stop();
    await env?.cleanup();
  });

  it('migrates an empty database through a pooler (as the owner), three processes at once', async () => {
    const name = `caliber_t_mig_${process.pid}_${Date.now()}`;
    const admin = new pg.Client({ connectionString: inject('databaseUrl') });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    const owner = await startPgBouncer(inject('databaseUrl'));
    try {
      const url = owner.url(name);
      await Promise.all([runMigrations(url), runMigrations(url), runMigrations(url)]);
      const check = new pg.Client({ connectionString: url });
      await check.connect();
      const applied = await check.query('SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations');
      const tables = await check.query("SELECT count(*)::int AS n FROM pg_tables WHERE tablename IN ('library_files', 'publishable_keys', 'response_feedback')");
      const locks = await check.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'`);
      await check.end();
      expect(applied.rows[0].n).toBe(readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).length);
      expect(tables.rows[0].n).toBe(3);
      expect(locks.rows[0].n).toBe(0);
    } finally {
      await owner.stop();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    }
  });

  it('keeps advisory locks exclusive across pooled connections, and leaves none behind', async () => {
    const pool = h.platform.pool;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let inside = false;
    const first = tryAdvisoryLock(pool, ['caliber:test', 'job-1'], async () => {
      inside = true;
      await held;
      return 'first';
    });
    await waitFor(() => inside, { what: 'the first holder' });
    expect(await tryAdvisoryLock(pool, ['caliber:test', 'job-1'], async () => 'second')).toEqual({ locked: false });
    release();
    expect(await first).toEqual({ locked: true, value: 'first' });
    expect(await tryAdvisoryLock(pool, ['caliber:test', 'job-1'], async () => 'third')).toEqual({ locked: true, value: 'third' });
    expect(await h.ownerQuery(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'`)).toEqual([{ n: 0 }]);
  });

  it('ingests, calibrates and re-tags a 20 000-file library, with every tag right', { timeout: 180_000 }, async () => {
    const listening = await h.ownerQuery(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'caliber-relay-listen' AND query LIKE 'LISTEN%' AND datname = current_database()`);
    expect(listening).toEqual([{ n: 1 }]);
    const [me] = await h.query<{ who: string }>('SELECT current_user AS who');
    expect(me?.who).toBe('caliber_app');
    for (let from = 0; from < FILES; from += 5_000) {
      const res = await h.request('POST', '/library/files', { json: libraryBatch(from, 5_000, { [MOOD]: skewed(2), [DANCE]: skewed(1) }) });
      expect(res.status, res.text).toBe(200);
    }
    const run = await h.request('POST', '/admin/calibration/run?wait=true&timeout=120');
    expect(run.status, run.text).toBe(200);
    expect(run.body.calibration).toMatchObject({ version: 1, library_size: FILES, summary: { total_heads: 2 } });
    const since = Date.now();
    const started = await h.request('POST', '/admin/calibration/retag-all');
    expect(started.status, started.text).toBe(200);
    const done = await waitFor(async () => {
      const { body } = await h.request('GET', '/admin/calibration/retag-status');
      return body.state === 'idle' && Date.parse(body.started_at) >= since - 1000 && body.done > 0 ? body : undefined;
    }, { what: 'the retag backlog', timeoutMs: 120_000 });
    expect(done).toMatchObject({ total: FILES, done: FILES, failed: 0 });

    const { references, tags, wrong } = await tagsAgainstReferences(h);
    expect(references.map((r) => `${r.model_name}/${r.head_name}@${r.version}`).sort()).toEqual([`${DANCE}@1`, `${MOOD}@1`]);
    expect(tags).toBe(FILES * 4);
    expect(wrong).toEqual([]);
    // A second run (it takes the run lock the first one held) completes: no lock was left behind.
    const again = await h.request('POST', '/admin/calibration/run?wait=true&timeout=60');
    expect(again.status, again.text).toBe(200);
    expect(again.body.calibration.version).toBe(2);
    // Every outbox event reached its queue, and nothing is left holding a lock.
    expect(await h.ownerQuery('SELECT count(*)::int AS n FROM outbox WHERE relayed_at IS NULL')).toEqual([{ n: 0 }]);
    expect(await h.ownerQuery(`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND a.datname = current_database()`)).toEqual([{ n: 0 }]);
  });
});
