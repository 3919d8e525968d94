import { appendOutbox, outboxEvent, withAdvisoryLock, type JobContext, type PlatformContext } from '@caliber/platform';
import { UnrecoverableError } from 'bullmq';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import type pg from 'pg';
import Cursor from 'pg-cursor';
import { versionedCalibrationPath, writeJsonAtomic, type CalibrationFile, type LabelCalibration } from './calibration-files.ts';
import { thresholdsFor, type HeadCalibrationConfig } from './config.ts';
import { assessHead, type HeadAssessment, type HeadReferenceStatistics, type LabelDetails } from './head-assessment.ts';
import { updateReferenceJob } from './jobs.ts';
import { DRIFT_METRICS, histogram, summarizeSorted, type LabelStatistics } from './math.ts';
import { NEW_FILES_WATERMARK } from './library.ts';
import { calibrationRuns, calibrationVersions } from './schema.ts';

/** Session-level advisory lock that serialises calibration runs across all workers. */
const RUN_LOCK = 'caliber:calibrate-heads';

export interface SkippedLabel {
  model_name: string;
  head_name: string;
  label: string;
  samples: number;
}

/** The seed's response shape for `POST /admin/calibration/run`. */
export interface CalibrationResult {
  status: 'ok';
  calibration: {
    version: number;
    library_size: number;
    heads: Record<string, ReturnType<typeof headResult>>;
    saved_files: Record<string, string>;
    reference_updates: Record<string, 'updated' | 'kept'>;
    skipped_labels: SkippedLabel[];
    summary: { total_heads: number; stable_heads: number; unstable_heads: number };
  };
}

/**
 * Decodes Postgres' binary array format (`array_send` of a float8[]): a header of ndim, flags and
 * element type, one (size, lower bound) pair per dimension, then (length, 8-byte big-endian double)
 * per element.
 */
export function decodeFloat8Array(buf: Buffer): Float64Array {
  const ndim = buf.readInt32BE(0);
  if (ndim === 0) return new Float64Array(0);
  if (ndim !== 1) throw new Error(`expected a 1-d array, got ${ndim} dimensions`);
  const n = buf.readInt32BE(12);
  const out = new Float64Array(n);
  let offset = 20;
  for (let i = 0; i < n; i++) {
    if (buf.readInt32BE(offset) !== 8) throw new Error('unexpected NULL or non-float8 element');
    out[i] = buf.readDoubleBE(offset + 4);
    offset += 12;
  }
  return out;
}

/** What a calibration keeps of each label's statistics: the min-max parameters. */
function labelCalibrations(labels: Record<string, { p5: number; p95: number; samples: number }>): Record<string, LabelCalibration> {
  return Object.fromEntries(Object.entries(labels).map(([label, l]) => [label, { p5: l.p5, p95: l.p95, method: 'minmax' as const, samples: l.samples }]));
}

/** The versioned (and, once installed, reference) calibration file of one head of a run. */
export function calibrationFileOf(
  run: { modelName: string; headName: string; version: number; fileCount: number; createdAt: Date },
  labels: Record<string, { p5: number; p95: number; samples: number }>,
): CalibrationFile {
  return {
    model_name: run.modelName,
    head_name: run.headName,
    version: run.version,
    file_count: run.fileCount,
    created_at: run.createdAt.toISOString(),
    labels: labelCalibrations(labels),
  };
}

function headResult(a: HeadAssessment) {
  const nullMetrics = Object.fromEntries(DRIFT_METRICS.map((m) => [m, null])) as Record<(typeof DRIFT_METRICS)[number], null>;
  return {
    model_name: a.modelName,
    head_name: a.headName,
    labels: labelCalibrations(a.labels),
    drift_metrics: { ...(a.metrics ?? nullMetrics), is_stable: a.isStable, failed_metrics: a.failedMetrics },
    is_stable: a.isStable,
    reference_version: a.referenceVersion,
  };
}

