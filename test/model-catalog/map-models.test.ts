import { readFileSync } from 'node:fs';
import { copyFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { BestModelCache, bestModelCacheKeys } from '../../libs/model-catalog/src/index.ts';
import { ROOT, useHarness, waitFor } from '../harness.ts';

const FIXTURES = join(ROOT, 'test/fixtures/model-catalog');
const rows = JSON.parse(readFileSync(join(FIXTURES, 'working-version.json'), 'utf8')) as {
  inference_provider: string;
  model_id: string;
  human_readable_name: string | null;
  expected_aa_slug: string | null;
}[];
const aa = JSON.parse(readFileSync(join(FIXTURES, 'aa-models.json'), 'utf8')).data as { slug: string; evaluations: Record<string, number | null> }[];

// A copy, so a test can change what "AA" answers on the next run.
const AA_FILE = join(tmpdir(), `caliber-aa-${process.pid}-${Date.now()}.json`);
const t = useHarness({ env: { AA_METRICS_FILE: AA_FILE, MAP_MODELS_CRON: '' }, workers: ['map-models'] });

/** The discovery pipeline's connection: the login user, not Caliber's role. */
async function asPipeline<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: t.env.databaseUrl });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  await copyFile(join(FIXTURES, 'aa-models.json'), AA_FILE);
  await asPipeline((c) =>
    c.query(
      `INSERT INTO working_version (inference_provider, model_id, human_readable_name)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[])`,
      [rows.map((r) => r.inference_provider), rows.map((r) => r.model_id), rows.map((r) => r.human_readable_name)],
    ),
  );
});

describe('working_version belongs to the discovery pipeline', () => {
  it("is read-only through Caliber's connection", async () => {
    expect((await t.h.query('SELECT count(*)::int AS n FROM working_version'))[0]?.n).toBe(rows.length);
    await expect(t.h.query("INSERT INTO working_version (inference_provider, model_id) VALUES ('x', 'y')")).rejects.toMatchObject({ code: '42501' });
    await expect(t.h.query("UPDATE working_version SET model_id = 'y'")).rejects.toMatchObject({ code: '42501' });
    await expect(t.h.query('DELETE FROM working_version')).rejects.toMatchObject({ code: '42501' });
    expect((await t.h.query('SELECT current_user AS u'))[0]?.u).toBe('caliber_app');
  });
});

describe('POST /admin/models/map', () => {
  it('maps every model once, skips and counts duplicates, and records coverage', async () => {
    const res = await t.h.request('POST', '/admin/models/map?wait=true');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const distinct = new Set(rows.map((r) => r.model_id));
    const mappable = new Set(rows.filter((r) => r.expected_aa_slug).map((r) => r.model_id));
    expect(res.body).toMatchObject({
      source: 'file',
      aa_entries: aa.length,
      total_models: distinct.size,
      duplicates_skipped: rows.length - distinct.size,
      manual: 0,
    });
    expect(res.body.mapped).toBe(mappable.size);
    expect(res.body.mapped + res.body.unmapped).toBe(distinct.size);

    const mappings = await t.h.query<{ model_name: string; aa_slug: string | null; reason: string }>('SELECT model_name, aa_slug, reason FROM model_aa_mapping');
    const expected = new Map(rows.map((r) => [r.model_id, r.expected_aa_slug]));
    const wrong = mappings.filter((m) => m.aa_slug !== null && m.aa_slug !== expected.get(m.model_name));
    expect(wrong).toEqual([]);
    expect(mappings.every((m) => m.reason.length > 0)).toBe(true);

    const coverage = (await t.h.request('GET', '/admin/models/coverage')).body;
    expect(coverage).toMatchObject({ total: distinct.size, mapped: mappable.size, duplicates_skipped: rows.length - distinct.size });
    expect(coverage.last_run).toMatchObject({ mapped: mappable.size });
  });

  it('lists the unmapped models with the reason for each', async () => {
    const res = await t.h.request('GET', '/admin/models/mappings?unmapped=true&limit=1000');
    const unmapped = new Set(rows.filter((r) => !r.expected_aa_slug).map((r) => r.model_id));
    expect(res.body.items.map((i: { model_name: string }) => i.model_name).sort()).toEqual([...unmapped].sort());
    const whisper = res.body.items.find((i: { model_name: string }) => i.model_name === 'whisper-large-v3');
    expect(whisper).toMatchObject({ aa_slug: null, manual: false, providers: ['groq'] });
    expect(whisper.reason).toMatch(/no AA entry/);
  });
});

