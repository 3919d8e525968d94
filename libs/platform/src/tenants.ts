import { createHash, randomBytes } from 'node:crypto';
import { createRoute, z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import type { Context } from 'hono';
import type pg from 'pg';
import type { Database, Executor } from './db.ts';
import { ApiError, createRouter, errorSchema, jsonContent, standardErrors, type AppEnv } from './http.ts';

/** Tenant keys start with this, so a key's kind is known before any lookup (and leaks are greppable). */
export const TENANT_KEY_PREFIX = 'clbt_';

/** SHA-256 of a key, as stored: keys are 192 random bits, so no slow hash is needed. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}
export const hashTenantKey = hashApiKey;

/** A new key of a kind (`clbt_`, `clbp_`): 192 random bits, its hash and the prefix shown in listings. */
export function newApiKey(kind: string, shown = 6): { key: string; hash: string; prefix: string } {
  const key = `${kind}${randomBytes(24).toString('base64url')}`;
  return { key, hash: hashApiKey(key), prefix: key.slice(0, kind.length + shown) };
}

export function newTenantKey(): { key: string; hash: string; prefix: string } {
  return newApiKey(TENANT_KEY_PREFIX);
}

/**
 * The tenant a key belongs to, or undefined for an unknown or revoked key. The lookup is by the
 * key's hash (a unique index), so timing says nothing about how much of a key was right.
 */
export async function findTenantKey(pool: pg.Pool, key: string): Promise<{ tenantId: string; keyId: number } | undefined> {
  if (!key.startsWith(TENANT_KEY_PREFIX)) return undefined;
  const { rows } = await pool.query<{ tenant_id: string; id: number }>(
    'SELECT tenant_id, id FROM tenant_api_keys WHERE key_hash = $1 AND revoked_at IS NULL',
    [hashTenantKey(key)],
  );
  return rows[0] ? { tenantId: rows[0].tenant_id, keyId: rows[0].id } : undefined;
}

/** The setting the tenant tables' row-level security policies read. */
export const TENANT_SETTING = 'app.tenant_id';

/**
 * Runs `fn` in a transaction that can see (and write) only `tenantId`'s rows: the tenant is set
 * for this transaction alone (`set_config(…, true)`), so a pooled connection never carries it
 * into another request. A deadlock or serialization failure is retried: `fn` runs again, so it
 * must keep its effects in the database (or return them).
 */
export async function withTenant<T>(db: Database, tenantId: string, fn: (tx: Executor) => Promise<T>): Promise<T> {
  // One connection, BEGIN and the setting in one round trip (withTenantClient), Drizzle on top.
  const pool = (db as unknown as { $client: pg.Pool }).$client;
  return withTenantClient(pool, tenantId, (client) => fn(drizzle({ client })));
}

/**
 * `withTenant` on a raw pooled connection, for work Drizzle cannot express (COPY). BEGIN and the
 * tenant setting go in one round trip; a connection that cannot roll back is destroyed.
 */
export async function withTenantClient<T>(pool: pg.Pool, tenantId: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  if (!UUID.test(tenantId)) throw new Error('tenant id must be a UUID');
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    let broken = false;
    try {
      await client.query(`BEGIN; SELECT set_config('${TENANT_SETTING}', ${client.escapeLiteral(tenantId)}, true)`);
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => (broken = true));
      // Drizzle wraps the driver's error; Postgres' code is on its cause.
      const code = (err as { cause?: { code?: string } }).cause?.code ?? (err as { code?: string }).code;
      if ((code === '40P01' || code === '40001') && attempt < 3) continue;
      throw err;
    } finally {
      client.release(broken);
    }
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const TENANT_HEADER = 'x-tenant-id';

/**
 * The tenant a tenant route acts for: the tenant of the key, or — for the admin key — the tenant
 * named in `X-Tenant-Id` (operators looking at a tenant's data).
 */
export function tenantOf(c: Context<AppEnv>): string {
  const principal = c.get('principal');
  if (principal?.kind === 'tenant') return principal.tenantId;
  const named = c.req.header(TENANT_HEADER);
  if (principal?.kind === 'admin' && named !== undefined) {
    if (!UUID.test(named)) throw new ApiError(400, 'invalid_request', 'X-Tenant-Id must be a tenant id (a UUID)');
    return named.toLowerCase();
  }
  throw new ApiError(400, 'tenant_required', 'This route works on one tenant\'s data: call it with a tenant key, or with the admin key and "X-Tenant-Id: <tenant id>"');
}

/** Admin key answers use the named tenant; it must exist, or its data reads would silently be empty. */
export async function assertTenantExists(pool: pg.Pool, tenantId: string): Promise<void> {
  const { rowCount } = await pool.query('SELECT 1 FROM tenants WHERE id = $1', [tenantId]);
  if (!rowCount) throw new ApiError(404, 'not_found', `No tenant ${tenantId}`);
}

const keySchema = z.object({ id: z.number().int(), prefix: z.string(), created_at: z.string(), revoked_at: z.string().nullable() });
const tenantSchema = z
  .object({ id: z.string(), name: z.string(), created_at: z.string(), keys: z.array(keySchema) })
  .openapi('Tenant');
const createdKeySchema = z.object({
  id: z.string().openapi({ description: 'Tenant id' }),
  name: z.string(),
  api_key: z.string().openapi({ description: 'Shown once: Caliber keeps only its hash' }),
  key_id: z.number().int(),
});
const tenantParams = z.object({ id: z.string().regex(UUID, 'not a tenant id') });

const createTenantRoute = createRoute({
  method: 'post',
  path: '/admin/tenants',
  tags: ['tenants'],
  summary: 'Create a tenant and its first API key (shown once)',
  security: [{ bearer: [] }],
  request: {
    body: {
      required: true,
      content: { 'application/json': { schema: z.object({ name: z.string().trim().min(1).max(200) }).strict() } },
    },
  },
  responses: {
    201: jsonContent(createdKeySchema, 'Created'),
    409: jsonContent(errorSchema, 'A tenant of that name exists'),
    ...standardErrors,
  },
});

const listTenantsRoute = createRoute({
  method: 'get',
  path: '/admin/tenants',
  tags: ['tenants'],
  summary: 'Tenants with their keys (prefixes only)',
  security: [{ bearer: [] }],
  responses: { 200: jsonContent(z.object({ items: z.array(tenantSchema) }), 'Tenants'), ...standardErrors },
});

const addKeyRoute = createRoute({
  method: 'post',
  path: '/admin/tenants/{id}/keys',
  tags: ['tenants'],
  summary: 'Issue another key for a tenant (to rotate: issue, deploy, then revoke the old one)',
  security: [{ bearer: [] }],
  request: { params: tenantParams },
  responses: { 201: jsonContent(createdKeySchema, 'Issued'), 404: jsonContent(errorSchema, 'No such tenant'), ...standardErrors },
});

const revokeKeyRoute = createRoute({
  method: 'delete',
  path: '/admin/tenants/{id}/keys/{key_id}',
  tags: ['tenants'],
  summary: 'Revoke a tenant key; requests with it get 401 from then on',
  security: [{ bearer: [] }],
  request: { params: tenantParams.extend({ key_id: z.coerce.number().int().positive() }) },
  responses: { 200: jsonContent(keySchema, 'Revoked'), 404: jsonContent(errorSchema, 'No such key of that tenant'), ...standardErrors },
});

const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString());

