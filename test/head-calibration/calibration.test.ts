import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadHeadCalibrationConfig, runHeadCalibration } from '../../libs/head-calibration/src/index.ts';
import { histogram, summarizeSorted } from '../../libs/head-calibration/src/math.ts';
import { libraryBatch, skewed } from '../fixtures.ts';
import { useHarness } from '../harness.ts';

const t = useHarness({ workers: true });

const MOOD = 'effnet/mood_happy';
const DANCE = 'effnet/danceability';
// Batch B repeats batch A's mood scores exactly (same seed, and each head draws one number per
// file), so mood's distribution keeps its shape while danceability's shifts towards 1.
const batchA = libraryBatch(0, 3000, { [MOOD]: skewed(2), [DANCE]: skewed(1) }, 1);
const batchB = libraryBatch(3000, 3000, { [MOOD]: skewed(2), [DANCE]: skewed(0.4) }, 1);

async function run() {
  const res = await t.h.request('POST', '/admin/calibration/run?wait=true');
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.calibration;
}

async function referenceFile(head: string) {
  return JSON.parse(await readFile(join(t.env.modelsDir, 'effnet', 'heads', `${head}-calibration.json`), 'utf8'));
}

async function references() {
  const { body } = await t.h.request('GET', '/admin/calibration/references');
  return Object.fromEntries(body.items.map((r: { model_name: string; head_name: string; version: number }) => [`${r.model_name}/${r.head_name}`, r.version]));
}

