import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { spawnService, useHarness } from '../harness.ts';

const t = useHarness({ env: { CALIBRATE_HEADS: 'false' } });

const file = (model: string, head: string, version = 3, labels: Record<string, unknown> = { a: { p5: 0.1, p95: 0.8, method: 'minmax', samples: 1200 } }) => ({
  model_name: model,
  head_name: head,
  version,
  file_count: 1200,
  created_at: '2026-01-01T00:00:00.000Z',
  labels,
});

const goodBundle = {
  'effnet/heads/mood_happy-calibration.json': file('effnet', 'mood_happy'),
  'effnet/heads/danceability-calibration.json': file('effnet', 'danceability', 5),
  'musicnn/heads/genre-calibration.json': file('musicnn', 'genre', 1),
};

async function installedFiles(): Promise<string[]> {
  const out: string[] = [];
  for (const model of await readdir(t.env.modelsDir).catch(() => [] as string[])) {
    for (const name of await readdir(join(t.env.modelsDir, model, 'heads')).catch(() => [] as string[])) out.push(`${model}/heads/${name}`);
  }
  return out.sort();
}

describe('POST /admin/calibration/import', () => {
  beforeEach(async () => {
    await t.h.query('TRUNCATE calibration_references');
    await rm(t.env.modelsDir, { recursive: true, force: true });
    await mkdir(t.env.modelsDir, { recursive: true });
  });

  it('installs every reference file and moves every pointer', async () => {
    const res = await t.h.request('POST', '/admin/calibration/import', { json: { files: goodBundle } });
    expect(res.status).toBe(200);
    expect(res.body.imported.map((i: { model_name: string; head_name: string; version: number }) => `${i.model_name}/${i.head_name}@${i.version}`)).toEqual([
      'effnet/danceability@5',
      'effnet/mood_happy@3',
      'musicnn/genre@1',
    ]);
    expect(await installedFiles()).toEqual([
      'effnet/heads/danceability-calibration.json',
      'effnet/heads/mood_happy-calibration.json',
      'musicnn/heads/genre-calibration.json',
    ]);
    expect(JSON.parse(await readFile(join(t.env.modelsDir, 'effnet/heads/mood_happy-calibration.json'), 'utf8'))).toEqual(goodBundle['effnet/heads/mood_happy-calibration.json']);
    const refs = await t.h.query('SELECT model_name, head_name, version, source FROM calibration_references ORDER BY 1, 2');
    expect(refs).toEqual([
      { model_name: 'effnet', head_name: 'danceability', version: 5, source: 'import' },
      { model_name: 'effnet', head_name: 'mood_happy', version: 3, source: 'import' },
      { model_name: 'musicnn', head_name: 'genre', version: 1, source: 'import' },
    ]);
  });

  const broken: [string, Record<string, unknown>, RegExp][] = [
    ['a p95 above 1', { 'effnet/heads/x-calibration.json': file('effnet', 'x', 1, { a: { p5: 0.1, p95: 1.2, method: 'minmax' } }) }, /labels\.a\.p95/],
    ['an unknown method', { 'effnet/heads/x-calibration.json': file('effnet', 'x', 1, { a: { p5: 0.1, p95: 0.2, method: 'platt' } }) }, /method/],
    ['no labels', { 'effnet/heads/x-calibration.json': file('effnet', 'x', 1, {}) }, /at least one label/],
    ['names that disagree with the path', { 'effnet/heads/x-calibration.json': file('effnet', 'y') }, /do not match the path/],
    ['a path escaping MODELS_DIR', { '../etc/heads/x-calibration.json': file('..', 'x') }, /path must be/],
    ['an absolute path', { '/tmp/heads/x-calibration.json': file('tmp', 'x') }, /path must be/],
    ['a dot-dot model name', { '../heads/x-calibration.json': file('..', 'x') }, /path must be/],
    ['a NUL in a name', { 'eff\u0000net/heads/x-calibration.json': file('eff\u0000net', 'x') }, /path must be/],
    ['a versioned file', { 'effnet/heads/x-calibration-v2.json': file('effnet', 'x-calibration-v2') }, /path must be|do not match/],
  ];

  it.each(broken)('refuses a bundle with %s, installing none of its good files', async (_, bad, message) => {
    const res = await t.h.request('POST', '/admin/calibration/import', { json: { files: { ...goodBundle, ...bad } } });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_bundle');
    expect(res.body.error.files.map((f: { message: string }) => f.message).join('\n')).toMatch(message);
    expect(await installedFiles()).toEqual([]);
    expect(await t.h.query('SELECT 1 FROM calibration_references')).toHaveLength(0);
  });

  it('never reads the gateway host’s file system: a directory form is refused', async () => {
    const res = await t.h.request('POST', '/admin/calibration/import', { json: { dir: '/etc' } });
    expect(res.status).toBe(400);
    expect(await installedFiles()).toEqual([]);
  });
});

describe('caliber calibration import <dir>', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bundle-cli-'));
    await mkdir(join(dir, 'effnet', 'heads'), { recursive: true });
    await writeFile(join(dir, 'effnet/heads/mood_happy-calibration.json'), JSON.stringify(file('effnet', 'mood_happy', 4)));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('installs a valid bundle, ignoring versioned files', async () => {
    await writeFile(join(dir, 'effnet/heads/mood_happy-calibration-v4.json'), '{ not even json');
    await t.h.query('TRUNCATE calibration_references');
    const cli = spawnService('apps/cli/src/main.ts', ['calibration', 'import', dir], t.env.env);
    expect((await cli.exited).code).toBe(0);
    expect(cli.output()).toMatch(/installed effnet\/mood_happy v4/);
    expect(await t.h.query('SELECT version FROM calibration_references')).toEqual([{ version: 4 }]);
    expect(existsSync(join(t.env.modelsDir, 'effnet/heads/mood_happy-calibration.json'))).toBe(true);
  });

  it('lists every problem of an invalid bundle, exits 2 and changes nothing', async () => {
    await writeFile(join(dir, 'effnet/heads/danceability-calibration.json'), '{ not json');
    await t.h.query('TRUNCATE calibration_references');
    const cli = spawnService('apps/cli/src/main.ts', ['calibration', 'import', dir], t.env.env);
    expect((await cli.exited).code).toBe(2);
    expect(cli.output()).toMatch(/effnet\/heads\/danceability-calibration\.json: not valid JSON/);
    expect(await t.h.query('SELECT 1 FROM calibration_references')).toHaveLength(0);
  });
});
