import { createHash } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type pg from 'pg';
import Cursor from 'pg-cursor';
import type { FineTuningConfig } from './config.ts';

/** Fewer usable examples than FINE_TUNE_MIN_EXAMPLES: the job fails with this reason. */
export class DatasetTooSmallError extends Error {
  override name = 'DatasetTooSmallError';
  constructor(
    readonly examples: number,
    readonly required: number,
  ) {
    super(
      `only ${examples} usable training example${examples === 1 ? '' : 's'} (problematic responses with a correction, after removing duplicates); FINE_TUNE_MIN_EXAMPLES is ${required}`,
    );
  }
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** One line of chat-format JSONL: the user's query answered with the correction. */
export function exampleLine(query: string, correction: string, systemPrompt?: string): string {
  const messages: ChatMessage[] = [];
  if (systemPrompt) messages.push({ role: 'system', content: systemPrompt });
  messages.push({ role: 'user', content: query }, { role: 'assistant', content: correction });
  return `${JSON.stringify({ messages })}\n`;
}

/**
 * How many of `n` examples are held out: `floor(n × split)`, but never so many that the training
 * set falls below `minTraining`.
 */
export function validationSize(n: number, split: number, minTraining: number): number {
  return Math.max(0, Math.min(Math.floor(n * split), n - minTraining));
}

export interface DatasetPaths {
  dir: string;
  training: string;
  validation: string;
}

export function datasetPaths(config: Pick<FineTuningConfig, 'FINE_TUNE_DATA_DIR'>, jobId: string): DatasetPaths {
  const dir = join(resolve(config.FINE_TUNE_DATA_DIR), jobId);
  return { dir, training: join(dir, 'train.jsonl'), validation: join(dir, 'validation.jsonl') };
}

export interface BuiltDataset {
  paths: DatasetPaths;
  /** Null when no example is held out. */
  validationPath: string | null;
  trainingRows: number;
  validationRows: number;
  bytes: number;
  sha256: string;
}

/**
 * The examples of a model, deduplicated, in a fixed order: problematic responses (at least one
 * negative feedback) with their latest correction, both given before `cutoff`. Two examples whose
 * query and correction differ only in whitespace are one. Ordered by a hash of the example, which
 * shuffles them (as training wants) yet gives the same file every time, so a rebuild on another
 * worker produces the same dataset.
 */
const EXAMPLES_SQL = `
  WITH corrected AS (
    SELECT DISTINCT ON (f.response_ref) f.response_ref, f.correction
      FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref
     WHERE f.correction IS NOT NULL AND r.model_id = $1 AND f.created_at < $2
       AND EXISTS (SELECT 1 FROM response_feedback n WHERE n.response_ref = f.response_ref AND n.negative AND n.created_at < $2)
     ORDER BY f.response_ref, f.created_at DESC, f.id DESC),
  examples AS (
    SELECT DISTINCT ON (h.k) h.k, btrim(r.query) AS query, btrim(c.correction) AS correction
      FROM corrected c JOIN llm_responses r ON r.id = c.response_ref,
           LATERAL (SELECT md5(btrim(regexp_replace(r.query, '\\s+', ' ', 'g')) || chr(31) || btrim(regexp_replace(c.correction, '\\s+', ' ', 'g'))) AS k) h
     WHERE btrim(r.query) <> '' AND btrim(c.correction) <> ''
     ORDER BY h.k, c.response_ref)`;

async function finish(stream: WriteStream): Promise<void> {
  await new Promise<void>((res, rej) => stream.end((err?: Error | null) => (err ? rej(err) : res())));
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes a job's dataset: `train.jsonl` and, when examples are held out, `validation.jsonl`, in
 * `<FINE_TUNE_DATA_DIR>/<job id>/`. Rows are streamed from Postgres in one repeatable-read
 * snapshot (the count that decides the split and the rows agree), written to temporary files,
 * flushed and renamed into place. The examples' text is never logged.
 */
export async function buildDataset(
  pool: pg.Pool,
  config: Pick<FineTuningConfig, 'FINE_TUNE_DATA_DIR' | 'FINE_TUNE_MIN_EXAMPLES' | 'FINE_TUNE_VALIDATION_SPLIT' | 'FINE_TUNE_SYSTEM_PROMPT'>,
  job: { id: string; modelId: string; createdAt: Date },
): Promise<BuiltDataset> {
  const paths = datasetPaths(config, job.id);
  const client = await pool.connect();
  const tmp = { training: `${paths.training}.tmp-${process.pid}`, validation: `${paths.validation}.tmp-${process.pid}` };
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const params = [job.modelId, job.createdAt];
    const n = (await client.query<{ n: number }>(`${EXAMPLES_SQL} SELECT count(*)::int AS n FROM examples`, params)).rows[0]!.n;
    if (n < config.FINE_TUNE_MIN_EXAMPLES) throw new DatasetTooSmallError(n, config.FINE_TUNE_MIN_EXAMPLES);
    const held = validationSize(n, config.FINE_TUNE_VALIDATION_SPLIT, config.FINE_TUNE_MIN_EXAMPLES);

    await mkdir(paths.dir, { recursive: true });
    const training = createWriteStream(tmp.training);
    const validation = held > 0 ? createWriteStream(tmp.validation) : undefined;
    const hash = createHash('sha256');
    let written = 0;
    let bytes = 0;
    const cursor = client.query(new Cursor<{ query: string; correction: string }>(`${EXAMPLES_SQL} SELECT query, correction FROM examples ORDER BY k`, params));
    try {
      for (;;) {
        const rows = await cursor.read(500);
        if (rows.length === 0) break;
        for (const row of rows) {
          const line = exampleLine(row.query, row.correction, config.FINE_TUNE_SYSTEM_PROMPT);
          const target = written < held ? validation! : training;
          bytes += Buffer.byteLength(line);
          hash.update(written < held ? 'v' : 't').update(line);
          written++;
          if (!target.write(line)) await new Promise<void>((r) => target.once('drain', () => r()));
        }
      }
    } finally {
      await cursor.close();
    }
    await client.query('COMMIT');
    await finish(training);
    if (validation) await finish(validation);
    await fsyncPath(tmp.training);
    await rename(tmp.training, paths.training);
    if (validation) {
      await fsyncPath(tmp.validation);
      await rename(tmp.validation, paths.validation);
    } else {
      await rm(paths.validation, { force: true });
    }
    await fsyncPath(paths.dir);
    return {
      paths,
      validationPath: validation ? paths.validation : null,
      trainingRows: written - held,
      validationRows: held,
      bytes,
      sha256: hash.digest('hex'),
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    await rm(tmp.training, { force: true });
    await rm(tmp.validation, { force: true });
    throw err;
  } finally {
    client.release();
  }
}

/** The dataset as written, if this host has it with the size recorded; undefined means rebuild. */
export async function existingDataset(paths: DatasetPaths, expected: { bytes: number | null; validationRows: number | null }): Promise<{ validationPath: string | null } | undefined> {
  if (expected.bytes === null) return undefined;
  const size = async (p: string) => stat(p).then((s) => s.size, () => undefined);
  const training = await size(paths.training);
  const validation = expected.validationRows ? await size(paths.validation) : 0;
  if (training === undefined || validation === undefined || training + validation !== expected.bytes) return undefined;
  return { validationPath: expected.validationRows ? paths.validation : null };
}
