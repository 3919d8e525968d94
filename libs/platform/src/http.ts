import { OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context, ErrorHandler, NotFoundHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Logger } from './logger.ts';
import { summarizeIssues, type Issue } from './util.ts';

/** Who a request authenticated as: the admin key (or its session), or one tenant's key. */
export type Principal = { kind: 'admin' } | { kind: 'tenant'; tenantId: string; keyId: number } | { kind: 'publishable'; keyId: number; project: string; modelIds: string[]; trustCorrections: boolean };

export interface AppEnv {
  Variables: {
    requestId: string;
    log: Logger;
    principal?: Principal;
  };
}

/** An error a route raises on purpose: it becomes `{"error":{"code","message",…}}` with `status`. */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const errorSchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: 'invalid_request' }),
      message: z.string(),
      issues: z.array(z.any()).optional(),
    }),
  })
  .openapi('Error');

/** An OpenAPI response (or body) that is JSON of `schema`. */
export function jsonContent<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { 'application/json': { schema } } };
}

/** The error answers every authenticated route that validates its input documents. */
export const standardErrors = {
  400: jsonContent(errorSchema, 'Invalid request; nothing was written'),
  401: jsonContent(errorSchema, 'Missing or wrong API key'),
} as const;

export function errorBody(code: string, message: string, extra?: Record<string, unknown>) {
  return { error: { code, message, ...extra } };
}

export function invalidRequest(c: Context, issues: readonly Issue[]) {
  return c.json(errorBody('invalid_request', summarizeIssues(issues), { issues }), 400);
}

/** A router whose zod validation failures answer with the SPEC §3 error shape. */
export function createRouter() {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (!result.success) return invalidRequest(c, result.error.issues);
    },
  });
}

/** Classifies infrastructure failures so a client sees 503 (retry later) rather than 500. */
export function unavailableService(err: unknown): 'redis' | 'postgres' | undefined {
  const e = err as { message?: string; code?: unknown; name?: string } | undefined;
  const message = e?.message ?? '';
  // ioredis with the offline queue off, or out of retries, or closed.
  // A Redis Cluster losing a master, or all of them, says so in its own words.
  if (
    e?.name === 'QueueUnavailableError' ||
    e?.name === 'MaxRetriesPerRequestError' ||
    /enableOfflineQueue|Connection is closed|Too many Cluster redirections|CLUSTERDOWN|Cluster isn't ready|Failed to refresh slots cache|None of startup nodes/.test(message)
  )
    return 'redis';
  // pg: class 08 (connection), 57P0x (shutdown), 53300 (too many clients), or the socket itself.
  const code = typeof e?.code === 'string' ? e.code : '';
  if (/^(08|57P0)/.test(code) || code === '53300' || ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH'].includes(code)) {
    return 'postgres';
  }
  if (/timeout exceeded when trying to connect|Connection terminated|Query read timeout|not queryable/.test(message)) return 'postgres';
  return undefined;
}

export const onError: ErrorHandler<AppEnv> = (err, c) => {
  if (err instanceof ApiError) return c.json(errorBody(err.code, err.message, err.details), err.status);
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode;
    const codes: Record<number, string> = { 400: 'invalid_request', 401: 'unauthorized', 403: 'forbidden', 413: 'payload_too_large', 415: 'unsupported_media_type' };
    const code = codes[status] ?? 'http_error';
    return c.json(errorBody(code, err.message || 'Request failed'), status);
  }
  if (err instanceof z.ZodError) return invalidRequest(c, err.issues);
  const log = c.get('log');
  const service = unavailableService(err);
  if (service) {
    log?.warn({ err }, `${service} unavailable`);
    return c.json(
      errorBody(`${service === 'redis' ? 'queue' : 'database'}_unavailable`, `${service === 'redis' ? 'Redis' : 'Postgres'} is not answering; try again shortly`),
      503,
    );
  }
  log?.error({ err }, 'unhandled error');
  return c.json(errorBody('internal_error', 'Internal server error'), 500);
};

export const onNotFound: NotFoundHandler<AppEnv> = (c) =>
  c.json(errorBody('not_found', `No route for ${c.req.method} ${c.req.path}`), 404);