describe('the development workflow of the seed', () => {
  it('run 1: every head is new, so unstable, and gets a v1 reference', async () => {
    expect((await t.h.request('POST', '/library/files', { json: batchA })).body).toEqual({ files: 3000, tags: 12_000 });
    const cal = await run();
    expect(cal).toMatchObject({
      version: 1,
      library_size: 3000,
      reference_updates: { [MOOD]: 'updated', [DANCE]: 'updated' },
      summary: { total_heads: 2, stable_heads: 0, unstable_heads: 2 },
    });
    expect(cal.heads[MOOD]).toMatchObject({ model_name: 'effnet', head_name: 'mood_happy', is_stable: false, reference_version: null });
    expect(cal.heads[MOOD].drift_metrics).toEqual({
      apd_p5: null, apd_p95: null, srd: null, jsd: null, median_drift: null, iqr_drift: null, is_stable: false, failed_metrics: [],
    });
    expect(cal.heads[MOOD].labels.mood_happy).toMatchObject({ method: 'minmax', samples: 3000 });
    expect(cal.saved_files[MOOD]).toBe(join(t.env.modelsDir, 'effnet', 'heads', 'mood_happy-calibration-v1.json'));
    expect(existsSync(cal.saved_files[DANCE])).toBe(true);
    // ?wait=true answers once the reference updates are installed.
    expect(await references()).toEqual({ [MOOD]: 1, [DANCE]: 1 });
    expect((await referenceFile('mood_happy')).version).toBe(1);
  });

  it('computes the percentiles in Postgres exactly as numpy would from the raw scores', async () => {
    const scores = batchA.files.map((f) => f.scores[MOOD]!.mood_happy as number);
    const expected = summarizeSorted(Float64Array.from(scores).sort());
    const [run1] = await t.h.query<{ details: { labels: Record<string, Record<string, unknown>> } }>(
      "SELECT details FROM calibration_runs WHERE version = 1 AND head_name = 'mood_happy'",
    );
    const label = run1!.details.labels.mood_happy!;
    for (const k of ['p5', 'p25', 'median', 'p75', 'p95', 'range', 'iqr', 'samples'] as const) expect(label[k]).toBe(expected[k]);
    expect(label.histogram).toEqual(histogram(scores, 100));
  });

  it('calibrates files ingested after run 1 with the v1 reference', async () => {
    await t.h.request('POST', '/library/files', { json: batchB });
    const { body } = await t.h.request('GET', `/library/files?path=${encodeURIComponent(batchB.files[0]!.path)}`);
    expect(body.tags.every((t: { calibration_version: number | null; calibrated_score: number | null }) => t.calibration_version === 1 && t.calibrated_score !== null)).toBe(
      true,
    );
  });

  it('run 2: the head that kept its shape stays on v1, the drifted head moves to v2', async () => {
    const cal = await run();
    expect(cal.version).toBe(2);
    expect(cal.heads[MOOD]).toMatchObject({ is_stable: true, reference_version: 1 });
    expect(cal.heads[MOOD].drift_metrics.failed_metrics).toEqual([]);
    expect(cal.heads[MOOD].drift_metrics.jsd).toBe(0);
    expect(cal.heads[DANCE]).toMatchObject({ is_stable: false, reference_version: 1 });
    expect(cal.heads[DANCE].drift_metrics.failed_metrics).toEqual(expect.arrayContaining(['jsd', 'median_drift']));
    expect(cal.reference_updates).toEqual({ [MOOD]: 'kept', [DANCE]: 'updated' });
    expect(cal.summary).toEqual({ total_heads: 2, stable_heads: 1, unstable_heads: 1 });
    expect(await references()).toEqual({ [MOOD]: 1, [DANCE]: 2 });
    expect((await referenceFile('mood_happy')).version).toBe(1);
    expect((await referenceFile('danceability')).version).toBe(2);
    expect(existsSync(join(t.env.modelsDir, 'effnet', 'heads', 'mood_happy-calibration-v2.json'))).toBe(true);
  });

  it('run 3 on the same data: stable everywhere, no reference changes', async () => {
    const outboxBefore = (await t.h.query('SELECT id FROM outbox')).length;
    const danceBefore = await readFile(join(t.env.modelsDir, 'effnet', 'heads', 'danceability-calibration.json'), 'utf8');
    const cal = await run();
    expect(cal.version).toBe(3);
    expect(cal.reference_updates).toEqual({ [MOOD]: 'kept', [DANCE]: 'kept' });
    expect(cal.summary).toMatchObject({ stable_heads: 2, unstable_heads: 0 });
    expect(cal.heads[DANCE].reference_version).toBe(2);
    expect((await t.h.query('SELECT id FROM outbox')).length).toBe(outboxBefore);
    expect(await references()).toEqual({ [MOOD]: 1, [DANCE]: 2 });
    expect(await readFile(join(t.env.modelsDir, 'effnet', 'heads', 'danceability-calibration.json'), 'utf8')).toBe(danceBefore);
  });

  it('lists the history newest first, filtered by model and head', async () => {
    const all = await t.h.request('GET', '/admin/calibration/history');
    expect(all.body).toMatchObject({ status: 'ok', count: 6 });
    expect(all.body.runs.map((r: { version: number }) => r.version)).toEqual([3, 3, 2, 2, 1, 1]);
    const run = all.body.runs[0];
    expect(typeof run.timestamp).toBe('number');
    expect(Math.abs(run.timestamp - Date.now())).toBeLessThan(120_000);
    expect(typeof run.is_stable).toBe('boolean');
    const dance = await t.h.request('GET', '/admin/calibration/history?model=effnet&head=danceability&limit=2');
    expect(dance.body.runs.map((r: { version: number; is_stable: boolean }) => [r.version, r.is_stable])).toEqual([
      [3, true],
      [2, false],
    ]);
    expect(dance.body.runs[1]).toMatchObject({ reference_version: 1, file_count: 6000 });
    expect((await t.h.request('GET', '/admin/calibration/history?model=other')).body.count).toBe(0);
    expect((await t.h.request('GET', '/admin/calibration/history?limit=0')).status).toBe(400);
  });

  it('returns the committed run when a job is retried after its commit, writing nothing twice', async () => {
    const config = loadHeadCalibrationConfig(t.env.env);
    const job = { jobKey: 'calibrate/retried-job@1', log: t.h.platform.log };
    const first = await runHeadCalibration(t.h.platform, config, job);
    const rowsAfterFirst = await t.h.query('SELECT id FROM calibration_runs');
    const second = await runHeadCalibration(t.h.platform, config, job);
    expect(second).toEqual(first);
    expect(await t.h.query('SELECT id FROM calibration_runs')).toHaveLength(rowsAfterFirst.length);
    expect(await t.h.query("SELECT version FROM calibration_versions WHERE job_id = 'calibrate/retried-job@1'")).toHaveLength(1);
  });

  it('makes a new run for a new job that reuses an old job id (Redis lost its data)', async () => {
    const config = loadHeadCalibrationConfig(t.env.env);
    const first = await runHeadCalibration(t.h.platform, config, { jobKey: 'calibrate/7@1000', log: t.h.platform.log });
    const second = await runHeadCalibration(t.h.platform, config, { jobKey: 'calibrate/7@2000', log: t.h.platform.log });
    expect(second.calibration.version).toBe(first.calibration.version + 1);
  });

  it('reports labels with too few scores and leaves them out', async () => {
    await t.h.request('POST', '/library/files', { json: { files: [{ path: '/rare.mp3', scores: { 'effnet/rare': { rare: 0.5 } } }] } });
    const cal = await run();
    expect(cal.skipped_labels).toEqual([{ model_name: 'effnet', head_name: 'rare', label: 'rare', samples: 1 }]);
    expect(Object.keys(cal.heads)).toEqual([DANCE, MOOD]);
  });
});