describe('Artificial Analysis data changing between runs', () => {
  it('follows a slug AA moved to another entry, and keeps one row per id and per slug', async () => {
    const before = await t.h.query<{ model_name: string }>("SELECT model_name FROM model_aa_mapping WHERE aa_slug = 'deepseek-r1'");
    expect(before.length).toBeGreaterThan(0);
    const body = JSON.parse(readFileSync(join(FIXTURES, 'aa-models.json'), 'utf8'));
    const r1 = body.data.find((e: { slug: string }) => e.slug === 'deepseek-r1');
    // AA renames the old R1 entry and gives its slug to a new entry; it also lists one id twice.
    r1.slug = 'deepseek-r1-0120';
    body.data.push({ ...r1, id: 'new-r1-id', slug: 'deepseek-r1', name: "DeepSeek R1 (May '25)" }, { ...body.data[0] });
    await writeFile(AA_FILE, JSON.stringify(body));
    const res = await t.h.request('POST', '/admin/models/map?wait=true');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const rows = await t.h.query<{ slug: string; aa_id: string }>("SELECT slug, aa_id FROM aa_performance_metrics WHERE slug LIKE 'deepseek-r1%'");
    expect(rows).toEqual(expect.arrayContaining([{ slug: 'deepseek-r1-0120', aa_id: r1.id }, { slug: 'deepseek-r1', aa_id: 'new-r1-id' }]));
    await copyFile(join(FIXTURES, 'aa-models.json'), AA_FILE);
    expect((await t.h.request('POST', '/admin/models/map?wait=true')).status).toBe(200);
  });
});

describe('manual mappings', () => {
  it('are never overwritten by the matcher, and can be removed', async () => {
    const name = 'whisper-large-v3';
    const bad = await t.h.request('PUT', `/admin/models/mappings/${encodeURIComponent(name)}`, { json: { aa_slug: 'no-such-slug' } });
    expect(bad.status).toBe(404);
    const put = await t.h.request('PUT', `/admin/models/mappings/${encodeURIComponent(name)}`, { json: { aa_slug: 'gpt-4o' } });
    expect(put.body).toMatchObject({ model_name: name, aa_slug: 'gpt-4o', manual: true, method: 'manual' });
    expect((await t.h.request('PUT', '/admin/models/mappings/not-in-working-version', { json: { aa_slug: 'gpt-4o' } })).status).toBe(404);

    const again = await t.h.request('POST', '/admin/models/map?wait=true');
    expect(again.body.manual).toBe(1);
    expect((await t.h.request('GET', '/admin/models/mappings?manual=true')).body.items).toMatchObject([{ model_name: name, aa_slug: 'gpt-4o' }]);

    expect((await t.h.request('DELETE', `/admin/models/mappings/${encodeURIComponent(name)}`)).body).toEqual({ deleted: name });
    expect((await t.h.request('DELETE', `/admin/models/mappings/${encodeURIComponent(name)}`)).status).toBe(404);
  });

  it('validate their input', async () => {
    const res = await t.h.request('PUT', '/admin/models/mappings/gpt-4o', { json: { slug: 'gpt-4o' } });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
  });
});

describe('GET /best-model', () => {
  const best = (provider?: string, metric = 'intelligence_index') =>
    t.h.request('GET', `/best-model?metric=${metric}${provider ? `&provider=${provider}` : ''}`);
  const expectedBest = (provider: string | undefined, metric: string) => {
    const byId = new Map(aa.map((e) => [e.slug, e.evaluations[`artificial_analysis_${metric}`] ?? null]));
    const candidates = rows
      .filter((r) => r.expected_aa_slug && (!provider || r.inference_provider === provider))
      .map((r) => byId.get(r.expected_aa_slug!))
      .filter((v): v is number => typeof v === 'number');
    return Math.max(...candidates);
  };

  it('answers the best mapped model by a metric, overall and per provider', async () => {
    for (const [provider, metric] of [[undefined, 'intelligence_index'], ['groq', 'intelligence_index'], ['google', 'coding_index'], ['openrouter', 'math_index']] as const) {
      const res = await best(provider, metric);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.value).toBe(expectedBest(provider, metric));
      if (provider) expect(res.body.provider).toBe(provider);
    }
    expect((await best('nobody')).status).toBe(404);
    // A provider literally named "*" is not "every provider".
    expect((await best('*')).status).toBe(404);
    expect((await best()).status).toBe(200);
    expect((await best(undefined, 'vibes')).status).toBe(400);
  });

  it('is cached, and the cache is dropped when map-models finishes', async () => {
    const keys = bestModelCacheKeys(t.h.platform.config);
    await best('groq');
    expect(await t.h.platform.redis.hget(keys.cache, JSON.stringify(['groq', 'intelligence_index']))).not.toBeNull();
    expect(await t.h.platform.redis.ttl(keys.cache)).toBeGreaterThan(3600);
    await t.h.request('POST', '/admin/models/map?wait=true');
    await waitFor(async () => (await t.h.platform.redis.exists(keys.cache)) === 0, { what: 'cache invalidated by the outbox event' });
  });

  it('computes a miss once, even with many requests in several processes at once', async () => {
    const keys = bestModelCacheKeys(t.h.platform.config);
    await t.h.platform.redis.del(keys.cache);
    let computed = 0;
    const counting = {
      ...t.h.platform,
      db: { execute: (...args: Parameters<typeof t.h.platform.db.execute>) => (computed++, t.h.platform.db.execute(...args)) } as typeof t.h.platform.db,
    };
    // Two caches stand for two gateway processes sharing Redis.
    const caches = [new BestModelCache(counting, { BEST_MODEL_TTL: 60 }), new BestModelCache(counting, { BEST_MODEL_TTL: 60 })];
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => caches[i % 2]!.get('openai', 'coding_index')));
    expect(computed).toBe(1);
    expect(new Set(answers.map((a) => JSON.stringify(a.value))).size).toBe(1);
  });
});
