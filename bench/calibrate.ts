import pg from 'pg';
import { best, freshDatabase, report, seedLibrary, startStack } from './lib.ts';

/**
 * A head-calibration run over FILES files × HEADS heads × 2 labels, through the real gateway and a
 * worker process (POST /admin/calibration/run?wait=true). Floor: one `percentile_cont` query
 * computing p5/p25/p50/p75/p95 per label over the same rows.
 */
export async function calibrateBench(opts: { files?: number; heads?: number; repeat?: number } = {}) {
  const files = opts.files ?? Number(process.env.BENCH_FILES ?? 100_000);
  const heads = opts.heads ?? 10;
  const repeat = opts.repeat ?? 3;
  const databaseUrl = await freshDatabase('caliber_bench_calibrate');
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  await seedLibrary(db, files, heads);
  const scores = files * heads * 2;

  const floor = await best(repeat, () =>
    db.query(`SELECT model_name, head_name, label,
                     percentile_cont(ARRAY[0.05, 0.25, 0.5, 0.75, 0.95]) WITHIN GROUP (ORDER BY raw_score)
                FROM library_tags GROUP BY model_name, head_name, label`),
  );

  const stack = await startStack(databaseUrl, { CALIBRATE_HEADS: 'true' }, ['calibrate', 'update-reference']);
  try {
    const ours = await best(repeat, async () => {
      const res = await fetch(`${stack.url}/admin/calibration/run?wait=true&timeout=600`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}` },
      });
      if (res.status !== 200) throw new Error(`run answered ${res.status}: ${await res.text()}`);
    });
    await report({
      bench: 'calibrate',
      n: scores,
      seconds: Number(ours.best.toFixed(3)),
      per_s: Math.round(scores / ours.best),
      floor_seconds: Number(floor.best.toFixed(3)),
      ratio: Number((ours.best / floor.best).toFixed(2)),
      files,
      labels: heads * 2,
      runs: ours.all,
      floor_runs: floor.all,
    });
  } finally {
    await stack.stop();
    await db.end();
  }
}
