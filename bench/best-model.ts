import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { bestModelCacheKeys } from '../libs/model-catalog/src/best-model.ts';
import { parseAaResponse } from '../libs/model-catalog/src/aa-client.ts';
import { upsertAaMetrics } from '../libs/model-catalog/src/map-models.ts';
import { createLogger } from '../libs/platform/src/index.ts';
import { loadAliases } from '../libs/model-catalog/src/aliases.ts';
import { buildMatcherIndex, matchModel, type AaEntry, type ProviderModel } from '../libs/model-catalog/src/matcher.ts';
import { rng, freePort, freshDatabase, report, ROOT, startStack } from './lib.ts';

interface WorkingVersionFixture {
  inference_provider: string;
  model_id: string;
  human_readable_name: string | null;
  expected_aa_slug: string | null;
}

const fixture = <T>(name: string): T => JSON.parse(readFileSync(join(ROOT, 'test', 'fixtures', 'model-catalog', name), 'utf8')) as T;

/** AA entries, provider models and their mappings from the test fixtures; returns the providers. */
async function seedCatalog(db: pg.Client): Promise<string[]> {
  const wv = fixture<WorkingVersionFixture[]>('working-version.json');
  // Through the loader's own parsing and upsert, as map-models stores them.
  await upsertAaMetrics(drizzle({ client: db }), parseAaResponse(fixture<unknown>('aa-models.json')).models, createLogger({ level: 'silent', name: 'bench' }));
  // The login connection owns working_version; the app role may only read it.
  await db.query(
    `INSERT INTO working_version (inference_provider, model_id, human_readable_name)
     SELECT p, m, n FROM jsonb_to_recordset($1::jsonb) AS r(p text, m text, n text)`,
    [JSON.stringify(wv.map((w) => ({ p: w.inference_provider, m: w.model_id, n: w.human_readable_name })))],
  );
  await db.query(
    `INSERT INTO model_aa_mapping (model_name, aa_slug, method, score, manual, reason)
     SELECT m, s, 'exact', 1, false, 'bench fixture' FROM jsonb_to_recordset($1::jsonb) AS r(m text, s text)
     ON CONFLICT (model_name) DO NOTHING`,
    [JSON.stringify(wv.filter((w) => w.expected_aa_slug).map((w) => ({ m: w.model_id, s: w.expected_aa_slug })))],
  );
  await db.query('ANALYZE');
  return [...new Set(wv.map((w) => w.inference_provider))].sort();
}

/**
 * TOTAL GETs with CONCURRENCY in flight over keep-alive connections (one node:http Agent,
 * maxSockets = CONCURRENCY), cycling through `paths`. Every answer must be 200.
 */
