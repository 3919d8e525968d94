import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseFile, type IAudioMetadata } from 'music-metadata';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { retagBacklogJob } from '../../libs/head-calibration/src/index.ts';
import { ROOT, useHarness, waitFor } from '../harness.ts';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'audio');
const t = useHarness({ env: { RETAG_WRITE_FILES: 'true', RETAG_BATCH_SIZE: '3' }, workers: ['retag-file'] });
let dir: string;

const reference = (head: string, version: number, p5: number, p95: number) => ({
  model_name: 'effnet',
  head_name: head,
  version,
  labels: { [head]: { p5, p95, method: 'minmax' }, [`not_${head}`]: { p5: 1 - p95, p95: 1 - p5, method: 'minmax' } },
});
const scores = (x: number, heads = ['mood_happy', 'danceability']) =>
  Object.fromEntries(heads.map((h, i) => [`effnet/${h}`, { [h]: x + i / 10, [`not_${h}`]: 1 - x - i / 10 }]));

// Ingest sorts by path, so ids follow these names: range 1 holds three good files, range 2 a good
// M4A (danceability only), a corrupt MP3 and a file that is not there.
const FILES = {
  mp3: 'a-tone.mp3',
  flac: 'b-tone.flac',
  ogg: 'c-tone.ogg',
  m4a: 'd-tone.m4a',
  corrupt: 'e-corrupt.mp3',
  missing: 'f-missing.flac',
};
const path = (name: string) => join(dir, name);
const sha = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');

/** The calibrated tags a reader finds in a file, whichever container format it is. */
function calibratedTags(meta: IAudioMetadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const tags of Object.values(meta.native)) {
    for (const tag of tags) {
      const id = String(tag.id).replace(/^TXXX:|^----:com\.apple\.iTunes:/, '').toLowerCase();
      if (id.startsWith('effnet:')) out[id] = String(tag.value);
    }
  }
  return out;
}

async function dbTags(file: string): Promise<Record<string, string>> {
  const rows = await t.h.query<{ key: string; value: number }>(
    `SELECT t.model_name || ':' || t.head_name || ':' || t.label AS key, t.calibrated_score AS value
       FROM library_tags t JOIN library_files f ON f.id = t.file_id WHERE f.path = $1`,
    [path(file)],
  );
  return Object.fromEntries(rows.map((r) => [r.key.toLowerCase(), String(r.value)]));
}

