import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Context } from 'hono';
import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { sql } from 'drizzle-orm';
import type { GatewayContext } from './context.ts';
import { createRouter, type AppEnv } from './http.ts';
import { QUEUE_NAMES } from './queues.ts';
import { describeSchedules, type ScheduleDefinition } from './schedules.ts';

export type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** One page of `/dashboard`, contributed by the domain lib whose data it shows. */
export interface DashboardPage {
  /** `/dashboard/<slug>` */
  slug: string;
  title: string;
  /** Position in the navigation (lower first). */
  order: number;
  render(c: Context<AppEnv>): Promise<Html>;
  /** Live data the page polls, served as JSON at `/dashboard/<slug>/data.json`. */
  data?(c: Context<AppEnv>): Promise<unknown>;
}

/** Series colours every page uses, in order. */
export const PALETTE = ['#5b8def', '#e07a3f', '#3fa37a', '#9b59b6', '#d64545', '#2c3e50', '#c9a227', '#16a2b8', '#8e6c8a', '#4c9f38'] as const;

/** A Chart.js chart: the config travels as JSON in a data attribute and `dashboard.js` draws it. */
export function chart(id: string, config: { type: string; data: unknown; options?: unknown }, opts: { height?: number; label?: string } = {}) {
  return html`<div class="chart" style="height:${opts.height ?? 260}px"><canvas id="${id}" role="img" aria-label="${opts.label ?? id}" data-chart="${JSON.stringify(config)}"></canvas></div>`;
}

/** What to show when there is nothing yet, and what to do about it. */
export function emptyState(message: string, next: string) {
  return html`<div class="empty"><p>${message}</p><p class="next">${next}</p></div>`;
}

export function table(headers: string[], rows: unknown[][], opts: { id?: string } = {}) {
  return html`<table${opts.id ? html` id="${opts.id}"` : ''}>
    <thead><tr>${headers.map((h) => html`<th>${h}</th>`)}</tr></thead>
    <tbody>${rows.map((r) => html`<tr>${r.map((v) => html`<td>${cell(v)}</td>`)}</tr>`)}</tbody>
  </table>`;
}

function cell(v: unknown) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return Number.isInteger(v) ? v.toLocaleString('en-US') : Number(v.toFixed(4)).toString();
  if (v instanceof Date) return v.toISOString().replace('T', ' ').slice(0, 19);
  if (typeof v === 'object' && 'isEscaped' in (v as object)) return v;
  if (v instanceof Promise) return v;
  return String(v);
}

export function stats(items: [label: string, value: unknown][]) {
  return html`<div class="stats">${items.map(([label, value]) => html`<div class="stat"><span class="value">${cell(value)}</span><span class="label">${label}</span></div>`)}</div>`;
}

/**
 * Rows in a table: exact when it is small, else Postgres' estimate (a count over millions of rows
 * on every page load costs more than the page), with `approximate` saying which.
 */
