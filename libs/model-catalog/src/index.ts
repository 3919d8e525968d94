import { jobHandler, type DomainModule } from '@caliber/platform';
import { invalidateBestModelCache } from './best-model.ts';
import { loadModelCatalogConfig, type ModelCatalogConfig } from './config.ts';
import { invalidateBestModelJob, mapModelsJob } from './jobs.ts';
import { runMapModels } from './map-models.ts';
import { modelCatalogDashboard } from './dashboard.ts';
import { modelCatalogRoutes } from './routes.ts';

export { loadModelCatalogConfig, type ModelCatalogConfig } from './config.ts';
export { invalidateBestModelJob, mapModelsJob } from './jobs.ts';
export { buildMatcherIndex, matchModel, normalizeModelId, signature, type AaEntry, type AliasTable, type MatchDecision } from './matcher.ts';
export { loadAliases } from './aliases.ts';
export { loadAaModels, parseAaResponse, AaPermanentError } from './aa-client.ts';
export { runMapModels, upsertAaMetrics, type MapModelsResult } from './map-models.ts';
export { BestModelCache, bestModelCacheKeys, computeBestModel, invalidateBestModelCache } from './best-model.ts';

/** Model catalog: AA benchmark data, provider-model mapping, best-model answers. */
export function modelCatalogModule(config: ModelCatalogConfig = loadModelCatalogConfig()): DomainModule {
  return {
    name: 'model-catalog',
    routes: (ctx) => modelCatalogRoutes(ctx, config),
    dashboard: (ctx) => modelCatalogDashboard(ctx),
    jobs: [
      jobHandler(mapModelsJob, (_payload, job) => runMapModels(job.platform, config, job)),
      jobHandler(invalidateBestModelJob, async (payload, job) => {
        await invalidateBestModelCache(job.platform);
        return { invalidated: true, reason: payload.reason };
      }),
    ],
    schedules: (platform) => [
      {
        id: 'map-models',
        description: 'Map working_version models to Artificial Analysis entries (MAP_MODELS_CRON)',
        job: mapModelsJob,
        payload: { requested_by: 'schedule' },
        pattern: config.MAP_MODELS_CRON || undefined,
        tz: platform.TZ,
      },
    ],
  };
}
