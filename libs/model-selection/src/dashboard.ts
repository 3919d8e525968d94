import { chart, emptyState, rowCount, section, showCount, stats, table, type DashboardPage, type GatewayContext } from '@caliber/platform';
import { sql } from 'drizzle-orm';
import { html } from 'hono/html';

/** The chosen model per (language, size), how the last runs went and the change notifications. */
export function modelSelectionDashboard(ctx: GatewayContext): DashboardPage[] {
  return [
    {
      slug: 'model-selection',
      title: 'Model selection',
      order: 25,
      async render() {
        const [configs, runs, notices, results] = await Promise.all([
          ctx.db.execute<{ language: string; size_category: string; model_id: string; provider: string; score: number; sample_count: number; runner_up_model_id: string | null; runner_up_score: number | null; stale: boolean; chosen_at: Date }>(sql`
            SELECT language, size_category, model_id, provider, score, sample_count, runner_up_model_id, runner_up_score, stale, chosen_at
              FROM model_configurations ORDER BY language = 'any', language, size_category LIMIT 500`),
          ctx.db.execute<{ id: number; finished_at: Date; configurations: number; changed: number }>(sql`
            SELECT * FROM (SELECT id, finished_at, configurations, changed FROM model_selection_runs WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 30) r ORDER BY id`),
          ctx.db.execute<{ id: number; status: string; attempts: number; created_at: Date; body: string }>(sql`
            SELECT id, status, attempts, created_at, body FROM notifications WHERE event = 'model_configuration.changed' ORDER BY id DESC LIMIT 20`),
          rowCount(ctx.db, 'calibration_results'),
        ]);
        if (configs.rows.length === 0) {
          return emptyState(
            results.n === 0 ? 'No evaluation results yet.' : 'No model configuration yet.',
            results.n === 0 ? 'POST /admin/model-selection/results, then POST /admin/model-selection/calibrate' : 'POST /admin/model-selection/calibrate (it also runs at MODEL_SELECTION_CRON)',
          );
        }
        const pairs = configs.rows.filter((r) => r.language !== 'any' && r.size_category !== 'any');
        return html`
          ${stats([
            ['configurations', configs.rows.length],
            ['evaluation results', showCount(results)],
            ['runs', runs.rows.length],
            ['stale', configs.rows.filter((r) => r.stale).length],
          ])}
          <div class="grid">
            ${section(
              'Score of the chosen model and its runner-up, per pair',
              pairs.length === 0
                ? html`<p>Only pooled configurations so far (language or size "any").</p>`
                : chart('selection-scores', {
                type: 'bar',
                data: {
                  labels: pairs.map((p) => `${p.language}/${p.size_category}`),
                  datasets: [
                    { label: 'chosen', data: pairs.map((p) => p.score), backgroundColor: '#3fa37a' },
                    { label: 'runner-up', data: pairs.map((p) => p.runner_up_score), backgroundColor: '#c9d6f5' },
                  ],
                },
                options: { scales: { y: { min: 0, max: 1 } } },
              }, { height: 260, label: 'scores per pair' }),
            )}
            ${section(
              'Changes per run',
              chart('selection-runs', {
                type: 'bar',
                data: { labels: runs.rows.map((r) => `#${r.id}`), datasets: [{ label: 'configurations changed', data: runs.rows.map((r) => r.changed), backgroundColor: '#e07a3f' }] },
                options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
              }, { height: 260, label: 'changes per run' }),
            )}
          </div>
          ${section(
            'Configurations',
            table(
              ['language', 'size', 'model', 'score', 'samples', 'runner-up', 'chosen'],
              configs.rows.map((r) => [
                r.language,
                r.size_category,
                html`${r.provider}/${r.model_id} ${r.stale ? html`<span class="badge warn">stale</span>` : ''}`,
                r.score,
                r.sample_count,
                r.runner_up_model_id ? `${r.runner_up_model_id} (${r.runner_up_score})` : null,
                new Date(r.chosen_at),
              ]),
              { id: 'configurations' },
            ),
          )}
          ${section(
            'Change notifications',
            notices.rows.length === 0
              ? html`<p>No change notified yet.</p>`
              : table(
                  ['id', 'pair', 'from → to', 'status', 'attempts', 'at'],
                  notices.rows.map((n) => {
                    const b = JSON.parse(n.body) as { language: string; size_category: string; from: { model_id: string } | null; to: { model_id: string } };
                    const badge = n.status === 'delivered' ? 'ok' : n.status === 'failed' ? 'bad' : 'warn';
                    return [html`<a href="/admin/notifications/${n.id}">${n.id}</a>`, `${b.language}/${b.size_category}`, `${b.from?.model_id ?? '—'} → ${b.to.model_id}`, html`<span class="badge ${badge}">${n.status}</span>`, n.attempts, new Date(n.created_at)];
                  }),
                  { id: 'notifications' },
                ),
          )}`;
      },
    },
  ];
}
