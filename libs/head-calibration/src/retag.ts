import { createHash, randomBytes } from 'node:crypto';
import { jobKey, queuePrefix, withAdvisoryLock, type Executor, type JobContext, type Logger, type PlatformContext } from '@caliber/platform';
import { z } from '@hono/zod-openapi';
import { UnrecoverableError, type Queue } from 'bullmq';
import { sql, type SQL } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import type pg from 'pg';
import { AudioFileError, writeCalibratedTags, type CalibratedTag } from './audio-tags.ts';
import type { LabelCalibration } from './calibration-files.ts';
import type { HeadCalibrationConfig } from './config.ts';
import { retagFileJob, type retagBacklogJob } from './jobs.ts';

type HeadRef = { model_name: string; head_name: string };
export type RetagFilesPayload = z.infer<typeof retagFileJob.schema>;
type RetagBacklogPayload = z.infer<typeof retagBacklogJob.schema>;

/** Every head's reference calibration, one entry per label, as columns for `unnest`. */
export interface ReferenceLabels {
  models: string[];
  heads: string[];
  labels: string[];
  versions: number[];
  p5: number[];
  p95: number[];
}

/** `(t.model_name, t.head_name)` is one of `heads`. */
function headsFilter(heads: HeadRef[]): SQL {
  return sql`(t.model_name, t.head_name) IN (SELECT * FROM unnest(${sql.param(heads.map((h) => h.model_name))}::text[], ${sql.param(heads.map((h) => h.head_name))}::text[]))`;
}

/** The current references (of `heads`, or of every head), read once per job: a few rows per head. */
export async function loadReferenceLabels(db: Executor, heads?: HeadRef[]): Promise<ReferenceLabels> {
  const result = await db.execute<{ model_name: string; head_name: string; version: number; labels: Record<string, LabelCalibration> }>(
    sql`SELECT model_name, head_name, version, labels FROM calibration_references t
         ${heads ? sql`WHERE ${headsFilter(heads)}` : sql``}
         ORDER BY model_name, head_name`,
  );
  const refs: ReferenceLabels = { models: [], heads: [], labels: [], versions: [], p5: [], p95: [] };
  for (const row of result.rows) {
    for (const [label, calibration] of Object.entries(row.labels)) {
      refs.models.push(row.model_name);
      refs.heads.push(row.head_name);
      refs.labels.push(label);
      refs.versions.push(row.version);
      refs.p5.push(calibration.p5);
      refs.p95.push(calibration.p95);
    }
  }
  return refs;
}

/** `minmaxCalibrate` in SQL: clamp((raw − p5) / (p95 − p5), 0, 1), raw when p95 ≤ p5. */
const CALIBRATED = sql`CASE WHEN ref.p95 > ref.p5 THEN least(1::float8, greatest(0::float8, (t.raw_score - ref.p5) / (ref.p95 - ref.p5))) ELSE t.raw_score END`;

/**
 * The set-based re-tag: every tag of the selected files that has a reference label gets that
 * reference's calibrated value and version. The references travel as arrays (numbers in their
 * shortest round-trip form, so SQL computes exactly what `minmaxCalibrate` does), which also lets
 * the planner see their true size and hash-join them. Rows already right are not touched, so
 * running it twice changes nothing the second time; it returns the file id of each changed row.
 * (The benchmark's floor is the same statement over the whole table without that check.)
 */
export function retagStatement(refs: ReferenceLabels, fileFilter: SQL | undefined, opts: { onlyChanged?: boolean } = {}): SQL {
  const onlyChanged = opts.onlyChanged ?? true;
  return sql`
    UPDATE library_tags t
       SET calibrated_score = ${CALIBRATED}, calibration_version = ref.version
      FROM unnest(${sql.param(refs.models)}::text[], ${sql.param(refs.heads)}::text[], ${sql.param(refs.labels)}::text[],
                  ${sql.param(refs.versions)}::int[], ${sql.param(refs.p5)}::float8[], ${sql.param(refs.p95)}::float8[])
           AS ref(model_name, head_name, label, version, p5, p95)
     WHERE t.model_name = ref.model_name AND t.head_name = ref.head_name AND t.label = ref.label
       ${fileFilter ? sql`AND ${fileFilter}` : sql``}
       ${onlyChanged ? sql`AND (t.calibration_version IS DISTINCT FROM ref.version OR t.calibrated_score IS DISTINCT FROM ${CALIBRATED}) RETURNING t.file_id` : sql``}`;
}

