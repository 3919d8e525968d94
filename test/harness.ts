import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, type ServerType } from '@hono/node-server';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, inject } from 'vitest';
import { createGateway, type Gateway } from '../apps/gateway/src/app.ts';
import { startWorkerProcess } from '../apps/worker/src/worker.ts';
import { headCalibrationModule, loadHeadCalibrationConfig } from '../libs/head-calibration/src/index.ts';
import { loadModelCatalogConfig, modelCatalogModule } from '../libs/model-catalog/src/index.ts';
import { loadResponseQualityConfig, responseQualityModule } from '../libs/response-quality/src/index.ts';
import { fineTuningModule, loadFineTuningConfig } from '../libs/fine-tuning/src/index.ts';
import { confidenceModule, loadConfidenceConfig } from '../libs/confidence/src/index.ts';
import { loadModelSelectionConfig, modelSelectionModule } from '../libs/model-selection/src/index.ts';
import { loadNotificationsConfig, notificationsModule } from '../libs/notifications/src/index.ts';
import {
  createLogger,
  createPlatform,
  loadPlatformConfig,
  type DomainModule,
  type PlatformContext,
  type QueueName,
  type RunningWorkers,
} from '../libs/platform/src/index.ts';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(check: () => Promise<T | undefined | false> | T | undefined | false, opts: { timeoutMs?: number; what?: string } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? 'condition'}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface TestEnv {
  databaseUrl: string;
  redisUrl: string;
  queuePrefix: string;
  modelsDir: string;
  apiKey: string;
  /** Settings for gateway and worker processes of this test file. */
  env: Record<string, string>;
  cleanup(): Promise<void>;
}

/**
 * A database of its own (copied from the migrated template), a queue prefix of its own and a
 * models directory of its own, so test files run in parallel without touching each other.
 */
