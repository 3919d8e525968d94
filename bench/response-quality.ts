import pg from 'pg';
import { classifyComment } from '../libs/response-quality/src/classifier.ts';
import { ERROR_CATEGORY_NAMES } from '../libs/response-quality/src/taxonomy.ts';
import { freshDatabase, report, startStack } from './lib.ts';

const MODELS = ['mistral-small', 'gpt-4o', 'llama-3.3-70b', 'gemini-2.0-flash', 'claude-3-5-haiku'];
const COMMENTS = ['totally outdated', 'made up a function', 'cut off halfway', 'way too long', null, null, 'great', 'wrong answer'];

/**
 * `feedback-ingest`: N feedback records through `POST /api/analytics/response-quality/feedback` in
 * batches of BATCH items, against the gateway process. Floor: the same rows written by multi-row
 * INSERTs of the same batch size straight into response_feedback.
 */
export async function feedbackIngestBench(opts: { n?: number; batch?: number } = {}) {
  const n = opts.n ?? Number(process.env.BENCH_FEEDBACK ?? 100_000);
  const batch = opts.batch ?? 5_000;
  const databaseUrl = await freshDatabase('caliber_bench_feedback');
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  await db.query(
    `INSERT INTO llm_responses (response_id, model_id, query, response)
     SELECT 'r' || g, (ARRAY['mistral-small','gpt-4o','llama-3.3-70b'])[1 + g % 3], 'question ' || g, 'answer ' || g FROM generate_series(1, $1) g`,
    [n],
  );
  const items = Array.from({ length: n }, (_, i) => {
    const kind = i % 3;
    const comment = COMMENTS[i % COMMENTS.length] ?? undefined;
    if (kind === 0) return { response_id: `r${i + 1}`, type: 'thumbs', thumbs_up: i % 2 === 0, ...(comment ? { comment } : {}), idempotency_key: `k${i}` };
    if (kind === 1) return { response_id: `r${i + 1}`, type: 'stars', stars: 1 + (i % 5), idempotency_key: `k${i}` };
    return {
      response_id: `r${i + 1}`,
      type: 'full',
      categories: [ERROR_CATEGORY_NAMES[i % ERROR_CATEGORY_NAMES.length]!],
      ...(comment ? { comment } : {}),
      idempotency_key: `k${i}`,
    };
  });
  const batches = Array.from({ length: Math.ceil(n / batch) }, (_, b) => items.slice(b * batch, (b + 1) * batch));

  const stack = await startStack(databaseUrl, {}, []);
  try {
    const floorStart = performance.now();
    for (const chunk of batches) {
      // The floor writes what the route stores, derived columns included, in one statement per batch.
      const values: unknown[] = [];
      const rows = chunk.map((it, j) => {
        const f = it as { response_id: string; type: string; thumbs_up?: boolean; stars?: number; categories?: string[]; comment?: string; idempotency_key: string };
        const negative = f.type === 'thumbs' ? !f.thumbs_up : f.type === 'stars' ? (f.stars ?? 5) <= 2 : (f.categories ?? []).length > 0;
        values.push(Number(f.response_id.slice(1)), f.type, f.thumbs_up ?? null, f.stars ?? null, f.categories ?? [], classifyComment(f.comment), f.comment ?? null, negative, f.idempotency_key);
        const b = j * 9;
        return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}, $${b + 6}, $${b + 7}, $${b + 8}, $${b + 9})`;
      });
      await db.query(
        `INSERT INTO response_feedback (response_ref, type, thumbs_up, stars, categories, comment_categories, comment, negative, idempotency_key) VALUES ${rows.join(',')}`,
        values,
      );
    }
    const floor = (performance.now() - floorStart) / 1000;
    await db.query('TRUNCATE response_feedback');
    await db.query('VACUUM ANALYZE response_feedback');

    const started = performance.now();
    for (const chunk of batches) {
      const res = await fetch(`${stack.url}/api/analytics/response-quality/feedback`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ items: chunk }),
      });
      const body = (await res.json()) as { recorded: number };
      if (res.status !== 201 || body.recorded !== chunk.length) throw new Error(`feedback batch answered ${res.status} ${JSON.stringify(body)}`);
    }
    const seconds = (performance.now() - started) / 1000;
    const stored = (await db.query('SELECT count(*)::int AS n FROM response_feedback')).rows[0].n;
    if (stored !== n) throw new Error(`${stored} feedback rows stored, expected ${n}`);
    await report({
      bench: 'feedback-ingest',
      n,
      seconds: Number(seconds.toFixed(3)),
      per_s: Math.round(n / seconds),
      floor_seconds: Number(floor.toFixed(3)),
      ratio: Number((seconds / floor).toFixed(2)),
      batch,
    });
  } finally {
    await stack.stop();
    await db.end();
  }
}

/**
 * `analyze-errors`: one run over N negative-and-positive feedback rows spread over 8 weeks and 5
 * models, through `POST /api/analytics/model-improvement/analyze?wait=true` and a worker process.
 * Floor: the run's core aggregation in one query — negative feedback per model, category and ISO
 * week over the same window.
 */
export async function analyzeErrorsBench(opts: { n?: number } = {}) {
  const n = opts.n ?? Number(process.env.BENCH_ANALYZE ?? 1_000_000);
  const databaseUrl = await freshDatabase('caliber_bench_analyze');
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  const responses = Math.ceil(n / 4);
  await db.query('SELECT setseed(0.17)');
  await db.query(
    `INSERT INTO llm_responses (response_id, model_id, query, response)
     SELECT 'r' || g, ($2::text[])[1 + g % array_length($2::text[], 1)], 'q', 'a' FROM generate_series(1, $1) g`,
    [responses, MODELS],
  );
  await db.query(
    `INSERT INTO response_feedback (response_ref, type, categories, comment_categories, negative, created_at)
     SELECT 1 + (g % $2), 'full',
            CASE WHEN random() < 0.6 THEN ARRAY[($3::text[])[1 + floor(random() * array_length($3::text[], 1))::int]] ELSE '{}' END,
            CASE WHEN random() < 0.2 THEN ARRAY['outdated_information'] ELSE '{}' END,
            random() < 0.7,
            now() - random() * interval '56 days'
       FROM generate_series(1, $1) g`,
    [n, responses, ERROR_CATEGORY_NAMES],
  );
  await db.query('UPDATE response_feedback SET negative = true WHERE cardinality(categories) > 0');
  await db.query('VACUUM ANALYZE');

  const stack = await startStack(databaseUrl, { ANALYZE_ERRORS_CRON: '' }, ['analyze-errors']);
  try {
    const floorStart = performance.now();
    await db.query(`
      SELECT r.model_id, c.category, to_char(f.created_at AT TIME ZONE 'UTC', 'IYYY-"W"IW') AS week, count(*)
        FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref
        CROSS JOIN LATERAL (SELECT DISTINCT unnest(f.categories || f.comment_categories) AS category) c
       WHERE f.negative AND f.created_at >= now() - interval '56 days'
       GROUP BY 1, 2, 3`);
    const floor = (performance.now() - floorStart) / 1000;

    const started = performance.now();
    const res = await fetch(`${stack.url}/api/analytics/model-improvement/analyze?wait=true&timeout=600`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    const body = (await res.json()) as { negative_feedback: number; patterns: number };
    if (res.status !== 200) throw new Error(`analyze answered ${res.status}: ${JSON.stringify(body)}`);
    const seconds = (performance.now() - started) / 1000;
    await report({
      bench: 'analyze-errors',
      n,
      seconds: Number(seconds.toFixed(3)),
      per_s: Math.round(n / seconds),
      floor_seconds: Number(floor.toFixed(3)),
      ratio: Number((seconds / floor).toFixed(2)),
      negative_feedback: body.negative_feedback,
      patterns: body.patterns,
    });
  } finally {
    await stack.stop();
    await db.end();
  }
}
