import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Agent, request } from 'node:http';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { confidenceTrends, dashboard } from '../libs/confidence/src/analytics.ts';
import { insertPerformanceMetrics, insertScores, recordOutcomes } from '../libs/confidence/src/ingest.ts';
import { createDatabase, withTenant, withTenantClient } from '../libs/platform/src/index.ts';
import { rng, freshDatabase, report, startStack, type Stack } from './lib.ts';

const MODELS = ['gpt-4o', 'claude-sonnet', 'llama-3.3-70b', 'mistral-large', 'gemini-2.0-flash', 'qwen-2.5-72b', 'deepseek-v3', 'phi-4', 'gemma-2-27b', 'command-r'];
const DAY = 86_400_000;

/**
 * N scores over the `days` before `end`, 10 models, confidences at 4 decimals as stored. With
 * `slice` [k, of], the scores fall in the k-th of `of` equal parts of that span, in order: a live
 * system's rows arrive in time order.
 */
function makeScores(n: number, end: number, seed = 7, days = 30, slice: [number, number] = [0, 1]) {
  const random = rng(seed);
  const span = (days * DAY) / slice[1];
  const start = end - days * DAY + slice[0] * span;
  const q = () => Math.round(random() * 1e4) / 1e4;
  return Array.from({ length: n }, (_, i) => {
    const [a, b] = [q(), q()].sort((x, y) => x - y);
    return {
      request_id: `req-${i}`,
      model: MODELS[i % MODELS.length]!,
      factual_confidence: q(),
      reasoning_confidence: q(),
      contextual_relevance: q(),
      uncertainty_lower: a!,
      uncertainty_upper: b!,
      model_consensus: { [MODELS[(i + 1) % MODELS.length]!]: q() },
      created_at: new Date(Math.min(end - 1, start + Math.floor(random() * span))).toISOString(),
    };
  });
}
type Score = ReturnType<typeof makeScores>[number];

