import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { getCookie, setCookie, deleteCookie } from 'hono/cookie';
import { html } from 'hono/html';
import { Hono } from 'hono';
import { isIP } from 'node:net';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { errorBody, type AppEnv } from './http.ts';
import { findPublishableKey, PUBLISHABLE_KEY_PREFIX, rateLimit } from './publishable-keys.ts';
import { findTenantKey, TENANT_KEY_PREFIX } from './tenants.ts';

const SESSION_COOKIE = 'caliber_session';
const SESSION_TTL_MS = 12 * 3600 * 1000;

/** Compares two secrets in constant time, whatever their lengths. */
export function secretsEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function sessionSignature(apiKey: string, expiresAt: number): string {
  return createHmac('sha256', apiKey).update(`caliber-session:${expiresAt}`).digest('base64url');
}

export function createSessionToken(apiKey: string, now = Date.now()): string {
  const expiresAt = now + SESSION_TTL_MS;
  return `${expiresAt}.${sessionSignature(apiKey, expiresAt)}`;
}

export function verifySessionToken(apiKey: string, token: string, now = Date.now()): boolean {
  const [expires, signature] = token.split('.');
  const expiresAt = Number(expires);
  if (!Number.isSafeInteger(expiresAt) || expiresAt <= now || !signature) return false;
  return secretsEqual(signature, sessionSignature(apiKey, expiresAt));
}

function bearerToken(c: Context): string | undefined {
  const header = c.req.header('authorization');
  const match = header?.match(/^Bearer\s+(.+)$/i);
  return match?.[1]?.trim();
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Whether the browser says the request came from another origin (Sec-Fetch-Site, else Origin against Host). */
function crossOrigin(c: Context): boolean {
  const site = c.req.header('sec-fetch-site');
  if (site) return site !== 'same-origin' && site !== 'none';
  const origin = c.req.header('origin');
  if (!origin) return false;
  try {
    return new URL(origin).host !== (c.req.header('host') ?? new URL(c.req.url).host);
  } catch {
    return true;
  }
}

function wantsHtml(c: Context): boolean {
  return c.req.method === 'GET' && (c.req.header('accept') ?? '').includes('text/html');
}

/**
 * Who may call what. The admin key (`Authorization: Bearer <CALIBER_API_KEY>`, or the session
 * cookie the login form sets for Bull Board and the dashboard) may call every route; a tenant key
 * only the tenant routes (`isTenantPath`), and anything else answers 403. Browsers without a key
 * are sent to the login form; API clients get 401. With no admin key configured no admin request
 * is let through.
 */
export interface PublishableAccess {
  /** The routes a publishable key may call (recording responses and feedback). */
  isPath(method: string, path: string): boolean;
  redis: Redis;
  /** Prefix of the rate-limit counters in Redis. */
  prefix: string;
  /** Take the client IP from X-Forwarded-For (behind a proxy you run), not from the socket. */
  trustProxy: boolean;
}

/**
 * The client's IP: the socket's peer, or, behind one proxy you run, the address that proxy put
 * last in X-Forwarded-For (the entries before it are the client's to write). IPv6 addresses
 * count by their /64, which one client can rotate through.
 */
export function clientIp(c: Context, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = c.req.header('x-forwarded-for')?.split(',').at(-1)?.trim();
    if (forwarded && isIP(forwarded)) return bucket(forwarded);
  }
  try {
    const address = getConnInfo(c).remote.address;
    return address ? bucket(address) : 'unknown';
  } catch {
    return 'unknown';
  }
}

function bucket(address: string): string {
  if (isIP(address) !== 6 || address.startsWith('::ffff:')) return address;
  const parts = address.split('::')[0]!.split(':');
  return `${parts.slice(0, 4).join(':')}::/64`;
}

/** CORS headers for a publishable-key request from an allowed origin. */
export function corsHeaders(origin: string): Record<string, string> {
  return {
    'access-control-allow-origin': origin,
    'access-control-allow-methods': 'POST, OPTIONS',
    'access-control-allow-headers': 'authorization, content-type',
    'access-control-max-age': '600',
    // The widget reads Retry-After of a 429 (not a header scripts see without this).
    'access-control-expose-headers': 'Retry-After',
  };
}