/**
 * The statistics each head is compared with: those of its latest unstable run, because every
 * unstable run moves the head's reference to its own version (and stable runs keep it). Reading
 * this from the runs rather than from the reference pointer keeps back-to-back runs correct even
 * while an earlier run's `update-reference` jobs are still queued.
 */
async function loadDriftReferences(client: pg.PoolClient): Promise<Map<string, HeadReferenceStatistics>> {
  const { rows } = await client.query<{ model_name: string; head_name: string; version: number; details: { labels: Record<string, LabelStatistics> } }>(
    `SELECT DISTINCT ON (model_name, head_name) model_name, head_name, version, details
       FROM calibration_runs WHERE NOT is_stable
      ORDER BY model_name, head_name, version DESC`,
  );
  return new Map(rows.map((r) => [`${r.model_name}/${r.head_name}`, { version: r.version, labels: r.details.labels }]));
}

interface LabelRow {
  model_name: string;
  head_name: string;
  label: string;
  n: number;
  scores: Buffer | null;
}

/**
 * Computes one calibration run over every score in the library and commits it with its outbox
 * events. Postgres groups and sorts each label's scores (the same work `percentile_cont` does) and
 * streams them one label at a time, so memory holds one label and the event loop is never blocked
 * for long. Runs are serialised by an advisory lock; a retried job returns the run it already
 * committed instead of making another.
 */
