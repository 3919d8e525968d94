import { appendOutbox, defineJob, outboxEvent, outboxJobId, type Database, type Executor } from '@caliber/platform';
import { and, eq, inArray, sql, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { closeReservation, reserveCredits } from './credits.ts';
import { fineTuningJobEvents, fineTuningJobs, FINE_TUNE_STATUSES, TERMINAL_STATUSES, type FineTuneStatus, type TerminalStatus } from './schema.ts';

/** Runs one fine-tuning job through its lifecycle; re-enqueued (delayed) while the provider trains. */
export const runFineTuneJob = defineJob('fine-tune', 'run', z.object({ fine_tuning_job_id: z.uuid() }));

/** Finds jobs whose queue job was lost, or failed without the job being ended (schedule). */
export const reconcileFineTuneJobs = defineJob('fine-tune', 'reconcile', z.object({ requested_by: z.string().max(200).optional() }));

export type FineTuneJobRow = typeof fineTuningJobs.$inferSelect;

export const isTerminal = (status: string): status is TerminalStatus => (TERMINAL_STATUSES as readonly string[]).includes(status);
export const ACTIVE_STATUSES = FINE_TUNE_STATUSES.filter((s) => !isTerminal(s));

/** The outbox cause of a job's run events, so `?wait=true` can find the queue job. */
export const runCause = (jobId: string) => `fine-tuning/${jobId}`;

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** Credits of a job, read off its status: the reservation is closed in the transaction that ends it. */
function creditsState(row: FineTuneJobRow): 'none' | 'reserved' | 'charged' | 'refunded' {
  if (!row.startedAt) return 'none';
  if (row.status === 'succeeded') return 'charged';
  if (row.status === 'failed' || row.status === 'cancelled') return 'refunded';
  return 'reserved';
}

/** A job as the API shows it. */
export function describeFineTuneJob(row: FineTuneJobRow) {
  return {
    id: row.id,
    model_id: row.modelId,
    account_id: row.accountId,
    status: row.status,
    provider: row.provider,
    base_model: row.baseModel,
    trigger: row.trigger,
    analysis_run_id: row.analysisRunId,
    provider_job_id: row.providerJobId,
    fine_tuned_model: row.fineTunedModel,
    dataset_path: row.datasetPath,
    dataset_rows: row.datasetRows,
    validation_rows: row.validationRows,
    dataset_bytes: row.datasetBytes,
    credits_reserved: row.creditsReserved,
    credits: creditsState(row),
    error: row.error,
    runs: row.runs,
    queue_job: row.queueJobId ? { jobId: row.queueJobId, queue: 'fine-tune', status: `/admin/jobs/fine-tune/${row.queueJobId}` } : null,
    cancel_requested_at: iso(row.cancelRequestedAt),
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
    started_at: iso(row.startedAt),
    prepared_at: iso(row.preparedAt),
    submitted_at: iso(row.submittedAt),
    finished_at: iso(row.finishedAt),
  };
}
export type FineTuneJobView = ReturnType<typeof describeFineTuneJob>;

export async function loadJob(db: Pick<Executor, 'select'>, id: string, opts: { lock?: boolean } = {}): Promise<FineTuneJobRow | undefined> {
  const q = db.select().from(fineTuningJobs).where(eq(fineTuningJobs.id, id));
  const rows = opts.lock ? await q.for('update') : await q;
  return rows[0];
}

export async function addEvents(db: Pick<Executor, 'insert'>, jobId: string, events: { kind: 'status' | 'provider' | 'output' | 'info'; message: string; at?: Date; providerEventId?: string }[]): Promise<void> {
  if (events.length === 0) return;
  await db
    .insert(fineTuningJobEvents)
    .values(events.map((e) => ({ jobId, kind: e.kind, message: e.message, at: e.at, providerEventId: e.providerEventId })))
    .onConflictDoNothing();
}

type JobInsert = Omit<typeof fineTuningJobs.$inferInsert, 'id' | 'status'>;
type JobPatch = { [K in keyof JobInsert]?: JobInsert[K] | SQL };

/**
 * Moves a job from one of `from` to `to` (compare-and-set, so the gateway and any worker can race
 * on a job and exactly one move happens) and logs it. Undefined when the job was not in `from`.
 */
export async function transition(tx: Executor, id: string, from: readonly FineTuneStatus[], to: FineTuneStatus, patch: JobPatch, message: string): Promise<FineTuneJobRow | undefined> {
  const [row] = await tx
    .update(fineTuningJobs)
    .set({ ...patch, status: to, updatedAt: sql`now()` })
    .where(and(eq(fineTuningJobs.id, id), inArray(fineTuningJobs.status, [...from])))
    .returning();
  if (row) await addEvents(tx, id, [{ kind: 'status', message: `${to}: ${message}` }]);
  return row;
}

/** Updates fields of a job that has not ended (no status change). */
export async function patchActiveJob(db: Pick<Executor, 'update'>, id: string, patch: JobPatch): Promise<FineTuneJobRow | undefined> {
  const [row] = await db
    .update(fineTuningJobs)
    .set({ ...patch, updatedAt: sql`now()` })
    .where(and(eq(fineTuningJobs.id, id), inArray(fineTuningJobs.status, ACTIVE_STATUSES)))
    .returning();
  return row;
}

/**
 * Ends a job (from any status not yet ended, or from `from`) and closes its credit reservation in
 * the same transaction: charged when it succeeded, refunded when it failed or was cancelled.
 * Returns the row as it is afterwards, and whether this call ended it.
 */
export async function endJobInTx(
  tx: Executor,
  id: string,
  to: TerminalStatus,
  outcome: { error?: string | null; fineTunedModel?: string | null; message: string },
  from: readonly FineTuneStatus[] = ACTIVE_STATUSES,
): Promise<{ row: FineTuneJobRow | undefined; ended: boolean }> {
  const row = await transition(
    tx,
    id,
    from,
    to,
    { finishedAt: sql`now()`, error: outcome.error?.slice(0, 4000) ?? null, ...(outcome.fineTunedModel ? { fineTunedModel: outcome.fineTunedModel } : {}) },
    outcome.message,
  );
  if (!row) return { row: await loadJob(tx, id), ended: false };
  if (row.startedAt) {
    const credits = to === 'succeeded' ? 'settle' : 'refund';
    const amount = await closeReservation(tx, id, credits, to === 'succeeded' ? 'fine-tuning job succeeded' : `fine-tuning job ${to}`);
    await addEvents(tx, id, [{ kind: 'info', message: credits === 'settle' ? `${row.creditsReserved} credits charged` : `${amount} credits refunded` }]);
  }
  return { row, ended: true };
}

export function endJob(
  db: Database,
  id: string,
  to: TerminalStatus,
  outcome: { error?: string | null; fineTunedModel?: string | null; message: string },
  from: readonly FineTuneStatus[] = ACTIVE_STATUSES,
) {
  return db.transaction((tx) => endJobInTx(tx, id, to, outcome, from));
}

/**
 * Starts a job inside the caller's transaction (the job row locked): reserves its credits from the
 * account (402 when short, and then nothing is written) and writes the outbox event that queues
 * its run. A job already started is left as it is.
 */
export async function startJobInTx(tx: Executor, row: FineTuneJobRow, cost: number): Promise<{ row: FineTuneJobRow; started: boolean }> {
  if (row.startedAt) return { row, started: false };
  await reserveCredits(tx, row.accountId, row.id, cost);
  const [outboxId] = await appendOutbox(tx, [outboxEvent(runFineTuneJob, { fine_tuning_job_id: row.id })], runCause(row.id));
  const [started] = await tx
    .update(fineTuningJobs)
    .set({ startedAt: sql`now()`, creditsReserved: cost, queueJobId: outboxJobId(outboxId!), updatedAt: sql`now()` })
    .where(eq(fineTuningJobs.id, row.id))
    .returning();
  await addEvents(tx, row.id, [{ kind: 'info', message: `started: ${cost} credits reserved from account "${row.accountId}"` }]);
  return { row: started!, started: true };
}
