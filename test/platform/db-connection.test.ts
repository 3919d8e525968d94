import pg from 'pg';
import Cursor from 'pg-cursor';
import { describe, expect, it } from 'vitest';
import { createDatabase } from '../../libs/platform/src/index.ts';
import { useHarness, waitFor } from '../harness.ts';

const t = useHarness();

describe('Postgres connections', () => {
  it('survive the server closing a checked-out connection between two queries: the next query fails, the process does not', async () => {
    const { pool } = createDatabase(t.env.databaseUrl, { max: 2, applicationName: 'caliber-conn-test', role: 'none' });
    const client = await pool.connect();
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const killer = new pg.Client({ connectionString: t.env.databaseUrl });
    await killer.connect();
    await killer.query('SELECT pg_terminate_backend($1)', [pid]);
    await killer.end();
    // Without a listener on the checked-out client, its FATAL would be an unhandled 'error' event.
    await waitFor(async () => (client as unknown as { _queryable: boolean })._queryable === false, { what: 'the connection to be seen as lost' });
    await expect(client.query('SELECT 1')).rejects.toThrow(/not queryable|terminat/);
    client.release(true);
    expect((await pool.query('SELECT 1 AS ok')).rows[0].ok).toBe(1);
    await pool.end();
  });

  it('gives up on a query that never answers after DB_QUERY_TIMEOUT_MS, and never reuses its connection', async () => {
    const { pool } = createDatabase(t.env.databaseUrl, { max: 1, applicationName: 'caliber-conn-test', role: 'none', queryTimeoutMs: 300 });
    const client = await pool.connect();
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    await expect(client.query('SELECT pg_sleep(5)')).rejects.toThrow(/timeout/i);
    client.release();
    const next = (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    expect(next).not.toBe(pid); // a fresh connection: the abandoned one may still be running its statement
    await pool.end();
  });

  it('lets a cursor be read at its own pace past the timeout, to its last row', async () => {
    const { pool } = createDatabase(t.env.databaseUrl, { max: 1, applicationName: 'caliber-conn-test', role: 'none', queryTimeoutMs: 300 });
    const client = await pool.connect();
    const cursor = client.query(new Cursor('SELECT g FROM generate_series(1, 50) g'));
    let rows = 0;
    for (;;) {
      const batch = await cursor.read(10);
      if (batch.length === 0) break;
      rows += batch.length;
      await new Promise((r) => setTimeout(r, 150)); // a slow consumer: 750 ms in all
    }
    await cursor.close();
    client.release();
    expect(rows).toBe(50);
    await pool.end();
  });
});
