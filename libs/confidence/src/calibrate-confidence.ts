import { defineJob, withTenant, type JobContext } from '@caliber/platform';
import { sql } from 'drizzle-orm';
import { z } from 'zod';
import { calibrationMetrics, fitTemperature, logLoss, scaleGroups, type ConfidenceGroup } from './calibration-math.ts';
import { outcomeGroups } from './analytics.ts';
import type { ConfidenceConfig } from './config.ts';

/** Fits a temperature per model (the `confidence` kind of the `calibrate` queue). */
export const calibrateConfidenceJob = defineJob(
  'calibrate',
  'confidence',
  z.object({
    /** One tenant; without it, every tenant (the schedule). */
    tenant_id: z.uuid().optional(),
    /** One model of that tenant; without it, each of its models. */
    model: z.string().min(1).max(200).optional(),
    requested_by: z.string().max(200).optional(),
  }),
);
export type CalibrateConfidencePayload = z.infer<typeof calibrateConfidenceJob.schema>;

export interface ModelFit {
  tenant_id: string;
  model: string;
  outcomes: number;
  temperature: number;
  ece_before: number;
  ece_after: number;
  brier_before: number;
  brier_after: number;
  log_loss_before: number;
  log_loss_after: number;
}

const r6 = (x: number) => Number(x.toFixed(6));

/** The fit of one model's outcome groups, or why there is none. */
export function fitModel(groups: ConfidenceGroup[], bins: number, minOutcomes: number): Omit<ModelFit, 'tenant_id' | 'model'> | { skipped: string; outcomes: number } {
  const outcomes = groups.reduce((s, g) => s + g.count, 0);
  if (outcomes < minOutcomes) return { skipped: `${outcomes} outcomes, ${minOutcomes} needed (CONFIDENCE_MIN_OUTCOMES)`, outcomes };
  const positives = groups.reduce((s, g) => s + g.positives, 0);
  if (positives === 0 || positives === outcomes) {
    return { skipped: `every outcome is ${positives ? 'correct' : 'wrong'}: there is nothing to tell confidences apart by`, outcomes };
  }
  const temperature = fitTemperature(groups);
  const before = calibrationMetrics(groups, bins);
  const after = calibrationMetrics(scaleGroups(groups, temperature), bins);
  return {
    outcomes,
    temperature: r6(temperature),
    ece_before: r6(before.ece),
    ece_after: r6(after.ece),
    brier_before: r6(before.brier),
    brier_after: r6(after.brier),
    log_loss_before: r6(logLoss(groups)),
    log_loss_after: r6(logLoss(groups, temperature)),
  };
}

/**
 * For each tenant (or the one named), in its own RLS transaction: reads each model's outcomes as
 * groups of equal confidence, fits the temperature that minimises log loss and stores it with the
 * ECE, Brier and log loss before and after. A retried run stores each fit once (its job key).
 */
export async function runConfidenceCalibration(job: Pick<JobContext, 'platform' | 'jobKey' | 'log'>, config: ConfidenceConfig, payload: CalibrateConfidencePayload) {
  const { platform } = job;
  const tenantIds = payload.tenant_id
    ? [payload.tenant_id]
    : (await platform.pool.query<{ id: string }>('SELECT id FROM tenants ORDER BY created_at, id')).rows.map((r) => r.id);
  const fitted: ModelFit[] = [];
  const skipped: { tenant_id: string; model: string; outcomes: number; reason: string }[] = [];
  for (const tenantId of tenantIds) {
    // What one tenant's transaction found is kept only once it committed (a retried
    // transaction starts over).
    const found = await withTenant(platform.db, tenantId, async (tx) => {
      const byModel = await outcomeGroups(tx, tenantId, payload.model ? sql`AND model = ${payload.model}` : undefined);
      if (payload.model && !byModel.has(payload.model)) byModel.set(payload.model, []);
      const fits: ModelFit[] = [];
      const skips: typeof skipped = [];
      for (const [model, groups] of byModel) {
        const fit = fitModel(groups, config.CONFIDENCE_BINS, config.CONFIDENCE_MIN_OUTCOMES);
        if ('skipped' in fit) skips.push({ tenant_id: tenantId, model, outcomes: fit.outcomes, reason: fit.skipped });
        else fits.push({ tenant_id: tenantId, model, ...fit });
      }
      if (fits.length > 0) {
        const col = <K extends keyof ModelFit>(k: K) => sql.param(fits.map((f) => f[k]));
        await tx.execute(sql`
          INSERT INTO confidence_temperature_fits (tenant_id, model, temperature, outcomes, ece_before, ece_after, brier_before, brier_after,
                                                   log_loss_before, log_loss_after, bins, job_key)
          SELECT ${tenantId}::uuid, model, temperature, outcomes, ece_before, ece_after, brier_before, brier_after, log_loss_before, log_loss_after,
                 ${config.CONFIDENCE_BINS}, ${job.jobKey}
            FROM unnest(${col('model')}::text[], ${col('temperature')}::float8[], ${col('outcomes')}::int[], ${col('ece_before')}::float8[],
                        ${col('ece_after')}::float8[], ${col('brier_before')}::float8[], ${col('brier_after')}::float8[],
                        ${col('log_loss_before')}::float8[], ${col('log_loss_after')}::float8[])
              AS t(model, temperature, outcomes, ece_before, ece_after, brier_before, brier_after, log_loss_before, log_loss_after)
          ON CONFLICT (tenant_id, model, job_key) DO NOTHING`);
      }
      return { fits, skips };
    });
    fitted.push(...found.fits);
    skipped.push(...found.skips);
  }
  job.log.info({ tenants: tenantIds.length, fitted: fitted.length, skipped: skipped.length }, 'confidence temperatures fitted');
  // A run over every tenant lists the first few hundred; the counts are complete.
  return { tenants: tenantIds.length, fitted_count: fitted.length, skipped_count: skipped.length, fitted: fitted.slice(0, 500), skipped: skipped.slice(0, 500) };
}