export async function runHeadCalibration(
  platform: Pick<PlatformContext, 'pool' | 'log'>,
  config: HeadCalibrationConfig,
  job: Pick<JobContext, 'jobKey' | 'log'> & { progress?: (p: object) => Promise<void> },
): Promise<CalibrationResult> {
  if (!config.CALIBRATE_HEADS) {
    // Production mode tags with installed references only; a stray or hand-started run must not move them.
    throw new UnrecoverableError('Calibration runs are disabled (CALIBRATE_HEADS=false)');
  }
  return withAdvisoryLock(platform.pool, RUN_LOCK, async (client) => {
    const done = await client.query<{ result: CalibrationResult }>('SELECT result FROM calibration_versions WHERE job_id = $1', [job.jobKey]);
    if (done.rows[0]) {
      job.log.info('run already committed by an earlier attempt; returning it');
      return done.rows[0].result;
    }
    const version = (await client.query<{ v: number }>('SELECT coalesce(max(version), 0) + 1 AS v FROM calibration_versions')).rows[0]!.v;
    const librarySize = (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM library_files')).rows[0]!.n;
    const references = await loadDriftReferences(client);
    // Files up to here are covered by this run (NEW_FILES_RECALIBRATE counts from the next one).
    const lastFileCovered = (await client.query<{ id: number }>('SELECT coalesce(max(id), 0) AS id FROM library_files')).rows[0]!.id;
    job.log.info({ version, librarySize }, 'calibration run started');

    // Per head: label → statistics, filled label by label from the stream.
    const heads = new Map<string, { model: string; head: string; labels: Record<string, LabelStatistics> }>();
    const skipped: SkippedLabel[] = [];
    const cursor = client.query(
      new Cursor<LabelRow>(
        `SELECT model_name, head_name, label, count(*)::int AS n,
                CASE WHEN count(*) >= $1 THEN array_send(array_agg(raw_score ORDER BY raw_score)) END AS scores
           FROM library_tags GROUP BY model_name, head_name, label
          ORDER BY model_name, head_name, label`,
        [config.CALIBRATION_MIN_SAMPLES],
      ),
    );
    try {
      let labelsRead = 0;
      for (;;) {
        const rows = await cursor.read(1);
        const row = rows[0];
        if (!row) break;
        labelsRead++;
        if (!row.scores) {
          skipped.push({ model_name: row.model_name, head_name: row.head_name, label: row.label, samples: row.n });
          continue;
        }
        const sorted = decodeFloat8Array(row.scores);
        const key = `${row.model_name}/${row.head_name}`;
        const entry = heads.get(key) ?? { model: row.model_name, head: row.head_name, labels: {} };
        entry.labels[row.label] = { ...summarizeSorted(sorted), histogram: histogram(sorted, config.JSD_BINS) };
        heads.set(key, entry);
        if (labelsRead % 10 === 0) await job.progress?.({ stage: 'computing', labels: labelsRead });
      }
    } finally {
      await cursor.close();
    }

    if (heads.size === 0) {
      throw new UnrecoverableError(
        skipped.length > 0
          ? `No label has at least ${config.CALIBRATION_MIN_SAMPLES} scores (CALIBRATION_MIN_SAMPLES); ${skipped.length} label(s) skipped. Tag more files or lower the setting.`
          : 'The library has no scores yet; ingest files with POST /library/files first.',
      );
    }

    const createdAt = new Date();
    const assessments = [...heads.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([key, h]) =>
        assessHead({
          modelName: h.model,
          headName: h.head,
          labels: h.labels,
          reference: references.get(key),
          thresholds: thresholdsFor(config, h.model, h.head),
        }),
      );

    await job.progress?.({ stage: 'writing files', heads: assessments.length });
    const savedFiles: Record<string, string> = {};
    for (const a of assessments) {
      const path = versionedCalibrationPath(config.MODELS_DIR, a.modelName, a.headName, version);
      await writeJsonAtomic(path, calibrationFileOf({ ...a, version, createdAt }, a.labels));
      savedFiles[`${a.modelName}/${a.headName}`] = path;
    }

    const result: CalibrationResult = {
      status: 'ok',
      calibration: {
        version,
        library_size: librarySize,
        heads: Object.fromEntries(assessments.map((a) => [`${a.modelName}/${a.headName}`, headResult(a)])),
        saved_files: savedFiles,
        reference_updates: Object.fromEntries(assessments.map((a) => [`${a.modelName}/${a.headName}`, a.isStable ? 'kept' : 'updated'])),
        skipped_labels: skipped,
        summary: {
          total_heads: assessments.length,
          stable_heads: assessments.filter((a) => a.isStable).length,
          unstable_heads: assessments.filter((a) => !a.isStable).length,
        },
      },
    };

    const db = drizzle({ client });
    await db.transaction(async (tx) => {
      await tx.insert(calibrationRuns).values(
        assessments.map((a) => ({
          modelName: a.modelName,
          headName: a.headName,
          version,
          fileCount: a.fileCount,
          timestamp: createdAt,
          p5: a.p5,
          p95: a.p95,
          range: a.range,
          referenceVersion: a.referenceVersion,
          apdP5: a.metrics?.apd_p5 ?? null,
          apdP95: a.metrics?.apd_p95 ?? null,
          srd: a.metrics?.srd ?? null,
          jsd: a.metrics?.jsd ?? null,
          medianDrift: a.metrics?.median_drift ?? null,
          iqrDrift: a.metrics?.iqr_drift ?? null,
          isStable: a.isStable,
          details: {
            labels: a.labels satisfies Record<string, LabelDetails>,
            failed_metrics: a.failedMetrics,
            thresholds: a.thresholds,
            skipped_labels: skipped.filter((s) => s.model_name === a.modelName && s.head_name === a.headName),
            jsd_bins: config.JSD_BINS,
          },
        })),
      );
      await tx.insert(calibrationVersions).values({ version, jobId: job.jobKey, librarySize, result });
      await tx.execute(sql`
        INSERT INTO calibration_triggers (name, value) VALUES (${NEW_FILES_WATERMARK}, ${lastFileCovered})
        ON CONFLICT (name) DO UPDATE SET value = greatest(calibration_triggers.value, excluded.value), updated_at = now()`);
      await appendOutbox(
        tx,
        assessments
          .filter((a) => !a.isStable)
          .map((a) => outboxEvent(updateReferenceJob, { model_name: a.modelName, head_name: a.headName, version })),
        job.jobKey,
      );
    });
    job.log.info(result.calibration.summary, 'calibration run committed');
    return result;
  });
}