export function gatewayAuth(opts: { apiKey: string | undefined; pool: pg.Pool; isTenantPath(path: string): boolean; publishable?: PublishableAccess }): MiddlewareHandler<AppEnv> {
  const { apiKey } = opts;
  return async (c, next) => {
    const token = bearerToken(c);
    const cookie = getCookie(c, SESSION_COOKIE);
    const admin =
      apiKey !== undefined &&
      ((token !== undefined && secretsEqual(token, apiKey)) || (cookie !== undefined && verifySessionToken(apiKey, cookie)));
    if (admin) {
      // A cookie rides along with requests other pages make: a write on the strength of the
      // cookie alone must come from this origin (SameSite=Lax still lets sibling subdomains in).
      if (!(token !== undefined && secretsEqual(token, apiKey!)) && !SAFE_METHODS.has(c.req.method) && crossOrigin(c)) {
        return c.json(errorBody('forbidden', 'A request signed in by the session cookie must come from this origin'), 403);
      }
      c.set('principal', { kind: 'admin' });
      return next();
    }
    if (token?.startsWith(PUBLISHABLE_KEY_PREFIX) && opts.publishable) {
      const p = opts.publishable;
      const key = await findPublishableKey(opts.pool, token);
      if (key) {
        if (!p.isPath(c.req.method, c.req.path)) {
          return c.json(errorBody('forbidden', `A publishable key can only record responses and feedback, not ${c.req.method} ${c.req.path}`), 403);
        }
        // Browsers send Origin on these cross-origin POSTs; a page of an origin not on the key's
        // list is refused (and gets no CORS headers, so its script cannot read the answer).
        const origin = c.req.header('origin');
        if (!origin || !key.allowedOrigins.includes(origin)) {
          return c.json(errorBody('origin_not_allowed', origin ? `Origin ${origin} may not use this key` : 'A publishable key is used from a web page: the request needs its Origin'), 403);
        }
        for (const [name, value] of Object.entries(corsHeaders(origin))) c.header(name, value);
        c.header('vary', 'Origin', { append: true });
        const ip = clientIp(c, p.trustProxy);
        // Without Redis there is no limit to enforce: refuse (a public key must stay limited) rather than let everything in.
        const limit = await rateLimit(p.redis, p.prefix, key, ip).catch(() => undefined);
        if (!limit) {
          c.header('Retry-After', '5');
          return c.json(errorBody('queue_unavailable', 'Rate limiting is unavailable (Redis is not answering); try again shortly'), 503);
        }
        if (!limit.allowed) {
          c.header('Retry-After', String(limit.retryAfterS));
          return c.json(errorBody('rate_limited', `More than ${key.rateLimitPerMinute} requests a minute from this client with this key; retry in ${limit.retryAfterS} s`), 429);
        }
        c.set('principal', { kind: 'publishable', keyId: key.id, project: key.project, modelIds: key.modelIds, trustCorrections: key.trustCorrections });
        return next();
      }
    }
    if (token?.startsWith(TENANT_KEY_PREFIX)) {
      const tenant = await findTenantKey(opts.pool, token);
      if (tenant) {
        if (!opts.isTenantPath(c.req.path)) {
          return c.json(errorBody('forbidden', `A tenant key cannot call ${c.req.method} ${c.req.path}; it needs the admin key`), 403);
        }
        c.set('principal', { kind: 'tenant', ...tenant });
        return next();
      }
    }
    if (token === undefined && wantsHtml(c)) {
      const url = new URL(c.req.url);
      return c.redirect(`/login?next=${encodeURIComponent(`${url.pathname}${url.search}`)}`, 302);
    }
    c.header('WWW-Authenticate', 'Bearer');
    return c.json(errorBody('unauthorized', token ? 'Invalid API key' : 'Missing bearer token'), 401);
  };
}

/**
 * Only same-origin paths are followed after login, so the form cannot be used as an open redirect.
 * The path is resolved the way a browser would (which drops tabs and newlines, and reads `\` as
 * `/`), and only its path and query are kept.
 */
export function safeNext(next: string | undefined): string {
  const fallback = '/admin/queues';
  if (!next) return fallback;
  const base = 'http://caliber.invalid';
  try {
    const url = new URL(next, base);
    return url.origin === base ? `${url.pathname}${url.search}` : fallback;
  } catch {
    return fallback;
  }
}

const loginPage = (next: string, failed: boolean) => html`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Caliber — sign in</title>
    <style>
      body { font-family: system-ui, sans-serif; display: grid; place-items: center; min-height: 100vh; margin: 0; background: #f5f6f8; }
      form { background: #fff; padding: 2rem; border-radius: 8px; box-shadow: 0 1px 4px #0002; display: grid; gap: .75rem; min-width: 320px; }
      input, button { font: inherit; padding: .5rem; }
      .error { color: #b00020; }
    </style>
  </head>
  <body>
    <form method="post" action="/login">
      <h1>Caliber</h1>
      ${failed ? html`<p class="error" role="alert">That key is not valid.</p>` : ''}
      <label for="key">Admin API key</label>
      <input id="key" name="key" type="password" autocomplete="current-password" required autofocus />
      <input type="hidden" name="next" value="${next}" />
      <button type="submit">Sign in</button>
    </form>
  </body>
</html>`;

/** `GET /login` (form), `POST /login` (sets the session cookie), `POST /logout`. */
export function loginRoutes(apiKey: string | undefined) {
  const app = new Hono<AppEnv>();
  app.get('/login', (c) => c.html(loginPage(safeNext(c.req.query('next')), false)));
  app.post('/login', async (c) => {
    const form = await c.req.parseBody();
    const key = typeof form.key === 'string' ? form.key : '';
    const next = safeNext(typeof form.next === 'string' ? form.next : undefined);
    if (!apiKey || !secretsEqual(key, apiKey)) return c.html(loginPage(next, true), 401);
    setCookie(c, SESSION_COOKIE, createSessionToken(apiKey), {
      httpOnly: true,
      sameSite: 'Lax',
      path: '/',
      secure: new URL(c.req.url).protocol === 'https:',
      maxAge: SESSION_TTL_MS / 1000,
    });
    return c.redirect(next, 303);
  });
  app.post('/logout', (c) => {
    deleteCookie(c, SESSION_COOKIE, { path: '/' });
    return c.redirect('/login', 303);
  });
  return app;
}
