import pg from 'pg';
import { best, freshDatabase, report, rng, startStack } from './lib.ts';

const LANGUAGES = ['python', 'typescript', 'javascript', 'go', 'rust', 'java', 'kotlin', 'swift', 'ruby', 'php', 'c', 'c++', 'c#', 'scala', 'elixir', 'haskell', 'dart', 'lua', 'r', 'julia'];
const SIZES = ['small', 'medium', 'large'];
const MODELS = 20;

async function post(url: string, key: string, path: string, body?: string) {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${path}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/**
 * `model-selection`: two lines.
 * - `model-selection-ingest`: N results through `POST /admin/model-selection/results` in batches of
 *   10 000 (zod validation, the natural-key dedupe), one request at a time. Floor: the same rows
 *   inserted by one unnest INSERT per batch straight into the table.
 * - `model-selection-calibrate`: a `calibrate` run of kind `model-selection` over RESULTS results
 *   (20 languages × 3 sizes × 20 models) through the gateway and a worker process, `?wait=true`:
 *   aggregate, rank, upsert every configuration, record the run. Floor: the aggregate query alone.
 * ratio = seconds / floor_seconds.
 */
export async function modelSelectionBench(opts: { n?: number; results?: number; repeat?: number } = {}) {
  const n = opts.n ?? Number(process.env.BENCH_RESULTS_INGEST ?? 100_000);
  const total = opts.results ?? Number(process.env.BENCH_RESULTS ?? 1_000_000);
  const repeat = opts.repeat ?? 3;
  const databaseUrl = await freshDatabase('caliber_bench_model_selection');
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  const stack = await startStack(databaseUrl, { MODEL_SELECTION_CRON: 'off', MODEL_SELECTION_WINDOW_DAYS: '0' }, ['calibrate']);
  try {
    const random = rng(11);
    const batches = Array.from({ length: Math.ceil(n / 10_000) }, (_, b) =>
      Array.from({ length: Math.min(10_000, n - b * 10_000) }, (_, i) => ({
        run_id: `bench-${b}`,
        language: LANGUAGES[i % LANGUAGES.length]!,
        size_category: SIZES[Math.floor(i / LANGUAGES.length) % SIZES.length]!,
        model_id: `model-${Math.floor(i / 60) % MODELS}`,
        provider: 'bench',
        repository: `repo-${i}`,
        quality_score: Math.round(random() * 1e4) / 1e4,
        latency_ms: Math.round(200 + random() * 4000),
        cost_usd: Math.round(random() * 1e5) / 1e7,
      })),
    );
    const bodies = batches.map((results) => JSON.stringify({ results }));
    const wipe = () => db.query('TRUNCATE calibration_results');
    const http = await best(repeat, async () => {
      for (const body of bodies) await post(stack.url, stack.apiKey, '/admin/model-selection/results', body);
    }, wipe);
    const floor = await best(repeat, async () => {
      for (const rows of batches) {
        const col = (k: keyof (typeof rows)[number]) => rows.map((r) => r[k]);
        await db.query(
          `INSERT INTO calibration_results (run_id, language, size_category, model_id, provider, repository, quality_score, latency_ms, cost_usd)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::float8[], $9::float8[])`,
          [col('run_id'), col('language'), col('size_category'), col('model_id'), col('provider'), col('repository'), col('quality_score'), col('latency_ms'), col('cost_usd')],
        );
      }
    }, wipe);
    await report({
      bench: 'model-selection-ingest',
      n,
      seconds: Number(http.best.toFixed(3)),
      per_s: Math.round(n / http.best),
      floor_seconds: Number(floor.best.toFixed(3)),
      ratio: Number((http.best / floor.best).toFixed(2)),
      batch: 10_000,
      runs: http.all,
      floor_runs: floor.all,
    });

    // The calibrate benchmark's results, made inside Postgres: every (language, size, model) gets
    // total / 1200 evaluations.
    await db.query('SELECT setseed(0.11)');
    await db.query(
      `INSERT INTO calibration_results (run_id, language, size_category, model_id, provider, repository, quality_score, latency_ms, cost_usd)
       SELECT 'seed-' || (g % 50), l.language, s.size, 'model-' || (g % ${MODELS}), 'bench', 'repo-' || g,
              least(1, greatest(0, 0.5 + (g % ${MODELS}) / 100.0 + (random() - 0.5) * 0.4)), 200 + random() * 4000, random() * 0.01
         FROM unnest($1::text[]) l(language) CROSS JOIN unnest($2::text[]) s(size)
        CROSS JOIN generate_series(1, $3::int) g`,
      [LANGUAGES, SIZES, Math.ceil(total / (LANGUAGES.length * SIZES.length))],
    );
    await db.query('VACUUM ANALYZE calibration_results');
    const stored = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM calibration_results')).rows[0]!.n;
    let last: Record<string, unknown> = {};
    const run = await best(repeat, async () => {
      last = await post(stack.url, stack.apiKey, '/admin/model-selection/calibrate?wait=true&timeout=600');
    });
    const aggregate = await best(repeat, () =>
      db.query(`SELECT coalesce(language, 'any'), coalesce(size_category, 'any'), provider, model_id, count(*), avg(quality_score),
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), avg(cost_usd)
                  FROM calibration_results
                 GROUP BY GROUPING SETS ((language, size_category, provider, model_id), (language, provider, model_id), (provider, model_id))`),
    );
    await report({
      bench: 'model-selection-calibrate',
      n: stored,
      seconds: Number(run.best.toFixed(3)),
      per_s: Math.round(stored / run.best),
      floor_seconds: Number(aggregate.best.toFixed(3)),
      ratio: Number((run.best / aggregate.best).toFixed(2)),
      configurations: last.configurations,
      runs: run.all,
      floor_runs: aggregate.all,
    });
  } finally {
    await db.end();
    await stack.stop();
  }
}
