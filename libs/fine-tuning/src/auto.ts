import { ApiError, type JobContext, type PlatformContext } from '@caliber/platform';
import { sql } from 'drizzle-orm';
import type { FineTuningConfig } from './config.ts';
import { computeFineTuneStats, decideFineTune } from './criteria.ts';
import { startJobInTx } from './jobs.ts';
import { fineTuningJobs } from './schema.ts';

/** The base model a served model is fine-tuned from: FINE_TUNE_BASE_MODELS, else the model itself. */
export function baseModelFor(config: Pick<FineTuningConfig, 'FINE_TUNE_BASE_MODELS'>, modelId: string): string {
  return config.FINE_TUNE_BASE_MODELS[modelId] ?? modelId;
}

export interface AutoFineTuneResult {
  auto_fine_tune: boolean;
  analysis_run_id: number;
  created: { model_id: string; job_id: string }[];
  skipped: { model_id: string; reasons: string[] }[];
}

/**
 * The `check-criteria` event of an analyze-errors run: with AUTO_FINE_TUNE, every model the run
 * found errors for is checked against the policy, and a job is created and started (credits
 * reserved from FINE_TUNE_ACCOUNT) for each that meets it. The decision is made again under a lock
 * per model, so concurrent runs cannot start two jobs; a retried check finds the jobs it created.
 */
export async function runAutoFineTune(
  platform: Pick<PlatformContext, 'db'>,
  config: FineTuningConfig,
  runId: number,
  ctx: Pick<JobContext, 'log'>,
): Promise<AutoFineTuneResult> {
  const result: AutoFineTuneResult = { auto_fine_tune: config.AUTO_FINE_TUNE, analysis_run_id: runId, created: [], skipped: [] };
  if (!config.AUTO_FINE_TUNE) return result;
  const account = config.FINE_TUNE_ACCOUNT!;
  const { db } = platform;
  const [models, earlier] = await Promise.all([
    db.execute<{ model_id: string }>(sql`SELECT DISTINCT model_id FROM error_patterns WHERE run_id = ${runId} ORDER BY 1`),
    db.execute<{ model_id: string; id: string }>(sql`SELECT model_id, id FROM fine_tuning_jobs WHERE analysis_run_id = ${runId}`),
  ]);
  result.created.push(...earlier.rows.map((r) => ({ model_id: r.model_id, job_id: r.id })));
  const candidates = models.rows.map((r) => r.model_id).filter((m) => !earlier.rows.some((e) => e.model_id === m));
  const stats = await computeFineTuneStats(db, config, candidates, account, new Date());
  for (const model of candidates) {
    const decision = decideFineTune(stats.get(model)!, config, new Date());
    if (!decision.should_fine_tune) {
      result.skipped.push({ model_id: model, reasons: decision.reasons });
      continue;
    }
    try {
      const outcome = await db.transaction(async (tx) => {
        await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('caliber:fine-tune-model'), hashtext(${model}))`);
        const now = new Date();
        const again = decideFineTune((await computeFineTuneStats(tx, config, [model], account, now)).get(model)!, config, now);
        if (!again.should_fine_tune) return { reasons: again.reasons };
        const [row] = await tx
          .insert(fineTuningJobs)
          .values({ modelId: model, accountId: account, provider: config.FINE_TUNE_PROVIDER, baseModel: baseModelFor(config, model), trigger: 'auto', analysisRunId: runId })
          .onConflictDoNothing()
          .returning();
        if (!row) return { reasons: ['a job for this analysis run exists already'] };
        await startJobInTx(tx, row, config.FINE_TUNE_CREDIT_COST);
        return { jobId: row.id };
      });
      if (outcome.jobId) {
        result.created.push({ model_id: model, job_id: outcome.jobId });
        ctx.log.info({ model, fineTuningJob: outcome.jobId, reasons: decision.reasons }, 'fine-tuning job created automatically');
      } else result.skipped.push({ model_id: model, reasons: outcome.reasons ?? [] });
    } catch (err) {
      // Credits spent by another job between the check and the reservation: the model waits for the next run.
      if (!(err instanceof ApiError && err.status === 402)) throw err;
      result.skipped.push({ model_id: model, reasons: [err.message] });
    }
  }
  return result;
}
