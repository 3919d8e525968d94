import { describe, expect, it } from 'vitest';
import { retagRange } from '../../libs/head-calibration/src/index.ts';
import { minmaxCalibrate } from '../../libs/head-calibration/src/math.ts';
import { libraryBatch, rng, skewed } from '../fixtures.ts';
import { Harness, useHarness, waitFor } from '../harness.ts';

const MOOD = 'effnet/mood_happy';
const DANCE = 'effnet/danceability';

/** A bundle installing references for both heads (as `caliber calibration import` would). */
function bundle(version: number, shift = 0) {
  const file = (head: string, labels: string[]) => ({
    model_name: 'effnet',
    head_name: head,
    version,
    labels: Object.fromEntries(labels.map((l, i) => [l, { p5: 0.1 + shift + i * 0.05, p95: 0.8 - i * 0.1, method: 'minmax' }])),
  });
  return {
    files: {
      'effnet/heads/mood_happy-calibration.json': file('mood_happy', ['mood_happy', 'not_mood_happy']),
      'effnet/heads/danceability-calibration.json': file('danceability', ['danceability', 'not_danceability']),
    },
  };
}

interface TagRow {
  file_id: number;
  model_name: string;
  head_name: string;
  label: string;
  raw_score: number;
  calibrated_score: number | null;
  calibration_version: number | null;
}

/** Every tag whose stored value is not what its head's reference gives (none when all is right). */
async function wrongTags(h: Harness): Promise<TagRow[]> {
  const refs = await h.query<{ model_name: string; head_name: string; version: number; labels: Record<string, { p5: number; p95: number }> }>(
    'SELECT model_name, head_name, version, labels FROM calibration_references',
  );
  const byHead = new Map(refs.map((r) => [`${r.model_name}/${r.head_name}`, r]));
  const tags = await h.query<TagRow>('SELECT file_id, model_name, head_name, label, raw_score, calibrated_score, calibration_version FROM library_tags');
  return tags.filter((t) => {
    const ref = byHead.get(`${t.model_name}/${t.head_name}`);
    const label = ref?.labels[t.label];
    if (!ref || !label) return t.calibrated_score !== null;
    // Exact equality: the SQL re-tag must give the very double minmaxCalibrate gives.
    return t.calibration_version !== ref.version || t.calibrated_score !== minmaxCalibrate(t.raw_score, label.p5, label.p95);
  });
}

/** Waits for a backlog started at or after `since` to finish. */
async function retagDone(h: Harness, since: number) {
  return waitFor(
    async () => {
      const { body } = await h.request('GET', '/admin/calibration/retag-status');
      return body.state === 'idle' && Date.parse(body.started_at) >= since ? body : undefined;
    },
    { what: 'retag backlog to finish', timeoutMs: 30_000 },
  );
}

describe('the set-based re-tag', () => {
  const t = useHarness();

  it('computes in SQL exactly the doubles minmaxCalibrate computes, including clamping and p95 ≤ p5', async () => {
    const random = rng(7);
    // Odd raw scores near the bounds, and a label whose reference has p95 ≤ p5 (raw passes through).
    const files = Array.from({ length: 400 }, (_, i) => ({
      path: `/music/sql-${i}.mp3`,
      scores: { [MOOD]: { mood_happy: random(), not_mood_happy: i % 50 === 0 ? 0.1 : random() ** 3 } },
    }));
    await t.h.request('POST', '/admin/calibration/import', {
      json: {
        files: {
          'effnet/heads/mood_happy-calibration.json': {
            model_name: 'effnet',
            head_name: 'mood_happy',
            version: 3,
            labels: { mood_happy: { p5: 0.1234567890123, p95: 0.8765432109877, method: 'minmax' }, not_mood_happy: { p5: 0.5, p95: 0.5, method: 'minmax' } },
          },
        },
      },
    });
    // Ingest calibrates in JavaScript; wipe that, re-tag in SQL, and compare with the pure function.
    await t.h.request('POST', '/library/files', { json: { files } });
    await t.h.query('UPDATE library_tags SET calibrated_score = NULL, calibration_version = NULL');
    const max = (await t.h.query<{ max: number }>('SELECT max(id)::int AS max FROM library_files'))[0]!.max;
    const changed = await retagRange(t.h.platform.db, { firstId: 1, lastId: max });
    expect([...changed.values()].reduce((a, b) => a + b, 0)).toBe(800);
    expect(await wrongTags(t.h)).toEqual([]);
    // Nothing left to change: a second pass writes no row.
    expect((await retagRange(t.h.platform.db, { firstId: 1, lastId: max })).size).toBe(0);
  });
});