export async function rowCount(db: GatewayContext['db'], table: string): Promise<{ n: number; approximate: boolean }> {
  const estimate = (await db.execute<{ n: number }>(sql`SELECT reltuples::float8 AS n FROM pg_class WHERE oid = to_regclass(${table})`)).rows[0]?.n ?? -1;
  if (estimate >= 200_000) return { n: Math.round(estimate), approximate: true };
  const exact = (await db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM ${sql.identifier(table)}`)).rows[0]!.n;
  return { n: exact, approximate: false };
}

export const showCount = (c: { n: number; approximate: boolean }) => (c.approximate ? `≈ ${c.n.toLocaleString('en-US')}` : c.n);

export function section(title: string, body: unknown) {
  return html`<section><h2>${title}</h2>${body}</section>`;
}

const require = createRequire(import.meta.url);
// A file beside a package's entry point (chart.js does not export its package.json).
const besideEntry = (pkg: string, file: string) => () => join(dirname(require.resolve(pkg)), file);
const ASSETS: Record<string, { path: () => string; type: string }> = {
  'chart.js': { path: besideEntry('chart.js', 'chart.umd.min.js'), type: 'text/javascript; charset=utf-8' },
  'swagger-ui.js': { path: besideEntry('swagger-ui-dist', 'swagger-ui-bundle.js'), type: 'text/javascript; charset=utf-8' },
  'swagger-ui.css': { path: besideEntry('swagger-ui-dist', 'swagger-ui.css'), type: 'text/css; charset=utf-8' },
};
const assetCache = new Map<string, Buffer>();

// Draws every [data-chart] canvas, and refreshes [data-poll] regions from the JSON route they name.
const DASHBOARD_JS = `
(() => {
  const charts = [];
  for (const canvas of document.querySelectorAll('canvas[data-chart]')) {
    const config = JSON.parse(canvas.dataset.chart);
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
    charts.push(new Chart(canvas, config));
  }
  window.caliberCharts = charts;
  for (const region of document.querySelectorAll('[data-poll]')) {
    const refresh = async () => {
      try {
        const res = await fetch(region.dataset.poll, { headers: { accept: 'application/json' } });
        if (!res.ok) return;
        const body = await res.json();
        for (const el of region.querySelectorAll('[data-field]')) {
          const value = el.dataset.field.split('.').reduce((o, k) => (o == null ? o : o[k]), body);
          el.textContent = value == null ? '—' : typeof value === 'number' ? value.toLocaleString('en-US', { maximumFractionDigits: 2 }) : String(value);
        }
        const bar = region.querySelector('progress');
        if (bar && body.total) { bar.max = body.total; bar.value = body.done + body.failed; }
        region.dataset.updated = new Date().toISOString();
      } catch {}
    };
    refresh();
    setInterval(refresh, Number(region.dataset.interval || 2000));
  }
  for (const select of document.querySelectorAll('select[data-autosubmit]')) select.addEventListener('change', () => select.form.submit());
  for (const form of document.querySelectorAll('form[data-json]')) {
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const out = form.querySelector('.result');
      const body = Object.fromEntries(new FormData(form));
      // Fields named in the URL (:name) go there, not in the body.
      const url = form.dataset.json.replace(/:([a-z_]+)/g, (_, k) => { const v = body[k] || ''; delete body[k]; return encodeURIComponent(v); });
      const res = await fetch(url, { method: form.dataset.method || 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const text = await res.text();
      let message = text;
      try { const j = JSON.parse(text); message = j.error ? j.error.message : 'Saved'; } catch {}
      if (out) { out.textContent = message; out.className = 'result ' + (res.ok ? 'ok' : 'error'); }
      if (res.ok && form.dataset.reload) setTimeout(() => location.reload(), 300);
    });
  }
})();
`;

const CSS = `
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: #1d2330; background: #f5f6f8; }
header { display: flex; gap: 1.5rem; align-items: center; padding: .6rem 1.2rem; background: #1d2330; color: #fff; flex-wrap: wrap; }
header a { color: #c9d1e3; text-decoration: none; }
header a.current, header a:hover { color: #fff; font-weight: 600; }
header .brand { font-weight: 700; color: #fff; margin-right: 1rem; }
main { padding: 1rem 1.4rem 3rem; max-width: 1400px; }
h1 { margin: .4rem 0 1rem; font-size: 1.4rem; }
h2 { font-size: 1.05rem; margin: 0 0 .6rem; }
section { background: #fff; border-radius: 8px; box-shadow: 0 1px 3px #0001; padding: 1rem 1.2rem; margin-bottom: 1rem; overflow-x: auto; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 1rem; }
.grid section { margin-bottom: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #e6e8ee; vertical-align: top; }
th { font-weight: 600; color: #505a70; font-size: .85rem; }
.stats { display: flex; gap: 1rem; flex-wrap: wrap; margin-bottom: 1rem; }
.stat { background: #fff; border-radius: 8px; padding: .7rem 1rem; min-width: 140px; box-shadow: 0 1px 3px #0001; display: flex; flex-direction: column; }
.stat .value { font-size: 1.4rem; font-weight: 600; }
.stat .label { color: #505a70; font-size: .8rem; }
.empty { padding: 1rem; border: 1px dashed #b8c0d0; border-radius: 8px; color: #505a70; }
.empty .next { font-family: ui-monospace, monospace; font-size: .85rem; color: #1d2330; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 4px; font-size: .8rem; background: #e6e8ee; }
.badge.ok { background: #d8f3e3; color: #0b6b34; } .badge.bad { background: #fde2e1; color: #9b1c1c; } .badge.warn { background: #fff1cc; color: #7a5b00; }
.chart { position: relative; }
form.inline { display: flex; gap: .4rem; align-items: center; flex-wrap: wrap; }
input, select, button { font: inherit; padding: .25rem .45rem; }
.result.ok { color: #0b6b34; } .result.error { color: #9b1c1c; }
.muted { color: #6b7488; } code { font-family: ui-monospace, monospace; font-size: .85em; }
`;

function layout(title: string, pages: DashboardPage[], current: string, body: unknown) {
  return html`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>${title} — Caliber</title>
    <link rel="stylesheet" href="/dashboard/assets/dashboard.css" />
  </head>
  <body>
    <header>
      <span class="brand">Caliber</span>
      ${pages.map((p) => html`<a href="/dashboard/${p.slug}" class="${p.slug === current ? 'current' : ''}">${p.title}</a>`)}
      <a href="/admin/queues">Bull Board ↗</a>
      <a href="/docs">API docs ↗</a>
    </header>
    <main>
      <h1>${title}</h1>
      ${body}
    </main>
    <script src="/dashboard/assets/chart.js"></script>
    <script src="/dashboard/assets/dashboard.js"></script>
  </body>
</html>`;
}

const STATES = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'completed', 'failed'] as const;

/** The platform's own page: every queue's jobs by state, and the schedules. */
function queuesPage(ctx: GatewayContext, schedules: ScheduleDefinition[]): DashboardPage {
  return {
    slug: 'queues',
    title: 'Queues',
    order: 100,
    async render() {
      const counts = await Promise.all(QUEUE_NAMES.map(async (q) => ({ queue: q, counts: await ctx.queues.connected(q).getJobCounts(...STATES) })));
      const described = await describeSchedules(ctx.queues, schedules);
      const pending = counts.map((c) => (c.counts.waiting ?? 0) + (c.counts.delayed ?? 0) + (c.counts.prioritized ?? 0));
      return html`
        ${section(
          'Jobs by state',
          html`${table(
            ['queue', ...STATES],
            counts.map((c) => [html`<a href="/admin/queues/queue/${c.queue}">${c.queue}</a>`, ...STATES.map((s) => c.counts[s] ?? 0)]),
            { id: 'queue-counts' },
          )}
          <p class="muted">Every job, with its data, logs and retries, is in <a href="/admin/queues">Bull Board</a>.</p>`,
        )}
        <div class="grid">
          ${section(
            'Pending and failed jobs per queue',
            chart('queue-chart', {
              type: 'bar',
              data: {
                labels: [...QUEUE_NAMES],
                datasets: [
                  { label: 'pending', data: pending, backgroundColor: '#5b8def' },
                  { label: 'active', data: counts.map((c) => c.counts.active ?? 0), backgroundColor: '#f0a33c' },
                  { label: 'failed', data: counts.map((c) => c.counts.failed ?? 0), backgroundColor: '#d64545' },
                ],
              },
              options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
            }),
          )}
          ${section(
            'Schedules',
            described.length === 0
              ? emptyState('No schedules are defined.', 'Set a *_CRON variable (see the README) and restart the workers.')
              : table(
                  ['schedule', 'queue', 'pattern', 'next run', 'state'],
                  described.map((s) => [
                    html`${s.id}<br /><span class="muted">${s.description}</span>`,
                    s.queue,
                    s.pattern ? html`<code>${s.pattern}</code> ${s.tz}` : '—',
                    s.next_run_at ?? '—',
                    !s.enabled ? html`<span class="badge">off</span>` : s.registered ? html`<span class="badge ok">registered</span>` : html`<span class="badge warn">not registered: start a worker</span>`,
                  ]),
                  { id: 'schedules' },
                ),
          )}
        </div>`;
    },
  };
}

/**
 * `/dashboard/*` behind the admin auth (Bearer or the login cookie), and the assets it needs,
 * served from this process (no CDN, so it works offline): Chart.js and a small script.
 */
export function dashboardRoutes(ctx: GatewayContext, domainPages: DashboardPage[], opts: { schedules: ScheduleDefinition[] }) {
  const pages = [...domainPages, queuesPage(ctx, opts.schedules)].sort((a, b) => a.order - b.order);
  const app = createRouter();
  app.get('/dashboard', (c) => c.redirect(`/dashboard/${pages[0]!.slug}`, 302));
  app.get('/dashboard/assets/dashboard.js', (c) => c.body(DASHBOARD_JS, 200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-cache' }));
  app.get('/dashboard/assets/dashboard.css', (c) => c.body(CSS, 200, { 'content-type': 'text/css; charset=utf-8', 'cache-control': 'no-cache' }));
  app.get('/dashboard/assets/chart.js', (c) => serveAsset(c, 'chart.js'));
  app.get('/dashboard/:page/data.json', async (c) => {
    const page = pages.find((p) => p.slug === c.req.param('page'));
    if (!page?.data) return c.json({ error: { code: 'not_found', message: 'No live data for this page' } }, 404);
    return c.json((await page.data(c)) as object, 200, { 'cache-control': 'no-store' });
  });
  app.get('/dashboard/:page', async (c) => {
    const page = pages.find((p) => p.slug === c.req.param('page'));
    if (!page) return c.html(layout('Not found', pages, '', emptyState(`There is no dashboard page "${c.req.param('page')}".`, 'Pick one above.')), 404);
    // Live figures: never a cached copy.
    return c.html(layout(page.title, pages, page.slug, await page.render(c)), 200, { 'cache-control': 'no-store' });
  });
  return app;
}

async function serveAsset(c: Context, name: string) {
  const spec = ASSETS[name]!;
  let body = assetCache.get(name);
  if (!body) {
    body = await readFile(spec.path());
    assetCache.set(name, body);
  }
  return c.body(new Uint8Array(body), 200, { 'content-type': spec.type, 'cache-control': 'public, max-age=86400' });
}

/** `/docs`: Swagger UI on `/openapi.json`, its assets served from this process; and the favicon. Public, like the document. */
export function docsRoutes() {
  const app = createRouter();
  app.get('/docs', (c) =>
    c.html(html`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Caliber API</title>
    <link rel="stylesheet" href="/docs/assets/swagger-ui.css" />
  </head>
  <body>
    <div id="docs"></div>
    <script src="/docs/assets/swagger-ui.js"></script>
    <script src="/docs/assets/docs.js"></script>
  </body>
</html>`),
  );
  // Browsers ask for it on every page; without it each page logs a failed request.
  app.get('/favicon.ico', (c) =>
    c.body(
      '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#1d2330"/><text x="16" y="23" font-family="sans-serif" font-size="20" font-weight="700" fill="#fff" text-anchor="middle">C</text></svg>',
      200,
      { 'content-type': 'image/svg+xml', 'cache-control': 'public, max-age=86400' },
    ),
  );
  app.get('/docs/assets/swagger-ui.js', (c) => serveAsset(c, 'swagger-ui.js'));
  app.get('/docs/assets/swagger-ui.css', (c) => serveAsset(c, 'swagger-ui.css'));
  // A script file rather than inline, so a strict Content-Security-Policy can forbid inline scripts.
  app.get('/docs/assets/docs.js', (c) =>
    c.body(
      `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#docs', deepLinking: true, persistAuthorization: false, tryItOutEnabled: false });`,
      200,
      { 'content-type': 'text/javascript; charset=utf-8' },
    ),
  );
  return app;
}
