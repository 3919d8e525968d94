import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { minmaxCalibrate } from '../../libs/head-calibration/src/math.ts';
import { libraryBatch, skewed } from '../fixtures.ts';
import { useHarness } from '../harness.ts';

const t = useHarness();

const TEN_HEADS = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`effnet/head${i}`, skewed(1 + i / 10)]));

async function counts() {
  const [row] = await t.h.query<{ files: number; tags: number }>(
    'SELECT (SELECT count(*) FROM library_files)::int AS files, (SELECT count(*) FROM library_tags)::int AS tags',
  );
  return row;
}

describe('POST /library/files', () => {
  beforeEach(async () => {
    await t.h.query('TRUNCATE library_files, library_tags, calibration_references');
  });

  it('ingests 1 000 files with 20 scores each in one request, and again without duplicating', async () => {
    const batch = libraryBatch(0, 1000, TEN_HEADS);
    const first = await t.h.request('POST', '/library/files', { json: batch });
    expect(first).toMatchObject({ status: 200, body: { files: 1000, tags: 20_000 } });
    expect(await counts()).toEqual({ files: 1000, tags: 20_000 });

    const [before] = await t.h.query<{ tagged_at: Date }>("SELECT tagged_at FROM library_files WHERE path = '/music/000000.mp3'");
    const again = await t.h.request('POST', '/library/files', { json: batch });
    expect(again.body).toEqual({ files: 1000, tags: 20_000 });
    expect(await counts()).toEqual({ files: 1000, tags: 20_000 });
    const [after] = await t.h.query<{ tagged_at: Date }>("SELECT tagged_at FROM library_files WHERE path = '/music/000000.mp3'");
    expect(after!.tagged_at.getTime()).toBeGreaterThan(before!.tagged_at.getTime());
  });

  it('replaces a file’s scores on re-ingest and keeps its other heads', async () => {
    await t.h.request('POST', '/library/files', { json: { files: [{ path: '/a.mp3', scores: { 'm/h1': { x: 0.1 }, 'm/h2': { y: 0.2 } } }] } });
    await t.h.request('POST', '/library/files', { json: { files: [{ path: '/a.mp3', scores: { 'm/h1': { x: 0.9 } } }] } });
    const file = await t.h.request('GET', '/library/files?path=/a.mp3');
    expect(file.body.tags.map((t: { label: string; raw_score: number }) => [t.label, t.raw_score])).toEqual([
      ['x', 0.9],
      ['y', 0.2],
    ]);
  });

  const valid = { path: '/ok.mp3', scores: { 'effnet/mood_happy': { happy: 0.5 } } };
  const badBodies: [string, string, string | RegExp][] = [
    ['a score of 1.5', JSON.stringify({ files: [valid, { path: '/b.mp3', scores: { 'effnet/mood_happy': { happy: 1.5 } } }] }), /files\.1\.scores\.effnet\/mood_happy\.happy: a score is a number in \[0, 1\]/],
    ['a negative score', JSON.stringify({ files: [{ path: '/b.mp3', scores: { 'effnet/mood_happy': { happy: -0.1 } } }] }), /in \[0, 1\]/],
    ['NaN (not JSON)', `{"files":[{"path":"/b.mp3","scores":{"effnet/mood_happy":{"happy":NaN}}}]}`, /Malformed JSON/],
    ['a string score', JSON.stringify({ files: [{ path: '/b.mp3', scores: { 'effnet/mood_happy': { happy: '0.5' } } }] }), /expected number/],
    ['a missing path', JSON.stringify({ files: [valid, { scores: {} }] }), /files\.1\.path/],
    ['an empty path', JSON.stringify({ files: [{ path: '', scores: {} }] }), /files\.0\.path/],
    ['a non-JSON body', 'files=/a.mp3', /Malformed JSON/],
    ['an empty file list', JSON.stringify({ files: [] }), /files/],
    ['a head key without a model', JSON.stringify({ files: [{ path: '/b.mp3', scores: { mood_happy: { happy: 0.5 } } }] }), /head keys are/],
    ['a head key escaping MODELS_DIR', JSON.stringify({ files: [{ path: '/b.mp3', scores: { '../etc/passwd': { x: 0.5 } } }] }), /head keys are/],
    ['a head key with three parts', JSON.stringify({ files: [{ path: '/b.mp3', scores: { 'a/b/c': { x: 0.5 } } }] }), /head keys are/],
    ['the same path twice', JSON.stringify({ files: [valid, valid] }), /duplicate path/],
    ['a label with a control character', JSON.stringify({ files: [{ path: '/b.mp3', scores: { 'm/h': { 'a\u0001': 0.5 } } }] }), /control characters/],
  ];

  it.each(badBodies)('answers %s with 400 and writes nothing', async (_, body, message) => {
    const res = await t.h.request('POST', '/library/files', { body, headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(res.body.error.message).toMatch(message);
    expect(await counts()).toEqual({ files: 0, tags: 0 });
  });

  it('lists the zod issues of a bad request', async () => {
    const res = await t.h.request('POST', '/library/files', { json: { files: [{ path: '/b.mp3', scores: { 'm/h': { x: 2 } } }] } });
    expect(res.body.error.issues[0]).toMatchObject({ path: ['files', 0, 'scores', 'm/h', 'x'], code: 'too_big' });
  });

  it('answers a wrong content type with 415, an empty body with 400, and writes nothing', async () => {
    const res = await t.h.request('POST', '/library/files', { body: JSON.stringify({ files: [valid] }), headers: { 'content-type': 'text/plain' } });
    expect(res).toMatchObject({ status: 415, body: { error: { code: 'unsupported_media_type' } } });
    const empty = await t.h.request('POST', '/library/files');
    expect(empty).toMatchObject({ status: 400, body: { error: { code: 'invalid_request' } } });
    expect(await counts()).toEqual({ files: 0, tags: 0 });
  });

  it("calibrates new scores with the head's reference at once", async () => {
    const imported = await t.h.request('POST', '/admin/calibration/import', {
      json: {
        files: {
          'effnet/heads/mood_happy-calibration.json': {
            model_name: 'effnet',
            head_name: 'mood_happy',
            version: 7,
            labels: { happy: { p5: 0.2, p95: 0.6, method: 'minmax' } },
          },
        },
      },
    });
    expect(imported.status).toBe(200);
    await t.h.request('POST', '/library/files', { json: { files: [{ path: '/c.mp3', scores: { 'effnet/mood_happy': { happy: 0.3, other: 0.4 }, 'x/y': { z: 0.5 } } }] } });
    const { body } = await t.h.request('GET', '/library/files?path=/c.mp3');
    const byLabel = Object.fromEntries(body.tags.map((t: { label: string }) => [t.label, t]));
    expect(byLabel.happy).toMatchObject({ raw_score: 0.3, calibrated_score: minmaxCalibrate(0.3, 0.2, 0.6), calibration_version: 7 });
    expect(byLabel.other).toMatchObject({ raw_score: 0.4, calibrated_score: null, calibration_version: null }); // label not in reference
    expect(byLabel.z).toMatchObject({ calibrated_score: null, calibration_version: null }); // head without reference
  });
});

describe('GET /library/files', () => {
  beforeAll(async () => {
    await t.h.query('TRUNCATE library_files, library_tags');
    await t.h.request('POST', '/library/files', { json: libraryBatch(0, 25, { 'effnet/mood_happy': skewed(1) }) });
  });

  it('finds a file by path and by id, with its tags', async () => {
    const byPath = await t.h.request('GET', `/library/files?path=${encodeURIComponent('/music/000003.mp3')}`);
    expect(byPath.status).toBe(200);
    expect(byPath.body).toMatchObject({ path: '/music/000003.mp3', tags: [{ head_name: 'mood_happy', label: 'mood_happy' }, { label: 'not_mood_happy' }] });
    expect(byPath.body.tagged_at).toMatch(/^\d{4}-\d\d-\d\dT/);
    const byId = await t.h.request('GET', `/library/files/${byPath.body.id}`);
    expect(byId.body).toEqual(byPath.body);
  });

  it('answers 404 for an unknown path or id, 400 for a malformed id', async () => {
    expect((await t.h.request('GET', '/library/files?path=/nope.mp3')).body.error.code).toBe('not_found');
    expect((await t.h.request('GET', '/library/files/999999')).status).toBe(404);
    expect((await t.h.request('GET', '/library/files/abc')).status).toBe(400);
  });

  it('pages through files with a cursor', async () => {
    const seen: string[] = [];
    let cursor: number | null = 0;
    while (cursor !== null) {
      const page: { body: { items: { path: string }[]; next_cursor: number | null } } = await t.h.request('GET', `/library/files?limit=10&cursor=${cursor}`);
      seen.push(...page.body.items.map((f) => f.path));
      cursor = page.body.next_cursor;
    }
    expect(seen).toHaveLength(25);
    expect(new Set(seen).size).toBe(25);
  });
});
