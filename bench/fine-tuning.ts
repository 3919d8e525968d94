import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import Cursor from 'pg-cursor';
import { best, freshDatabase, report, startStack } from './lib.ts';

const FT = '/api/analytics/model-improvement/fine-tuning';

/**
 * `fine-tune-dataset`: a job for a model with N corrected problematic responses (a tenth of them
 * repeats of another but for whitespace, beside as many positive feedback of the same model),
 * from `POST …/jobs` and `…/start?wait=true` until it succeeded, through the gateway and a worker
 * process; the provider is a `command` that exits at once, so what is timed is the dataset build
 * (deduplication, split, JSONL written, flushed, renamed) and the job's moves. Floor: the same
 * deduplicated rows (by the same whitespace-blind keys), already serialised to JSON by Postgres,
 * streamed by one cursor into a file.
 */
export async function fineTuneDatasetBench(opts: { n?: number } = {}) {
  const n = opts.n ?? Number(process.env.BENCH_CORRECTIONS ?? 200_000);
  const databaseUrl = await freshDatabase('caliber_bench_fine_tune');
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  const dupes = Math.floor(n / 10);
  const context = 'The user is on the Pro plan and asked from the web app about their workspace settings. ';
  await db.query(
    `INSERT INTO llm_responses (response_id, model_id, query, response)
     SELECT 'r' || g, 'bench-bot',
            CASE WHEN g > $1::int THEN '  How do I do task ' || (g - $1::int) || '?  ' ELSE 'How do I do task ' || g || '? ' END || $3::text,
            'You cannot do that.'
       FROM generate_series(1, $1::int + $2::int) g`,
    [n - dupes, dupes, context],
  );
  await db.query(
    `INSERT INTO response_feedback (response_ref, type, categories, comment, correction, negative)
     SELECT id, 'full', '{factual_error}', 'that is wrong',
            'Open Settings, choose task ' || regexp_replace(query, '\\D', '', 'g') || ', then press   Run. ' || repeat('Details follow. ', 10), true
       FROM llm_responses`,
  );
  await db.query(
    `INSERT INTO llm_responses (response_id, model_id, query, response) SELECT 'p' || g, 'bench-bot', 'hi ' || g, 'hello' FROM generate_series(1, $1) g`,
    [n],
  );
  await db.query(`INSERT INTO response_feedback (response_ref, type, thumbs_up, negative) SELECT id, 'thumbs', true, false FROM llm_responses WHERE response_id LIKE 'p%'`);
  await db.query('VACUUM ANALYZE');

  const dataDir = await mkdtemp(join(tmpdir(), 'caliber-bench-ft-'));
  const stack = await startStack(databaseUrl, { FINE_TUNE_PROVIDER: 'command', FINE_TUNE_COMMAND: 'true', FINE_TUNE_COMMAND_POLL_MS: '50', FINE_TUNE_DATA_DIR: dataDir, FINE_TUNE_RECONCILE_CRON: '' }, ['fine-tune']);
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${stack.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return (await res.json()) as any;
  };
  try {
    await call('POST', '/admin/credits/bench/grant', { amount: 1_000_000 });
    let last: any;
    const ours = await best(3, async () => {
      const { job } = await call('POST', `${FT}/jobs`, { model_id: 'bench-bot', account_id: 'bench' });
      last = (await call('POST', `${FT}/jobs/${job.id}/start?wait=true&timeout=600`)).job;
      if (last?.status !== 'succeeded') throw new Error(`job did not succeed: ${JSON.stringify(last)}`);
    });

    const floorFile = join(dataDir, 'floor.jsonl');
    const floor = await best(3, async () => {
      const out = createWriteStream(floorFile);
      const cursor = db.query(
        new Cursor<{ line: string }>(`
          WITH corrected AS (
            SELECT DISTINCT ON (f.response_ref) f.response_ref, f.correction, f.correction_key
              FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref
             WHERE f.correction IS NOT NULL AND r.model_id = 'bench-bot' AND f.negative
             ORDER BY f.response_ref, f.created_at DESC, f.id DESC)
          SELECT json_build_object('messages', json_build_array(json_build_object('role', 'user', 'content', btrim(q)), json_build_object('role', 'assistant', 'content', btrim(c))))::text AS line
            FROM (SELECT DISTINCT ON (k) md5(r.query_key || x.correction_key) AS k, r.query AS q, x.correction AS c
                    FROM corrected x JOIN llm_responses r ON r.id = x.response_ref ORDER BY k) d
           ORDER BY k`),
      );
      for (;;) {
        const rows = await cursor.read(500);
        if (rows.length === 0) break;
        for (const row of rows) if (!out.write(`${row.line}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
      }
      await cursor.close();
      await new Promise<void>((r) => out.end(() => r()));
    });
    const examples = (last.dataset_rows as number) + (last.validation_rows as number);
    if (examples !== n - dupes) throw new Error(`expected ${n - dupes} examples after deduplication, the job wrote ${examples}`);
    await report({
      bench: 'fine-tune-dataset',
      n,
      seconds: Number(ours.best.toFixed(3)),
      per_s: Math.round(n / ours.best),
      floor_seconds: Number(floor.best.toFixed(3)),
      ratio: Number((ours.best / floor.best).toFixed(2)),
      examples,
      dataset_bytes: last.dataset_bytes,
      runs: ours.all,
      floor_runs: floor.all,
    });
  } finally {
    await stack.stop();
    await db.end();
    await rm(dataDir, { recursive: true, force: true });
  }
}
