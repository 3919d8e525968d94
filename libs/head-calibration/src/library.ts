import { appendOutbox, groupBy, outboxEvent, type Database, type Executor } from '@caliber/platform';
import { z } from '@hono/zod-openapi';
import { asc, eq, gt, inArray, sql } from 'drizzle-orm';
import { labelSchema, NAME_PATTERN, type LabelCalibration } from './calibration-files.ts';
import type { HeadCalibrationConfig } from './config.ts';
import { calibrateHeadsJob } from './jobs.ts';
import { minmaxCalibrate } from './math.ts';
import { libraryFiles, libraryTags } from './schema.ts';

export const headKeySchema = z
  .string()
  .refine((key) => {
    const [model, head, extra] = key.split('/');
    return extra === undefined && NAME_PATTERN.test(model ?? '') && NAME_PATTERN.test(head ?? '');
  }, 'head keys are "<model>/<head>", each 1–128 of A–Z a–z 0–9 . _ - (not starting with . _ -)');

export const scoreSchema = z.number().min(0, 'a score is a number in [0, 1]').max(1, 'a score is a number in [0, 1]');

export const ingestRequestSchema = z
  .object({
    files: z
      .array(
        z.object({
          path: z
            .string()
            .min(1)
            .max(4096)
            .refine((p) => !p.includes('\u0000'), 'must not contain NUL'),
          scores: z.record(headKeySchema, z.record(labelSchema, scoreSchema)).default({}),
        }),
      )
      .min(1)
      .max(50_000),
  })
  .superRefine((body, ctx) => {
    const seen = new Set<string>();
    body.files.forEach((file, i) => {
      if (seen.has(file.path)) ctx.addIssue({ code: 'custom', path: ['files', i, 'path'], message: `duplicate path "${file.path}" in one request` });
      seen.add(file.path);
    });
  })
  .openapi('LibraryIngest', {
    example: { files: [{ path: '/music/a.mp3', scores: { 'effnet/mood_happy': { happy: 0.73, non_happy: 0.27 } } }] },
  });

export type IngestRequest = z.infer<typeof ingestRequestSchema>;

export interface HeadReference {
  modelName: string;
  headName: string;
  version: number;
  labels: Record<string, LabelCalibration>;
}

/** Current references of the given heads, keyed `model/head`. */
export async function loadReferences(db: Executor, heads: { model: string; head: string }[]): Promise<Map<string, HeadReference>> {
  if (heads.length === 0) return new Map();
  const result = await db.execute<{ model_name: string; head_name: string; version: number; labels: Record<string, LabelCalibration> }>(sql`
    SELECT r.model_name, r.head_name, r.version, r.labels
      FROM calibration_references r
      JOIN unnest(${sql.param(heads.map((h) => h.model))}::text[], ${sql.param(heads.map((h) => h.head))}::text[]) AS h(model_name, head_name)
        USING (model_name, head_name)`);
  return new Map(
    result.rows.map((r) => [`${r.model_name}/${r.head_name}`, { modelName: r.model_name, headName: r.head_name, version: r.version, labels: r.labels }]),
  );
}

/**
 * Upserts files and their raw scores in one transaction, calibrating each score with its head's
 * current reference. Two set-based statements whatever the batch size; rows are written in key
 * order so concurrent ingests of overlapping files cannot deadlock.
 */
