import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT, spawnService, type ChildService, type TestEnv } from '../harness.ts';

/** A gateway and workers as real processes (as `npm start` runs them), for scenarios that kill and restart them. */
export class ProcessStack {
  readonly children: ChildService[] = [];
  readonly port = 20_000 + Math.floor(Math.random() * 20_000);
  readonly url = `http://127.0.0.1:${this.port}`;

  constructor(
    readonly env: TestEnv,
    readonly extraEnv: Record<string, string> = {},
  ) {}

  processEnv(more: Record<string, string> = {}): Record<string, string> {
    return { ...this.env.env, LOG_LEVEL: 'info', PORT: String(this.port), WORKER_LOCK_DURATION_MS: '5000', WORKER_STALLED_INTERVAL_MS: '1000', ...this.extraEnv, ...more };
  }

  async gateway(more: Record<string, string> = {}): Promise<ChildService> {
    const g = spawnService('apps/gateway/src/main.ts', [], this.processEnv(more));
    this.children.push(g);
    // Polled rather than read from the log, which may be set quieter than info.
    const deadline = Date.now() + 30_000;
    while (!(await fetch(`${this.url}/healthz`).then((r) => r.ok, () => false))) {
      if (g.child.exitCode !== null || Date.now() > deadline) throw new Error(`gateway did not start:\n${g.output().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return g;
  }

  /** A worker process; `ready: false` returns at once (a worker started while a service is down). */
  async worker(queues: string, opts: { more?: Record<string, string>; ready?: boolean } = {}): Promise<ChildService> {
    // At info at least: readiness is read from the worker's log.
    const w = spawnService('apps/worker/src/main.ts', ['--queues', queues], this.processEnv({ LOG_LEVEL: 'info', ...opts.more }));
    this.children.push(w);
    if (opts.ready !== false) await w.waitForOutput(/workers started/);
    return w;
  }

  async request(method: string, path: string, body?: unknown, key: string | null = this.env.apiKey) {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json: any = text;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, body: json };
  }

  async stop(): Promise<void> {
    for (const c of this.children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGTERM');
    await Promise.race([Promise.all(this.children.map((c) => c.exited)), new Promise((r) => setTimeout(r, 15_000))]);
    for (const c of this.children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  }
}

/** Resident memory of a process, in MiB (Linux). */
export function rssMiB(pid: number | undefined): number {
  if (!pid) return 0;
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return line ? Math.round(Number(line.replace(/\D+/g, '')) / 1024) : 0;
}

/** Keeps a scenario's figures for the closing report: test-results/faults/<name>.json and a line on stdout. */
export async function report(name: string, figures: Record<string, unknown>): Promise<void> {
  const dir = join(ROOT, 'test-results', 'faults');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, `${name}.json`), `${JSON.stringify(figures, null, 2)}\n`);
  console.log(`[fault ${name}] ${JSON.stringify(figures)}`);
}
