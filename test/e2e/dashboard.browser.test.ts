import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libraryBatch, skewed } from '../fixtures.ts';
import { ROOT, useHarness, waitFor } from '../harness.ts';

// Debian's chromium (`.ci/run` installs it); CHROMIUM_PATH points elsewhere. Without one the test is skipped.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const RESULTS = join(ROOT, 'test-results');
// `SCREENSHOTS_DIR=docs/screenshots npx vitest run test/e2e/dashboard.browser.test.ts` refreshes the README's pictures.
const SCREENSHOTS = process.env.SCREENSHOTS_DIR ? join(ROOT, process.env.SCREENSHOTS_DIR) : undefined;

const FIXTURES = join(ROOT, 'test/fixtures/model-catalog');
const XSS = '"><img src=x onerror="globalThis.__xss=1">';
const AA_FILE = join(tmpdir(), `caliber-dash-aa-${process.pid}-${Date.now()}.json`);

const t = useHarness({
  env: {
    CALIBRATE_HEADS: 'true',
    CALIBRATION_MIN_SAMPLES: '50',
    // The schedules keep their defaults (the queues page lists them); none is due during the test.
    AA_METRICS_FILE: AA_FILE,
    CONFIDENCE_MIN_OUTCOMES: '10',
    // Jobs are created, not started: no provider is called.
    FINE_TUNE_BASE_URL: 'http://127.0.0.1:9/v1',
  },
  workers: ['calibrate', 'update-reference', 'retag-file', 'map-models', 'analyze-errors', 'notify'],
});

async function ok(res: Promise<{ status: number; text: string; body: any }>, status = 200) {
  const r = await res;
  expect(r.status, r.text.slice(0, 500)).toBe(status);
  return r.body;
}

/** A little of everything each page shows, through the public routes. */
async function seed() {
  const h = t.h;
  // Heads: two runs, the second on a drifted library.
  const heads = { 'effnet/mood_happy': skewed(1.5), 'effnet/danceability': skewed(0.8) };
  await ok(h.request('POST', '/library/files', { json: libraryBatch(0, 300, heads) }));
  await ok(h.request('POST', '/admin/calibration/run?wait=true'));
  await ok(h.request('POST', '/library/files', { json: libraryBatch(300, 300, { 'effnet/mood_happy': skewed(3), 'effnet/danceability': skewed(0.8) }) }));
  await ok(h.request('POST', '/admin/calibration/run?wait=true'));
  await ok(h.request('POST', '/admin/calibration/run?wait=true'));
  await ok(h.request('POST', '/admin/calibration/retag-all'));

  // Models: the discovery pipeline's table, then a mapping run.
  await copyFile(join(FIXTURES, 'aa-models.json'), AA_FILE);
  const rows = JSON.parse(readFileSync(join(FIXTURES, 'working-version.json'), 'utf8')) as { inference_provider: string; model_id: string; human_readable_name: string | null }[];
  const pipeline = new pg.Client({ connectionString: t.env.databaseUrl });
  await pipeline.connect();
  await pipeline.query(
    `INSERT INTO working_version (inference_provider, model_id, human_readable_name) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])`,
    [rows.map((r) => r.inference_provider), rows.map((r) => r.model_id), rows.map((r) => r.human_readable_name)],
  );
  await pipeline.end();
  await ok(h.request('POST', '/admin/models/map?wait=true'));
  await ok(h.request('POST', '/admin/models/map?wait=true'));

  // Quality: negative feedback over two weeks, then an analysis.
  const R = '/api/analytics/response-quality';
  const items = Array.from({ length: 40 }, (_, i) => ({
    response_id: `dash-${i}`,
    model_id: i % 2 ? 'mistral-small' : 'gpt-4o',
    query: `Question ${i}: what is the latest version?`,
    response: 'An old answer',
    feedback: { type: 'full', categories: [i % 3 ? 'outdated_information' : 'incomplete'], comment: `feedback ${i}`, idempotency_key: `dash-fb-${i}` },
  }));
  await ok(h.request('POST', `${R}/response`, { json: { items } }), 201);
  await h.query(`UPDATE response_feedback SET created_at = now() - make_interval(days => ((id % 2) * 7 + 1)::int)`);
  await ok(h.request('POST', '/api/analytics/model-improvement/analyze?wait=true'));

  // Fine-tuning: an account with credits and a job.
  await ok(h.request('POST', '/admin/credits/team-a/grant', { json: { amount: 1000 } }), 201);
  await ok(h.request('POST', '/api/analytics/model-improvement/fine-tuning/jobs', { json: { model_id: 'mistral-small', account_id: 'team-a' } }), 201);

  // Confidence: a tenant with scores over the last hours and outcomes.
  const tenant = await h.createTenant('acme');
  const now = Date.now();
  const scores = Array.from({ length: 400 }, (_, i) => {
    const c = 0.3 + ((i * 37) % 70) / 100;
    return {
      request_id: `req-${i}`,
      // A hostile model name, which lands in chart data, tables and attributes: it must stay text.
      model: i % 2 ? 'gpt-4o' : i % 5 === 0 ? XSS : 'claude',
      factual_confidence: c,
      reasoning_confidence: c,
      contextual_relevance: c,
      uncertainty_lower: Math.max(0, c - 0.1),
      uncertainty_upper: Math.min(1, c + 0.05),
      created_at: new Date(now - (i % 36) * 3_600_000 - 60_000).toISOString(),
    };
  });
  await ok(h.request('POST', '/confidence/scores', { key: tenant.key, json: { scores } }), 201);
  const outcomes = scores.map((s, i) => ({ request_id: s.request_id, correct: (i * 7919) % 100 < s.factual_confidence * 90, validation_method: 'human_review' }));
  await ok(h.request('POST', '/confidence/outcomes', { key: tenant.key, json: { outcomes } }), 201);
  await ok(h.request('POST', '/confidence/calibrate?wait=true', { key: tenant.key }));

  // Model selection: results in which each pair has its own winner, a run, then a change and a second run.
  const models = [
    { model: 'gpt-4o', provider: 'openai', latency: 1800, cost: 0.012 },
    { model: 'gpt-4o-mini', provider: 'openai', latency: 600, cost: 0.0015 },
    { model: 'claude-sonnet', provider: 'anthropic', latency: 2200, cost: 0.015 },
  ];
  const quality = (language: string, size: string, m: number) => 0.62 + (((language.length * 7 + size.length * 3 + m * 11) % 10) / 30);
  // The second run's results make gpt-4o-mini bad at Rust: its Rust pairs change hands.
  const results = (run: string, worseMiniAtRust = false) =>
    ['python', 'typescript', 'go', 'rust'].flatMap((language) =>
      ['small', 'medium', 'large'].flatMap((size) =>
        models.flatMap((m, mi) =>
          Array.from({ length: 6 }, (_, i) => ({
            run_id: run,
            language,
            size_category: size,
            model_id: m.model,
            provider: m.provider,
            repository: `repo-${i}`,
            quality_score: worseMiniAtRust && mi === 1 && language === 'rust' ? 0.2 : quality(language, size, mi) + (i % 3) * 0.01,
            latency_ms: m.latency + i * 20,
            cost_usd: m.cost,
          })),
        ),
      ),
    );
  await ok(h.request('POST', '/admin/model-selection/results', { json: { results: results('nightly-1') } }));
  await ok(h.request('POST', '/admin/model-selection/calibrate?wait=true'));
  await ok(h.request('POST', '/admin/model-selection/results', { json: { results: results('nightly-2', true) } }));
  await ok(h.request('POST', '/admin/model-selection/calibrate?wait=true'));
}

