import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { ROOT, waitFor, type Harness } from '../harness.ts';

export const FT = '/api/analytics/model-improvement/fine-tuning';
const R = '/api/analytics/response-quality';

let n = 0;

/**
 * Records `count` responses of `model`, each with negative full feedback and a correction
 * (`correction(i)`), in one batch. Returns their response ids.
 */
export async function seedCorrections(
  h: Harness,
  model: string,
  count: number,
  opts: { query?: (i: number) => string; correction?: (i: number) => string; negative?: boolean } = {},
): Promise<string[]> {
  const batch = n++;
  const ids = Array.from({ length: count }, (_, i) => `${model}-b${batch}-r${i}`);
  const items = ids.map((id, i) => ({
    response_id: id,
    model_id: model,
    query: opts.query?.(i) ?? `What is the capital of country ${batch}-${i}?`,
    response: 'A wrong answer',
    feedback:
      opts.negative === false
        ? { type: 'full', stars: 5, correction: opts.correction?.(i) ?? `Capital ${batch}-${i}` }
        : { type: 'full', categories: ['factual_error'], comment: 'wrong capital', correction: opts.correction?.(i) ?? `The capital is City ${batch}-${i}.` },
  }));
  const res = await h.request('POST', `${R}/response`, { json: { items } });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return ids;
}

export async function grant(h: Harness, account: string, amount: number): Promise<void> {
  const res = await h.request('POST', `/admin/credits/${account}/grant`, { json: { amount } });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
}

export async function createJob(h: Harness, body: Record<string, unknown>): Promise<{ id: string; status: string }> {
  const res = await h.request('POST', `${FT}/jobs`, { json: body });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.job;
}

export async function ledgerKinds(h: Harness, account: string): Promise<string[]> {
  const res = await h.request('GET', `/admin/credits/${account}`);
  return res.body.ledger.map((e: { kind: string }) => e.kind);
}

export const TRAIN_SCRIPT = join(ROOT, 'test/fixtures/fine-tuning/train.sh');

/** Whether a process runs (a zombie waiting to be reaped by init does not). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8') : '';
  return !/^\d+ \(.*\) Z/.test(stat);
}

/** Pids the `wait*` mode of the training script wrote, one per run. */
export function scriptPids(dataDir: string, jobId: string): number[] {
  const file = join(dataDir, jobId, 'output', 'pids');
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').map(Number) : [];
}

export const letGo = (dataDir: string, jobId: string) => writeFileSync(join(dataDir, jobId, 'output', 'go'), '');

export async function jobWhen(h: Harness, id: string, done: (job: any) => boolean, what: string, timeoutMs = 20_000): Promise<any> {
  return waitFor(async () => {
    const job = (await h.request('GET', `${FT}/jobs/${id}`)).body.job;
    return done(job) ? job : undefined;
  }, { what, timeoutMs });
}

