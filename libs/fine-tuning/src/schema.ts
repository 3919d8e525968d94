import { sql } from 'drizzle-orm';
import { bigint, bigserial, check, index, integer, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { errorAnalysisRuns } from '@caliber/response-quality/schema';

export const FINE_TUNE_STATUSES = ['pending', 'preparing', 'dataset_ready', 'submitted', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type FineTuneStatus = (typeof FINE_TUNE_STATUSES)[number];
export const TERMINAL_STATUSES = ['succeeded', 'failed', 'cancelled'] as const satisfies readonly FineTuneStatus[];
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];

/** Someone credits are granted to and jobs are charged to. Its balance is the sum of its ledger. */
export const creditAccounts = pgTable('credit_accounts', {
  id: text('id').primaryKey(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

/**
 * A fine-tuning job: its lifecycle (pending → preparing → dataset_ready → submitted → running →
 * succeeded | failed | cancelled), what it was built from and what the provider made of it.
 */
export const fineTuningJobs = pgTable(
  'fine_tuning_jobs',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    modelId: text('model_id').notNull(),
    accountId: text('account_id').notNull().references(() => creditAccounts.id),
    provider: text('provider').notNull(),
    baseModel: text('base_model').notNull(),
    status: text('status', { enum: FINE_TUNE_STATUSES }).notNull().default('pending'),
    /** `api` (created by a caller) or `auto` (by an analyze-errors run, AUTO_FINE_TUNE). */
    trigger: text('trigger', { enum: ['api', 'auto'] }).notNull().default('api'),
    analysisRunId: integer('analysis_run_id').references(() => errorAnalysisRuns.id, { onDelete: 'set null' }),
    providerJobId: text('provider_job_id'),
    /** Uploaded before the provider job is created; a retried submit finds its job by this file. */
    providerTrainingFileId: text('provider_training_file_id'),
    providerValidationFileId: text('provider_validation_file_id'),
    fineTunedModel: text('fine_tuned_model'),
    datasetPath: text('dataset_path'),
    datasetRows: integer('dataset_rows'),
    validationRows: integer('validation_rows'),
    datasetBytes: bigint('dataset_bytes', { mode: 'number' }),
    datasetSha256: text('dataset_sha256'),
    creditsReserved: integer('credits_reserved').notNull().default(0),
    error: text('error'),
    /** The BullMQ job (`fine-tune` queue) running this one. */
    queueJobId: text('queue_job_id'),
    cancelRequestedAt: timestamp('cancel_requested_at', { withTimezone: true }),
    /** When the cancel was passed on to the provider (a command gets SIGKILL FINE_TUNE_KILL_GRACE_MS later). */
    cancelSentAt: timestamp('cancel_sent_at', { withTimezone: true }),
    /** Bytes of a training command's output already copied into the job's log. */
    outputOffset: bigint('output_offset', { mode: 'number' }).notNull().default(0),
    /** Output lines seen; FINE_TUNE_LOG_MAX_LINES of them are kept in the log. */
    outputLines: integer('output_lines').notNull().default(0),
    /** Polls in a row that failed; reset by a successful one. */
    pollFailures: integer('poll_failures').notNull().default(0),
    /** Times the training was started (a command restarts after losing its worker). */
    runs: integer('runs').notNull().default(0),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    startedAt: timestamp('started_at', { withTimezone: true }),
    preparedAt: timestamp('prepared_at', { withTimezone: true }),
    submittedAt: timestamp('submitted_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [
    index('fine_tuning_jobs_created_idx').on(t.createdAt, t.id),
    index('fine_tuning_jobs_model_idx').on(t.modelId, t.createdAt),
    index('fine_tuning_jobs_account_idx').on(t.accountId, t.createdAt),
    index('fine_tuning_jobs_active_idx')
      .on(t.status)
      .where(sql`${t.status} NOT IN ('succeeded', 'failed', 'cancelled')`),
    // An analyze-errors run starts at most one job per model, however often its check is retried.
    uniqueIndex('fine_tuning_jobs_run_model_idx')
      .on(t.analysisRunId, t.modelId)
      .where(sql`${t.analysisRunId} IS NOT NULL`),
  ],
);

/**
 * Append-only (a trigger refuses UPDATE and DELETE): grants (+), reservations (−cost when a job
 * starts), then exactly one settlement (0: the reservation is charged) or refund (+cost) per job.
 */
export const creditLedger = pgTable(
  'credit_ledger',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    accountId: text('account_id').notNull().references(() => creditAccounts.id),
    kind: text('kind', { enum: ['grant', 'reserve', 'settle', 'refund'] }).notNull(),
    amount: integer('amount').notNull(),
    jobId: uuid('job_id').references(() => fineTuningJobs.id),
    note: text('note'),
    /** A grant sent again with the same key is stored once. */
    idempotencyKey: text('idempotency_key').unique(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('credit_ledger_account_idx').on(t.accountId, t.id),
    uniqueIndex('credit_ledger_job_kind_idx')
      .on(t.jobId, t.kind)
      .where(sql`${t.jobId} IS NOT NULL`),
    // Settled or refunded, never both.
    uniqueIndex('credit_ledger_job_outcome_idx')
      .on(t.jobId)
      .where(sql`${t.kind} IN ('settle', 'refund')`),
    check(
      'credit_ledger_shape',
      sql`(${t.kind} = 'grant' AND ${t.amount} > 0 AND ${t.jobId} IS NULL)
       OR (${t.kind} = 'reserve' AND ${t.amount} <= 0 AND ${t.jobId} IS NOT NULL)
       OR (${t.kind} = 'settle' AND ${t.amount} = 0 AND ${t.jobId} IS NOT NULL)
       OR (${t.kind} = 'refund' AND ${t.amount} >= 0 AND ${t.jobId} IS NOT NULL)`,
    ),
  ],
);

/** A job's log: its status changes, the provider's events, a training command's output. */
export const fineTuningJobEvents = pgTable(
  'fine_tuning_job_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    jobId: uuid('job_id')
      .notNull()
      .references(() => fineTuningJobs.id, { onDelete: 'cascade' }),
    kind: text('kind', { enum: ['status', 'provider', 'output', 'info'] }).notNull(),
    message: text('message').notNull(),
    /** The provider's id of the event, so one seen on several polls is stored once. */
    providerEventId: text('provider_event_id'),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('fine_tuning_job_events_job_idx').on(t.jobId, t.id),
    uniqueIndex('fine_tuning_job_events_provider_idx')
      .on(t.jobId, t.providerEventId)
      .where(sql`${t.providerEventId} IS NOT NULL`),
  ],
);
