import {
  bullBoard,
  createGatewayMetrics,
  corsHeaders,
  createRouter,
  dashboardRoutes,
  docsRoutes,
  errorBody,
  gatewayAuth,
  isStorableText,
  JobWaiter,
  loginRoutes,
  onError,
  onNotFound,
  platformRoutes,
  publishableKeyRoutes,
  tenantAdminRoutes,
  type DomainModule,
  type GatewayContext,
  type PlatformContext,
} from '@caliber/platform';
import { widgetRoutes } from '@caliber/feedback-widget/server';
import { buildTools, mcpRoutes, type Tool } from '@caliber/mcp';
import { bodyLimit } from 'hono/body-limit';
import { requestId } from 'hono/request-id';

/** Routes anyone may call: probes, the API description and its docs, and the login form. */
const PUBLIC_PATHS = new Set(['/healthz', '/readyz', '/openapi.json', '/docs', '/favicon.ico', '/login', '/logout', '/widget/caliber-feedback.js']);
const isPublic = (path: string) => PUBLIC_PATHS.has(path) || path.startsWith('/docs/assets/');

/** What a publishable key (a web page's feedback widget) may call: recording responses and feedback. */
const PUBLISHABLE_PATHS = new Set(['/api/analytics/response-quality/response', '/api/analytics/response-quality/feedback']);
const isPublishablePath = (method: string, path: string) => method === 'POST' && PUBLISHABLE_PATHS.has(path);

export const MAX_BODY_BYTES = 10 * 1024 * 1024;
const PUBLISHABLE_MAX_BODY = 32 * 1024;

