import { describe, expect, it } from 'vitest';
import { updateReferenceJob } from '../../libs/head-calibration/src/index.ts';
import { libraryBatch, skewed } from '../fixtures.ts';
import { useHarness, waitFor } from '../harness.ts';

const MOOD = 'effnet/mood_happy';
const DANCE = 'effnet/danceability';

describe('AUTO_RETAG=true', () => {
  const t = useHarness({ env: { AUTO_RETAG: 'true', RETAG_BATCH_SIZE: '100' }, workers: true });
  const stale = async () =>
    (
      await t.h.query<{ n: number }>(`
        SELECT count(*)::int AS n FROM library_tags t JOIN calibration_references r USING (model_name, head_name)
         WHERE t.calibration_version IS DISTINCT FROM r.version`)
    )[0]!.n;
  const retagEvents = () => t.h.query("SELECT payload FROM outbox WHERE queue = 'retag-file' ORDER BY id");

  it('re-tags the files of the heads a run moved, once all its reference updates are installed', async () => {
    await t.h.request('POST', '/library/files', { json: libraryBatch(0, 600, { [MOOD]: skewed(2), [DANCE]: skewed(1) }) });
    // No references yet, so ingest left every score uncalibrated.
    expect((await t.h.query('SELECT 1 FROM library_tags WHERE calibrated_score IS NOT NULL')).length).toBe(0);

    const run = await t.h.request('POST', '/admin/calibration/run?wait=true');
    expect(run.body.calibration.reference_updates).toEqual({ [DANCE]: 'updated', [MOOD]: 'updated' });
    await waitFor(async () => (await stale()) === 0 && (await t.h.query('SELECT 1 FROM library_tags WHERE calibrated_score IS NULL')).length === 0, {
      what: 'automatic re-tag of both heads',
    });
    expect(await retagEvents()).toEqual([
      { payload: { heads: [{ model_name: 'effnet', head_name: 'danceability' }, { model_name: 'effnet', head_name: 'mood_happy' }], reason: 'AUTO_RETAG after calibration run 1', version: 1 } },
    ]);
    const [v1] = await t.h.query('SELECT retag_requested_at FROM calibration_versions WHERE version = 1');
    expect(v1?.retag_requested_at).toBeInstanceOf(Date);
    const status = (await t.h.request('GET', '/admin/calibration/retag-status')).body;
    expect(status).toMatchObject({ state: 'idle', total: 600, done: 600, failed: 0 });
  });

  it('counts a second automatic backlog afresh', async () => {
    const before = Date.now();
    // Danceability's scores move a lot: run 2 moves its reference, and only its files are re-tagged.
    await t.h.request('POST', '/library/files', { json: libraryBatch(600, 600, { [MOOD]: skewed(2), [DANCE]: skewed(0.3) }, 1) });
    const run = await t.h.request('POST', '/admin/calibration/run?wait=true');
    expect(run.body.calibration.reference_updates[DANCE]).toBe('updated');
    const status = await waitFor(async () => {
      const s = (await t.h.request('GET', '/admin/calibration/retag-status')).body;
      return s.state === 'idle' && Date.parse(s.started_at) >= before ? s : undefined;
    }, { what: 'second automatic backlog' });
    expect(status).toMatchObject({ total: 1200, done: 1200, failed: 0 });
    expect(await stale()).toBe(0);
  });

  it('queues nothing when a run keeps every reference, and nothing twice when an update is repeated', async () => {
    const run = await t.h.request('POST', '/admin/calibration/run?wait=true');
    expect(run.body.calibration.summary).toMatchObject({ unstable_heads: 0 });
    // Run 1's reference update again, as a retried job would: the re-tag is not queued a second time.
    const again = await t.h.platform.queues.enqueue(updateReferenceJob, { model_name: 'effnet', head_name: 'mood_happy', version: 1 });
    await waitFor(async () => (await again.getState()) === 'completed', { what: 'repeated reference update' });
    expect(await retagEvents()).toHaveLength(2);
  });
});

describe('NEW_FILES_RECALIBRATE=100', () => {
  const t = useHarness({ env: { NEW_FILES_RECALIBRATE: '100' }, workers: ['calibrate', 'update-reference'] });
  const versions = async () => (await t.h.query<{ n: number }>('SELECT count(*)::int AS n FROM calibration_versions'))[0]!.n;
  const watermark = async () => (await t.h.query("SELECT value FROM calibration_triggers WHERE name = 'new_files_watermark'"))[0]?.value;
  const lastFileId = async () => (await t.h.query('SELECT max(id) AS id FROM library_files'))[0]?.id;
  const ingest = async (from: number, count: number) =>
    (await t.h.request('POST', '/library/files', { json: libraryBatch(from, count, { [MOOD]: skewed(2) }) })).body;

  it('starts a calibration run once 100 new tagged files have come in', async () => {
    expect(await ingest(0, 60)).toEqual({ files: 60, tags: 120 });
    // Re-ingesting known files and files without scores does not count.
    expect(await ingest(0, 60)).toEqual({ files: 60, tags: 120 });
    await t.h.request('POST', '/library/files', { json: { files: Array.from({ length: 50 }, (_, i) => ({ path: `/music/empty-${i}.mp3`, scores: {} })) } });
    expect(await versions()).toBe(0);

    expect(await ingest(60, 40)).toEqual({ files: 40, tags: 80, recalibration_queued: true });
    await waitFor(async () => (await versions()) === 1, { what: 'the triggered run' });
    const [run] = await t.h.query('SELECT result FROM calibration_versions');
    expect(run?.result.calibration.library_size).toBe(150);
    expect(await watermark()).toBe(await lastFileId());
  });

  it('counts from the last run, whoever started it', async () => {
    expect(await ingest(100, 70)).toEqual({ files: 70, tags: 140 });
    expect((await t.h.request('POST', '/admin/calibration/run?wait=true')).status).toBe(200);
    expect(await watermark()).toBe(await lastFileId());
    expect(await ingest(170, 70)).toEqual({ files: 70, tags: 140 });
    expect(await versions()).toBe(2);
  });
});
