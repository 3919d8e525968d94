import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, useHarness } from '../harness.ts';

// A product's chat page, served from an origin of its own, embeds the widget with one script tag
// and a publishable key; a real browser clicks each variant.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
if (process.env.CALIBER_BROWSER_TEST === 'required' && !existsSync(CHROMIUM)) throw new Error(`CALIBER_BROWSER_TEST=required but there is no browser at ${CHROMIUM}`);
const SCREENSHOTS = process.env.SCREENSHOTS_DIR ? join(ROOT, process.env.SCREENSHOTS_DIR) : undefined;
const R = '/api/analytics/response-quality';

const t = useHarness();
let host: Server;
let hostPort = 0;
let key = '';
let browser: Browser;

const page = (gateway: string, publishableKey: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Support chat</title>
<style>body { font: 15px system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; } .msg { border: 1px solid #ddd; border-radius: 8px; padding: .8rem 1rem; margin: 1rem 0; }
caliber-feedback { --caliber-accent: #0a7d5a; }</style>
<script type="module" src="${gateway}/widget/caliber-feedback.js"></script></head>
<body><h1>Support chat</h1>
<div class="msg"><p>Q: How do I reset my password?</p><p>A: Use "Forgot password" on the sign-in page.</p>
  <caliber-feedback id="w-thumbs" response-id="w-thumbs" variant="thumbs" publishable-key="${publishableKey}"></caliber-feedback></div>
<div class="msg"><p>Q: What does the Pro plan cost?</p><p>A: 9 € a month.</p>
  <caliber-feedback id="w-stars" response-id="w-stars" variant="stars" publishable-key="${publishableKey}"></caliber-feedback></div>
<div class="msg"><p>Q: Is it open on Sunday?</p><p>A: Yes, from 10 to 16.</p>
  <caliber-feedback id="w-full" response-id="w-full" model-id="support-bot" variant="full" publishable-key="${publishableKey}"></caliber-feedback></div>
<script type="module">
  await customElements.whenDefined('caliber-feedback');
  const full = document.getElementById('w-full');
  full.query = 'Is it open on Sunday?';
  full.response = 'Yes, from 10 to 16.';
</script>
</body></html>`;

beforeAll(async () => {
  host = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page(t.h.url, key));
  });
  await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
  hostPort = (host.address() as AddressInfo).port;
  // Allowed: the page at 127.0.0.1:<port>. The same server reached as localhost is another origin.
  const issued = await t.h.request('POST', '/admin/publishable-keys', { json: { name: 'support chat', project: 'support-chat', model_ids: ['support-bot'], allowed_origins: [`http://127.0.0.1:${hostPort}`] } });
  expect(issued.status).toBe(201);
  key = issued.body.key;
  // The product's server records the answers it showed, in the project of the page's key.
  for (const id of ['w-thumbs', 'w-stars']) {
    expect((await t.h.request('POST', `${R}/response`, { json: { response_id: id, model_id: 'support-bot', query: 'q', response: 'a', project: 'support-chat' } })).status).toBe(201);
  }
  if (existsSync(CHROMIUM)) browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  await mkdir(join(ROOT, 'test-results'), { recursive: true });
});
afterAll(async () => {
  await browser?.close();
  await new Promise<void>((resolve) => host?.close(() => resolve()));
});

describe.skipIf(!existsSync(CHROMIUM))('the feedback widget in a page of another origin', () => {
  it('sends each variant with the publishable key, and the admin API reads it back', async () => {
    const context = await browser.newContext();
    const tab = await context.newPage();
    const problems: string[] = [];
    tab.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
    tab.on('pageerror', (e) => problems.push(e.message));
    await tab.goto(`http://127.0.0.1:${hostPort}/`);
    const status = (id: string) => tab.locator(`#${id}`).locator('[role=status]');

    await tab.locator('#w-thumbs').getByRole('button', { name: 'Not helpful' }).click();
    await expect.poll(() => status('w-thumbs').textContent()).toBe('Thanks for your feedback');

    // Keyboard only: into the group (one tab stop), move the choice (right, right, End, left: 4 stars), press Enter.
    const starsWidget = tab.locator('#w-stars');
    await starsWidget.getByRole('radio', { name: '1 star' }).focus();
    for (const k of ['ArrowRight', 'ArrowRight', 'End', 'ArrowLeft']) await tab.keyboard.press(k);
    await expect.poll(() => starsWidget.getByRole('radio', { name: '4 stars' }).getAttribute('aria-checked')).toBe('true');
    await expect.poll(() => starsWidget.getByRole('radio', { checked: true }).evaluate((e) => e === e.getRootNode().activeElement)).toBe(true);
    await tab.keyboard.press('Enter');
    await expect.poll(() => status('w-stars').textContent()).toBe('Thanks for your feedback');

    const full = tab.locator('#w-full');
    await full.getByRole('button', { name: 'Give feedback' }).click();
    await full.getByLabel(/^outdated information/).check();
    await full.getByLabel('Comment').fill('It closes at 14 on Sundays now');
    await full.getByLabel('Corrected answer').fill('Yes, from 10 to 14.');
    if (SCREENSHOTS) await tab.screenshot({ path: join(SCREENSHOTS, 'widget.png'), fullPage: true });
    await full.getByRole('button', { name: 'Send feedback' }).click();
    await expect.poll(() => status('w-full').textContent()).toBe('Thanks for your feedback');
    await tab.screenshot({ path: join(ROOT, 'test-results', 'widget.png'), fullPage: true });
    expect(problems).toEqual([]);
    await context.close();

    // Through the admin API: three feedbacks of support-bot, two negative, with what was typed.
    const metrics = (await t.h.request('GET', `${R}/metrics?model_id=support-bot`)).body;
    expect(JSON.stringify(metrics)).toMatch(/"feedback":3/);
    const problematic = (await t.h.request('GET', `${R}/problematic?model_id=support-bot`)).body.items as { response_id: string; categories: string[]; comments: string[]; correction: string | null }[];
    expect(problematic.map((p) => p.response_id).sort()).toEqual(['w-full', 'w-thumbs']);
    expect(problematic.find((p) => p.response_id === 'w-full')).toMatchObject({ categories: ['outdated_information'], comments: ['It closes at 14 on Sundays now'], correction: 'Yes, from 10 to 14.' });
    const stars = await t.h.query(`SELECT f.stars FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref WHERE r.response_id = 'w-stars'`);
    expect(stars).toEqual([{ stars: 4 }]);
  });

  it('is refused on a page of an origin the key does not list, and stores nothing', async () => {
    const context = await browser.newContext();
    const tab = await context.newPage();
    await tab.goto(`http://localhost:${hostPort}/`);
    await tab.locator('#w-thumbs').getByRole('button', { name: 'Helpful', exact: true }).click();
    await expect.poll(() => tab.locator('#w-thumbs').locator('[role=status]').textContent(), { timeout: 15_000 }).toContain('Feedback could not be sent');
    await context.close();
    const stored = await t.h.query(`SELECT count(*)::int AS n FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref WHERE r.response_id = 'w-thumbs'`);
    expect(stored).toEqual([{ n: 1 }]); // only the allowed page's
  });

  it('cannot use the publishable key on an admin route', async () => {
    const res = await t.h.request('GET', '/admin/schedules', { key, headers: { origin: `http://127.0.0.1:${hostPort}` } });
    expect(res.status).toBe(403);
    const keys = await t.h.request('GET', '/admin/publishable-keys', { key, headers: { origin: `http://127.0.0.1:${hostPort}` } });
    expect(keys.status).toBe(403);
  });
});