/** The HTTP gateway: platform routes, Bull Board and every domain module's routes behind auth. */
export function createGateway(platform: PlatformContext, modules: DomainModule[]) {
  const waiter = new JobWaiter({ connection: platform.blockingRedis, config: platform.config, queues: platform.queues, pool: platform.pool });
  const ctx: GatewayContext = { ...platform, waiter };
  const metrics = createGatewayMetrics({ queues: platform.queues, redis: platform.redis, config: platform.config });
  const schedules = modules.flatMap((m) => m.schedules?.(platform.config) ?? []);
  const tenantRouters = modules.flatMap((m) => m.tenantRoutes?.(ctx) ?? []);
  const isTenantRoute = tenantPathMatcher(tenantRouters.flatMap((r) => r.routes.map((route) => route.path)));
  // A tenant key may speak MCP too: its session offers only the tenant tools.
  const isTenantPath = (path: string) => path === '/mcp' || isTenantRoute(path);
  const auth = gatewayAuth({
    apiKey: platform.config.CALIBER_API_KEY,
    pool: platform.pool,
    isTenantPath,
    publishable: { isPath: isPublishablePath, redis: platform.redis, prefix: platform.config.QUEUE_PREFIX, trustProxy: platform.config.TRUST_PROXY },
  });

  const app = createRouter();
  app.use('*', requestId());
  app.use('*', async (c, next) => {
    const log = platform.log.child({ requestId: c.get('requestId') });
    c.set('log', log);
    const started = performance.now();
    await next();
    log.info({ method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(performance.now() - started) }, 'request');
  });
  app.use('*', metrics.middleware);
  app.use(
    '*',
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) => c.json(errorBody('payload_too_large', `Request body is over ${MAX_BODY_BYTES} bytes`), 413),
    }),
  );
  // A browser asks before a cross-origin POST with a key; the preflight carries no key, so it is
  // allowed for an origin some active publishable key lists, and the request itself is checked.
  const originListed = async (origin: string) =>
    (await platform.pool.query('SELECT 1 FROM publishable_keys WHERE revoked_at IS NULL AND $1 = ANY(allowed_origins) LIMIT 1', [origin])).rows.length > 0;
  const withPublishableKey = (c: { req: { header(name: string): string | undefined } }) => /^Bearer\s+clbp_/i.test(c.req.header('authorization') ?? '');
  app.use('*', async (c, next) => {
    const origin = c.req.header('origin');
    if (c.req.method === 'OPTIONS' && PUBLISHABLE_PATHS.has(c.req.path) && origin) {
      const vary = { vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers' };
      return (await originListed(origin)) ? c.body(null, 204, { ...corsHeaders(origin), ...vary }) : c.body(null, 403, vary);
    }
    return next();
  });
  // Refusals made before the key is known (a revoked key's 401, a 413) still let a page of a listed
  // origin read why, so the widget can say it rather than "network error".
  app.use('*', async (c, next) => {
    const origin = c.req.header('origin');
    await next();
    if (!origin || !PUBLISHABLE_PATHS.has(c.req.path) || !withPublishableKey(c) || (c.res.status !== 401 && c.res.status !== 413)) return;
    if (c.res.headers.has('access-control-allow-origin') || !(await originListed(origin).catch(() => false))) return;
    for (const [name, value] of Object.entries(corsHeaders(origin))) c.res.headers.set(name, value);
    c.res.headers.append('vary', 'Origin');
  });
  // A web page's feedback is small: a publishable key's body is limited to 32 KiB.
  const publishableBody = bodyLimit({ maxSize: PUBLISHABLE_MAX_BODY, onError: (c) => c.json(errorBody('payload_too_large', `A request with a publishable key is at most ${PUBLISHABLE_MAX_BODY} bytes`), 413) });
  app.use('*', (c, next) => (PUBLISHABLE_PATHS.has(c.req.path) && withPublishableKey(c) ? publishableBody(c, next) : next()));
  app.use('*', (c, next) => (isPublic(c.req.path) ? next() : auth(c, next)));
  // Postgres cannot store or compare NUL or broken UTF-16: refuse them in the URL for every route at
  // once (a query value reaching a WHERE clause would otherwise be a 500).
  app.use('*', async (c, next) => {
    const url = new URL(c.req.url);
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      return c.json(errorBody('invalid_request', 'The path is not valid percent-encoded UTF-8'), 400);
    }
    if (!isStorableText(path)) return c.json(errorBody('invalid_request', 'The path contains NUL or an unpaired surrogate'), 400);
    for (const [name, value] of url.searchParams) {
      if (!isStorableText(name) || !isStorableText(value)) {
        return c.json(errorBody('invalid_request', `Query parameter ${JSON.stringify(name.replace(/\u0000/g, '\\0'))} contains NUL or an unpaired surrogate`), 400);
      }
    }
    return next();
  });

  app.route('/', loginRoutes(platform.config.CALIBER_API_KEY));
  app.route('/', docsRoutes());
  app.route('/', widgetRoutes());
  app.route('/', dashboardRoutes(ctx, modules.flatMap((m) => m.dashboard?.(ctx) ?? []), { schedules }));
  app.route('/', platformRoutes(ctx, { schedules, metrics }));
  app.route('/admin/queues', bullBoard(ctx));
  app.route('/', tenantAdminRoutes(ctx));
  app.route('/', publishableKeyRoutes(ctx));
  for (const module of modules) {
    const routes = module.routes?.(ctx);
    if (routes) app.route('/', routes);
  }
  for (const routes of tenantRouters) app.route('/', routes);
  // Agents' door: each MCP tool is one of the routes above, called in process as the caller.
  let tools: Tool[] = [];
  app.route('/', mcpRoutes({ tools: () => tools, fetch: (request, env) => app.fetch(request, env) }));

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'Caliber', version: '0.1.0', description: 'Calibration, re-tagging and model-quality jobs.' },
  });
  app.onError(onError);
  app.notFound(onNotFound);
  // Built once every route is registered; a tool naming a route that does not exist fails here, at start.
  tools = buildTools(app.openAPIRegistry.definitions);

  return { app, ctx, close: () => waiter.close() };
}

/** Whether a path is one of the tenant routes (Hono patterns: `/confidence/jobs/:id`). */
export function tenantPathMatcher(patterns: string[]): (path: string) => boolean {
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const regexes = [...new Set(patterns)]
    .filter((p) => p !== '*' && p !== '/*')
    .map((p) => new RegExp(`^${p.split('/').map((part) => (part.startsWith(':') ? '[^/]+' : escape(part))).join('/')}/?$`));
  return (path) => regexes.some((r) => r.test(path));
}

export type Gateway = ReturnType<typeof createGateway>;