async function drive(base: string, paths: string[], apiKey: string, total: number, concurrency: number): Promise<number> {
  const { hostname, port } = new URL(base);
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const headers = { authorization: `Bearer ${apiKey}`, accept: 'application/json' };
  let next = 0;
  const failures: string[] = [];
  const one = (path: string) =>
    new Promise<void>((resolve, reject) => {
      const req = request({ hostname, port, path, agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode !== 200) failures.push(`${path} → ${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 200)}`);
          resolve();
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  const client = async () => {
    while (next < total) {
      const i = next++;
      await one(paths[i % paths.length]!);
    }
  };
  const started = performance.now();
  try {
    await Promise.all(Array.from({ length: concurrency }, client));
  } finally {
    agent.destroy();
  }
  const seconds = (performance.now() - started) / 1000;
  if (failures.length > 0) throw new Error(`${failures.length} of ${total} requests failed, e.g. ${failures[0]}`);
  return seconds;
}

/**
 * ~1 000 AA-style entries (families × versions × variants × sizes, slugs like
 * "llama-3-1-instruct-70b", names like "Llama 3.1 Instruct 70B") and 10 000 provider-style models
 * for them ("meta-llama/Llama-3.1-70B-Instruct-Turbo", "llama-3.1-70b-versatile", "…:free",
 * Fireworks' "llama-v3p1-70b-instruct" with its display name), a tenth of which name no AA entry.
 */
export function syntheticCatalog(entries: number, names: number): { aa: AaEntry[]; models: ProviderModel[] } {
  const families = [
    { f: 'llama', vendor: 'meta-llama', creator: 'Meta', versions: ['2', '3', '3.1', '3.2', '3.3', '4'] },
    { f: 'qwen', vendor: 'Qwen', creator: 'Alibaba', versions: ['1.5', '2', '2.5', '3'] },
    { f: 'mistral', vendor: 'mistralai', creator: 'Mistral', versions: ['1', '2', '3'] },
    { f: 'gemma', vendor: 'google', creator: 'Google', versions: ['1', '2', '3'] },
    { f: 'phi', vendor: 'microsoft', creator: 'Microsoft', versions: ['2', '3', '3.5', '4'] },
    { f: 'deepseek', vendor: 'deepseek-ai', creator: 'DeepSeek', versions: ['2', '2.5', '3'] },
    { f: 'granite', vendor: 'ibm-granite', creator: 'IBM', versions: ['3', '3.1', '3.2'] },
    { f: 'falcon', vendor: 'tiiuae', creator: 'TII', versions: ['2', '3'] },
    { f: 'yi', vendor: '01-ai', creator: '01.AI', versions: ['1', '1.5'] },
    { f: 'olmo', vendor: 'allenai', creator: 'AI2', versions: ['1', '2'] },
    { f: 'command', vendor: 'cohere', creator: 'Cohere', versions: ['1', '2'] },
    { f: 'internlm', vendor: 'internlm', creator: 'Shanghai AI Lab', versions: ['2', '2.5', '3'] },
  ];
  // AA benchmarks tuned models: "instruct" ones, and named variants (which providers may also call "-Instruct").
  const variants = ['instruct', 'coder', 'vision', 'mini', 'math', 'guard'];
  const sizes = ['1b', '3b', '7b', '8b', '14b', '32b', '70b', '405b'];
  const title = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
  const all: { aa: AaEntry; family: (typeof families)[number]; version: string; variant: string; size: string }[] = [];
  for (const family of families)
    for (const version of family.versions)
      for (const variant of variants)
        for (const size of sizes) {
          const slug = [family.f, ...version.split('.'), variant, size].join('-');
          const name = [title(family.f), version, title(variant), size.toUpperCase()].join(' ');
          all.push({ aa: { slug, name, creator: family.creator }, family, version, variant, size });
        }
  const random = rng(42);
  const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
  // A deterministic sample of ENTRIES distinct combinations; the rest are models AA does not list.
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  const chosen = all.slice(0, entries);
  const unlisted = all.slice(entries);
  const providers = ['together', 'groq', 'openrouter', 'fireworks', 'deepinfra'];
  const models: ProviderModel[] = [];
  for (let i = 0; i < names; i++) {
    const e = i % 10 === 9 && unlisted.length > 0 ? pick(unlisted) : pick(chosen);
    const provider = pick(providers);
    const tuned = e.variant === 'instruct' ? ['instruct'] : random() < 0.3 ? [e.variant, 'instruct'] : [e.variant];
    const sized = [e.version, e.size];
    let modelId: string;
    let name: string | undefined;
    switch (provider) {
      case 'together':
        modelId = `${e.family.vendor}/${[title(e.family.f), ...sized.map((x) => x.toUpperCase()), ...tuned.map(title), random() < 0.7 ? 'Turbo' : ''].filter(Boolean).join('-')}`;
        break;
      case 'groq': {
        const words = e.variant === 'instruct' ? [] : [e.variant];
        modelId = `${[e.family.f + e.version, ...words, e.size].join('-')}${pick(['', '-versatile', '-instant', '-specdec', '-preview'])}`;
        break;
      }
      case 'openrouter':
        modelId = `${e.family.vendor.toLowerCase()}/${[e.family.f, ...sized, ...tuned].join('-')}${pick(['', ':free', ':nitro', ':beta'])}`;
        break;
      case 'fireworks':
        modelId = `accounts/fireworks/models/${[e.family.f, `v${e.version.replace('.', 'p')}`, e.size, ...tuned].join('-')}`;
        name = [title(e.family.f), e.version, e.size.toUpperCase(), ...tuned.map(title)].join(' ');
        break;
      default:
        modelId = `${e.family.vendor}/${[title(e.family.f), ...sized.map((x) => x.toUpperCase()), ...tuned.map(title)].join('-')}`;
    }
    models.push({ provider, modelId, name });
  }
  return { aa: chosen.map((c) => c.aa), models };
}

/** 10 000 provider ids matched against 1 000 AA entries with the pure matcher (index built once). */
export function matcherTiming(): { seconds: number; build_seconds: number; matched: number } {
  const { aa, models } = syntheticCatalog(1_000, 10_000);
  const aliases = loadAliases();
  let best = Infinity;
  let buildBest = Infinity;
  let matched = 0;
  for (let run = 0; run < 3; run++) {
    const started = performance.now();
    const index = buildMatcherIndex(aa, aliases);
    const built = performance.now();
    matched = 0;
    for (const m of models) if (matchModel(index, m).slug) matched++;
    const done = performance.now();
    best = Math.min(best, (done - started) / 1000);
    buildBest = Math.min(buildBest, (built - started) / 1000);
  }
  return { seconds: best, build_seconds: buildBest, matched };
}

async function startFloor(stack: { apiKey: string; redisUrl: string; queuePrefix: string }, databaseUrl: string): Promise<{ url: string; stop(): Promise<void> }> {
  const apiKey = stack.apiKey;
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'floor-server.ts'), String(port)], {
    cwd: ROOT,
    env: {
      ...process.env,
      NODE_ENV: 'production',
      CALIBER_API_KEY: apiKey,
      DATABASE_URL: databaseUrl,
      REDIS_URL: stack.redisUrl,
      QUEUE_PREFIX: `${stack.queuePrefix}-floor`,
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = () => new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : (child.once('exit', () => resolve()), child.kill('SIGTERM'))));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await fetch(`${url}/best-model`, { headers: { authorization: `Bearer ${apiKey}` } }).then((r) => r.ok, () => false);
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error('floor server did not answer');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, stop };
}

