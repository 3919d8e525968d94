import pg from 'pg';
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

  it('gives up on a query that never answers after DB_QUERY_TIMEOUT_MS', async () => {
    const { pool } = createDatabase(t.env.databaseUrl, { max: 1, applicationName: 'caliber-conn-test', role: 'none', queryTimeoutMs: 300 });
    await expect(pool.query('SELECT pg_sleep(5)')).rejects.toThrow(/timeout/i);
    await pool.end();
  });
});
