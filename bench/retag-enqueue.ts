import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { best, freshDatabase, report, seedLibrary, startStack } from './lib.ts';

/**
 * How long `POST /admin/calibration/retag-all` takes to answer on FILES tagged files (no workers
 * running, so only enqueueing is timed). Floor: the direct path doing the same work — the grouped
 * query that counts tagged files per id range, then a raw BullMQ `addBulk` of the same jobs. For
 * scale, `per_file_jobs_seconds` is a raw `addBulk` of one job per file.
 */
export async function retagEnqueueBench(opts: { files?: number; heads?: number; repeat?: number } = {}) {
  const files = opts.files ?? Number(process.env.BENCH_FILES ?? 100_000);
  const heads = opts.heads ?? 10;
  const repeat = opts.repeat ?? 5;
  const batch = 1_000;
  const databaseUrl = await freshDatabase('caliber_bench_retag_enqueue');
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  await seedLibrary(db, files, heads);

  const stack = await startStack(databaseUrl, { CALIBRATE_HEADS: 'true', RETAG_BATCH_SIZE: String(batch) }, []);
  const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: null });
  const ours = new Queue('retag-file', { connection: redis, prefix: `{${stack.queuePrefix}:retag-file}` });
  const raw = new Queue('retag-file-floor', { connection: redis, prefix: `{${stack.queuePrefix}:retag-file-floor}` });
  try {
    const floorOnce = async () => {
      const ranges = await db.query<{ k: number; files: number }>(
        `SELECT (f.id - 1) / $1 AS k, count(*)::int AS files FROM library_files f
          WHERE EXISTS (SELECT 1 FROM library_tags t WHERE t.file_id = f.id) GROUP BY 1 ORDER BY 1`,
        [batch],
      );
      await raw.addBulk(ranges.rows.map(({ k, files: n }) => ({ name: 'files', data: { first_id: k * batch + 1, last_id: (k + 1) * batch, files: n } })));
    };
    const oursOnce = async () => {
      const res = await fetch(`${stack.url}/admin/calibration/retag-all`, { method: 'POST', headers: { authorization: `Bearer ${stack.apiKey}` } });
      const body = (await res.json()) as { enqueued: number };
      if (res.status !== 200 || body.enqueued !== files) throw new Error(`retag-all answered ${res.status} ${JSON.stringify(body)}`);
    };
    // Alternated, so both sides see the same cache and background state; one warm-up each.
    const floorRuns: number[] = [];
    const ourRuns: number[] = [];
    for (let i = 0; i <= repeat; i++) {
      const f = await best(1, floorOnce, () => raw.obliterate({ force: true }));
      const o = await best(1, oursOnce, () => ours.obliterate({ force: true }));
      if (i > 0) {
        floorRuns.push(f.best);
        ourRuns.push(o.best);
      }
    }
    const floor = { best: Math.min(...floorRuns), all: floorRuns.map((s) => Number(s.toFixed(3))) };
    const timed = { best: Math.min(...ourRuns), all: ourRuns.map((s) => Number(s.toFixed(3))) };
    const perFile = await best(1, async () => {
      for (let i = 0; i < files; i += batch) {
        await raw.addBulk(Array.from({ length: Math.min(batch, files - i) }, (_, k) => ({ name: 'file', data: { file_id: i + k + 1 } })));
      }
    }, () => raw.obliterate({ force: true }));

    await report({
      bench: 'retag-enqueue',
      n: files,
      seconds: Number(timed.best.toFixed(3)),
      per_s: Math.round(files / timed.best),
      floor_seconds: Number(floor.best.toFixed(3)),
      ratio: Number((timed.best / floor.best).toFixed(2)),
      jobs: Math.ceil(files / batch),
      per_file_jobs_seconds: Number(perFile.best.toFixed(3)),
      runs: timed.all,
      floor_runs: floor.all,
    });
  } finally {
    await ours.close();
    await raw.close();
    redis.disconnect();
    await stack.stop();
    await db.end();
  }
}
