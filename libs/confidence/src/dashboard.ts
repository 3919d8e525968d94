import { chart, PALETTE, emptyState, section, stats, table, withTenant, type DashboardPage, type GatewayContext } from '@caliber/platform';
import { sql } from 'drizzle-orm';
import { html } from 'hono/html';
import { confidenceTrends, outcomeGroups } from './analytics.ts';
import { calibrationMetrics } from './calibration-math.ts';
import type { ConfidenceConfig } from './config.ts';

const r4 = (x: number) => Number(x.toFixed(4));

/** One tenant's confidence: the hourly trend, the reliability diagram and ECE/Brier per model (the admin picks the tenant). */
export function confidenceDashboard(ctx: GatewayContext, config: ConfidenceConfig): DashboardPage[] {
  return [
    {
      slug: 'confidence',
      title: 'Confidence',
      order: 40,
      async render(c) {
        const tenants = (await ctx.db.execute<{ id: string; name: string }>(sql`SELECT id, name FROM tenants ORDER BY created_at, id LIMIT 500`)).rows;
        if (tenants.length === 0) {
          return emptyState('No tenants yet.', 'Create one (POST /admin/tenants {"name":"acme"}), then send scores with its key: POST /confidence/scores');
        }
        const wanted = c.req.query('tenant');
        // Looked up on its own: the picker lists the first 500, any tenant can be opened by id.
        const named = wanted && /^[0-9a-f-]{36}$/i.test(wanted) ? (await ctx.db.execute<{ id: string; name: string }>(sql`SELECT id, name FROM tenants WHERE id = ${wanted}::uuid`)).rows[0] : undefined;
        const tenant = named ?? tenants[0]!;
        if (named && !tenants.some((t) => t.id === named.id)) tenants.push(named);
        const bins = config.CONFIDENCE_BINS;
        const { trends, byModel, fits } = await withTenant(ctx.db, tenant.id, async (tx) => ({
          trends: await confidenceTrends(tx, tenant.id, { bucket: 'hour', from: new Date(Date.now() - 48 * 3_600_000).toISOString() }),
          byModel: await outcomeGroups(tx, tenant.id),
          fits: (
            await tx.execute<{ model: string; temperature: number; ece_before: number; ece_after: number }>(sql`
              SELECT DISTINCT ON (model) model, temperature, ece_before, ece_after FROM confidence_temperature_fits
               WHERE tenant_id = ${tenant.id}::uuid ORDER BY model, id DESC`)
          ).rows,
        }));
        const all = calibrationMetrics([...byModel.values()].flat(), bins);
        const models = [...byModel.entries()].map(([model, groups]) => ({ model, ...calibrationMetrics(groups, bins) })).sort((a, b) => a.model.localeCompare(b.model));
        const fitOf = new Map(fits.map((f) => [f.model, f]));
        const scored = trends.buckets.reduce((s, b) => s + b.count, 0);
        const picker = html`<form class="inline" method="get">
          <label>Tenant <select name="tenant" data-autosubmit>${tenants.map((t) => html`<option value="${t.id}" ${t.id === tenant.id ? 'selected' : ''}>${t.name}</option>`)}</select></label>
          <noscript><button>Show</button></noscript>
        </form>`;
        const reliability = all.n === 0
          ? emptyState('No outcomes yet, so no reliability diagram.', 'Record whether answers were right: POST /confidence/outcomes (tenant key)')
          : chart('reliability', {
              type: 'scatter',
              data: {
                datasets: [
                  { label: 'perfect calibration', data: [{ x: 0, y: 0 }, { x: 1, y: 1 }], showLine: true, borderColor: '#9aa3b5', borderDash: [6, 4], pointRadius: 0 },
                  {
                    label: 'accuracy per bin',
                    data: all.bins.filter((b) => b.count > 0).map((b) => ({ x: r4(b.avg_confidence!), y: r4(b.accuracy!), count: b.count })),
                    showLine: true,
                    borderColor: '#5b8def',
                    backgroundColor: '#5b8def',
                    pointRadius: 5,
                  },
                ],
              },
              options: { scales: { x: { min: 0, max: 1, title: { display: true, text: 'mean confidence' } }, y: { min: 0, max: 1, title: { display: true, text: 'accuracy' } } } },
            }, { height: 320, label: 'reliability diagram' });
        return html`${picker}
          ${stats([
            ['scores, last 48 h', scored],
            ['outcomes', all.n],
            ['ECE', all.n ? r4(all.ece) : '—'],
            ['Brier', all.n ? r4(all.brier) : '—'],
          ])}
          <div class="grid">
            ${section(
              'Confidence per hour (last 48 h)',
              scored === 0
                ? emptyState('No scores in the last 48 hours.', 'Send scores with the tenant key: POST /confidence/scores')
                : chart('confidence-trend', {
                    type: 'line',
                    data: {
                      labels: trends.buckets.map((b) => b.bucket.slice(5, 13).replace('T', ' ') + 'h'),
                      datasets: [
                        { label: 'mean overall confidence', data: trends.buckets.map((b) => b.avg_overall), borderColor: '#5b8def', yAxisID: 'y', spanGaps: false },
                        { label: 'scores', data: trends.buckets.map((b) => b.count), type: 'bar', backgroundColor: '#c9d6f5', yAxisID: 'y1' },
                      ],
                    },
                    options: { scales: { y: { min: 0, max: 1 }, y1: { position: 'right', beginAtZero: true, grid: { drawOnChartArea: false } } } },
                  }, { height: 320, label: 'hourly confidence trend' }),
            )}
            ${section(`Reliability diagram (${bins} bins, all models)`, reliability)}
          </div>
          ${section(
            'Calibration per model',
            models.length === 0
              ? emptyState('No outcomes yet.', 'POST /confidence/outcomes, then POST /confidence/calibrate to fit temperatures')
              : html`${chart('ece-per-model', {
                  type: 'bar',
                  data: {
                    labels: models.map((m) => m.model),
                    datasets: [
                      { label: 'ECE', data: models.map((m) => r4(m.ece)), backgroundColor: PALETTE[0] },
                      { label: 'Brier', data: models.map((m) => r4(m.brier)), backgroundColor: PALETTE[1] },
                    ],
                  },
                  options: { scales: { y: { beginAtZero: true } } },
                }, { height: 220, label: 'ECE and Brier per model' })}
                ${table(
                  ['model', 'outcomes', 'ECE', 'MCE', 'Brier', 'temperature', 'ECE after it'],
                  models.map((m) => [m.model, m.n, r4(m.ece), r4(m.mce), r4(m.brier), fitOf.get(m.model)?.temperature ?? null, fitOf.get(m.model)?.ece_after ?? null]),
                  { id: 'model-calibration' },
                )}`,
          )}`;
      },
    },
  ];
}
