import { type PlatformContext } from '@caliber/platform';
import { z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import type { ModelCatalogConfig } from './config.ts';

export const METRICS = ['intelligence_index', 'coding_index', 'math_index'] as const;
export type BestModelMetric = (typeof METRICS)[number];

export const bestModelSchema = z
  .object({ model: z.string(), provider: z.string(), aa_slug: z.string(), metric: z.enum(METRICS), value: z.number() })
  .openapi('BestModel');
export type BestModel = z.infer<typeof bestModelSchema>;

type Ctx = Pick<PlatformContext, 'db' | 'redis' | 'config'>;

/**
 * Cache keys share one hash tag, so on Redis Cluster the generation check and the write run in one
 * script: `cache` is a hash of answers (field `<provider>|<metric>`), `gen` counts invalidations.
 */
function keys(config: Pick<PlatformContext['config'], 'QUEUE_PREFIX'>) {
  const tag = `{${config.QUEUE_PREFIX}:best-model}`;
  return { cache: `${tag}:cache`, gen: `${tag}:gen`, lock: (field: string) => `${tag}:lock:${field}` };
}

/** Computes the best mapped model (of a provider) by an AA metric: one indexed join. */
export async function computeBestModel(db: Ctx['db'], provider: string | undefined, metric: BestModelMetric): Promise<BestModel | null> {
  const column = sql.identifier(metric);
  const result = await db.execute<{ model: string; provider: string; aa_slug: string; value: number }>(sql`
    SELECT w.model_id AS model, w.inference_provider AS provider, m.aa_slug, a.${column} AS value
      FROM working_version w
      JOIN model_aa_mapping m ON m.model_name = w.model_id AND m.aa_slug IS NOT NULL
      JOIN aa_performance_metrics a ON a.slug = m.aa_slug
     WHERE a.${column} IS NOT NULL ${provider ? sql`AND w.inference_provider = ${provider}` : sql``}
     ORDER BY a.${column} DESC, w.model_id, w.inference_provider
     LIMIT 1`);
  const row = result.rows[0];
  return row ? { model: row.model, provider: row.provider, aa_slug: row.aa_slug, metric, value: row.value } : null;
}

/** Writes an answer only if no invalidation happened since it was computed. */
const STORE_IF_CURRENT = `
if (redis.call('GET', KEYS[1]) or '0') == ARGV[1] then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[4], 'NX')
  return 1
end
return 0`;

/**
 * Best-model answers, cached in Redis for BEST_MODEL_TTL. A miss is computed once however many
 * requests (in however many gateway processes) ask at the same moment: one takes a short Redis
 * lock and computes, the others wait for its answer. An answer computed while the mappings were
 * being changed is not stored (the generation moved), so the cache never outlives an invalidation.
 */
export class BestModelCache {
  readonly #inFlight = new Map<string, Promise<BestModel | null>>();

  constructor(
    private readonly ctx: Ctx,
    private readonly config: Pick<ModelCatalogConfig, 'BEST_MODEL_TTL'>,
  ) {}

  async get(provider: string | undefined, metric: BestModelMetric): Promise<{ value: BestModel | null; cached: boolean }> {
    // JSON, so no provider name can collide with "all providers" (null).
    const field = JSON.stringify([provider ?? null, metric]);
    const k = keys(this.ctx.config);
    const hit = await this.ctx.redis.hget(k.cache, field);
    if (hit !== null) return { value: JSON.parse(hit) as BestModel | null, cached: true };
    let pending = this.#inFlight.get(field);
    if (!pending) {
      pending = this.#fill(field, provider, metric).finally(() => this.#inFlight.delete(field));
      this.#inFlight.set(field, pending);
    }
    return { value: await pending, cached: false };
  }

  async #fill(field: string, provider: string | undefined, metric: BestModelMetric): Promise<BestModel | null> {
    const k = keys(this.ctx.config);
    const redis = this.ctx.redis;
    const token = `${process.pid}-${Math.random()}`;
    const locked = await redis.set(k.lock(field), token, 'PX', 10_000, 'NX');
    if (!locked) {
      // Another process is computing it: wait for its answer (bounded), else compute unshared.
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
        const hit = await redis.hget(k.cache, field);
        if (hit !== null) return JSON.parse(hit) as BestModel | null;
        if ((await redis.exists(k.lock(field))) === 0) break;
      }
      return computeBestModel(this.ctx.db, provider, metric);
    }
    try {
      const gen = (await redis.get(k.gen)) ?? '0';
      const value = await computeBestModel(this.ctx.db, provider, metric);
      await redis.eval(STORE_IF_CURRENT, 2, k.gen, k.cache, gen, field, JSON.stringify(value), this.config.BEST_MODEL_TTL);
      return value;
    } finally {
      await redis.eval(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`, 1, k.lock(field), token).catch(() => {});
    }
  }
}

/** Drops every cached answer and moves the generation, so answers being computed are not stored. */
export async function invalidateBestModelCache(ctx: Pick<PlatformContext, 'redis' | 'config'>): Promise<void> {
  const k = keys(ctx.config);
  await ctx.redis.multi().incr(k.gen).del(k.cache).exec();
}

export function bestModelCacheKeys(config: Pick<PlatformContext['config'], 'QUEUE_PREFIX'>) {
  return keys(config);
}

