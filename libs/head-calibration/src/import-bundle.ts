import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Database } from '@caliber/platform';
import { summarizeIssues } from '@caliber/platform';
import { sql } from 'drizzle-orm';
import { calibrationFileSchema, NAME_PATTERN, referenceCalibrationPath, writeJsonAtomic, type CalibrationFile } from './calibration-files.ts';

/** `<model>/heads/<head>-calibration.json`: the only files a bundle installs. */
const BUNDLE_PATH = /^([^/]+)\/heads\/([^/]+)-calibration\.json$/;

export interface BundleEntry {
  /** Path inside the bundle, with `/` separators. */
  file: string;
  content: unknown;
}

export interface BundleProblem {
  file: string;
  message: string;
}

export class InvalidBundleError extends Error {
  constructor(readonly problems: BundleProblem[]) {
    super(`${problems.length} problem(s) in the calibration bundle; nothing was installed`);
    this.name = 'InvalidBundleError';
  }
}

/** Reads every `<model>/heads/*-calibration.json` under `dir` (versioned files are left out). */
export async function readBundleDir(dir: string): Promise<BundleEntry[]> {
  const entries: BundleEntry[] = [];
  const problems: BundleProblem[] = [];
  let models: string[];
  try {
    models = (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
  } catch (err) {
    throw new InvalidBundleError([{ file: dir, message: `cannot read directory: ${(err as Error).message}` }]);
  }
  for (const model of models.sort()) {
    const headsDir = join(dir, model, 'heads');
    const names = await readdir(headsDir).catch(() => [] as string[]);
    for (const name of names.sort()) {
      if (!name.endsWith('-calibration.json')) continue;
      const file = `${model}/heads/${name}`;
      try {
        entries.push({ file, content: JSON.parse(await readFile(join(headsDir, name), 'utf8')) });
      } catch (err) {
        problems.push({ file, message: `not readable JSON: ${(err as Error).message}` });
      }
    }
  }
  if (problems.length > 0) throw new InvalidBundleError(problems);
  if (entries.length === 0) throw new InvalidBundleError([{ file: dir, message: 'no <model>/heads/<head>-calibration.json files found' }]);
  return entries;
}

/** Checks every entry (path, schema, names matching the path, no duplicates); throws listing all problems. */
export function validateBundle(entries: BundleEntry[]): CalibrationFile[] {
  const problems: BundleProblem[] = [];
  const files: CalibrationFile[] = [];
  const seen = new Set<string>();
  if (entries.length === 0) problems.push({ file: '(bundle)', message: 'the bundle is empty' });
  for (const entry of entries) {
    const match = BUNDLE_PATH.exec(entry.file);
    if (!match || !NAME_PATTERN.test(match[1] ?? '') || !NAME_PATTERN.test(match[2] ?? '')) {
      problems.push({ file: entry.file, message: 'path must be <model>/heads/<head>-calibration.json with safe names' });
      continue;
    }
    const parsed = calibrationFileSchema.safeParse(entry.content);
    if (!parsed.success) {
      problems.push({ file: entry.file, message: summarizeIssues(parsed.error.issues) });
      continue;
    }
    if (parsed.data.model_name !== match[1] || parsed.data.head_name !== match[2]) {
      problems.push({ file: entry.file, message: `names inside (${parsed.data.model_name}/${parsed.data.head_name}) do not match the path` });
      continue;
    }
    const key = `${match[1]}/${match[2]}`;
    if (seen.has(key)) problems.push({ file: entry.file, message: `${key} appears twice` });
    seen.add(key);
    files.push(parsed.data);
  }
  if (problems.length > 0) throw new InvalidBundleError(problems);
  return files;
}

/**
 * Installs a validated bundle: the reference files are written (each atomically) only after every
 * file passed validation, then all reference pointers move in one transaction.
 */
export async function importCalibrationBundle(
  db: Database,
  modelsDir: string,
  entries: BundleEntry[],
): Promise<{ model_name: string; head_name: string; version: number; path: string }[]> {
  const files = validateBundle(entries);
  const installed = [];
  for (const f of files) {
    const path = referenceCalibrationPath(modelsDir, f.model_name, f.head_name);
    await writeJsonAtomic(path, f);
    installed.push({ model_name: f.model_name, head_name: f.head_name, version: f.version, path });
  }
  await db.execute(sql`
    INSERT INTO calibration_references (model_name, head_name, version, labels, source, updated_at)
    SELECT model_name, head_name, version, labels, 'import', now()
      FROM jsonb_to_recordset(${JSON.stringify(files.map((f) => ({ model_name: f.model_name, head_name: f.head_name, version: f.version, labels: f.labels })))}::jsonb)
        AS b(model_name text, head_name text, version int, labels jsonb)
    ON CONFLICT (model_name, head_name) DO UPDATE
      SET version = excluded.version, labels = excluded.labels, source = 'import', updated_at = now()`);
  return installed;
}
