import { sql } from 'drizzle-orm';
import pg from 'pg';
import type { z } from 'zod';
import type { Executor } from './db.ts';
import type { Logger } from './logger.ts';
import type { JobDefinition, QueueName, Queues } from './queues.ts';
import { QUEUE_NAMES } from './queues.ts';
import { outbox } from './schema.ts';
import { groupBy } from './util.ts';

const CHANNEL = 'caliber_outbox';

export interface OutboxEvent {
  queue: QueueName;
  name: string;
  payload: unknown;
}

/** Builds an outbox event whose payload is checked against the job's schema now, not at relay time. */
export function outboxEvent<S extends z.ZodType>(job: JobDefinition<S>, payload: z.input<S>): OutboxEvent {
  return { queue: job.queue, name: job.name, payload: job.schema.parse(payload) };
}

export function outboxJobId(id: number): string {
  return `outbox-${id}`;
}

/**
 * Writes events inside the caller's transaction. The NOTIFY is delivered only if that transaction
 * commits, which wakes the relays at once; their polling covers a missed notification.
 */
export async function appendOutbox(tx: Executor, events: OutboxEvent[], causedBy?: string): Promise<number[]> {
  if (events.length === 0) return [];
  const rows = await tx
    .insert(outbox)
    .values(events.map((e) => ({ queue: e.queue, jobName: e.name, payload: e.payload, causedBy })))
    .returning({ id: outbox.id });
  await tx.execute(sql`select pg_notify(${CHANNEL}, '')`);
  return rows.map((r) => r.id);
}

interface PendingRow {
  id: number;
  queue: string;
  job_name: string;
  payload: unknown;
}

/**
 * Moves committed outbox rows into BullMQ. Any number of relays may run (one per worker process):
 * `FOR UPDATE SKIP LOCKED` hands each row to one of them, and the deterministic job id makes a
 * re-relay after a crash between `addBulk` and the commit a no-op in BullMQ.
 */
export class OutboxRelay {
  #timer: NodeJS.Timeout | undefined;
  #listener: pg.Client | undefined;
  #draining: Promise<number> | undefined;
  #again = false;
  #stopped = true;

  constructor(
    private readonly opts: {
      pool: pg.Pool;
      queues: Queues;
      log: Logger;
      pollMs: number;
      /**
       * Where to LISTEN: a session is needed, so behind a transaction-mode pooler this is Postgres
       * itself (DATABASE_LISTEN_URL); `off` relays by polling alone. Default: the pool's database.
       */
      listenUrl?: string;
      batchSize?: number;
      /** Relayed rows older than this are deleted (they only serve `?wait=true` follow-ups). */
      retentionMs?: number;
    },
  ) {}

  #lastPurge = 0;

  /**
   * Deletes rows relayed more than `retentionMs` ago, a bounded batch at a time; pending rows are
   * never touched. Run from the poll timer at most once an hour.
   */
  async purge(): Promise<number> {
    const retentionMs = this.opts.retentionMs ?? 7 * 24 * 3600 * 1000;
    let deleted = 0;
    for (;;) {
      const { rowCount } = await this.opts.pool.query(
        `DELETE FROM outbox WHERE id IN (
           SELECT id FROM outbox WHERE relayed_at < now() - make_interval(secs => $1::float8 / 1000) ORDER BY id LIMIT 5000)`,
        [retentionMs],
      );
      deleted += rowCount ?? 0;
      if ((rowCount ?? 0) < 5000) break;
    }
    if (deleted > 0) this.opts.log.debug({ deleted }, 'purged relayed outbox rows');
    return deleted;
  }

  #maybePurge(): void {
    if (Date.now() - this.#lastPurge < 3_600_000) return;
    this.#lastPurge = Date.now();
    void this.purge().catch((err: unknown) => this.opts.log.warn({ err }, 'outbox purge failed; will try again'));
  }

  start(): void {
    this.#stopped = false;
    this.#timer = setInterval(() => {
      void this.drain().catch(() => {});
      this.#maybePurge();
    }, this.opts.pollMs);
    void this.#listen();
    void this.drain().catch(() => {});
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => {});
    await this.#draining?.catch(() => {});
  }

  /** Relays everything pending now; concurrent calls share one pass (and trigger one more). */
  drain(): Promise<number> {
    if (this.#draining) {
      this.#again = true;
      return this.#draining;
    }
    this.#draining = (async () => {
      let total = 0;
      try {
        do {
          this.#again = false;
          for (;;) {
            const relayed = await this.relayBatch();
            total += relayed;
            if (relayed < (this.opts.batchSize ?? 500)) break;
          }
        } while (this.#again && !this.#stopped);
        return total;
      } finally {
        this.#draining = undefined;
      }
    })();
    return this.#draining;
  }

  async relayBatch(): Promise<number> {
    const limit = this.opts.batchSize ?? 500;
    const client = await this.opts.pool.connect();
    let ids: number[] = [];
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<PendingRow>(
        // Rows naming a queue this version does not know stay pending instead of blocking the rest.
        `SELECT id, queue, job_name, payload FROM outbox
          WHERE relayed_at IS NULL AND queue = ANY($2) ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`,
        [limit, QUEUE_NAMES],
      );
      ids = rows.map((r) => r.id);
      if (rows.length > 0) {
        for (const [queue, queueRows] of groupBy(rows, (r) => r.queue as QueueName)) {
          await this.opts.queues.connected(queue).addBulk(
            queueRows.map((r) => ({ name: r.job_name, data: r.payload, opts: { jobId: outboxJobId(r.id) } })),
          );
        }
        await client.query('UPDATE outbox SET relayed_at = now() WHERE id = ANY($1)', [ids]);
      }
      await client.query('COMMIT');
      if (rows.length > 0) this.opts.log.debug({ count: rows.length }, 'relayed outbox events');
      return rows.length;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      if (ids.length > 0) {
        this.opts.log.warn({ err, count: ids.length }, 'outbox relay failed; will retry');
        await this.opts.pool
          .query('UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)', [
            ids,
            String((err as Error).message ?? err).slice(0, 1000),
          ])
          .catch(() => {});
      }
      throw err;
    } finally {
      client.release();
    }
  }

  async #listen(): Promise<void> {
    if (this.opts.listenUrl === 'off') return;
    while (!this.#stopped) {
      const client = new pg.Client(
        this.opts.listenUrl
          ? // A link that dies quietly is noticed (keepalive); polling relays meanwhile.
            { connectionString: this.opts.listenUrl, application_name: 'caliber-relay-listen', keepAlive: true, connectionTimeoutMillis: 10_000 }
          : this.opts.pool.options,
      );
      // Attached before anything else: an 'error' without a listener would crash the process.
      const lost = new Promise<void>((resolve) => {
        client.on('error', () => resolve());
        client.once('end', () => resolve());
      });
      try {
        await client.connect();
        if (this.#stopped) {
          await client.end();
          return;
        }
        this.#listener = client;
        client.on('notification', () => void this.drain().catch(() => {}));
        await client.query(`LISTEN ${CHANNEL}`);
        await lost;
      } catch {
        // Polling keeps relaying while the listener is down; try to listen again shortly.
      }
      await client.end().catch(() => {});
      if (!this.#stopped) await new Promise((r) => setTimeout(r, 1_000));
    }
  }
}

