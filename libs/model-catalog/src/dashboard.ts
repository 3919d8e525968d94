import { chart, emptyState, section, stats, table, type DashboardPage, type GatewayContext } from '@caliber/platform';
import { sql } from 'drizzle-orm';
import { html } from 'hono/html';
import { METRICS } from './best-model.ts';

/** Mapping coverage, the unmapped models (with a form to map one by hand) and the best model per provider and metric. */
export function modelCatalogDashboard(ctx: GatewayContext): DashboardPage[] {
  return [
    {
      slug: 'models',
      title: 'Models',
      order: 20,
      async render() {
        const [coverage, runs, unmapped, best, slugs] = await Promise.all([
          ctx.db.execute<{ total: number; mapped: number; manual: number }>(sql`
            SELECT count(DISTINCT w.model_id)::int AS total,
                   count(DISTINCT w.model_id) FILTER (WHERE m.aa_slug IS NOT NULL)::int AS mapped,
                   count(DISTINCT w.model_id) FILTER (WHERE m.manual AND m.aa_slug IS NOT NULL)::int AS manual
              FROM working_version w LEFT JOIN model_aa_mapping m ON m.model_name = w.model_id`),
          ctx.db.execute<{ id: number; created_at: Date; total_models: number; mapped: number; aa_entries: number }>(sql`
            SELECT * FROM (SELECT id, created_at, total_models, mapped, aa_entries FROM model_mapping_runs ORDER BY id DESC LIMIT 30) r ORDER BY id`),
          ctx.db.execute<{ model_id: string; providers: string; reason: string | null }>(sql`
            SELECT w.model_id, string_agg(DISTINCT w.inference_provider, ', ' ORDER BY w.inference_provider) AS providers, min(m.reason) AS reason
              FROM working_version w LEFT JOIN model_aa_mapping m ON m.model_name = w.model_id
             WHERE m.aa_slug IS NULL GROUP BY w.model_id ORDER BY w.model_id LIMIT 200`),
          // The best mapped model of every provider by every metric, in one pass.
          ctx.db.execute<{ provider: string; metric: string; model: string; aa_slug: string; value: number }>(sql`
            SELECT DISTINCT ON (w.inference_provider, x.metric) w.inference_provider AS provider, x.metric, w.model_id AS model, m.aa_slug, x.value
              FROM working_version w
              JOIN model_aa_mapping m ON m.model_name = w.model_id AND m.aa_slug IS NOT NULL
              JOIN aa_performance_metrics a ON a.slug = m.aa_slug
              CROSS JOIN LATERAL (VALUES ('intelligence_index', a.intelligence_index), ('coding_index', a.coding_index), ('math_index', a.math_index)) AS x(metric, value)
             WHERE x.value IS NOT NULL
             ORDER BY w.inference_provider, x.metric, x.value DESC, w.model_id`),
          ctx.db.execute<{ slug: string; name: string }>(sql`SELECT slug, name FROM aa_performance_metrics ORDER BY slug LIMIT 2000`),
        ]);
        const cov = coverage.rows[0]!;
        if (cov.total === 0) {
          return emptyState('No models in working_version yet.', 'The model discovery pipeline fills working_version; then map them: POST /admin/models/map');
        }
        const providers = [...new Set(best.rows.map((r) => r.provider))];
        const bestOf = (provider: string, metric: string) => best.rows.find((r) => r.provider === provider && r.metric === metric);
        return html`
          ${stats([
            ['models', cov.total],
            ['mapped', cov.mapped],
            ['unmapped', cov.total - cov.mapped],
            ['mapped by hand', cov.manual],
            ['coverage', `${((cov.mapped / cov.total) * 100).toFixed(1)} %`],
          ])}
          <div class="grid">
            ${section(
              'Coverage',
              html`${chart('coverage-now', {
                type: 'doughnut',
                data: {
                  labels: ['mapped automatically', 'mapped by hand', 'unmapped'],
                  datasets: [{ data: [cov.mapped - cov.manual, cov.manual, cov.total - cov.mapped], backgroundColor: ['#3fa37a', '#5b8def', '#d6dae3'] }],
                },
                options: { plugins: { legend: { position: 'right' } } },
              }, { height: 200, label: 'mapping coverage now' })}
              ${runs.rows.length < 2
                ? html`<p class="muted">${runs.rows.length === 0 ? 'map-models has not run yet: POST /admin/models/map (it also runs daily at MAP_MODELS_CRON).' : 'The coverage of each map-models run shows here from the second run on.'}</p>`
                : chart('coverage-chart', {
                    type: 'line',
                    data: {
                      labels: runs.rows.map((r) => new Date(r.created_at).toISOString().slice(0, 16).replace('T', ' ')),
                      datasets: [
                        { label: 'coverage %', data: runs.rows.map((r) => (r.total_models ? Number(((r.mapped / r.total_models) * 100).toFixed(1)) : 0)), borderColor: '#3fa37a', yAxisID: 'y' },
                        { label: 'models', data: runs.rows.map((r) => r.total_models), borderColor: '#5b8def', yAxisID: 'y1' },
                      ],
                    },
                    options: { scales: { y: { min: 0, max: 100 }, y1: { position: 'right', beginAtZero: true, grid: { drawOnChartArea: false } } } },
                  }, { height: 200, label: 'coverage per map-models run' })}`,
            )}
            ${section(
              'Best model per provider',
              providers.length === 0
                ? emptyState('No mapped model has Artificial Analysis metrics yet.', 'POST /admin/models/map with AA_API_KEY or AA_METRICS_FILE set')
                : table(
                    ['provider', ...METRICS],
                    providers.map((p) => [p, ...METRICS.map((m) => {
                      const b = bestOf(p, m);
                      return b ? html`${b.model} <span class="muted">${b.value}</span>` : '—';
                    })]),
                    { id: 'best-models' },
                  ),
            )}
          </div>
          ${section(
            `Unmapped models (${cov.total - cov.mapped})`,
            unmapped.rows.length === 0
              ? html`<p>Every model is mapped.</p>`
              : html`
                <form class="inline" data-json="/admin/models/mappings/:model_name" data-method="PUT" data-reload="1" id="map-form">
                  <label>Map <select name="model_name">${unmapped.rows.map((r) => html`<option value="${r.model_id}">${r.model_id}</option>`)}</select></label>
                  <label>to <input name="aa_slug" list="aa-slugs" placeholder="AA slug" required /></label>
                  <datalist id="aa-slugs">${slugs.rows.map((s) => html`<option value="${s.slug}">${s.name}</option>`)}</datalist>
                  <button type="submit">Map by hand</button>
                  <span class="result"></span>
                </form>
                ${table(['model', 'providers', 'why it is unmapped'], unmapped.rows.map((r) => [r.model_id, r.providers, r.reason ?? 'not matched yet (run map-models)']), { id: 'unmapped' })}`,
          )}`;
      },
    },
  ];
}
