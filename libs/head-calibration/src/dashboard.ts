import { chart, PALETTE, emptyState, rowCount, section, showCount, stats, table, type DashboardPage, type GatewayContext } from '@caliber/platform';
import { sql } from 'drizzle-orm';
import { html } from 'hono/html';
import type { HeadCalibrationConfig } from './config.ts';
import type { DriftThresholds } from './math.ts';
import { retagStatus } from './retag.ts';

/** Versions a head's charts show (the latest). */
const MAX_VERSIONS = 60;

const METRICS = [
  { key: 'apd_p5', label: 'APD p5', threshold: 'apd' },
  { key: 'apd_p95', label: 'APD p95', threshold: 'apd' },
  { key: 'srd', label: 'SRD', threshold: 'srd' },
  { key: 'jsd', label: 'JSD', threshold: 'jsd' },
  { key: 'median_drift', label: 'median drift', threshold: 'median' },
  { key: 'iqr_drift', label: 'IQR drift', threshold: 'iqr' },
] as const;


interface RunRow {
  model_name: string;
  head_name: string;
  version: number;
  timestamp: Date;
  is_stable: boolean;
  reference_version: number | null;
  file_count: number;
  apd_p5: number | null;
  apd_p95: number | null;
  srd: number | null;
  jsd: number | null;
  median_drift: number | null;
  iqr_drift: number | null;
  thresholds: DriftThresholds;
  failed_metrics: string[] | null;
  labels: Record<string, { samples: number; p5: number; p25: number; median: number; p75: number; p95: number; iqr: number; histogram: number[] }>;
  [key: string]: unknown;
}

const finite = (v: number | null) => (v === null || !Number.isFinite(v) ? null : v);

