import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAMES } from '../../libs/platform/src/index.ts';
import { createTestEnv, waitFor, Harness, type TestEnv } from '../harness.ts';
import { ProcessStack, report, rssMiB } from './stack.ts';

// 200 clients for FAULTS_LOAD_SECONDS (60) against a gateway process: reads served from Postgres
// and job starts, while a worker process runs the jobs. Nothing may fail, every job started must
// complete once, and the processes' memory must not keep growing.
const CLIENTS = Number(process.env.FAULTS_LOAD_CLIENTS ?? 200);
const SECONDS = Number(process.env.FAULTS_LOAD_SECONDS ?? 60);

let env: TestEnv;
let stack: ProcessStack;
let h: Harness;

beforeAll(async () => {
  env = await createTestEnv({ DB_POOL_SIZE: '20', NOTIFY_RECONCILE_CRON: 'off', MODEL_SELECTION_CRON: 'off', FINE_TUNE_RECONCILE_CRON: 'off', MAP_MODELS_CRON: 'off', ANALYZE_ERRORS_CRON: 'off', CONFIDENCE_CALIBRATION_CRON: 'off' });
  h = await Harness.start(env); // for looking at queues; serves nothing under load
  stack = new ProcessStack(env, { LOG_LEVEL: 'warn' });
  await stack.gateway();
  await stack.worker('notify,calibrate');
  const results = ['python', 'go', 'rust'].flatMap((language) =>
    ['small', 'large'].flatMap((size) => ['a', 'b'].flatMap((model) => Array.from({ length: 5 }, (_, i) => ({ run_id: 'load', language, size_category: size, model_id: model, provider: 'p', repository: `r${i}`, quality_score: model === 'a' ? 0.9 : 0.5, latency_ms: 100, cost_usd: 0.001 })))),
  );
  expect((await stack.request('POST', '/admin/model-selection/results', { results })).status).toBe(200);
  expect((await stack.request('POST', '/admin/model-selection/calibrate?wait=true')).status).toBe(200);
});

afterAll(async () => {
  await stack?.stop();
  await h?.stop();
  await env?.cleanup();
});

describe('load', () => {
  it(`serves ${CLIENTS} concurrent clients for ${SECONDS} s without an error, and completes every job it started once`, async () => {
    const reads = ['/model-config?language=python&size=small', '/model-config?language=go&lines=250000', '/admin/model-selection/configurations?limit=50', '/admin/schedules', '/healthz'];
    const latencies: number[] = [];
    const errors: string[] = [];
    let started = 0;
    const gatewayPid = stack.children[0]!.child.pid;
    const workerPid = stack.children[1]!.child.pid;
    const memory: { at_s: number; gateway_mib: number; worker_mib: number }[] = [];
    const notify = h.platform.queues.get('notify');
    // The calibration's change notifications run on this queue first: let them finish, then count from there.
    await waitFor(async () => (await h.query(`SELECT count(*)::int AS n FROM notifications WHERE status = 'pending'`))[0]!.n === 0 && (await notify.getJobCounts('waiting', 'active')).waiting === 0, { what: 'the notifications' });
    await waitFor(async () => (await notify.getJobCounts('active')).active === 0, { what: 'an idle notify queue' });
    const before = await notify.getJobCounts('completed', 'failed');
    const t0 = Date.now();
    const sampler = setInterval(() => memory.push({ at_s: Math.round((Date.now() - t0) / 1000), gateway_mib: rssMiB(gatewayPid), worker_mib: rssMiB(workerPid) }), 5_000);
    const end = t0 + SECONDS * 1000;
    let n = 0;
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (Date.now() < end) {
          const i = n++;
          // One request in 20 starts a job (the notify queue's reconcile sweep); the rest read.
          const enqueue = i % 20 === 0;
          const path = enqueue ? '/admin/schedules/notify-reconcile/run' : reads[i % reads.length]!;
          const t = performance.now();
          try {
            const res = await fetch(`${stack.url}${path}`, { method: enqueue ? 'POST' : 'GET', headers: { authorization: `Bearer ${env.apiKey}` } });
            await res.arrayBuffer();
            latencies.push(performance.now() - t);
            if (res.status !== (enqueue ? 202 : 200)) errors.push(`${path}: ${res.status}`);
            else if (enqueue) started++;
          } catch (err) {
            errors.push(`${path}: ${(err as Error).message}`);
          }
        }
      }),
    );
    const elapsed = (Date.now() - t0) / 1000;
    // Every job started is completed, once, and nothing is left behind in any queue.
    await waitFor(async () => {
      const c = await notify.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
      return c.waiting === 0 && c.active === 0 && c.delayed === 0 && (c.completed ?? 0) + (c.failed ?? 0) - (before.completed ?? 0) - (before.failed ?? 0) >= started && c;
    }, { timeoutMs: 120_000, what: 'the started jobs to finish' });
    clearInterval(sampler);
    memory.push({ at_s: Math.round((Date.now() - t0) / 1000), gateway_mib: rssMiB(gatewayPid), worker_mib: rssMiB(workerPid) });
    const after = await notify.getJobCounts('completed', 'failed');
    const counts = { completed: (after.completed ?? 0) - (before.completed ?? 0), failed: (after.failed ?? 0) - (before.failed ?? 0) };
    const leftovers = await Promise.all(QUEUE_NAMES.map(async (q) => [q, await h.platform.queues.get(q).getJobCounts('waiting', 'active', 'delayed')] as const));

    latencies.sort((a, b) => a - b);
    const q = (p: number) => Number(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!.toFixed(1));
    const warm = memory.find((m) => m.at_s >= 10) ?? memory[0]!;
    const last = memory.at(-1)!;
    await report('load', {
      clients: CLIENTS,
      seconds: Number(elapsed.toFixed(1)),
      requests: latencies.length + errors.length,
      per_s: Math.round(latencies.length / elapsed),
      errors: errors.length,
      p50_ms: q(0.5),
      p95_ms: q(0.95),
      p99_ms: q(0.99),
      max_ms: q(1),
      jobs_started: started,
      jobs_completed: counts.completed,
      jobs_failed: counts.failed,
      memory_mib: { gateway_warm: warm.gateway_mib, gateway_end: last.gateway_mib, worker_warm: warm.worker_mib, worker_end: last.worker_mib },
      memory_samples: memory,
    });
    expect(errors.slice(0, 5)).toEqual([]);
    expect(counts.completed).toBe(started);
    expect(counts.failed).toBe(0);
    for (const [queue, c] of leftovers) expect((c.waiting ?? 0) + (c.active ?? 0) + (c.delayed ?? 0), queue).toBe(0);
    // Flat: what the processes hold at the end is what they held once warm, give or take the heap's slack.
    expect(last.gateway_mib).toBeLessThan(warm.gateway_mib * 1.5 + 50);
    expect(last.worker_mib).toBeLessThan(warm.worker_mib * 1.5 + 50);
  });
});
