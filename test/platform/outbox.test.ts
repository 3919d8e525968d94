import { drizzle } from 'drizzle-orm/node-postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  appendOutbox,
  createLogger,
  createPlatform,
  defineJob,
  loadPlatformConfig,
  outboxEvent,
  OutboxRelay,
  type PlatformContext,
} from '../../libs/platform/src/index.ts';
import { createTestEnv, waitFor, type TestEnv } from '../harness.ts';

const pingJob = defineJob('notify', 'outbox-test', z.object({ n: z.number().int() }));

let env: TestEnv;
let platform: PlatformContext & { close(): Promise<void> };

beforeAll(async () => {
  env = await createTestEnv();
  platform = createPlatform(loadPlatformConfig(env.env), { name: 'outbox-test', log: createLogger({ level: 'silent', name: 't' }) });
});
afterAll(async () => {
  await platform?.close();
  await env?.cleanup();
});

async function commitEvents(ns: number[], causedBy = 'test/1'): Promise<number[]> {
  return drizzle({ client: platform.pool }).transaction((tx) =>
    appendOutbox(tx, ns.map((n) => outboxEvent(pingJob, { n })), causedBy),
  );
}

const relay = (pollMs = 60_000) => new OutboxRelay({ pool: platform.pool, queues: platform.queues, log: platform.log, pollMs });
const notifyJobs = async () => (await platform.queues.get('notify').getJobs(['waiting', 'delayed', 'prioritized'])).filter((j) => j.name === 'outbox-test');

describe('outbox relay', () => {
  it('relays committed events with the outbox id as job id, once', async () => {
    const ids = await commitEvents([1, 2, 3]);
    const r = relay();
    expect(await r.drain()).toBe(3);
    const jobs = await notifyJobs();
    expect(jobs.map((j) => j.id).sort()).toEqual(ids.map((id) => `outbox-${id}`).sort());
    expect(jobs.map((j) => j.data.n).sort()).toEqual([1, 2, 3]);
    expect(await r.drain()).toBe(0);
    const rows = await platform.pool.query('SELECT relayed_at FROM outbox WHERE id = ANY($1)', [ids]);
    expect(rows.rows.every((row) => row.relayed_at !== null)).toBe(true);
  });

  it('duplicates nothing when a relay died after enqueueing but before marking the rows', async () => {
    const ids = await commitEvents([10, 11]);
    await relay().drain();
    const before = (await notifyJobs()).length;
    // What the database looks like if the relay's commit never happened.
    await platform.pool.query('UPDATE outbox SET relayed_at = NULL WHERE id = ANY($1)', [ids]);
    expect(await relay().drain()).toBe(2);
    const jobs = await notifyJobs();
    expect(jobs).toHaveLength(before);
    expect(jobs.filter((j) => ids.map((id) => `outbox-${id}`).includes(j.id ?? ''))).toHaveLength(2);
  });

  it('loses nothing when no relay ran between the commit and a later start', async () => {
    const ids = await commitEvents([20]);
    const pending = await platform.pool.query('SELECT id FROM outbox WHERE relayed_at IS NULL AND id = ANY($1)', [ids]);
    expect(pending.rowCount).toBe(1);
    const r = relay(50);
    r.start();
    try {
      await waitFor(async () => (await platform.queues.get('notify').getJob(`outbox-${ids[0]}`)) ?? false, { what: 'relayed job' });
    } finally {
      await r.stop();
    }
  });

  it('never relays the events of a rolled-back transaction', async () => {
    await expect(
      drizzle({ client: platform.pool }).transaction(async (tx) => {
        await appendOutbox(tx, [outboxEvent(pingJob, { n: 30 })]);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect((await platform.pool.query("SELECT 1 FROM outbox WHERE payload->>'n' = '30'")).rowCount).toBe(0);
  });

  it('is woken by NOTIFY on commit, without waiting for its poll interval', async () => {
    const r = relay(60_000);
    r.start();
    try {
      // Let the listener connect: the first drain at start relays nothing.
      await waitFor(async () => (await platform.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN caliber_outbox'")).rowCount === 1, {
        what: 'LISTEN',
      });
      const [id] = await commitEvents([40]);
      await waitFor(async () => (await platform.queues.get('notify').getJob(`outbox-${id}`)) ?? false, { timeoutMs: 5_000, what: 'notified relay' });
    } finally {
      await r.stop();
    }
  });

  it('purges relayed rows past their retention, never pending ones', async () => {
    const ids = (
      await platform.pool.query<{ id: number }>(
        `INSERT INTO outbox (queue, job_name, payload, relayed_at) VALUES
           ('notify', 'old', '{}', now() - interval '8 days'), ('notify', 'recent', '{}', now() - interval '1 hour'),
           ('notify', 'pending', '{}', NULL)
         RETURNING id`,
      )
    ).rows.map((r) => r.id);
    const purging = new OutboxRelay({ pool: platform.pool, queues: platform.queues, log: platform.log, pollMs: 60_000, retentionMs: 7 * 24 * 3600 * 1000 });
    expect(await purging.purge()).toBeGreaterThanOrEqual(1);
    const left = (await platform.pool.query<{ job_name: string }>('SELECT job_name FROM outbox WHERE id = ANY($1) ORDER BY id', [ids])).rows;
    expect(left.map((r) => r.job_name)).toEqual(['recent', 'pending']);
    await platform.pool.query('DELETE FROM outbox WHERE id = ANY($1)', [ids]);
  });

  it('checks payloads against the job schema when the event is written', () => {
    expect(() => outboxEvent(pingJob, { n: 'one' as unknown as number })).toThrow(z.ZodError);
  });

  it('keeps rows pending and records the error while Redis is unreachable', async () => {
    const offline = createPlatform(loadPlatformConfig({ ...env.env, REDIS_URL: 'redis://127.0.0.1:1' }), {
      name: 'offline',
      log: createLogger({ level: 'silent', name: 't' }),
    });
    try {
      const [id] = await commitEvents([50]);
      await expect(new OutboxRelay({ pool: offline.pool, queues: offline.queues, log: offline.log, pollMs: 60_000 }).drain()).rejects.toThrow();
      const row = (await platform.pool.query('SELECT relayed_at, attempts, last_error FROM outbox WHERE id = $1', [id])).rows[0];
      expect(row).toMatchObject({ relayed_at: null, attempts: 1 });
      expect(row.last_error).toMatch(/Redis/);
      expect(await relay().drain()).toBeGreaterThanOrEqual(1);
    } finally {
      await offline.close();
    }
  });
});
