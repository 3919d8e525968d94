import { chart, emptyState, section, stats, table, type DashboardPage, type GatewayContext } from '@caliber/platform';
import { sql } from 'drizzle-orm';
import { html } from 'hono/html';
import { accountCredits } from './credits.ts';
import { FINE_TUNE_STATUSES } from './schema.ts';

const BADGE: Record<string, string> = { succeeded: 'ok', failed: 'bad', cancelled: 'warn' };

/** Fine-tuning jobs with their status and credits, and each account's balance. */
export function fineTuningDashboard(ctx: GatewayContext): DashboardPage[] {
  return [
    {
      slug: 'fine-tuning',
      title: 'Fine-tuning',
      order: 35,
      async render() {
        const [jobs, byStatus] = await Promise.all([
          ctx.db.execute<{ id: string; model_id: string; account_id: string; provider: string; status: string; trigger: string; credits_reserved: number; dataset_rows: number | null; fine_tuned_model: string | null; error: string | null; created_at: Date }>(sql`
            SELECT id, model_id, account_id, provider, status, trigger, credits_reserved, dataset_rows, fine_tuned_model, error, created_at
              FROM fine_tuning_jobs ORDER BY created_at DESC, id LIMIT 50`),
          ctx.db.execute<{ status: string; n: number }>(sql`SELECT status, count(*)::int AS n FROM fine_tuning_jobs GROUP BY status`),
        ]);
        const accounts = (await ctx.db.execute<{ id: string }>(sql`SELECT id FROM credit_accounts ORDER BY id LIMIT 200`)).rows.map((r) => r.id);
        const credits = await accountCredits(ctx.db, accounts);
        if (jobs.rows.length === 0 && accounts.length === 0) {
          return emptyState('No fine-tuning jobs or credit accounts yet.', 'Grant credits (POST /admin/credits/:account_id/grant), then create a job: POST /api/analytics/model-improvement/fine-tuning/jobs');
        }
        const count = new Map(byStatus.rows.map((r) => [r.status, r.n]));
        return html`
          ${stats(FINE_TUNE_STATUSES.filter((s) => count.get(s)).map((s) => [s, count.get(s)]))}
          <div class="grid">
            ${section(
              'Jobs by status',
              chart('fine-tune-status', {
                type: 'bar',
                data: { labels: [...FINE_TUNE_STATUSES], datasets: [{ label: 'jobs', data: FINE_TUNE_STATUSES.map((s) => count.get(s) ?? 0), backgroundColor: '#5b8def' }] },
                options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
              }, { height: 220, label: 'fine-tuning jobs by status' }),
            )}
            ${section(
              'Credits',
              accounts.length === 0
                ? emptyState('No credit accounts.', 'POST /admin/credits/:account_id/grant {"amount": 1000}')
                : table(['account', 'balance', 'reserved'], accounts.map((a) => [a, credits.get(a)?.balance ?? 0, credits.get(a)?.reserved ?? 0]), { id: 'credits' }),
            )}
          </div>
          ${section(
            'Jobs (newest first)',
            jobs.rows.length === 0
              ? emptyState('No fine-tuning jobs yet.', 'POST /api/analytics/model-improvement/fine-tuning/jobs {"model_id","account_id"}, then …/jobs/:id/start')
              : table(
                  ['created', 'model', 'status', 'trigger', 'provider', 'account', 'credits held', 'examples', 'fine-tuned model / error'],
                  jobs.rows.map((j) => [
                    new Date(j.created_at),
                    j.model_id,
                    html`<span class="badge ${BADGE[j.status] ?? ''}">${j.status}</span>`,
                    j.trigger,
                    j.provider,
                    j.account_id,
                    j.credits_reserved,
                    j.dataset_rows,
                    j.fine_tuned_model ?? j.error?.slice(0, 160) ?? null,
                  ]),
                  { id: 'fine-tune-jobs' },
                ),
          )}`;
      },
    },
  ];
}