function headsPage(ctx: GatewayContext, config: HeadCalibrationConfig): DashboardPage {
  return {
    slug: 'heads',
    title: 'Heads',
    order: 10,
    async render(c) {
      // Heads with runs (development) and heads with only an imported reference (production).
      const heads = (
        await ctx.db.execute<{ model_name: string; head_name: string; runs: number; latest: number | null; stable: boolean | null; reference: number | null; source: string | null }>(sql`
          SELECT h.model_name, h.head_name, coalesce(r.runs, 0) AS runs, r.latest, r.stable, ref.version AS reference, ref.source
            FROM (SELECT model_name, head_name FROM calibration_runs UNION SELECT model_name, head_name FROM calibration_references) h
            LEFT JOIN (SELECT model_name, head_name, count(*)::int AS runs, max(version) AS latest,
                              (array_agg(is_stable ORDER BY version DESC))[1] AS stable
                         FROM calibration_runs GROUP BY model_name, head_name) r USING (model_name, head_name)
            LEFT JOIN calibration_references ref USING (model_name, head_name)
           ORDER BY h.model_name, h.head_name`)
      ).rows;
      if (heads.length === 0) {
        return emptyState(
          'No calibration runs yet.',
          config.CALIBRATE_HEADS
            ? 'Tag files with POST /library/files, then start a run: POST /admin/calibration/run'
            : 'Install a calibration bundle (npm run caliber -- calibration import <dir>, or POST /admin/calibration/import), or start with CALIBRATE_HEADS=true, tag files (POST /library/files) and POST /admin/calibration/run',
        );
      }
      const headList = section(
        'Heads',
        table(
          ['head', 'runs', 'latest version', 'latest run', 'reference'],
          heads.map((h) => [
            html`<a href="?head=${encodeURIComponent(`${h.model_name}/${h.head_name}`)}">${h.model_name}/${h.head_name}</a>`,
            h.runs,
            h.latest === null ? '—' : `v${h.latest}`,
            h.stable === null ? '—' : h.stable ? html`<span class="badge ok">stable</span>` : html`<span class="badge bad">unstable</span>`,
            h.reference === null ? html`<span class="badge warn">none yet</span>` : `v${h.reference} (${h.source})`,
          ]),
          { id: 'heads' },
        ),
      );
      const wanted = c.req.query('head');
      const selected = heads.find((h) => `${h.model_name}/${h.head_name}` === wanted) ?? heads.find((h) => h.runs > 0) ?? heads[0]!;
      const runs = (
        await ctx.db.execute<RunRow>(sql`
          SELECT * FROM (
            SELECT model_name, head_name, version, timestamp, is_stable, reference_version, file_count, apd_p5, apd_p95, srd, jsd, median_drift, iqr_drift,
                   details->'thresholds' AS thresholds, details->'labels' AS labels, details->'failed_metrics' AS failed_metrics
              FROM calibration_runs WHERE model_name = ${selected.model_name} AND head_name = ${selected.head_name}
             ORDER BY version DESC LIMIT ${MAX_VERSIONS}) r
          ORDER BY version`)
      ).rows;
      if (runs.length === 0) {
        const reference = (await ctx.db.execute<{ labels: Record<string, { p5: number; p95: number; samples?: number }> }>(sql`
          SELECT labels FROM calibration_references WHERE model_name = ${selected.model_name} AND head_name = ${selected.head_name}`)).rows[0];
        return html`${headList}
          <h2>${selected.model_name}/${selected.head_name}</h2>
          ${section(
            `Reference v${selected.reference} (${selected.source}), no calibration runs here`,
            html`${table(['label', 'p5', 'p95', 'samples'], Object.entries(reference?.labels ?? {}).map(([l, v]) => [l, v.p5, v.p95, v.samples ?? null]), { id: 'reference-labels' })}
            <p class="muted">Drift charts appear once calibration runs exist (development mode: CALIBRATE_HEADS=true, then POST /admin/calibration/run).</p>`,
          )}`;
      }
      const versions = runs.map((r) => `v${r.version}`);
      const pointColors = runs.map((r) => (r.is_stable ? '#3fa37a' : '#d64545'));
      const latest = runs.at(-1)!;
      const labels = Object.keys(latest.labels ?? {}).sort();

      const driftCharts = METRICS.map((m) =>
        section(
          m.label,
          chart(
            `drift-${m.key}`,
            {
              type: 'line',
              data: {
                labels: versions,
                datasets: [
                  { label: m.label, data: runs.map((r) => finite(r[m.key] as number | null)), borderColor: '#5b8def', pointBackgroundColor: pointColors, pointRadius: 5, spanGaps: false },
                  { label: 'threshold', data: runs.map((r) => r.thresholds?.[m.threshold] ?? null), borderColor: '#d64545', borderDash: [6, 4], pointRadius: 0 },
                ],
              },
              options: { plugins: { legend: { position: 'bottom' } }, scales: { y: { beginAtZero: true } } },
            },
            { height: 200, label: `${m.label} per version with its threshold` },
          ),
        ),
      );
      const bounds = chart(
        'label-bounds',
        {
          type: 'line',
          data: {
            labels: versions,
            datasets: labels.flatMap((label, i) => [
              { label: `${label} p95`, data: runs.map((r) => r.labels?.[label]?.p95 ?? null), borderColor: PALETTE[i % PALETTE.length], spanGaps: true },
              { label: `${label} p5`, data: runs.map((r) => r.labels?.[label]?.p5 ?? null), borderColor: PALETTE[i % PALETTE.length], borderDash: [4, 3], spanGaps: true },
            ]),
          },
          options: { plugins: { legend: { position: 'bottom' } }, scales: { y: { min: 0, max: 1 } } },
        },
        { height: 280, label: 'p5 and p95 per label over versions' },
      );
      const bins = latest.labels?.[labels[0] ?? '']?.histogram?.length ?? 0;
      const distribution = chart(
        'label-distribution',
        {
          type: 'bar',
          data: {
            labels: Array.from({ length: bins }, (_, i) => (i / bins).toFixed(2)),
            datasets: labels.map((label, i) => ({ label, data: latest.labels[label]!.histogram, backgroundColor: PALETTE[i % PALETTE.length] + 'aa', borderWidth: 0 })),
          },
          options: { plugins: { legend: { position: 'bottom' } }, scales: { x: { ticks: { maxTicksLimit: 11 } } } },
        },
        { height: 260, label: `raw score distribution per label at v${latest.version}` },
      );

      return html`
        ${headList}
        <h2>${selected.model_name}/${selected.head_name}</h2>
        ${stats([
          ['versions shown', runs.length],
          ['current reference', selected.reference === null ? '—' : `v${selected.reference}`],
          ['latest run', latest.is_stable ? 'stable' : 'unstable'],
          ['files in latest run', latest.file_count],
        ])}
        <p class="muted">Points: <span class="badge ok">stable run</span> <span class="badge bad">unstable run</span>; dashed red line: the threshold (stable = every metric strictly below it).</p>
        <div class="grid">${driftCharts}</div>
        ${section(
          'Runs',
          table(
            ['version', 'at', 'files', 'run', 'failed metrics', 'drift against'],
            [...runs].reverse().map((r) => [
              `v${r.version}`,
              new Date(r.timestamp),
              r.file_count,
              r.is_stable ? html`<span class="badge ok">stable</span>` : html`<span class="badge bad">unstable</span>`,
              r.failed_metrics?.length ? r.failed_metrics.join(', ') : '—',
              r.reference_version === null ? 'no reference (first run of the head)' : `v${r.reference_version}`,
            ]),
            { id: 'runs' },
          ),
        )}
        ${section('p5 and p95 per label over versions', bounds)}
        ${section(
          `Label distribution report (v${latest.version})`,
          html`${distribution}
          ${table(
            ['label', 'samples', 'p5', 'p25', 'median', 'p75', 'p95', 'IQR'],
            labels.map((l) => {
              const s = latest.labels[l]!;
              return [l, s.samples, s.p5, s.p25, s.median, s.p75, s.p95, s.iqr];
            }),
            { id: 'label-report' },
          )}`,
        )}`;
    },
  };
}

