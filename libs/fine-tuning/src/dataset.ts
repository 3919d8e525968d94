import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, truncate } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
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

/** md5 of the empty string: the key of a text that is all whitespace. */
export const BLANK = `'d41d8cd98f00b204e9800998ecf8427e'`;

/**
 * The examples of a model, deduplicated, in a fixed order: problematic responses (at least one
 * negative feedback) with their latest trusted correction (a server's, or a trusted publishable
 * key's), both given before `cutoff` ($2). Two examples
 * whose query and correction differ only in whitespace are one (their `query_key`/`correction_key`,
generated columns, match); an all-whitespace query or correction is left out. Ordered by a hash of the example,
 * which shuffles them (as training wants) yet gives the same file every time, so a rebuild on
 * another worker produces the same dataset.
 */
const EXAMPLES_SQL = `
  WITH corrected AS (
    SELECT DISTINCT ON (f.response_ref) f.response_ref, f.correction, f.correction_key
      FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref
     WHERE f.correction IS NOT NULL AND f.trusted AND r.model_id = $1 AND f.created_at < $2
       AND EXISTS (SELECT 1 FROM response_feedback n WHERE n.response_ref = f.response_ref AND n.negative AND n.created_at < $2)
     ORDER BY f.response_ref, f.created_at DESC, f.id DESC),
  examples AS (
    SELECT DISTINCT ON (k) md5(r.query_key || c.correction_key) AS k, r.query, c.correction
      FROM corrected c JOIN llm_responses r ON r.id = c.response_ref
     WHERE r.query_key <> ${BLANK} AND c.correction_key <> ${BLANK}
     ORDER BY k, c.response_ref)`;

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
 * `<FINE_TUNE_DATA_DIR>/<job id>/`. The rows are read once, by one cursor in a read-only snapshot,
 * into one temporary file; the split is known only at the end, so the last `held` lines (in hash
 * order, as random as any) are copied out to the validation file and the training file is
 * truncated before them. Both are flushed and renamed into place. The examples' text is never
 * logged.
 */
export async function buildDataset(
  pool: pg.Pool,
  config: Pick<FineTuningConfig, 'FINE_TUNE_DATA_DIR' | 'FINE_TUNE_MIN_EXAMPLES' | 'FINE_TUNE_VALIDATION_SPLIT' | 'FINE_TUNE_SYSTEM_PROMPT'>,
  job: { id: string; modelId: string; createdAt: Date },
): Promise<BuiltDataset> {
  const paths = datasetPaths(config, job.id);
  const tmp = { training: `${paths.training}.tmp-${process.pid}`, validation: `${paths.validation}.tmp-${process.pid}` };
  const hash = createHash('sha256');
  /** Where each line ends in the file, to cut it once the count is known. */
  let ends = new Float64Array(1024);
  let n = 0;
  let bytes = 0;
  try {
    await mkdir(paths.dir, { recursive: true });
    const client = await pool.connect();
    const out = createWriteStream(tmp.training);
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const cursor = client.query(new Cursor<{ query: string; correction: string }>(`${EXAMPLES_SQL} SELECT query, correction FROM examples ORDER BY k`, [job.modelId, job.createdAt]));
      try {
        for (;;) {
          const rows = await cursor.read(500);
          if (rows.length === 0) break;
          for (const row of rows) {
            const line = Buffer.from(exampleLine(row.query.trim(), row.correction.trim(), config.FINE_TUNE_SYSTEM_PROMPT));
            if (n === ends.length) {
              const grown = new Float64Array(ends.length * 2);
              grown.set(ends);
              ends = grown;
            }
            bytes += line.length;
            ends[n++] = bytes;
            hash.update(line);
            if (!out.write(line)) await new Promise<void>((r) => out.once('drain', () => r()));
          }
        }
      } finally {
        await cursor.close();
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      out.destroy();
      throw err;
    } finally {
      client.release();
    }
    await finish(out);
    if (n < config.FINE_TUNE_MIN_EXAMPLES) throw new DatasetTooSmallError(n, config.FINE_TUNE_MIN_EXAMPLES);
    const held = validationSize(n, config.FINE_TUNE_VALIDATION_SPLIT, config.FINE_TUNE_MIN_EXAMPLES);
    hash.update(`held:${held}`);
    if (held > 0) {
      const cut = ends[n - held - 1]!;
      await pipeline(createReadStream(tmp.training, { start: cut }), createWriteStream(tmp.validation));
      await truncate(tmp.training, cut);
      await fsyncPath(tmp.validation);
    }
    await fsyncPath(tmp.training);
    await rename(tmp.training, paths.training);
    if (held > 0) await rename(tmp.validation, paths.validation);
    else await rm(paths.validation, { force: true });
    await fsyncPath(paths.dir);
    return {
      paths,
      validationPath: held > 0 ? paths.validation : null,
      trainingRows: n - held,
      validationRows: held,
      bytes,
      sha256: hash.digest('hex'),
    };
  } catch (err) {
    await rm(tmp.training, { force: true });
    await rm(tmp.validation, { force: true });
    throw err;
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