async function issueKey(db: Executor, tenantId: string) {
  const key = newTenantKey();
  const { rows } = await db.execute<{ id: number }>(
    sql`INSERT INTO tenant_api_keys (tenant_id, key_hash, prefix) VALUES (${tenantId}, ${key.hash}, ${key.prefix}) RETURNING id`,
  );
  return { key: key.key, keyId: rows[0]!.id };
}

/** `/admin/tenants`: create tenants, issue and revoke their keys (admin key only). */
export function tenantAdminRoutes(ctx: { db: Database }) {
  const app = createRouter();

  app.openapi(createTenantRoute, async (c) => {
    const { name } = c.req.valid('json');
    const created = await ctx.db.transaction(async (tx) => {
      const { rows } = await tx.execute<{ id: string }>(sql`INSERT INTO tenants (name) VALUES (${name}) ON CONFLICT (name) DO NOTHING RETURNING id`);
      if (!rows[0]) throw new ApiError(409, 'conflict', `A tenant named "${name}" exists`);
      return { id: rows[0].id, ...(await issueKey(tx, rows[0].id)) };
    });
    return c.json({ id: created.id, name, api_key: created.key, key_id: created.keyId }, 201);
  });

  app.openapi(listTenantsRoute, async (c) => {
    const { rows } = await ctx.db.execute<{ id: string; name: string; created_at: Date; keys: { id: number; prefix: string; created_at: string; revoked_at: string | null }[] }>(sql`
      SELECT t.id, t.name, t.created_at,
             coalesce(json_agg(json_build_object('id', k.id, 'prefix', k.prefix, 'created_at', k.created_at, 'revoked_at', k.revoked_at) ORDER BY k.id)
                      FILTER (WHERE k.id IS NOT NULL), '[]') AS keys
        FROM tenants t LEFT JOIN tenant_api_keys k ON k.tenant_id = t.id
       GROUP BY t.id ORDER BY t.created_at, t.id`);
    const items = rows.map((t) => ({
      id: t.id,
      name: t.name,
      created_at: iso(t.created_at)!,
      keys: t.keys.map((k) => ({ ...k, created_at: iso(k.created_at)!, revoked_at: iso(k.revoked_at) })),
    }));
    return c.json({ items }, 200);
  });

  app.openapi(addKeyRoute, async (c) => {
    const { id } = c.req.valid('param');
    const result = await ctx.db.transaction(async (tx) => {
      const { rows } = await tx.execute<{ name: string }>(sql`SELECT name FROM tenants WHERE id = ${id} FOR SHARE`);
      if (!rows[0]) throw new ApiError(404, 'not_found', `No tenant ${id}`);
      return { name: rows[0].name, ...(await issueKey(tx, id)) };
    });
    return c.json({ id, name: result.name, api_key: result.key, key_id: result.keyId }, 201);
  });

  app.openapi(revokeKeyRoute, async (c) => {
    const { id, key_id } = c.req.valid('param');
    const { rows } = await ctx.db.execute<{ id: number; prefix: string; created_at: Date; revoked_at: Date }>(sql`
      UPDATE tenant_api_keys SET revoked_at = coalesce(revoked_at, now())
       WHERE id = ${key_id} AND tenant_id = ${id}
       RETURNING id, prefix, created_at, revoked_at`);
    const key = rows[0];
    if (!key) throw new ApiError(404, 'not_found', `Tenant ${id} has no key ${key_id}`);
    return c.json({ id: key.id, prefix: key.prefix, created_at: iso(key.created_at)!, revoked_at: iso(key.revoked_at) }, 200);
  });

  return app;
}