describe('edge cases', () => {
  const edge = useHarness({ env: { CALIBRATION_MIN_SAMPLES: '1000' }, workers: true });

  it('fails a run over an empty library with 422 and a reason, consuming no version', async () => {
    const res = await edge.h.request('POST', '/admin/calibration/run?wait=true');
    expect(res.status).toBe(422);
    expect(res.body.error).toMatchObject({ code: 'job_failed', message: expect.stringMatching(/no scores yet/) });
    expect(await edge.h.query('SELECT 1 FROM calibration_versions')).toHaveLength(0);
  });

  it('fails a run whose labels all have too few scores, saying which setting to change', async () => {
    await edge.h.request('POST', '/library/files', { json: libraryBatch(0, 10, { [MOOD]: skewed(1) }) });
    const res = await edge.h.request('POST', '/admin/calibration/run?wait=true');
    expect(res.status).toBe(422);
    expect(res.body.error.message).toMatch(/at least 1000 scores \(CALIBRATION_MIN_SAMPLES\); 2 label\(s\) skipped/);
  });

  it('answers 202 with the job link without ?wait', async () => {
    const res = await edge.h.request('POST', '/admin/calibration/run');
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ jobId: expect.any(String), queue: 'calibrate', status: `/admin/jobs/calibrate/${res.body.jobId}` });
  });
});

describe('production mode (CALIBRATE_HEADS=false)', () => {
  const prod = useHarness({ env: { CALIBRATE_HEADS: 'false' }, workers: true });

  it.each([
    ['POST', '/admin/calibration/run'],
    ['POST', '/admin/calibration/run?wait=true'],
    ['GET', '/admin/calibration/history'],
  ])('%s %s answers 403 as the seed did', async (method, path) => {
    const res = await prod.h.request(method, path);
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ error: { code: 'calibration_disabled', message: 'Calibration API endpoints are disabled' } });
  });

  it('still requires the key before saying so', async () => {
    expect((await prod.h.request('POST', '/admin/calibration/run', { key: null })).status).toBe(401);
  });

  it('refuses a calibration job started some other way (a schedule run by hand)', async () => {
    const started = await prod.h.request('POST', '/admin/schedules/calibrate-heads/run');
    expect(started.status).toBe(202);
    const job = await prod.h.platform.queues.get('calibrate').getJob(started.body.jobId);
    const outcome = await prod.h.gateway.ctx.waiter.waitForJob(job!, 10_000);
    expect(outcome).toMatchObject({ state: 'failed', reason: 'Calibration runs are disabled (CALIBRATE_HEADS=false)' });
    expect(await prod.h.query('SELECT 1 FROM calibration_runs')).toHaveLength(0);
  });

  it('still ingests and imports', async () => {
    expect((await prod.h.request('POST', '/library/files', { json: libraryBatch(0, 3, { [MOOD]: skewed(1) }) })).status).toBe(200);
    expect((await prod.h.request('GET', '/admin/calibration/references')).status).toBe(200);
  });
});