/**
 * Re-tags the files with ids in [firstId, lastId] (a range scan of the tags' primary key) in one
 * statement; answers how many tag rows of each file changed.
 */
export async function retagRange(db: Executor, range: { firstId: number; lastId: number; heads?: HeadRef[] }): Promise<Map<number, number>> {
  const refs = await loadReferenceLabels(db, range.heads);
  const changed = new Map<number, number>();
  if (refs.labels.length === 0) return changed;
  const result = await db.execute<{ file_id: number }>(retagStatement(refs, sql`t.file_id BETWEEN ${range.firstId} AND ${range.lastId}`));
  for (const row of result.rows) changed.set(row.file_id, (changed.get(row.file_id) ?? 0) + 1);
  return changed;
}

/**
 * A short digest of every head's reference (version and install time). Retag jobs are
 * deduplicated on (id range, digest): while a range's job for the current references is pending,
 * asking again adds nothing; once any reference moves, the range can be queued again.
 */
export async function referenceDigest(db: Executor): Promise<string> {
  const result = await db.execute<{ refs: string | null }>(sql`
    SELECT string_agg(model_name || '/' || head_name || '@' || version || '@' || (extract(epoch FROM updated_at) * 1000000)::bigint,
                      ',' ORDER BY model_name, head_name) AS refs
      FROM calibration_references`);
  return digest(result.rows[0]?.refs ?? '');
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

// ---- Progress of the backlog, counted in files, kept in Redis beside the queue's own keys ----

type Progress = Pick<PlatformContext, 'config' | 'redis'>;

function enqueueingKey(platform: Pick<PlatformContext, 'config'>): string {
  return `${backlogKey(platform)}:enqueueing`;
}

function backlogKey(platform: Pick<PlatformContext, 'config'>): string {
  return `${queuePrefix(platform.config, 'retag-file')}:retag-file:caliber-backlog`;
}

function countedKey(platform: Pick<PlatformContext, 'config'>, key: string): string {
  return `${queuePrefix(platform.config, 'retag-file')}:retag-file:caliber-counted:${key}`;
}

const PENDING_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children'] as const;

async function pendingJobs(queue: Queue): Promise<{ pending: number; active: number }> {
  const counts = await queue.getJobCounts(...PENDING_STATES);
  return { pending: PENDING_STATES.reduce((n, s) => n + (counts[s] ?? 0), 0), active: counts.active ?? 0 };
}

/**
 * Adds a job's files to the done/failed counts once per job, however often the job runs: the
 * marker and the increments are one script, so a job retried after it was counted adds nothing.
 */
const COUNT_ONCE = `
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
  redis.call('HINCRBY', KEYS[1], 'done_files', ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'failed_files', ARGV[2])
  return 1
end
return 0`;

async function countFiles(platform: Progress, job: JobContext['job'], done: number, failed: number): Promise<void> {
  await platform.redis.eval(COUNT_ONCE, 2, backlogKey(platform), countedKey(platform, jobKey(job)), done, failed, 7 * 24 * 3600);
}

export const retagStatusSchema = z
  .object({
    state: z.enum(['idle', 'running']),
    total: z.number().int().openapi({ description: 'Files queued in the current (or last) backlog' }),
    done: z.number().int(),
    failed: z.number().int().openapi({ description: 'Files whose job failed for good (see Bull Board for the reasons)' }),
    remaining: z.number().int(),
    jobs: z.object({ pending: z.number().int(), active: z.number().int() }),
    rate_per_second: z.number().nullable().openapi({ description: 'Files finished per second since the backlog started (while running)' }),
    eta_seconds: z.number().nullable().openapi({ description: 'remaining / rate; 0 when idle, null before the first job finishes' }),
    started_at: z.string().nullable(),
  })
  .openapi('RetagStatus');

export type RetagStatus = z.infer<typeof retagStatusSchema>;

export async function retagStatus(platform: Pick<PlatformContext, 'queues' | 'redis' | 'config'>): Promise<RetagStatus> {
  const queue = platform.queues.connected(retagFileJob.queue);
  const [jobs, backlog, enqueueing] = await Promise.all([pendingJobs(queue), platform.redis.hgetall(backlogKey(platform)), platform.redis.exists(enqueueingKey(platform))]);
  const startedAt = backlog.started_at ? Number(backlog.started_at) : null;
  const total = Number(backlog.total_files ?? 0);
  const done = Number(backlog.done_files ?? 0);
  const failed = Number(backlog.failed_files ?? 0);
  const remaining = Math.max(0, total - done - failed);
  const running = jobs.pending > 0 || enqueueing > 0;
  const elapsed = startedAt ? (Date.now() - startedAt) / 1000 : 0;
  const rate = running && elapsed > 0 && done + failed > 0 ? (done + failed) / elapsed : null;
  return {
    state: running ? 'running' : 'idle',
    total,
    done,
    failed,
    remaining,
    jobs,
    rate_per_second: rate === null ? null : Number(rate.toFixed(1)),
    eta_seconds: !running ? 0 : rate ? Math.ceil(remaining / rate) : null,
    started_at: startedAt ? new Date(startedAt).toISOString() : null,
  };
}

// ---- Enqueueing ----

export interface RetagEnqueueResult {
  /** Files newly queued. */
  enqueued: number;
  /** Files whose range job for the current references was still pending, so nothing was added. */
  already_queued: number;
  /** Jobs added (each covers up to RETAG_BATCH_SIZE consecutive file ids). */
  jobs: number;
}

/**
 * Queues the re-tag of every tagged file (or of the files with scores of `heads`) as one job per
 * fixed range of RETAG_BATCH_SIZE file ids. One grouped query counts the tagged files per range,
 * so memory holds a count per range, never the library's file list.
 */
export async function enqueueRetagBacklog(
  platform: Pick<PlatformContext, 'db' | 'pool' | 'queues' | 'redis' | 'config'>,
  config: Pick<HeadCalibrationConfig, 'RETAG_BATCH_SIZE' | 'RETAG_ENQUEUE_CHUNK' | 'RETAG_KEEP_COMPLETED'>,
  opts: { heads?: RetagBacklogPayload['heads']; fromJob?: boolean } = {},
): Promise<RetagEnqueueResult> {
  const queue = platform.queues.connected(retagFileJob.queue);
  const size = config.RETAG_BATCH_SIZE;
  const heads = opts.heads ? [...opts.heads].sort((a, b) => `${a.model_name}/${a.head_name}`.localeCompare(`${b.model_name}/${b.head_name}`)) : undefined;
  // A heads-scoped job must not stand in for a full one, so the scope is part of the dedup id.
  const scope = heads ? `-h${digest(heads.map((h) => `${h.model_name}/${h.head_name}`).join(','))}` : '';
  // Job ids are unique per call, so an id BullMQ answers with that is not ours means "deduplicated".
  const call = randomBytes(5).toString('hex');

  // Enqueues take turns, so "is the queue idle? then start counting afresh" and the totals that
  // follow cannot interleave with another enqueue's.
  return withAdvisoryLock(platform.pool, 'caliber:retag-enqueue', async (client) => {
    const db = drizzle({ client });
    const [refs, ranges] = await Promise.all([
      referenceDigest(db),
      db.execute<{ k: number; files: number }>(sql`
        SELECT (f.id - 1) / ${size} AS k, count(*)::int AS files
          FROM library_files f
         WHERE EXISTS (SELECT 1 FROM library_tags t WHERE t.file_id = f.id ${heads ? sql`AND ${headsFilter(heads)}` : sql``})
         GROUP BY 1 ORDER BY 1`),
    ]);

    // The backlog job calling this is itself active on the queue.
    const { pending } = await pendingJobs(queue);
    if (pending <= (opts.fromJob ? 1 : 0)) {
      // Nothing else queued: this call starts a new backlog, and progress is counted from zero.
      // Marked as being enqueued until the totals are in: a status read in between must not call a
      // backlog that is starting "idle, 0 files" (it expires, should this process die meanwhile).
      await platform.redis
        .multi()
        .del(backlogKey(platform))
        .hset(backlogKey(platform), { started_at: Date.now(), total_files: 0, done_files: 0, failed_files: 0 })
        .set(enqueueingKey(platform), '1', 'PX', 120_000)
        .exec();
    }

    const result: RetagEnqueueResult = { enqueued: 0, already_queued: 0, jobs: 0 };
    try {
      for (let start = 0; start < ranges.rows.length; start += config.RETAG_ENQUEUE_CHUNK) {
        const chunk = ranges.rows.slice(start, start + config.RETAG_ENQUEUE_CHUNK);
        const added = await queue.addBulk(
          chunk.map(({ k, files }) => ({
            name: retagFileJob.name,
            data: retagFileJob.schema.parse({ first_id: k * size + 1, last_id: (k + 1) * size, files, heads }),
            opts: {
              jobId: `${call}-${k}`,
              deduplication: { id: `${size}-${k}-${refs}${scope}` },
              removeOnComplete: { count: config.RETAG_KEEP_COMPLETED },
            },
          })),
        );
        let files = 0;
        added.forEach((job, i) => {
          const range = chunk[i]!;
          if (job.id === `${call}-${range.k}`) {
            result.enqueued += range.files;
            result.jobs++;
            files += range.files;
          } else result.already_queued += range.files;
        });
        if (files > 0) await platform.redis.hincrby(backlogKey(platform), 'total_files', files);
      }
    } finally {
      await platform.redis.del(enqueueingKey(platform));
    }
    return result;
  });
}

// ---- Processing ----

export interface RetagFilesResult {
  first_id: number;
  last_id: number;
  files: number;
  /** Tag rows whose calibrated score or version changed (0 when every file was already right). */
  tags_changed: number;
  /** With RETAG_WRITE_FILES: audio files whose tags were written. */
  files_written?: number;
}

/**
 * Path and calibrated tags of each file of a range, in one query; with `heads`, only the files
 * that have tags of those heads (they are the ones a reference move touched), with all their tags.
 */
async function loadCalibratedTags(
  client: pg.ClientBase,
  range: { firstId: number; lastId: number; heads?: HeadRef[] },
): Promise<Map<number, { path: string; tags: CalibratedTag[] }>> {
  const { rows } = await client.query<CalibratedTag & { id: number; path: string }>(
    `SELECT f.id, f.path, t.model_name, t.head_name, t.label, t.calibrated_score
       FROM library_files f JOIN library_tags t ON t.file_id = f.id
      WHERE f.id BETWEEN $1 AND $2 AND t.calibrated_score IS NOT NULL
        AND ($3::text[] IS NULL OR EXISTS (
              SELECT 1 FROM library_tags h JOIN unnest($3::text[], $4::text[]) AS s(model_name, head_name) USING (model_name, head_name)
               WHERE h.file_id = f.id))
      ORDER BY f.id, t.model_name, t.head_name, t.label`,
    [range.firstId, range.lastId, range.heads?.map((h) => h.model_name) ?? null, range.heads?.map((h) => h.head_name) ?? null],
  );
  const byFile = new Map<number, { path: string; tags: CalibratedTag[] }>();
  for (const { id, path, ...tag } of rows) {
    const entry = byFile.get(id) ?? { path, tags: [] };
    entry.tags.push(tag);
    byFile.set(id, entry);
  }
  return byFile;
}

/** Runs `fn` over `items` with at most `limit` at once; answers each outcome in order. */
async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let nextIndex = 0;
  const lane = async () => {
    while (nextIndex < items.length) {
      const i = nextIndex++;
      results[i] = await fn(items[i] as T).then(
        (value) => ({ status: 'fulfilled', value }) as const,
        (reason: unknown) => ({ status: 'rejected', reason }) as const,
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

interface FileFailure {
  file_id: number;
  path: string;
  reason: string;
  detail: string;
}

/**
 * Writes the calibrated tags into the audio files of a range. A missing, corrupt or unsupported
 * file is reported and skipped, so it never holds up the others; any other error (a full disk, a
 * permission) is thrown and the job retried.
 */
async function writeAudioFiles(
  client: pg.ClientBase,
  config: Pick<HeadCalibrationConfig, 'RETAG_FILE_WRITES'>,
  range: { firstId: number; lastId: number; heads?: HeadRef[] },
  log: Logger,
): Promise<{ written: number; failures: FileFailure[] }> {
  const targets = [...(await loadCalibratedTags(client, range)).entries()];
  const settled = await mapLimited(targets, config.RETAG_FILE_WRITES, ([, file]) => writeCalibratedTags(file.path, file.tags));
  const failures: FileFailure[] = [];
  let written = 0;
  settled.forEach((outcome, i) => {
    const [id, file] = targets[i]!;
    if (outcome.status === 'fulfilled') written++;
    else if (outcome.reason instanceof AudioFileError) failures.push({ file_id: id, path: file.path, reason: outcome.reason.reason, detail: outcome.reason.message });
    else throw outcome.reason;
  });
  for (const f of failures) log.warn({ fileId: f.file_id, path: f.path, reason: f.reason }, 'audio file not tagged');
  return { written, failures };
}

function describeFailures(failures: FileFailure[], files: number): string {
  const shown = failures.slice(0, 5).map((f) => f.detail);
  const more = failures.length > shown.length ? `; and ${failures.length - shown.length} more (see the worker log)` : '';
  return `${failures.length} of ${files} audio file(s) could not be tagged (their database tags are updated): ${shown.join('; ')}${more}`;
}

/**
 * The `retag-file` processor: one UPDATE for the range's tags, then (RETAG_WRITE_FILES) the audio
 * files, all while holding the range's lock. Every step is idempotent, so a job
 * retried after a crash changes nothing twice in effect. The audio files are written whether or
 * not their rows changed now (ingest may have updated the database alone), so they end up agreeing
 * with it.
 */
export function retagFilesProcessor(config: HeadCalibrationConfig) {
  return async (payload: RetagFilesPayload, ctx: JobContext): Promise<RetagFilesResult> => {
    const { platform, job } = ctx;
    const range = { firstId: payload.first_id, lastId: payload.last_id, heads: payload.heads };
    // Two jobs for one range (queued under different references) take turns, so the later one's
    // values are the last written to the audio files as well as to the database.
    return withAdvisoryLock(platform.pool, ['caliber:retag-range', payload.first_id], async (client) => {
      const changed = await retagRange(drizzle({ client }), range);
      const result: RetagFilesResult = {
        first_id: payload.first_id,
        last_id: payload.last_id,
        files: payload.files,
        tags_changed: [...changed.values()].reduce((a, b) => a + b, 0),
      };
      let failures: FileFailure[] = [];
      if (config.RETAG_WRITE_FILES) {
        const written = await writeAudioFiles(client, config, range, ctx.log);
        result.files_written = written.written;
        failures = written.failures;
      }
      await countFiles(platform, job, Math.max(0, payload.files - failures.length), failures.length);
      if (failures.length > 0) throw new UnrecoverableError(describeFailures(failures, payload.files));
      return result;
    });
  };
}

/** A range job that failed for good counts its files as failed (unless it counted them already). */
export async function countFailedRetag(payload: RetagFilesPayload, ctx: JobContext): Promise<void> {
  await countFiles(ctx.platform, ctx.job, 0, payload.files);
}