export async function ingestLibraryFiles(
  db: Database,
  body: IngestRequest,
  config?: Pick<HeadCalibrationConfig, 'CALIBRATE_HEADS' | 'NEW_FILES_RECALIBRATE'>,
): Promise<{ files: number; tags: number; recalibration_queued?: true }> {
  const files = [...body.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const headKeys = new Set(files.flatMap((f) => Object.keys(f.scores)));
  const heads = [...headKeys].map((key) => {
    const [model, head] = key.split('/') as [string, string];
    return { model, head };
  });

  return db.transaction(async (tx) => {
    const upserted = await tx.execute<{ id: number; path: string; inserted: boolean }>(sql`
      INSERT INTO library_files (path)
      SELECT unnest(${sql.param(files.map((f) => f.path))}::text[])
      ON CONFLICT (path) DO UPDATE SET tagged_at = now()
      RETURNING id, path, (xmax = 0) AS inserted`);
    const idByPath = new Map(upserted.rows.map((r) => [r.path, r.id]));
    const references = await loadReferences(tx, heads);

    const fileIds: number[] = [];
    const models: string[] = [];
    const headNames: string[] = [];
    const labels: string[] = [];
    const raws: number[] = [];
    const calibrated: (number | null)[] = [];
    const versions: (number | null)[] = [];
    // Tag rows are written in file-id order, the order a re-tag job's UPDATE locks them in.
    const byId = files.map((file) => ({ file, fileId: idByPath.get(file.path) as number })).sort((a, b) => a.fileId - b.fileId);
    for (const { file, fileId } of byId) {
      for (const key of Object.keys(file.scores).sort()) {
        const [model, head] = key.split('/') as [string, string];
        const reference = references.get(key);
        const scores = file.scores[key] ?? {};
        for (const label of Object.keys(scores).sort()) {
          const raw = scores[label] as number;
          const labelRef = reference?.labels[label];
          fileIds.push(fileId);
          models.push(model);
          headNames.push(head);
          labels.push(label);
          raws.push(raw);
          calibrated.push(labelRef ? minmaxCalibrate(raw, labelRef.p5, labelRef.p95) : null);
          versions.push(labelRef ? (reference?.version ?? null) : null);
        }
      }
    }
    if (fileIds.length > 0) {
      await tx.execute(sql`
        INSERT INTO library_tags (file_id, model_name, head_name, label, raw_score, calibrated_score, calibration_version)
        SELECT * FROM unnest(
          ${sql.param(fileIds)}::bigint[], ${sql.param(models)}::text[], ${sql.param(headNames)}::text[],
          ${sql.param(labels)}::text[], ${sql.param(raws)}::float8[], ${sql.param(calibrated)}::float8[],
          ${sql.param(versions)}::int[])
        ON CONFLICT (file_id, model_name, head_name, label) DO UPDATE
          SET raw_score = excluded.raw_score,
              calibrated_score = excluded.calibrated_score,
              calibration_version = excluded.calibration_version`);
    }
    const inserted = new Set(upserted.rows.filter((r) => r.inserted).map((r) => r.path));
    const newTagged = files.some((f) => inserted.has(f.path) && Object.values(f.scores).some((labels) => Object.keys(labels).length > 0));
    const recalibrate = config?.CALIBRATE_HEADS && config.NEW_FILES_RECALIBRATE > 0 && newTagged
      ? await recalibrateOnNewFiles(tx, config.NEW_FILES_RECALIBRATE)
      : false;
    return { files: files.length, tags: fileIds.length, ...(recalibrate ? { recalibration_queued: true as const } : {}) };
  });
}

export const NEW_FILES_WATERMARK = 'new_files_watermark';

/**
 * NEW_FILES_RECALIBRATE: counts the tagged files added since the watermark (the last file a run
 * covered or a trigger counted) and, at the threshold, moves the watermark past them and queues a
 * calibration run through the outbox (so only if this ingest commits). The watermark row is
 * locked, so concurrent ingests take turns and the threshold fires once.
 */
async function recalibrateOnNewFiles(tx: Executor, threshold: number): Promise<boolean> {
  await tx.execute(sql`INSERT INTO calibration_triggers (name, value) VALUES (${NEW_FILES_WATERMARK}, 0) ON CONFLICT (name) DO NOTHING`);
  const { value: watermark } = (
    await tx.execute<{ value: number }>(sql`SELECT value FROM calibration_triggers WHERE name = ${NEW_FILES_WATERMARK} FOR UPDATE`)
  ).rows[0]!;
  const { n, last } = (
    await tx.execute<{ n: number; last: number | null }>(sql`
      SELECT count(*)::int AS n, max(f.id) AS last FROM library_files f
       WHERE f.id > ${watermark} AND EXISTS (SELECT 1 FROM library_tags t WHERE t.file_id = f.id)`)
  ).rows[0]!;
  if (n < threshold || last === null) return false;
  await tx.execute(sql`UPDATE calibration_triggers SET value = ${last}, updated_at = now() WHERE name = ${NEW_FILES_WATERMARK}`);
  await appendOutbox(tx, [outboxEvent(calibrateHeadsJob, { requested_by: `NEW_FILES_RECALIBRATE (${n} new tagged files)` })]);
  return true;
}

export const tagSchema = z
  .object({
    model_name: z.string(),
    head_name: z.string(),
    label: z.string(),
    raw_score: z.number(),
    calibrated_score: z.number().nullable(),
    calibration_version: z.number().int().nullable(),
  })
  .openapi('LibraryTag');

export const libraryFileSchema = z
  .object({ id: z.number().int(), path: z.string(), tagged_at: z.string(), tags: z.array(tagSchema) })
  .openapi('LibraryFile');

export type LibraryFileView = z.infer<typeof libraryFileSchema>;

/** Files with their tags: one query for the files, one for all their tags. */
export async function loadLibraryFiles(
  db: Executor,
  where: { id: number } | { path: string } | { afterId: number; limit: number },
): Promise<LibraryFileView[]> {
  const columns = { id: libraryFiles.id, path: libraryFiles.path, taggedAt: libraryFiles.taggedAt };
  const files =
    'id' in where
      ? await db.select(columns).from(libraryFiles).where(eq(libraryFiles.id, where.id))
      : 'path' in where
        ? await db.select(columns).from(libraryFiles).where(eq(libraryFiles.path, where.path))
        : await db.select(columns).from(libraryFiles).where(gt(libraryFiles.id, where.afterId)).orderBy(asc(libraryFiles.id)).limit(where.limit);
  if (files.length === 0) return [];
  const tags = await db
    .select({
      fileId: libraryTags.fileId,
      model_name: libraryTags.modelName,
      head_name: libraryTags.headName,
      label: libraryTags.label,
      raw_score: libraryTags.rawScore,
      calibrated_score: libraryTags.calibratedScore,
      calibration_version: libraryTags.calibrationVersion,
    })
    .from(libraryTags)
    .where(inArray(libraryTags.fileId, files.map((f) => f.id)))
    .orderBy(libraryTags.fileId, libraryTags.modelName, libraryTags.headName, libraryTags.label);
  const byFile = groupBy(tags, (t) => t.fileId);
  return files.map((f) => ({
    id: f.id,
    path: f.path,
    tagged_at: f.taggedAt.toISOString(),
    tags: (byFile.get(f.id) ?? []).map(({ fileId: _, ...tag }) => tag),
  }));
}
