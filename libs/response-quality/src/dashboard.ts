import { chart, PALETTE, emptyState, rowCount, section, showCount, stats, table, type DashboardPage, type GatewayContext } from '@caliber/platform';
import { sql } from 'drizzle-orm';
import { html } from 'hono/html';


/** The latest error analysis (patterns, weekly trends, suggestions) and the most disliked responses. */
export function responseQualityDashboard(ctx: GatewayContext): DashboardPage[] {
  return [
    {
      slug: 'quality',
      title: 'Quality',
      order: 30,
      async render() {
        const run = (await ctx.db.execute<{ id: number; as_of: Date; summary: unknown }>(sql`SELECT id, as_of, summary FROM error_analysis_runs WHERE summary <> '{}' ORDER BY id DESC LIMIT 1`)).rows[0];
        const [responses, feedback, problematic] = await Promise.all([
          rowCount(ctx.db, 'llm_responses'),
          rowCount(ctx.db, 'response_feedback'),
          // Recent negative feedback only (a partial index holds it), so the page stays quick on millions of rows.
          ctx.db.execute<{ response_id: string; model_id: string; query: string; negative: number; categories: string[]; comment: string | null }>(sql`
            SELECT r.response_id, r.model_id, r.query, s.negative, s.categories, s.comment
              FROM (SELECT f.response_ref, count(*)::int AS negative, max(f.comment) AS comment,
                           ARRAY(SELECT DISTINCT c FROM response_feedback g, unnest(g.categories) AS c
                                  WHERE g.response_ref = f.response_ref AND g.negative AND g.created_at >= now() - interval '30 days' ORDER BY c) AS categories
                      FROM response_feedback f WHERE f.negative AND f.created_at >= now() - interval '30 days'
                     GROUP BY f.response_ref ORDER BY count(*) DESC, f.response_ref DESC LIMIT 20) s
              JOIN llm_responses r ON r.id = s.response_ref
             ORDER BY s.negative DESC, r.id DESC`),
        ]);
        if (responses.n === 0) {
          return emptyState('No responses recorded yet.', 'Record responses and feedback: POST /api/analytics/response-quality/response and …/feedback');
        }
        const summary = (run?.summary ?? {}) as { negative_feedback?: number };
        const head = stats([
          ['responses', showCount(responses)],
          ['feedback', showCount(feedback)],
          ['negative, last analysis window', summary.negative_feedback ?? '—'],
          ['last analysis', run ? new Date(run.as_of) : 'never'],
        ]);
        const problems = section(
          'Problematic responses (most negative feedback, last 30 days)',
          problematic.rows.length === 0
            ? html`<p>No negative feedback in the last 30 days.</p>`
            : table(
                ['response', 'model', 'query', 'negative', 'categories', 'a comment'],
                problematic.rows.map((r) => [r.response_id, r.model_id, r.query.slice(0, 120), r.negative, r.categories.join(', '), r.comment?.slice(0, 160) ?? null]),
                { id: 'problematic' },
              ),
        );
        if (!run) {
          return html`${head}${emptyState('No error analysis has run yet.', 'POST /api/analytics/model-improvement/analyze (it also runs weekly at ANALYZE_ERRORS_CRON)')}${problems}`;
        }
        const [patterns, trends, suggestions] = await Promise.all([
          ctx.db.execute<{ model_id: string; category: string; count: number; share: number }>(sql`
            SELECT model_id, category, count, share FROM error_patterns WHERE run_id = ${run.id} ORDER BY model_id, count DESC, category`),
          ctx.db.execute<{ category: string; week: string; count: number }>(sql`
            SELECT category, week, sum(count)::int AS count FROM error_trends WHERE run_id = ${run.id} GROUP BY category, week ORDER BY week, category`),
          ctx.db.execute<{ model_id: string; category: string; share: number; previous_share: number; evidence: string; action: string }>(sql`
            SELECT model_id, category, share, previous_share, evidence, action FROM improvement_suggestions WHERE run_id = ${run.id} ORDER BY share DESC, model_id, category`),
        ]);
        const weeks = [...new Set(trends.rows.map((r) => r.week))].sort();
        const categories = [...new Set(trends.rows.map((r) => r.category))].sort();
        const byKey = new Map(trends.rows.map((r) => [`${r.category}|${r.week}`, r.count]));
        return html`${head}
          <div class="grid">
            ${section(
              'Negative feedback per category and ISO week',
              weeks.length === 0
                ? html`<p>No categorised negative feedback in the analysed weeks.</p>`
                : chart('error-trends', {
                    type: 'line',
                    data: { labels: weeks, datasets: categories.map((cat, i) => ({ label: cat, data: weeks.map((w) => byKey.get(`${cat}|${w}`) ?? 0), borderColor: PALETTE[i % PALETTE.length] })) },
                    options: { plugins: { legend: { position: 'bottom' } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
                  }, { height: 300, label: 'weekly error trends' }),
            )}
            ${section(
              'Error patterns (latest analysis)',
              patterns.rows.length === 0
                ? html`<p>No patterns found.</p>`
                : table(['model', 'category', 'count', 'share'], patterns.rows.map((p) => [p.model_id, p.category, p.count, `${(p.share * 100).toFixed(1)} %`]), { id: 'patterns' }),
            )}
          </div>
          ${section(
            'Improvement suggestions',
            suggestions.rows.length === 0
              ? html`<p>No category is frequent enough for a suggestion (SUGGESTION_MIN_SHARE, SUGGESTION_MIN_COUNT).</p>`
              : table(['model', 'category', 'share', 'before', 'evidence', 'action'], suggestions.rows.map((s) => [s.model_id, s.category, `${(s.share * 100).toFixed(1)} %`, `${(s.previous_share * 100).toFixed(1)} %`, s.evidence, s.action]), { id: 'suggestions' }),
          )}
          ${problems}`;
      },
    },
  ];
}
