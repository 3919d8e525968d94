import type { CallApi } from './server.ts';

/**
 * A `CallApi` that hands each request to the gateway's own `fetch` (in process: no socket), with
 * the caller's credentials, so every call passes the gateway's auth, validation and limits.
 */
export function gatewayCaller(opts: {
  fetch: (request: Request) => Response | Promise<Response>;
  /** Where the gateway is reached (Host and same-origin checks see this). */
  origin: string;
  /** The caller's `authorization` (and `cookie`, `x-request-id`) headers. */
  headers: Record<string, string>;
  /** The admin key may name a tenant for tenant routes; a tenant key never can. */
  mayNameTenant: boolean;
}): CallApi {
  return async (request) => {
    const query = request.query.toString();
    const headers: Record<string, string> = { ...opts.headers, accept: 'application/json' };
    if (request.tenantId && opts.mayNameTenant) headers['x-tenant-id'] = request.tenantId;
    const hasBody = request.method !== 'GET' && request.method !== 'DELETE';
    if (hasBody) headers['content-type'] = 'application/json';
    const res = await opts.fetch(
      new Request(`${opts.origin}${request.path}${query ? `?${query}` : ''}`, {
        method: request.method,
        headers,
        body: hasBody ? JSON.stringify(request.body ?? {}) : undefined,
      }),
    );
    const text = await res.text();
    try {
      return { status: res.status, body: text ? JSON.parse(text) : null };
    } catch {
      return { status: res.status, body: res.ok ? { result: text } : { error: { code: `http_${res.status}`, message: text.slice(0, 500) } } };
    }
  };
}