describe('POST /admin/calibration/retag-all', () => {
  const t = useHarness({ env: { RETAG_BATCH_SIZE: '100' } });

  it('queues one job per id range, and a second call while they are pending queues nothing', async () => {
    await t.h.request('POST', '/library/files', { json: libraryBatch(0, 950, { [MOOD]: skewed(2), [DANCE]: skewed(1) }) });
    await t.h.request('POST', '/library/files', { json: { files: [{ path: '/music/untagged.mp3', scores: {} }] } });
    await t.h.request('POST', '/admin/calibration/import', { json: bundle(1) });

    const first = await t.h.request('POST', '/admin/calibration/retag-all');
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ enqueued: 950, already_queued: 0, jobs: 10, message: 'Enqueued 950 tagged files for re-tagging' });
    const queue = t.h.platform.queues.get('retag-file');
    const jobs = await queue.getJobs(['waiting']);
    expect(jobs.map((j) => [j.data.first_id, j.data.last_id, j.data.files]).sort((a, b) => a[0]! - b[0]!)).toEqual([
      ...Array.from({ length: 9 }, (_, k) => [k * 100 + 1, k * 100 + 100, 100]),
      [901, 1000, 50],
    ]);

    const second = await t.h.request('POST', '/admin/calibration/retag-all');
    expect(second.body).toMatchObject({ enqueued: 0, already_queued: 950, jobs: 0 });
    expect(await queue.getWaitingCount()).toBe(10);

    const status = (await t.h.request('GET', '/admin/calibration/retag-status')).body;
    expect(status).toMatchObject({ state: 'running', total: 950, done: 0, failed: 0, remaining: 950, jobs: { pending: 10, active: 0 }, eta_seconds: null });
  });

  it('queues the files again once a reference has moved', async () => {
    await t.h.request('POST', '/admin/calibration/import', { json: bundle(2, 0.01) });
    const third = await t.h.request('POST', '/admin/calibration/retag-all');
    expect(third.body).toMatchObject({ enqueued: 950, already_queued: 0, jobs: 10 });
  });

  it('is refused in production mode', async () => {
    const prod = await Harness.start(t.env, { env: { CALIBRATE_HEADS: 'false' } });
    try {
      const res = await prod.request('POST', '/admin/calibration/retag-all');
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('calibration_disabled');
    } finally {
      await prod.stop();
    }
  });

  it('needs the admin key', async () => {
    expect((await t.h.request('POST', '/admin/calibration/retag-all', { key: 'wrong-key-0123456789' })).status).toBe(401);
    expect((await t.h.request('GET', '/admin/calibration/retag-status', { key: null })).status).toBe(401);
  });
});

describe('retag-file workers', () => {
  const t = useHarness({ env: { RETAG_BATCH_SIZE: '64' }, workers: ['retag-file'] });

  it('re-tag every file with its references, once in effect, and report progress in files', async () => {
    await t.h.request('POST', '/library/files', { json: libraryBatch(0, 1000, { [MOOD]: skewed(2), [DANCE]: skewed(1) }) });
    await t.h.request('POST', '/admin/calibration/import', { json: bundle(4) });
    // References imported after ingest: every tag is stale until re-tagged.
    expect((await wrongTags(t.h)).length).toBe(4000);

    const since = Date.now();
    expect((await t.h.request('POST', '/admin/calibration/retag-all')).body).toMatchObject({ enqueued: 1000, jobs: 16 });
    const status = await retagDone(t.h, since);
    expect(status).toMatchObject({ state: 'idle', total: 1000, done: 1000, failed: 0, remaining: 0, eta_seconds: 0 });
    expect(await wrongTags(t.h)).toEqual([]);

    const results = await t.h.platform.queues.get('retag-file').getJobs(['completed']);
    expect(results.reduce((n, j) => n + j.returnvalue.tags_changed, 0)).toBe(4000);

    // Again with nothing changed: the jobs run and write nothing.
    const again0 = Date.now();
    await t.h.request('POST', '/admin/calibration/retag-all');
    expect(await retagDone(t.h, again0)).toMatchObject({ total: 1000, done: 1000 });
    const again = (await t.h.platform.queues.get('retag-file').getJobs(['completed'])).filter((j) => !results.some((r) => r.id === j.id));
    expect(again).toHaveLength(16);
    expect(again.every((j) => j.returnvalue.tags_changed === 0)).toBe(true);
  });
});