async function createTenant(stack: Stack, name: string): Promise<{ id: string; key: string }> {
  const res = await fetch(`${stack.url}/admin/tenants`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  if (res.status !== 201) throw new Error(`creating a tenant: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { id: string; api_key: string };
  return { id: body.id, key: body.api_key };
}

/** Sends pre-serialised bodies, CONCURRENCY in flight on keep-alive connections; every answer must be 201. */
async function postAll(base: string, path: string, key: string, bodies: string[], concurrency: number): Promise<number> {
  const { hostname, port } = new URL(base);
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  let next = 0;
  const failures: string[] = [];
  const one = (body: string) =>
    new Promise<void>((resolve, reject) => {
      const req = request(
        { hostname, port, path, method: 'POST', agent, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            if (res.statusCode !== 201) failures.push(`${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 300)}`);
            resolve();
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const started = performance.now();
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < bodies.length) await one(bodies[next++]!);
      }),
    );
  } finally {
    agent.destroy();
  }
  if (failures.length) throw new Error(`${failures.length} of ${bodies.length} requests failed, e.g. ${failures[0]}`);
  return (performance.now() - started) / 1000;
}

function csvOf(tenantId: string, scores: Score[]): string {
  const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;
  return scores
    .map((s) =>
      [tenantId, s.request_id, s.model, s.factual_confidence, s.reasoning_confidence, s.contextual_relevance, s.uncertainty_lower, s.uncertainty_upper, quote(JSON.stringify(s.model_consensus)), s.created_at].join(','),
    )
    .join('\n');
}

/**
 * `confidence-ingest`: N scores through `POST /confidence/scores` with a tenant key, in batches of
 * 10 000, CONCURRENCY requests in flight, against the gateway process: validation, the tenant's
 * RLS transaction, the insert and the hourly rollup's UPSERT. Floor: `COPY` of the same rows into
 * confidence_scores (no rollup), one stream. ratio = floor_seconds / seconds (throughput share,
 * target ≥ 0.5); target ≥ 50 000 scores/s.
 */
export async function confidenceIngestBench(opts: { n?: number; batch?: number; concurrency?: number; repeat?: number } = {}) {
  const n = opts.n ?? Number(process.env.BENCH_SCORES ?? 500_000);
  const batch = opts.batch ?? 10_000;
  const concurrency = opts.concurrency ?? Number(process.env.BENCH_CONCURRENCY ?? 4);
  const repeat = opts.repeat ?? 3;
  const databaseUrl = await freshDatabase('caliber_bench_confidence_ingest');
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  const stack = await startStack(databaseUrl, {}, []);
  try {
    const tenant = await createTenant(stack, 'bench');
    // Live traffic: scores of the last 24 hours (10 models × 24 hours of rollup rows);
    // BENCH_SCORE_DAYS=30 spreads every batch over a month (a backfill: 7 200 rollup rows).
    const days = Number(process.env.BENCH_SCORE_DAYS ?? 1);
    const scores = makeScores(n, Date.now(), 7, days);
    const bodies = Array.from({ length: Math.ceil(n / batch) }, (_, b) => JSON.stringify({ scores: scores.slice(b * batch, (b + 1) * batch) }));
    const csv = csvOf(tenant.id, scores);
    const reset = async () => {
      await db.query('TRUNCATE confidence_scores, confidence_hourly, confidence_daily, confidence_hourly_pending CASCADE');
      await db.query('VACUUM ANALYZE confidence_scores, confidence_hourly, confidence_daily, confidence_hourly_pending');
    };
    const ours: number[] = [];
    const floors: number[] = [];
    for (let i = 0; i < repeat; i++) {
      await reset();
      const started = performance.now();
      const copy = db.query(
        copyFrom(
          `COPY confidence_scores (tenant_id, request_id, model, factual_confidence, reasoning_confidence, contextual_relevance, uncertainty_lower, uncertainty_upper, model_consensus, created_at) FROM STDIN WITH (FORMAT csv)`,
        ),
      );
      await pipeline(Readable.from([csv]), copy);
      floors.push((performance.now() - started) / 1000);
      await reset();
      ours.push(await postAll(stack.url, '/confidence/scores', tenant.key, bodies, concurrency));
    }
    // Every score stored once, and the rollup adds up to them.
    const { rows } = await db.query<{ scores: number; rolled: number; hours: number }>(
      `SELECT (SELECT count(*)::int FROM confidence_scores) AS scores,
              (SELECT sum(count)::int FROM (SELECT count FROM confidence_hourly WHERE model <> '' UNION ALL SELECT count FROM confidence_hourly_pending) r) AS rolled,
              (SELECT count(*)::int FROM confidence_hourly WHERE model <> '') AS hours`,
    );
    if (rows[0]!.scores !== n || rows[0]!.rolled !== n) throw new Error(`stored ${rows[0]!.scores} scores, rollup counts ${rows[0]!.rolled}; expected ${n}`);
    const seconds = Math.min(...ours);
    const floorSeconds = Math.min(...floors);
    await report({
      bench: 'confidence-ingest',
      n,
      seconds: Number(seconds.toFixed(3)),
      per_s: Math.round(n / seconds),
      floor_seconds: Number(floorSeconds.toFixed(3)),
      ratio: Number((floorSeconds / seconds).toFixed(2)),
      floor_per_s: Math.round(n / floorSeconds),
      batch,
      concurrency,
      days,
      rollup_rows: rows[0]!.hours,
      runs: ours.map((s) => Number(s.toFixed(3))),
      floor_runs: floors.map((s) => Number(s.toFixed(3))),
    });
  } finally {
    await stack.stop();
    await db.end();
  }
}

const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
};

/** Latency of GETs one at a time (keep-alive), in ms. */
async function latencies(base: string, paths: string[], key: string, total: number): Promise<number[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const { hostname, port } = new URL(base);
  const out: number[] = [];
  try {
    for (let i = 0; i < total; i++) {
      const path = paths[i % paths.length]!;
      const started = performance.now();
      await new Promise<void>((resolve, reject) => {
        const req = request({ hostname, port, path, agent, headers: { authorization: `Bearer ${key}` } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${path} → ${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 300)}`))));
        });
        req.on('error', reject);
        req.end();
      });
      out.push(performance.now() - started);
    }
  } finally {
    agent.destroy();
  }
  return out;
}

async function timeEach(total: number, fns: (() => Promise<unknown>)[]): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < total; i++) {
    const started = performance.now();
    await fns[i % fns.length]!();
    out.push(performance.now() - started);
  }
  return out;
}

const ms = (x: number) => Number(x.toFixed(2));

/**
 * `confidence-trends` and `confidence-dashboard`: one tenant with N (1 000 000) scores over 30
 * days, outcomes for a fifth of them and N performance metrics, stored through the routes' own
 * write functions; a second tenant with a fifth of that sits beside it (RLS must keep it out of
 * every answer). Timed: GETs one at a time through the gateway process,
 * p95 in ms (targets 10 and 100). Floor: the same query function called in-process on a direct
 * connection, without HTTP, auth or JSON. ratio = seconds / floor_seconds (p95s).
 */
