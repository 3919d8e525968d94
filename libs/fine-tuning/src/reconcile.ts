import { appendOutbox, outboxEvent, outboxJobId, type Logger, type PlatformContext } from '@caliber/platform';
import { eq, sql } from 'drizzle-orm';
import { addEvents, loadJob, isTerminal, runCause, runFineTuneJob } from './jobs.ts';
import { failFineTuneJobForGood, type FineTuningDeps } from './run-job.ts';
import { fineTuningJobs } from './schema.ts';

export interface ReconcileResult {
  checked: number;
  requeued: string[];
  failed: string[];
}

/**
 * The backstop for jobs that live for hours across many queue runs. Every started job that has
 * not ended should have a live queue job; one whose queue job failed for good without the job
 * being ended (its worker died in the failure hook) is failed and refunded now, and one whose
 * queue job is gone (Redis lost its data) is queued again.
 */
export async function reconcileFineTuning(deps: FineTuningDeps, platform: Pick<PlatformContext, 'queues' | 'db'>, log: Logger): Promise<ReconcileResult> {
  const { db } = platform;
  const active = await db.execute<{ id: string; queue_job_id: string | null }>(sql`
    SELECT id, queue_job_id FROM fine_tuning_jobs
     WHERE status NOT IN ('succeeded', 'failed', 'cancelled') AND started_at IS NOT NULL`);
  const queue = platform.queues.connected('fine-tune');
  const result: ReconcileResult = { checked: active.rows.length, requeued: [], failed: [] };
  await Promise.all(
    active.rows.map(async (row) => {
      // Not relayed yet: the queue job is on its way. Checked before the queue, so a relay that
      // adds the job in between is not taken for a loss.
      const outboxId = row.queue_job_id?.startsWith('outbox-') ? Number(row.queue_job_id.slice('outbox-'.length)) : undefined;
      if (outboxId !== undefined) {
        const pending = await db.execute(sql`SELECT 1 FROM outbox WHERE id = ${outboxId} AND relayed_at IS NULL`);
        if (pending.rows.length > 0) return;
      }
      const queueJob = row.queue_job_id ? await queue.getJob(row.queue_job_id) : undefined;
      if (queueJob) {
        if ((await queueJob.getState()) !== 'failed') return;
        if (await failFineTuneJobForGood(deps, row.id, row.queue_job_id ?? undefined, new Error(queueJob.failedReason || 'the queue job failed'), log)) result.failed.push(row.id);
        return;
      }
      const requeued = await db.transaction(async (tx) => {
        const job = await loadJob(tx, row.id, { lock: true });
        if (!job || isTerminal(job.status) || job.queueJobId !== row.queue_job_id) return false;
        const [id] = await appendOutbox(tx, [outboxEvent(runFineTuneJob, { fine_tuning_job_id: job.id })], runCause(job.id));
        await tx.update(fineTuningJobs).set({ queueJobId: outboxJobId(id!), updatedAt: sql`now()` }).where(eq(fineTuningJobs.id, job.id));
        await addEvents(tx, job.id, [{ kind: 'info', message: `its queue job ${row.queue_job_id ?? '(none)'} was lost; queued again as ${outboxJobId(id!)}` }]);
        return true;
      });
      if (requeued) {
        log.warn({ fineTuningJob: row.id, lostQueueJob: row.queue_job_id }, 'fine-tuning job had lost its queue job; queued again');
        result.requeued.push(row.id);
      }
    }),
  );
  return result;
}
