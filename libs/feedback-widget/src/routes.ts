import { createHash } from 'node:crypto';
import { Hono } from 'hono';
import { buildWidget } from './build.ts';

let bundle: Promise<{ code: string; etag: string }> | undefined;

/**
 * `GET /widget/caliber-feedback.js`: the widget, built from source on first request and kept.
 * Public and CORS-open: pages of any origin load it as a module script; what it may send is
 * decided by the publishable key it carries.
 */
export function widgetRoutes() {
  const app = new Hono();
  app.get('/widget/caliber-feedback.js', async (c) => {
    bundle ??= buildWidget().then((code) => ({ code, etag: `"${createHash('sha256').update(code).digest('base64url').slice(0, 16)}"` }));
    const { code, etag } = await bundle.catch((err: unknown) => {
      bundle = undefined;
      throw err;
    });
    if (c.req.header('if-none-match') === etag) return c.body(null, 304);
    return c.body(code, 200, {
      'content-type': 'text/javascript; charset=utf-8',
      'access-control-allow-origin': '*',
      'cache-control': 'public, max-age=300',
      etag,
    });
  });
  return app;
}