export async function createTestEnv(extraEnv: Record<string, string> = {}): Promise<TestEnv> {
  const id = randomBytes(4).toString('hex');
  const server = inject('databaseUrl');
  const name = `caliber_t_${id}`;
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name} TEMPLATE ${inject('templateDatabase')}`);
  await admin.end();
  const url = new URL(server);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  const redisUrl = inject('redisUrl');
  const queuePrefix = `test-${id}`;
  const modelsDir = await mkdtemp(join(tmpdir(), 'caliber-models-'));
  const apiKey = `test-admin-key-${id}`;
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: queuePrefix,
    CALIBER_API_KEY: apiKey,
    MODELS_DIR: modelsDir,
    LOG_LEVEL: 'silent',
    CALIBRATE_HEADS: 'true',
    CALIBRATION_MIN_SAMPLES: '50',
    OUTBOX_POLL_MS: '200',
    JOB_BACKOFF_MS: '50',
    SHUTDOWN_TIMEOUT_MS: '5000',
    DB_POOL_SIZE: '5',
    ...extraEnv,
  };
  return {
    databaseUrl,
    redisUrl,
    queuePrefix,
    modelsDir,
    apiKey,
    env,
    async cleanup() {
      const redis = new Redis(redisUrl);
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `{${queuePrefix}:*`, 'COUNT', 1000);
        if (keys.length) await redis.del(...keys);
        cursor = next;
      } while (cursor !== '0');
      redis.disconnect();
      const c = new pg.Client({ connectionString: server });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
      await rm(modelsDir, { recursive: true, force: true });
    },
  };
}

export function testModules(env: Record<string, string>): DomainModule[] {
  return [
    headCalibrationModule(loadHeadCalibrationConfig(env)),
    modelCatalogModule(loadModelCatalogConfig(env)),
    responseQualityModule(loadResponseQualityConfig(env)),
    fineTuningModule(loadFineTuningConfig(env)),
    confidenceModule(loadConfidenceConfig(env)),
    modelSelectionModule(loadModelSelectionConfig(env)),
    notificationsModule(loadNotificationsConfig(env)),
  ];
}

type Json = Record<string, unknown> | unknown[];

/**
 * The real gateway on a real port, and (optionally) real BullMQ workers, in this process, wired to
 * the test file's database and queue prefix.
 */
export class Harness {
  private constructor(
    readonly testEnv: TestEnv,
    readonly platform: PlatformContext & { close(): Promise<void> },
    readonly gateway: Gateway,
    private readonly server: ServerType,
    readonly url: string,
    readonly workers: RunningWorkers | undefined,
  ) {}

  static async start(testEnv: TestEnv, opts: { env?: Record<string, string>; workers?: boolean | QueueName[] } = {}): Promise<Harness> {
    const env = { ...testEnv.env, ...opts.env };
    const config = loadPlatformConfig(env);
    const platform = createPlatform(config, { name: 'test', log: createLogger({ level: env.LOG_LEVEL ?? 'silent', name: 'test' }) });
    const modules = testModules(env);
    const gateway = createGateway(platform, modules);
    const server = serve({ fetch: gateway.app.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    const { port } = server.address() as AddressInfo;
    let workers: RunningWorkers | undefined;
    if (opts.workers !== false && opts.workers !== undefined) {
      const started = startWorkerProcess(platform, modules, { queues: opts.workers === true ? undefined : opts.workers, env });
      await started.schedulesRegistered;
      workers = started.running;
    }
    return new Harness(testEnv, platform, gateway, server, `http://127.0.0.1:${port}`, workers);
  }

  /** Sends a request as the admin unless `key` says otherwise (`null`: no Authorization header). */
  async request(
    method: string,
    path: string,
    opts: { json?: Json; body?: string; key?: string | null; headers?: Record<string, string> } = {},
  ): Promise<{ status: number; body: any; headers: Headers; text: string }> {
    const headers: Record<string, string> = { ...opts.headers };
    const key = opts.key === undefined ? this.testEnv.apiKey : opts.key;
    if (key !== null) headers.authorization = `Bearer ${key}`;
    let body = opts.body;
    if (opts.json !== undefined) {
      body = JSON.stringify(opts.json);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${this.url}${path}`, { method, headers, body, redirect: 'manual' });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, body: parsed, headers: res.headers, text };
  }

  async query<T extends pg.QueryResultRow = Record<string, any>>(text: string, params: unknown[] = []): Promise<T[]> {
    return (await this.platform.pool.query<T>(text, params)).rows;
  }

  #owner: pg.Pool | undefined;

  /**
   * A query as the login user without Caliber's role: the test server's superuser, which row-level
   * security does not apply to. For asserting what was stored across tenants.
   */
  async ownerQuery<T extends pg.QueryResultRow = Record<string, any>>(text: string, params: unknown[] = []): Promise<T[]> {
    this.#owner ??= new pg.Pool({ connectionString: this.testEnv.databaseUrl, max: 2 });
    return (await this.#owner.query<T>(text, params)).rows;
  }

  /** Creates a tenant through the admin route; returns its id and key. */
  async createTenant(name: string): Promise<{ id: string; key: string }> {
    const res = await this.request('POST', '/admin/tenants', { json: { name } });
    if (res.status !== 201) throw new Error(`creating tenant ${name}: ${res.status} ${res.text}`);
    return { id: res.body.id, key: res.body.api_key };
  }

  async stop(): Promise<void> {
    await this.#owner?.end();
    await this.workers?.close(5_000);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.gateway.close();
    await this.platform.close();
  }
}

export interface ChildService {
  child: ChildProcess;
  output: () => string;
  /** Resolves when a line of output matches. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs an app entry point (`apps/…/src/main.ts`, or the CLI) as a separate Node process. */
export function spawnService(entry: string, args: string[], env: Record<string, string>): ChildService {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, entry), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    for (const l of listeners) l();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    output: () => output,
    exited,
    waitForOutput(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pattern.test(output)) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`timed out waiting for ${pattern} in output:\n${output.slice(-3000)}`));
        }, timeoutMs);
        listeners.add(check);
        void exited.then(() => {
          if (listeners.has(check)) {
            listeners.delete(check);
            clearTimeout(timer);
            reject(new Error(`process exited before ${pattern} appeared:\n${output.slice(-3000)}`));
          }
        });
        check();
      });
    },
  };
}

/**
 * Registers beforeAll/afterAll hooks that give the calling test file (or describe block) its own
 * test environment and a started Harness; read them from the returned object inside tests.
 */
export function useHarness(opts: { env?: Record<string, string>; workers?: boolean | QueueName[] } = {}): { env: TestEnv; h: Harness } {
  const ctx = {} as { env: TestEnv; h: Harness };
  beforeAll(async () => {
    ctx.env = await createTestEnv(opts.env);
    ctx.h = await Harness.start(ctx.env, { workers: opts.workers });
  });
  afterAll(async () => {
    await ctx.h?.stop();
    await ctx.env?.cleanup();
  });
  return ctx;
}
