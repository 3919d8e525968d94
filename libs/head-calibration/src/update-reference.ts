import { appendOutbox, outboxEvent, type Database, type Executor, type Logger } from '@caliber/platform';
import { UnrecoverableError } from 'bullmq';
import { sql } from 'drizzle-orm';
import type { z } from 'zod';
import { referenceCalibrationPath, referenceLockKey, writeJsonAtomic } from './calibration-files.ts';
import { calibrationFileOf } from './calibrate-heads.ts';
import type { HeadCalibrationConfig } from './config.ts';
import type { LabelDetails } from './head-assessment.ts';
import { retagBacklogJob, type updateReferenceJob } from './jobs.ts';
import { calibrationReferences } from './schema.ts';

export type UpdateReferencePayload = z.infer<typeof updateReferenceJob.schema>;

/**
 * Installs run `version` of a head as its reference: writes `<head>-calibration.json` atomically,
 * then moves the pointer, both under a per-head lock. The pointer only moves forward among run
 * references (an import is always superseded), so a repeated or late job changes nothing.
 */
export async function updateHeadReference(
  db: Database,
  config: HeadCalibrationConfig,
  payload: UpdateReferencePayload,
  job: { log: Logger; jobKey: string },
): Promise<{ status: 'updated' | 'unchanged'; version: number; path: string; retag_queued?: boolean }> {
  const { log } = job;
  const { model_name: model, head_name: head, version } = payload;
  const path = referenceCalibrationPath(config.MODELS_DIR, model, head);
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext(${referenceLockKey(model, head)}))`);
    const run = (
      await tx.execute<{ file_count: number; timestamp: Date; details: { labels: Record<string, LabelDetails> } }>(sql`
        SELECT file_count, timestamp, details FROM calibration_runs
         WHERE model_name = ${model} AND head_name = ${head} AND version = ${version}`)
    ).rows[0];
    if (!run) throw new UnrecoverableError(`No calibration run ${version} for ${model}/${head}`);

    const current = (
      await tx.execute<{ version: number; source: string }>(sql`
        SELECT version, source FROM calibration_references WHERE model_name = ${model} AND head_name = ${head}`)
    ).rows[0];
    if (current && current.source === 'run' && current.version >= version) {
      log.info({ model, head, version, current: current.version }, 'reference already at or past this version');
      const retagQueued = config.AUTO_RETAG ? await queueRetagWhenRunInstalled(tx, version, job.jobKey) : undefined;
      return { status: 'unchanged' as const, version: current.version, path, ...(retagQueued ? { retag_queued: true } : {}) };
    }

    const file = calibrationFileOf(
      { modelName: model, headName: head, version, fileCount: run.file_count, createdAt: new Date(run.timestamp) },
      run.details.labels,
    );
    await writeJsonAtomic(path, file);
    await tx
      .insert(calibrationReferences)
      .values({ modelName: model, headName: head, version, labels: file.labels, source: 'run' })
      .onConflictDoUpdate({
        target: [calibrationReferences.modelName, calibrationReferences.headName],
        set: { version, labels: file.labels, source: 'run', updatedAt: sql`now()` },
      });
    log.info({ model, head, version, path }, 'reference updated');
    const retagQueued = config.AUTO_RETAG ? await queueRetagWhenRunInstalled(tx, version, job.jobKey) : undefined;
    return { status: 'updated' as const, version, path, ...(retagQueued ? { retag_queued: true } : {}) };
  });
}

/**
 * AUTO_RETAG: once every head a run moved has its reference at (or past) that run, queue the
 * re-tag of those heads' files, once. The run's row is locked first, so of several reference
 * updates finishing together exactly one sees the set complete, and the mark makes a retried job
 * add nothing.
 */
async function queueRetagWhenRunInstalled(tx: Executor, version: number, causedBy: string): Promise<boolean> {
  const run = (
    await tx.execute<{ updates: Record<string, 'updated' | 'kept'> | null; retag_requested_at: Date | null }>(sql`
      SELECT result -> 'calibration' -> 'reference_updates' AS updates, retag_requested_at
        FROM calibration_versions WHERE version = ${version} FOR UPDATE`)
  ).rows[0];
  if (!run || run.retag_requested_at) return false;
  const moved = Object.entries(run.updates ?? {})
    .filter(([, outcome]) => outcome === 'updated')
    .map(([key]) => {
      const [model_name, head_name] = key.split('/') as [string, string];
      return { model_name, head_name };
    })
    .sort((a, b) => (`${a.model_name}/${a.head_name}` < `${b.model_name}/${b.head_name}` ? -1 : 1));
  if (moved.length === 0) return false;
  const installed = (
    await tx.execute<{ n: number }>(sql`
      SELECT count(*)::int AS n FROM calibration_references r
        JOIN unnest(${sql.param(moved.map((h) => h.model_name))}::text[], ${sql.param(moved.map((h) => h.head_name))}::text[]) AS h(model_name, head_name)
          USING (model_name, head_name)
       WHERE r.source = 'run' AND r.version >= ${version}`)
  ).rows[0]!.n;
  if (installed < moved.length) return false;
  await tx.execute(sql`UPDATE calibration_versions SET retag_requested_at = now() WHERE version = ${version}`);
  await appendOutbox(tx, [outboxEvent(retagBacklogJob, { heads: moved, reason: `AUTO_RETAG after calibration run ${version}`, version })], causedBy);
  return true;
}
