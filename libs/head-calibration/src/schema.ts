import {
  bigint,
  bigserial,
  boolean,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  serial,
  text,
  timestamp,
  unique,
} from 'drizzle-orm/pg-core';
import type { LabelCalibration } from './calibration-files.ts';

export const libraryFiles = pgTable(
  'library_files',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    path: text('path').notNull().unique(),
    /** When the file's scores were last ingested. */
    taggedAt: timestamp('tagged_at', { withTimezone: true }).notNull().defaultNow(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
);

/** One row per (file, model, head, label): the raw score and its calibrated value. */
export const libraryTags = pgTable(
  'library_tags',
  {
    fileId: bigint('file_id', { mode: 'number' })
      .notNull()
      .references(() => libraryFiles.id, { onDelete: 'cascade' }),
    modelName: text('model_name').notNull(),
    headName: text('head_name').notNull(),
    label: text('label').notNull(),
    rawScore: doublePrecision('raw_score').notNull(),
    calibratedScore: doublePrecision('calibrated_score'),
    /** The reference version the calibrated score was computed with; null when there was none. */
    calibrationVersion: integer('calibration_version'),
  },
  (t) => [
    // Serves as unique(file_id, model_name, head_name, label) and as the per-file lookup.
    primaryKey({ name: 'library_tags_pkey', columns: [t.fileId, t.modelName, t.headName, t.label] }),
  ],
);

/** One row per head per run; the run's version is shared by all heads. */
export const calibrationRuns = pgTable(
  'calibration_runs',
  {
    id: serial('id').primaryKey(),
    modelName: text('model_name').notNull(),
    headName: text('head_name').notNull(),
    version: integer('version').notNull(),
    fileCount: integer('file_count').notNull(),
    timestamp: timestamp('timestamp', { withTimezone: true }).notNull().defaultNow(),
    p5: doublePrecision('p5').notNull(),
    p95: doublePrecision('p95').notNull(),
    range: doublePrecision('range').notNull(),
    referenceVersion: integer('reference_version'),
    apdP5: doublePrecision('apd_p5'),
    apdP95: doublePrecision('apd_p95'),
    srd: doublePrecision('srd'),
    jsd: doublePrecision('jsd'),
    medianDrift: doublePrecision('median_drift'),
    iqrDrift: doublePrecision('iqr_drift'),
    isStable: boolean('is_stable').notNull(),
    /** Per-label statistics (percentiles, histogram, drift), thresholds and skipped labels. */
    details: jsonb('details').notNull(),
  },
  (t) => [
    unique('calibration_runs_model_head_version_key').on(t.modelName, t.headName, t.version),
    index('calibration_runs_version_idx').on(t.version.desc()),
  ],
);

/**
 * One row per run: the version it took, the job that made it (`jobKey`, so a retried job finds its
 * own run instead of making a second one) and the result it answered with.
 */
export const calibrationVersions = pgTable('calibration_versions', {
  version: integer('version').primaryKey(),
  jobId: text('job_id').notNull().unique(),
  librarySize: integer('library_size').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  result: jsonb('result').notNull(),
  /** Set once, when AUTO_RETAG queued the re-tag of the heads this run moved. */
  retagRequestedAt: timestamp('retag_requested_at', { withTimezone: true }),
});

/**
 * Marks that decide when work starts by itself, e.g. `new_files_watermark` for
 * NEW_FILES_RECALIBRATE: the highest library file id already counted into a calibration run.
 * Writers lock the row, so concurrent ingests take turns and a threshold fires once.
 */
export const calibrationTriggers = pgTable('calibration_triggers', {
  name: text('name').primaryKey(),
  value: bigint('value', { mode: 'number' }).notNull().default(0),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

/**
 * The calibration each head tags with: moved by `update-reference` (development) or by a bundle
 * import (production). `labels` holds `{ "<label>": { p5, p95, method, samples } }`.
 */
export const calibrationReferences = pgTable(
  'calibration_references',
  {
    modelName: text('model_name').notNull(),
    headName: text('head_name').notNull(),
    version: integer('version').notNull(),
    labels: jsonb('labels').$type<Record<string, LabelCalibration>>().notNull(),
    source: text('source', { enum: ['run', 'import'] }).notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: 'calibration_references_pkey', columns: [t.modelName, t.headName] })],
);