/**
 * Warm-cache throughput of `GET /best-model?provider=<p>&metric=intelligence_index` through the
 * real gateway process: REQUESTS GETs, CONCURRENCY in flight on keep-alive connections, cycling
 * through every provider. Floor: the same load on a constant-JSON route in the same gateway setup
 * (bench/floor-server.ts, its own process). ratio = ours_rps / floor_rps (higher is better).
 * Also: the pure matcher, 10 000 provider ids against 1 000 AA entries.
 */
export async function bestModelBench(opts: { requests?: number; concurrency?: number; repeat?: number } = {}) {
  const requests = opts.requests ?? Number(process.env.BENCH_REQUESTS ?? 20_000);
  const concurrency = opts.concurrency ?? Number(process.env.BENCH_CONCURRENCY ?? 32);
  const repeat = opts.repeat ?? 3;

  const match = matcherTiming();

  const databaseUrl = await freshDatabase('caliber_bench_best_model');
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  const providers = await seedCatalog(db);
  const paths = providers.map((p) => `/best-model?provider=${encodeURIComponent(p)}&metric=intelligence_index`);

  const stack = await startStack(databaseUrl, {}, []);
  let floor: Awaited<ReturnType<typeof startFloor>> | undefined;
  const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: null });
  try {
    floor = await startFloor(stack, databaseUrl);
    // Warm the cache: one request per provider, then check every answer is cached.
    for (const path of paths) {
      const res = await fetch(`${stack.url}${path}`, { headers: { authorization: `Bearer ${stack.apiKey}` } });
      if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${await res.text()}`);
    }
    const cached = await redis.hlen(bestModelCacheKeys({ QUEUE_PREFIX: stack.queuePrefix }).cache);
    if (cached < paths.length) throw new Error(`only ${cached} of ${paths.length} best-model answers are cached after warming`);

    // One untimed warm-up each (JIT, connections), then alternated runs so both see the same machine state.
    await drive(stack.url, paths, stack.apiKey, Math.min(requests, 5_000), concurrency);
    await drive(floor.url, paths, stack.apiKey, Math.min(requests, 5_000), concurrency);
    const ours: number[] = [];
    const floors: number[] = [];
    for (let i = 0; i < repeat; i++) {
      ours.push(await drive(stack.url, paths, stack.apiKey, requests, concurrency));
      floors.push(await drive(floor.url, paths, stack.apiKey, requests, concurrency));
    }
    const seconds = Math.min(...ours);
    const floorSeconds = Math.min(...floors);

    await report({
      bench: 'best-model',
      n: requests,
      seconds: Number(seconds.toFixed(3)),
      per_s: Math.round(requests / seconds),
      floor_seconds: Number(floorSeconds.toFixed(3)),
      ratio: Number((floorSeconds / seconds).toFixed(2)),
      floor_per_s: Math.round(requests / floorSeconds),
      concurrency,
      providers: providers.length,
      match_10k_x_1k_seconds: Number(match.seconds.toFixed(3)),
      match_index_build_seconds: Number(match.build_seconds.toFixed(3)),
      match_matched: match.matched,
      runs: ours.map((s) => Number(s.toFixed(3))),
      floor_runs: floors.map((s) => Number(s.toFixed(3))),
    });
  } finally {
    redis.disconnect();
    await floor?.stop();
    await stack.stop();
    await db.end();
  }
}