function retagPage(ctx: GatewayContext, config: HeadCalibrationConfig): DashboardPage {
  return {
    slug: 'retag',
    title: 'Retag',
    order: 15,
    data: () => retagStatus(ctx),
    async render() {
      const status = await retagStatus(ctx);
      const [files, tags] = await Promise.all([rowCount(ctx.db, 'library_files'), rowCount(ctx.db, 'library_tags')]);
      const empty =
        status.total === 0
          ? emptyState(
              'No re-tag backlog has run yet.',
              config.CALIBRATE_HEADS ? 'Queue the whole library: POST /admin/calibration/retag-all' : 'Re-tagging the library needs development mode (CALIBRATE_HEADS=true): POST /admin/calibration/retag-all',
            )
          : '';
      return html`
        ${empty}
        <section id="retag-progress" data-poll="/dashboard/retag/data.json" data-interval="2000">
          <h2>Backlog <span class="badge" data-field="state">${status.state}</span></h2>
          <progress max="${Math.max(1, status.total)}" value="${status.done + status.failed}" style="width:100%;height:1.4rem"></progress>
          <div class="stats">
            <div class="stat"><span class="value" data-field="done">${status.done}</span><span class="label">files done</span></div>
            <div class="stat"><span class="value" data-field="failed">${status.failed}</span><span class="label">failed</span></div>
            <div class="stat"><span class="value" data-field="remaining">${status.remaining}</span><span class="label">remaining</span></div>
            <div class="stat"><span class="value" data-field="total">${status.total}</span><span class="label">in the backlog</span></div>
            <div class="stat"><span class="value" data-field="rate_per_second">${status.rate_per_second ?? '—'}</span><span class="label">files / s</span></div>
            <div class="stat"><span class="value" data-field="eta_seconds">${status.eta_seconds ?? '—'}</span><span class="label">ETA (s)</span></div>
            <div class="stat"><span class="value" data-field="jobs.pending">${status.jobs.pending}</span><span class="label">jobs pending</span></div>
            <div class="stat"><span class="value" data-field="jobs.active">${status.jobs.active}</span><span class="label">jobs active</span></div>
          </div>
          <p class="muted">Refreshed every 2 s. Started: <span data-field="started_at">${status.started_at ?? '—'}</span>. Failed files' reasons are in <a href="/admin/queues/queue/retag-file">Bull Board</a>.</p>
        </section>
        ${section('Library', stats([['files', showCount(files)], ['tags', showCount(tags)]]))}`;
    },
  };
}

export function headCalibrationDashboard(ctx: GatewayContext, config: HeadCalibrationConfig): DashboardPage[] {
  return [headsPage(ctx, config), retagPage(ctx, config)];
}
