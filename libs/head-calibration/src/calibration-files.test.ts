import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFloat8Array } from './calibrate-heads.ts';
import { referenceCalibrationPath, versionedCalibrationPath, writeJsonAtomic } from './calibration-files.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cal-files-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe('calibration file paths', () => {
  it('follow MODELS_DIR/<model>/heads/<head>-calibration[-v<version>].json', () => {
    expect(versionedCalibrationPath('/models', 'effnet', 'mood_happy', 3)).toBe('/models/effnet/heads/mood_happy-calibration-v3.json');
    expect(referenceCalibrationPath('/models', 'effnet', 'mood_happy')).toBe('/models/effnet/heads/mood_happy-calibration.json');
  });

  it.each(['..', '../x', '/abs', 'a/b', '.hidden', 'nul\u0000', '', 'a\\b'])('refuse the name %j', (name) => {
    expect(() => referenceCalibrationPath('/models', name, 'head')).toThrow(/unsafe model name/);
    expect(() => versionedCalibrationPath('/models', 'model', name, 1)).toThrow(/unsafe head name/);
  });
});

describe('writeJsonAtomic', () => {
  it('replaces the file whole and leaves no temp files behind', async () => {
    const path = join(dir, 'm', 'heads', 'h-calibration.json');
    await writeJsonAtomic(path, { version: 1 });
    await Promise.all(Array.from({ length: 20 }, (_, i) => writeJsonAtomic(path, { version: i, pad: 'x'.repeat(10_000) })));
    const content = JSON.parse(await readFile(path, 'utf8'));
    expect(content.pad).toHaveLength(10_000);
    expect(await readdir(join(dir, 'm', 'heads'))).toEqual(['h-calibration.json']);
  });
});

describe('decodeFloat8Array (Postgres array_send of float8[])', () => {
  it('decodes the binary array format', () => {
    // SELECT array_send(ARRAY[0.25, 1, 0]::float8[]) on Postgres 15.
    const bytes = Buffer.from('0000000100000000000002bd000000030000000100000008' + '3fd0000000000000' + '000000083ff0000000000000' + '000000080000000000000000', 'hex');
    expect([...decodeFloat8Array(bytes)]).toEqual([0.25, 1, 0]);
  });

  it('decodes an empty array', () => {
    expect(decodeFloat8Array(Buffer.from('0000000000000000000002bd', 'hex'))).toHaveLength(0);
  });
});
