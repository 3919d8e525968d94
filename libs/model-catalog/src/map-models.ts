import { appendOutbox, outboxEvent, type JobContext, type PlatformContext } from '@caliber/platform';
import { UnrecoverableError } from 'bullmq';
import { sql } from 'drizzle-orm';
import { AaPermanentError, loadAaModels, type AaModel } from './aa-client.ts';
import { loadAliases } from './aliases.ts';
import type { ModelCatalogConfig } from './config.ts';
import { invalidateBestModelJob } from './jobs.ts';
import { buildMatcherIndex, matchModel, type AliasTable, type MatchDecision } from './matcher.ts';

export interface MapModelsResult {
  source: 'api' | 'file';
  aa_entries: number;
  aa_entries_skipped: number;
  total_models: number;
  mapped: number;
  unmapped: number;
  manual: number;
  duplicates_skipped: number;
  coverage: number;
  methods: Record<string, number>;
}

/**
 * Upserts AA entries keyed on AA's id: an entry whose slug changed keeps its row, and the
 * mappings pointing at it follow (the foreign key cascades the new slug).
 */
export async function upsertAaMetrics(tx: PlatformContext['db'], loaded: AaModel[], log: JobContext['log']): Promise<void> {
  // One row per AA id (the last wins) and per slug (the first wins), in id order so that two
  // runs at once would lock rows in the same order.
  const byId = new Map(loaded.map((m) => [m.id, m]));
  const bySlug = new Map<string, AaModel>();
  for (const m of byId.values()) {
    if (bySlug.has(m.slug)) log.warn({ slug: m.slug, ids: [bySlug.get(m.slug)!.id, m.id] }, 'two AA entries share a slug; keeping the first');
    else bySlug.set(m.slug, m);
  }
  const models = [...bySlug.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  if (models.length === 0) return;
  const rows = models.map((m) => ({
    slug: m.slug,
    aa_id: m.id,
    name: m.name,
    creator: m.model_creator?.name ?? null,
    intelligence_index: m.evaluations?.artificial_analysis_intelligence_index ?? null,
    coding_index: m.evaluations?.artificial_analysis_coding_index ?? null,
    math_index: m.evaluations?.artificial_analysis_math_index ?? null,
    pricing: m.pricing ?? null,
    evaluations: m.evaluations ?? null,
    output_tokens_per_second: m.median_output_tokens_per_second,
    time_to_first_token_seconds: m.median_time_to_first_token_seconds,
  }));
  // A slug AA now gives to another id: the row holding it steps aside (its own new slug, if AA
  // still lists it, arrives in the upsert below; mappings follow it through the cascade).
  await tx.execute(sql`
    UPDATE aa_performance_metrics a SET slug = '~' || a.aa_id
      FROM jsonb_to_recordset(${JSON.stringify(rows.map((r) => ({ slug: r.slug, aa_id: r.aa_id })))}::jsonb) AS r(slug text, aa_id text)
     WHERE a.slug = r.slug AND a.aa_id <> r.aa_id`);
  await tx.execute(sql`
    INSERT INTO aa_performance_metrics (slug, aa_id, name, creator, intelligence_index, coding_index, math_index, pricing, evaluations,
                                        output_tokens_per_second, time_to_first_token_seconds, updated_at)
    SELECT slug, aa_id, name, creator, intelligence_index, coding_index, math_index, pricing, evaluations,
           output_tokens_per_second, time_to_first_token_seconds, now()
      FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS r(
        slug text, aa_id text, name text, creator text, intelligence_index float8, coding_index float8, math_index float8,
        pricing jsonb, evaluations jsonb, output_tokens_per_second float8, time_to_first_token_seconds float8)
    ON CONFLICT (aa_id) DO UPDATE SET
      slug = excluded.slug, name = excluded.name, creator = excluded.creator, intelligence_index = excluded.intelligence_index,
      coding_index = excluded.coding_index, math_index = excluded.math_index, pricing = excluded.pricing,
      evaluations = excluded.evaluations, output_tokens_per_second = excluded.output_tokens_per_second,
      time_to_first_token_seconds = excluded.time_to_first_token_seconds, updated_at = now()`);
}

/**
 * The `map-models` job: load AA data, match every distinct working_version model (a model id seen
 * again is a duplicate, skipped and counted), upsert the mappings except manual ones, record
 * coverage, and queue the best-model cache invalidation, all in one transaction.
 */
export async function runMapModels(
  platform: Pick<PlatformContext, 'db' | 'log'>,
  config: ModelCatalogConfig,
  job: Pick<JobContext, 'jobKey' | 'log'>,
  aliases: AliasTable = loadAliases(),
): Promise<MapModelsResult> {
  const done = await platform.db.execute<{ result: MapModelsResult }>(sql`SELECT result FROM model_mapping_runs WHERE job_id = ${job.jobKey}`);
  if (done.rows[0]) return done.rows[0].result;

  let loaded;
  try {
    loaded = await loadAaModels(config, job.log);
  } catch (err) {
    if (err instanceof AaPermanentError) throw new UnrecoverableError(err.message);
    throw err;
  }
  if (loaded.skipped.length > 0) job.log.warn({ skipped: loaded.skipped.slice(0, 10), count: loaded.skipped.length }, 'AA entries with an unexpected shape were skipped');

  return platform.db.transaction(async (tx) => {
    // One run at a time: a second waits here and then works from the first one's results.
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('caliber:map-models'))`);
    await upsertAaMetrics(tx, loaded.models, job.log);
    // Entries whose slug stepped aside and that AA no longer lists are not matched against.
    const entries = (await tx.execute<{ slug: string; name: string }>(sql`SELECT slug, name FROM aa_performance_metrics WHERE slug NOT LIKE '~%'`)).rows;
    const index = buildMatcherIndex(entries, aliases);

    const models = (
      await tx.execute<{ provider: string; model_id: string; name: string | null }>(sql`
        SELECT inference_provider AS provider, model_id, human_readable_name AS name FROM working_version ORDER BY id`)
    ).rows;
    const manual = new Set(
      (await tx.execute<{ model_name: string }>(sql`SELECT model_name FROM model_aa_mapping WHERE manual`)).rows.map((r) => r.model_name),
    );

    const seen = new Set<string>();
    let duplicates = 0;
    const decisions: { model: string; d: MatchDecision }[] = [];
    for (const m of models) {
      if (seen.has(m.model_id)) {
        duplicates++;
        continue;
      }
      seen.add(m.model_id);
      if (manual.has(m.model_id)) continue;
      decisions.push({ model: m.model_id, d: matchModel(index, { provider: m.provider, modelId: m.model_id, name: m.name }, config.MAPPING_MIN_SCORE) });
    }

    if (decisions.length > 0) {
      await tx.execute(sql`
        INSERT INTO model_aa_mapping (model_name, aa_slug, method, score, manual, reason, updated_at)
        SELECT model_name, aa_slug, method, score, false, reason, now()
          FROM jsonb_to_recordset(${JSON.stringify(decisions.map(({ model, d }) => ({ model_name: model, aa_slug: d.slug, method: d.method, score: d.score, reason: d.reason })))}::jsonb)
               AS r(model_name text, aa_slug text, method text, score float8, reason text)
        ON CONFLICT (model_name) DO UPDATE SET
          aa_slug = excluded.aa_slug, method = excluded.method, score = excluded.score, reason = excluded.reason, updated_at = now()
          WHERE NOT model_aa_mapping.manual`);
    }
    // Models the pipeline no longer lists lose their automatic mapping; manual ones stay.
    await tx.execute(sql`
      DELETE FROM model_aa_mapping m WHERE NOT m.manual AND NOT EXISTS (SELECT 1 FROM working_version w WHERE w.model_id = m.model_name)`);

    const mapped = decisions.filter((x) => x.d.slug).length;
    const total = seen.size;
    const manualPresent = [...seen].filter((m) => manual.has(m)).length;
    const methods: Record<string, number> = {};
    for (const { d } of decisions) if (d.method) methods[d.method] = (methods[d.method] ?? 0) + 1;
    const result: MapModelsResult = {
      source: loaded.source,
      aa_entries: loaded.models.length,
      aa_entries_skipped: loaded.skipped.length,
      total_models: total,
      mapped: mapped + manualPresent,
      unmapped: decisions.length - mapped,
      manual: manualPresent,
      duplicates_skipped: duplicates,
      coverage: total === 0 ? 0 : Number(((mapped + manualPresent) / total).toFixed(4)),
      methods,
    };
    await tx.execute(sql`
      INSERT INTO model_mapping_runs (job_id, source, aa_entries, total_models, mapped, unmapped, manual, duplicates_skipped, coverage, result)
      VALUES (${job.jobKey}, ${result.source}, ${result.aa_entries}, ${result.total_models}, ${result.mapped}, ${result.unmapped},
              ${result.manual}, ${result.duplicates_skipped}, ${result.coverage}, ${JSON.stringify(result)}::jsonb)`);
    await appendOutbox(tx, [outboxEvent(invalidateBestModelJob, { reason: 'map-models finished' })], job.jobKey);
    job.log.info(result, 'models mapped');
    return result;
  });
}
