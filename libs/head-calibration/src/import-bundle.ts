import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Database } from '@caliber/platform';
import { summarizeIssues } from '@caliber/platform';
import { sql } from 'drizzle-orm';
import { calibrationFileSchema, NAME_PATTERN, referenceCalibrationPath, referenceLockKey, stageJson, type CalibrationFile, type StagedFile } from './calibration-files.ts';
import { calibrationReferences } from './schema.ts';

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
        // Node's JSON errors quote the file's text; say only what kind of problem it is.
        problems.push({ file, message: err instanceof SyntaxError ? 'not valid JSON' : `not readable: ${(err as NodeJS.ErrnoException).code ?? 'error'}` });
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
 * Installs a bundle: every file is validated, then every reference file is staged (written and
 * flushed beside its target) before any is replaced; the renames and the pointer moves happen
 * together in one transaction holding each head's reference lock.
 */
export async function importCalibrationBundle(
  db: Database,
  modelsDir: string,
  entries: BundleEntry[],
): Promise<{ model_name: string; head_name: string; version: number; path: string }[]> {
  const files = validateBundle(entries).sort((a, b) => `${a.model_name}/${a.head_name}`.localeCompare(`${b.model_name}/${b.head_name}`));
  const installed = files.map((f) => ({
    model_name: f.model_name,
    head_name: f.head_name,
    version: f.version,
    path: referenceCalibrationPath(modelsDir, f.model_name, f.head_name),
  }));
  const staged: StagedFile[] = [];
  try {
    for (const [i, f] of files.entries()) staged.push(await stageJson(installed[i]!.path, f));
    await db.transaction(async (tx) => {
      // Sorted lock order: two imports of overlapping bundles cannot deadlock.
      for (const f of files) await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext(${referenceLockKey(f.model_name, f.head_name)}))`);
      await tx
        .insert(calibrationReferences)
        .values(files.map((f) => ({ modelName: f.model_name, headName: f.head_name, version: f.version, labels: f.labels, source: 'import' as const })))
        .onConflictDoUpdate({
          target: [calibrationReferences.modelName, calibrationReferences.headName],
          set: { version: sql`excluded.version`, labels: sql`excluded.labels`, source: sql`excluded.source`, updatedAt: sql`now()` },
        });
      for (const file of staged.splice(0)) await file.commit();
    });
  } finally {
    await Promise.allSettled(staged.map((f) => f.discard()));
  }
  return installed;
}