export async function confidenceQueryBench(opts: { n?: number; requests?: number } = {}) {
  const n = opts.n ?? Number(process.env.BENCH_SCORES_QUERY ?? 1_000_000);
  const requests = opts.requests ?? 1_000;
  const databaseUrl = await freshDatabase('caliber_bench_confidence_query');
  const stack = await startStack(databaseUrl, {}, []);
  const handle = createDatabase(databaseUrl, { max: 4, applicationName: 'caliber-bench', role: 'caliber_app' });
  try {
    const tenants = [await createTenant(stack, 'bench'), await createTenant(stack, 'neighbour')];
    const end = Date.now();
    const seedStarted = performance.now();
    for (const [t, tenant] of tenants.entries()) {
      const random = rng(100 + t);
      // The neighbour holds a fifth as much: enough for its rows to be in the indexes' way.
      const rows = t === 0 ? n : Math.round(n / 5);
      for (let from = 0; from < rows; from += 10_000) {
        const scores = makeScores(Math.min(10_000, rows - from), end, 1_000 * t + from, 30, [from / 10_000, Math.ceil(rows / 10_000)]).map((s, i) => ({ ...s, request_id: `req-${from + i}` }));
        const metrics = scores.map((s, i) => ({
          endpoint: ['/chat', '/search', '/summarise', '/classify'][i % 4]!,
          request_id: s.request_id,
          model: s.model,
          response_time_ms: Math.round(50 + random() * 2_000),
          tokens_used: Math.floor(random() * 4_000),
          cache_hit_rate: Math.round(random() * 1e4) / 1e4,
          cpu_usage_percent: Math.round(random() * 100),
          memory_usage_mb: 512 + Math.floor(random() * 1024),
          system_load: Math.round(random() * 400) / 100,
          created_at: s.created_at,
        }));
        await withTenantClient(handle.pool, tenant.id, (client) => insertScores(client, tenant.id, scores));
        await withTenant(handle.db, tenant.id, async (tx) => {
          await insertPerformanceMetrics(tx, tenant.id, metrics);
          const judged = scores.filter((_, i) => i % 5 === 0);
          await recordOutcomes(
            tx,
            tenant.id,
            judged.map((s) => ({ request_id: s.request_id, correct: random() < (s.factual_confidence + s.reasoning_confidence + s.contextual_relevance) / 3, validation_method: 'automated_test' as const, validated_at: s.created_at })),
          );
        });
      }
    }
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    const admin = new pg.Client({ connectionString: databaseUrl });
    await admin.connect();
    await admin.query('VACUUM ANALYZE');
    // Flush the seed's dirty pages now, so no checkpoint writes them out while requests are timed.
    await admin.query('CHECKPOINT');
    await admin.end();

    const [tenant] = tenants as [{ id: string; key: string }];
    const iso = (t: number) => new Date(t).toISOString();
    const trendQueries = [
      { bucket: 'hour' as const, from: iso(end - 7 * DAY), to: iso(end) },
      { bucket: 'hour' as const, from: iso(end - 7 * DAY), to: iso(end), model: 'gpt-4o' },
      { bucket: 'day' as const, from: iso(end - 30 * DAY), to: iso(end) },
      { bucket: 'day' as const, from: iso(end - 30 * DAY), to: iso(end), model: 'phi-4' },
    ];
    const trendPaths = trendQueries.map((q) => `/confidence/trends?${new URLSearchParams(q as Record<string, string>)}`);
    const dashPaths = ['/confidence/dashboard', '/confidence/dashboard?hours=24'];

    await latencies(stack.url, trendPaths, tenant.key, 200); // warm-up: JIT, connections, caches
    const trends = await latencies(stack.url, trendPaths, tenant.key, requests);
    const trendFloor = await timeEach(requests, trendQueries.map((q) => () => withTenant(handle.db, tenant.id, (tx) => confidenceTrends(tx, tenant.id, q))));
    const points = (await (await fetch(`${stack.url}${trendPaths[0]}`, { headers: { authorization: `Bearer ${tenant.key}` } })).json()) as { buckets: { count: number }[] };
    const inWeek = points.buckets.reduce((s, b) => s + b.count, 0);

    await latencies(stack.url, dashPaths, tenant.key, 20);
    const dash = await latencies(stack.url, dashPaths, tenant.key, Math.max(100, requests / 5));
    const dashFloor = await timeEach(Math.max(100, requests / 5), [() => dashboard((fn) => withTenant(handle.db, tenant.id, fn), tenant.id, 24, 15)]);
    const sample = (await (await fetch(`${stack.url}/confidence/dashboard`, { headers: { authorization: `Bearer ${tenant.key}` } })).json()) as { scores: number; outcomes: number; performance: { requests: number }[] };

    const line = (bench: string, xs: number[], floor: number[], extra: Record<string, unknown>) =>
      report({
        bench,
        n,
        seconds: Number((percentile(xs, 0.95) / 1000).toFixed(5)),
        per_s: Math.round(xs.length / (xs.reduce((s, x) => s + x, 0) / 1000)),
        floor_seconds: Number((percentile(floor, 0.95) / 1000).toFixed(5)),
        ratio: Number((percentile(xs, 0.95) / percentile(floor, 0.95)).toFixed(2)),
        p50_ms: ms(percentile(xs, 0.5)),
        p95_ms: ms(percentile(xs, 0.95)),
        p99_ms: ms(percentile(xs, 0.99)),
        floor_p95_ms: ms(percentile(floor, 0.95)),
        requests: xs.length,
        tenants: tenants.length,
        seed_seconds: Number(seedSeconds.toFixed(1)),
        ...extra,
      });
    await line('confidence-trends', trends, trendFloor, { target_p95_ms: 10, scores_in_week: inWeek, queries: trendPaths });
    await line('confidence-dashboard', dash, dashFloor, {
      target_p95_ms: 100,
      window_scores: sample.scores,
      window_outcomes: sample.outcomes,
      window_metrics: sample.performance.reduce((s, p) => s + p.requests, 0),
    });
  } finally {
    await handle.close();
    await stack.stop();
  }
}
