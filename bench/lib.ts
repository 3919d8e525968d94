import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runMigrations } from '../libs/platform/src/db.ts';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface BenchResult {
  bench: string;
  n: number;
  seconds: number;
  per_s: number;
  floor_seconds: number;
  ratio: number;
  [extra: string]: unknown;
}

/** Best (lowest) of `repeat` timings of `fn`, in seconds, with every timing kept; `after` runs untimed. */
export async function best(repeat: number, fn: () => Promise<unknown>, after?: () => Promise<unknown>): Promise<{ best: number; all: number[] }> {
  const all: number[] = [];
  for (let i = 0; i < repeat; i++) {
    const started = performance.now();
    await fn();
    all.push((performance.now() - started) / 1000);
    await after?.();
  }
  return { best: Math.min(...all), all: all.map((s) => Number(s.toFixed(3))) };
}

/** A seeded PRNG (mulberry32): the same synthetic data every run. */
export function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A fresh, migrated database of the benchmark's own on the server in BENCH_DATABASE_URL. */
export async function freshDatabase(name: string): Promise<string> {
  const server = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(server);
  url.pathname = `/${name}`;
  await runMigrations(url.toString());
  return url.toString();
}

/**
 * FILES library files, each with raw scores for HEADS heads × 2 labels ("yes" = x, "no" = 1 − x,
 * x skewed differently per head), generated inside Postgres so seeding is quick and repeatable.
 */
export async function seedLibrary(db: pg.Client, files: number, heads: number): Promise<void> {
  await db.query('SELECT setseed(0.42)');
  await db.query(`INSERT INTO library_files (path) SELECT '/music/' || g || '.mp3' FROM generate_series(1, $1) g`, [files]);
  await db.query(
    `INSERT INTO library_tags (file_id, model_name, head_name, label, raw_score)
     SELECT f.id, 'effnet', 'head' || h, l.label, CASE WHEN l.label = 'yes' THEN s.x ELSE 1 - s.x END
       FROM library_files f
      CROSS JOIN generate_series(1, $1) h
      CROSS JOIN LATERAL (SELECT power(random(), 1 + h / 5.0) AS x) s
      CROSS JOIN (VALUES ('yes'), ('no')) l(label)`,
    [heads],
  );
  await db.query('VACUUM ANALYZE library_tags');
}

export interface Stack {
  url: string;
  redisUrl: string;
  queuePrefix: string;
  apiKey: string;
  modelsDir: string;
  stop(): Promise<void>;
}

/** The real gateway and worker processes, as `npm start` runs them, on a database of the bench's. */
export async function startStack(
  databaseUrl: string,
  env: Record<string, string>,
  workerQueues: string[],
  opts: { workerProcesses?: number } = {},
): Promise<Stack> {
  const port = await freePort();
  const modelsDir = await mkdtemp(join(tmpdir(), 'caliber-bench-'));
  const apiKey = 'bench-admin-key-0123456789';
  const fullEnv = {
    ...process.env,
    NODE_ENV: 'production',
    DATABASE_URL: databaseUrl,
    REDIS_URL: process.env.BENCH_REDIS_URL ?? process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    QUEUE_PREFIX: `bench-${process.pid}`,
    CALIBER_API_KEY: apiKey,
    MODELS_DIR: modelsDir,
    PORT: String(port),
    LOG_LEVEL: 'warn',
    ...env,
  };
  const run = (entry: string, args: string[]): ChildProcess =>
    spawn(process.execPath, ['--import', 'tsx', join(ROOT, entry), ...args], { cwd: ROOT, env: fullEnv, stdio: ['ignore', 'inherit', 'inherit'] });
  const children = [run('apps/gateway/src/main.ts', [])];
  if (workerQueues.length > 0) {
    for (let i = 0; i < (opts.workerProcesses ?? 1); i++) children.push(run('apps/worker/src/main.ts', ['--queues', workerQueues.join(',')]));
  }
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ok = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error('stack did not become ready');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    redisUrl: fullEnv.REDIS_URL,
    queuePrefix: fullEnv.QUEUE_PREFIX,
    apiKey,
    modelsDir,
    async stop() {
      await Promise.all(
        children.map((c) => new Promise<void>((resolve) => (c.exitCode !== null ? resolve() : (c.once('exit', () => resolve()), c.kill('SIGTERM'))))),
      );
    },
  };
}

export function machine() {
  const cpu = cpus();
  return { cpus: cpu.length, cpu_model: cpu[0]?.model ?? 'unknown', memory_gib: Math.round(totalmem() / 2 ** 30), node: process.version };
}

/** Prints the line and keeps it in `results/<file>.json` (default: the bench's name). */
export async function report(result: BenchResult, file = result.bench): Promise<void> {
  const line = JSON.stringify(result);
  console.log(line);
  await mkdir(join(ROOT, 'bench', 'results'), { recursive: true });
  await writeFile(join(ROOT, 'bench', 'results', `${file}.json`), `${JSON.stringify({ ...result, machine: machine(), at: new Date().toISOString() }, null, 2)}\n`);
}
