import type { Database, Logger } from '@caliber/platform';
import { UnrecoverableError } from 'bullmq';
import { sql } from 'drizzle-orm';
import type { z } from 'zod';
import { referenceCalibrationPath, referenceLockKey, writeJsonAtomic } from './calibration-files.ts';
import { calibrationFileOf } from './calibrate-heads.ts';
import type { HeadCalibrationConfig } from './config.ts';
import type { LabelDetails } from './head-assessment.ts';
import type { updateReferenceJob } from './jobs.ts';
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
  log: Logger,
): Promise<{ status: 'updated' | 'unchanged'; version: number; path: string }> {
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
      return { status: 'unchanged' as const, version: current.version, path };
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
    return { status: 'updated' as const, version, path };
  });
}