const PAGES = [
  { slug: 'heads', charts: 8, tables: ['#heads', '#label-report'] },
  { slug: 'retag', charts: 0, tables: [] },
  { slug: 'models', charts: 2, tables: ['#best-models', '#unmapped'] },
  { slug: 'model-selection', charts: 2, tables: ['#configurations', '#notifications'] },
  { slug: 'quality', charts: 1, tables: ['#patterns', '#suggestions', '#problematic'] },
  { slug: 'fine-tuning', charts: 1, tables: ['#credits', '#fine-tune-jobs'] },
  { slug: 'confidence', charts: 3, tables: ['#model-calibration'] },
  { slug: 'queues', charts: 1, tables: ['#queue-counts', '#schedules'] },
];

// CI sets CALIBER_BROWSER_TEST=required: there a missing browser fails the suite instead of skipping it.
if (process.env.CALIBER_BROWSER_TEST === 'required' && !existsSync(CHROMIUM)) {
  throw new Error(`CALIBER_BROWSER_TEST=required but there is no browser at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
}

// Lines drawn for reference, not data.
const GUIDES = new Set(['threshold', 'perfect calibration']);

describe.skipIf(!existsSync(CHROMIUM))('the dashboard in a browser', () => {
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    await mkdir(RESULTS, { recursive: true });
    await seed();
    if (SCREENSHOTS) await mkdir(SCREENSHOTS, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
    page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`${page.url()}: console error: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`${page.url()}: ${err.message}`));
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await writeFile(join(RESULTS, 'dashboard-console.txt'), problems.join('\n'));
  });

  const shoot = async (name: string) => {
    await page.screenshot({ path: join(RESULTS, `${name}.png`), fullPage: true });
    if (SCREENSHOTS) await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
  };

  it('sends a browser without a session to the login form, and back after signing in', async () => {
    await page.goto(`${t.h.url}/dashboard/models`);
    expect(new URL(page.url()).pathname).toBe('/login');
    await shoot('login');
    await page.fill('#key', 'not-the-key-0123456789');
    await page.click('button[type=submit]');
    expect(await page.textContent('[role=alert]')).toContain('not valid');
    // The refused sign-in is a 401 page, which the browser logs: expected here.
    problems.length = 0;
    await page.fill('#key', t.env.apiKey);
    await Promise.all([page.waitForURL(/\/dashboard\/models$/), page.click('button[type=submit]')]);
    expect(problems).toEqual([]);
  });

  for (const p of PAGES) {
    it(`shows ${p.slug} with its charts drawn from data`, async () => {
      const res = await page.goto(`${t.h.url}/dashboard/${p.slug}`);
      expect(res?.status()).toBe(200);
      await page.waitForFunction(() => (globalThis as unknown as { caliberCharts?: unknown[] }).caliberCharts !== undefined);
      // Each data series as Chart.js holds it: how many points (null is a gap) and how many are not 0.
      const charts = await page.evaluate(() =>
        ((globalThis as unknown as { caliberCharts: { canvas: { id: string; width: number; height: number }; data: { datasets: { label?: string; data: unknown[] }[] } }[] }).caliberCharts).map((c) => ({
          id: c.canvas.id,
          drawn: c.canvas.width > 0 && c.canvas.height > 0,
          series: c.data.datasets.map((d) => {
            const values = d.data.filter((v) => v !== null && v !== undefined).map((v) => (typeof v === 'object' ? (v as { y: number }).y : v));
            return { label: d.label ?? '', points: values.length, nonZero: values.filter((v) => v !== 0).length };
          }),
        })),
      );
      expect(charts.length, JSON.stringify(charts)).toBeGreaterThanOrEqual(p.charts);
      for (const c of charts) {
        expect(c.drawn, `${c.id} is drawn`).toBe(true);
        const data = c.series.filter((s) => !GUIDES.has(s.label));
        expect(data.length, `${c.id} has a data series`).toBeGreaterThan(0);
        for (const s of data) expect(s.points, `${c.id}: "${s.label}" has points`).toBeGreaterThan(0);
        expect(data.some((s) => s.nonZero > 0), `${c.id} shows something other than zeros`).toBe(true);
      }
      for (const selector of p.tables) expect(await page.locator(`${selector} tbody tr`).count(), selector).toBeGreaterThan(0);
      expect(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)).toBeUndefined();
      expect(await page.locator('img').count()).toBe(0);
      if (p.slug === 'confidence') expect(await page.locator('#model-calibration').textContent()).toContain(XSS);
      if (p.slug === 'retag') {
        // The live region is refreshed from its JSON route.
        await page.waitForSelector('#retag-progress[data-updated]', { timeout: 10_000 });
        expect(Number((await page.textContent('[data-field=done]'))!.replace(/,/g, ''))).toBeGreaterThan(0);
      }
      await shoot(`dashboard-${p.slug}`);
      expect(problems).toEqual([]);
    });
  }

  it('maps a model by hand from the models page', async () => {
    await page.goto(`${t.h.url}/dashboard/models`);
    const model = await page.locator('#map-form select[name=model_name] option').first().textContent();
    const slug = (await t.h.query<{ slug: string }>('SELECT slug FROM aa_performance_metrics ORDER BY slug LIMIT 1'))[0]!.slug;
    await page.fill('#map-form input[name=aa_slug]', slug);
    await page.click('#map-form button');
    await page.waitForSelector('#map-form .result.ok');
    await waitFor(async () => (await t.h.query('SELECT aa_slug, manual FROM model_aa_mapping WHERE model_name = $1', [model]))[0]?.manual === true, { what: 'manual mapping' });
    expect(problems).toEqual([]);
  });

  it('answers an unknown page with 404 and the navigation', async () => {
    const res = await page.goto(`${t.h.url}/dashboard/nope`);
    expect(res?.status()).toBe(404);
    expect(await page.locator('header a').count()).toBeGreaterThan(5);
    // The browser logs the 404 it was asked to load.
    problems.length = 0;
  });

  it('serves the API docs without a session, from the app itself', async () => {
    const context = await browser.newContext();
    const anonymous = await context.newPage();
    const external: string[] = [];
    anonymous.on('request', (r) => {
      if (!r.url().startsWith(t.h.url)) external.push(r.url());
    });
    anonymous.on('pageerror', (err) => problems.push(`/docs: ${err.message}`));
    const res = await anonymous.goto(`${t.h.url}/docs`);
    expect(res?.status()).toBe(200);
    await anonymous.waitForSelector('.opblock', { timeout: 20_000 });
    expect(await anonymous.locator('.opblock').count()).toBeGreaterThan(50);
    await anonymous.screenshot({ path: join(RESULTS, 'docs.png') });
    if (SCREENSHOTS) await anonymous.screenshot({ path: join(SCREENSHOTS, 'docs.png') });
    expect(external).toEqual([]);
    await context.close();
    expect(problems).toEqual([]);
  });
});
