import pg from 'pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { PgDialect } from 'drizzle-orm/pg-core';
import { loadReferenceLabels, retagStatement } from '../libs/head-calibration/src/retag.ts';
import { freshDatabase, report, seedLibrary, startStack } from './lib.ts';

/** References for every head: p5/p95 of each label, as a calibration run would install them. */
async function installReferences(db: pg.Client): Promise<void> {
  await db.query(`
    INSERT INTO calibration_references (model_name, head_name, version, labels, source)
    SELECT model_name, head_name, 1,
           jsonb_object_agg(label, jsonb_build_object('p5', p[1], 'p95', p[2], 'method', 'minmax', 'samples', n)), 'import'
      FROM (SELECT model_name, head_name, label, count(*) AS n,
                   percentile_cont(ARRAY[0.05, 0.95]) WITHIN GROUP (ORDER BY raw_score) AS p
              FROM library_tags GROUP BY 1, 2, 3) s
     GROUP BY model_name, head_name`);
}

async function resetTags(db: pg.Client): Promise<void> {
  await db.query('UPDATE library_tags SET calibrated_score = NULL, calibration_version = NULL');
  await db.query('VACUUM ANALYZE library_tags');
}

/**
 * Re-tagging FILES files × HEADS heads × 2 labels through `POST /admin/calibration/retag-all` and
 * `retag-file` worker processes, until retag-status reports the backlog done. Floor: the same
 * calibrated values computed and written by one set-based UPDATE … FROM.
 */
export async function retagBench(opts: { files?: number; heads?: number; repeat?: number; workerProcesses?: number; redisUrl?: string; redis?: string } = {}) {
  const files = opts.files ?? Number(process.env.BENCH_FILES ?? 100_000);
  const heads = opts.heads ?? 10;
  const repeat = opts.repeat ?? 2;
  const workerProcesses = opts.workerProcesses ?? Number(process.env.BENCH_RETAG_WORKERS ?? 1);
  const databaseUrl = await freshDatabase('caliber_bench_retag');
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  await seedLibrary(db, files, heads);
  await installReferences(db);
  const rows = files * heads * 2;
  const floorQuery = new PgDialect().sqlToQuery(retagStatement(await loadReferenceLabels(drizzle({ client: db })), undefined, { onlyChanged: false }));
  const floorSql = { text: floorQuery.sql, values: floorQuery.params as unknown[] };

  const stack = await startStack(databaseUrl, { CALIBRATE_HEADS: 'true', ...benchEnv(), ...(opts.redisUrl ? { REDIS_URL: opts.redisUrl } : {}) }, ['retag-file'], { workerProcesses });
  const auth = { authorization: `Bearer ${stack.apiKey}` };
  const floorRuns: number[] = [];
  const ourRuns: number[] = [];
  const enqueueRuns: number[] = [];
  try {
    for (let i = 0; i < repeat; i++) {
      await resetTags(db);
      let started = performance.now();
      const floorResult = await db.query(floorSql);
      floorRuns.push((performance.now() - started) / 1000);
      if (floorResult.rowCount !== rows) throw new Error(`floor updated ${floorResult.rowCount} rows, expected ${rows}`);
      await db.query('DROP TABLE IF EXISTS floor_values');
      await db.query('CREATE UNLOGGED TABLE floor_values AS SELECT file_id, model_name, head_name, label, calibrated_score FROM library_tags');

      await resetTags(db);
      started = performance.now();
      const res = await fetch(`${stack.url}/admin/calibration/retag-all`, { method: 'POST', headers: auth });
      const body = (await res.json()) as { enqueued: number };
      enqueueRuns.push((performance.now() - started) / 1000);
      if (res.status !== 200 || body.enqueued !== files) throw new Error(`retag-all answered ${res.status} ${JSON.stringify(body)}`);
      for (;;) {
        const status = (await (await fetch(`${stack.url}/admin/calibration/retag-status`, { headers: auth })).json()) as { state: string; failed: number };
        if (status.failed > 0) throw new Error(`retag jobs failed: ${JSON.stringify(status)}`);
        if (status.state === 'idle') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      ourRuns.push((performance.now() - started) / 1000);
      const wrong = await db.query(`
        SELECT count(*)::int AS n FROM library_tags t JOIN floor_values f USING (file_id, model_name, head_name, label)
         WHERE t.calibrated_score IS DISTINCT FROM f.calibrated_score OR t.calibration_version IS DISTINCT FROM 1`);
      if (wrong.rows[0].n !== 0) throw new Error(`${wrong.rows[0].n} tags differ from the floor's values`);
    }
    const ours = Math.min(...ourRuns);
    const floor = Math.min(...floorRuns);
    await report({
      bench: opts.redis ? 'retag-scale' : 'retag',
      n: files,
      seconds: Number(ours.toFixed(3)),
      per_s: Math.round(files / ours),
      floor_seconds: Number(floor.toFixed(3)),
      ratio: Number((ours / floor).toFixed(2)),
      tags: rows,
      worker_processes: workerProcesses,
      ...(opts.redis ? { redis: opts.redis } : {}),
      runs: ourRuns.map((s) => Number(s.toFixed(3))),
      floor_runs: floorRuns.map((s) => Number(s.toFixed(3))),
      enqueue_runs: enqueueRuns.map((s) => Number(s.toFixed(3))),
    }, opts.redis ? `retag-scale-${opts.redis}-${workerProcesses}w` : undefined);
  } finally {
    await stack.stop();
    await db.end();
  }
}

/** Settings passed through to the stack (RETAG_*, RETAG_FILE_CONCURRENCY) for tuning runs. */
function benchEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('RETAG_')) as [string, string][]);
}

/**
 * The retag benchmark with 1, 2 and 4 worker processes, on one Redis and on a local 3-master
 * Redis Cluster (`redis-server --cluster-enabled yes`, made by the bench), BENCH_FILES files
 * (default 50 000). Each line is a `retag` result with `worker_processes` and `redis`.
 */
export async function retagScaleBench() {
  const { startRedisCluster } = await import('../test/scale/redis-cluster.ts');
  const files = Number(process.env.BENCH_FILES ?? 50_000);
  const cluster = await startRedisCluster(3);
  try {
    for (const [redis, redisUrl] of [['single', undefined], ['cluster-3', cluster.url]] as const) {
      for (const workerProcesses of [1, 2, 4]) await retagBench({ files, repeat: 2, workerProcesses, redisUrl, redis });
    }
  } finally {
    await cluster.stop();
  }
}
