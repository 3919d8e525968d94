import { createHash } from 'node:crypto';
import { Hono } from 'hono';
import { buildWidget } from './build.ts';

let bundle: Promise<{ code: string; etag: string }> | undefined;

function widgetBundle() {
  bundle ??= buildWidget().then((code) => ({ code, etag: `"${createHash('sha256').update(code).digest('base64url').slice(0, 16)}"` }));
  return bundle.catch((err: unknown) => {
    bundle = undefined;
    throw err;
  });
}

/**
 * `GET /widget/caliber-feedback.js`: the widget, built from source when the gateway starts and kept.
 * Public and CORS-open: pages of any origin load it as a module script; what it may send is
 * decided by the publishable key it carries.
 */
export function widgetRoutes() {
  // Built now, not on the first page view (a failure shows on that request, which tries again).
  widgetBundle().catch(() => undefined);
  const app = new Hono();
  app.get('/widget/caliber-feedback.js', async (c) => {
    const { code, etag } = await widgetBundle();
    const headers = { 'access-control-allow-origin': '*', 'cache-control': 'public, max-age=300', etag };
    if (c.req.header('if-none-match') === etag) return c.body(null, 304, headers);
    return c.body(code, 200, { ...headers, 'content-type': 'text/javascript; charset=utf-8' });
  });
  return app;
}