/** Waits for a backlog started at or after `since` to finish. */
async function retagIdle(since: number) {
  return waitFor(
    async () => {
      const { body } = await t.h.request('GET', '/admin/calibration/retag-status');
      return body.state === 'idle' && Date.parse(body.started_at) >= since ? body : undefined;
    },
    { what: 'retag to finish' },
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'caliber-audio-'));
  for (const ext of ['mp3', 'flac', 'ogg', 'm4a'] as const) await copyFile(join(FIXTURES, `tone.${ext}`), path(FILES[ext]));
  await writeFile(path(FILES.corrupt), Buffer.from('ID3 but not really an mp3 file '.repeat(40)));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('RETAG_WRITE_FILES=true', () => {
  it('writes calibrated tags into MP3, FLAC, Ogg and MP4 files; a corrupt or missing file fails its job alone', async () => {
    await t.h.request('POST', '/admin/calibration/import', {
      json: {
        files: {
          'effnet/heads/mood_happy-calibration.json': reference('mood_happy', 1, 0.1, 0.9),
          'effnet/heads/danceability-calibration.json': reference('danceability', 1, 0.2, 0.7),
        },
      },
    });
    const files = Object.entries(FILES).map(([kind, name], i) => ({
      path: path(name),
      scores: scores(0.15 + i * 0.1, kind === 'm4a' ? ['danceability'] : undefined),
    }));
    expect((await t.h.request('POST', '/library/files', { json: { files } })).status).toBe(200);
    const before = Object.fromEntries(await Promise.all((['mp3', 'flac', 'ogg', 'm4a'] as const).map(async (k) => [k, await parseFile(path(FILES[k]))])));

    const since = Date.now();
    expect((await t.h.request('POST', '/admin/calibration/retag-all')).body).toMatchObject({ enqueued: 6, jobs: 2 });
    expect(await retagIdle(since)).toMatchObject({ total: 6, done: 4, failed: 2 });

    const queue = t.h.platform.queues.get('retag-file');
    const [completed] = await queue.getJobs(['completed']);
    // Ingest already calibrated with the imported references, so no row changes; retag-all still
    // writes every file, to make the files agree with the database.
    expect(completed?.returnvalue).toMatchObject({ first_id: 1, last_id: 3, files: 3, tags_changed: 0, files_written: 3 });
    const [failed] = await queue.getJobs(['failed']);
    expect(failed?.attemptsMade).toBe(1); // not retried: another attempt would fail the same way
    expect(failed?.failedReason).toContain('2 of 3 audio file(s) could not be tagged');
    expect(failed?.failedReason).toContain(`${path(FILES.corrupt)}: unreadable audio file`);
    expect(failed?.failedReason).toContain(`${path(FILES.missing)}: file not found`);

    for (const kind of ['mp3', 'flac', 'ogg', 'm4a'] as const) {
      const after = await parseFile(path(FILES[kind]));
      const expected = await dbTags(FILES[kind]);
      expect(Object.keys(expected).length, kind).toBe(kind === 'm4a' ? 2 : 4);
      expect(calibratedTags(after), kind).toEqual(expected);
      // Its other tags and its audio are as they were.
      expect(after.common.title, kind).toBe('Caliber test tone');
      expect(after.common.artist, kind).toBe('Caliber');
      for (const field of ['codec', 'sampleRate', 'numberOfChannels', 'duration', 'numberOfSamples'] as const) {
        expect(after.format[field], `${kind} ${field}`).toEqual(before[kind]!.format[field]);
      }
    }
    // MP3 frames and FLAC frames follow the tags, so the file must end with the original bytes.
    for (const kind of ['mp3', 'flac'] as const) {
      const original = await readFile(join(FIXTURES, `tone.${kind}`));
      const now = await readFile(path(FILES[kind]));
      expect(now.subarray(now.length - 2000).equals(original.subarray(original.length - 2000)), kind).toBe(true);
    }
    // Written through a temporary file and a rename: nothing is left behind, even for the failures.
    expect((await readdir(dir)).sort()).toEqual(Object.values(FILES).filter((f) => f !== FILES.missing).sort());
  });

  it('after a change to one head, rewrites only the files that have that head', async () => {
    const m4aBefore = await sha(path(FILES.m4a));
    const since = Date.now();
    await t.h.request('POST', '/admin/calibration/import', {
      json: { files: { 'effnet/heads/mood_happy-calibration.json': reference('mood_happy', 2, 0.05, 0.6) } },
    });
    // What AUTO_RETAG queues once a run's reference updates are installed.
    const backlog = await t.h.platform.queues.enqueue(retagBacklogJob, { heads: [{ model_name: 'effnet', head_name: 'mood_happy' }], reason: 'test' });
    await waitFor(async () => (await backlog.getState()) === 'completed', { what: 'backlog job' });
    expect(await retagIdle(since)).toMatchObject({ total: 5, done: 3, failed: 2 });
    const mp3 = calibratedTags(await parseFile(path(FILES.mp3)));
    expect(mp3).toEqual(await dbTags(FILES.mp3));
    expect(mp3['effnet:mood_happy:mood_happy']).toBe(String((0.15 - 0.05) / (0.6 - 0.05)));
    // The M4A has no mood scores: its range was re-tagged, but the file was left alone.
    expect(await sha(path(FILES.m4a))).toBe(m4aBefore);
  });
});
