import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join, relative, resolve, isAbsolute } from 'node:path';
import { z } from 'zod';

/**
 * Model and head names become directory and file names under MODELS_DIR, so they are restricted to
 * a safe alphabet: no separators, no leading dot (hence no `..`), no NUL.
 */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const nameSchema = z.string().regex(NAME_PATTERN, 'must be 1–128 of A–Z a–z 0–9 . _ - and not start with . _ -');
export const labelSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^\u0000-\u001f]+$/, 'must not contain control characters');

const unitScore = z.number().min(0).max(1);

export const labelCalibrationSchema = z.object({
  p5: unitScore,
  p95: unitScore,
  method: z.literal('minmax'),
  samples: z.number().int().min(0).optional(),
});

/** `MODELS_DIR/<model>/heads/<head>-calibration[-v<version>].json`. */
export const calibrationFileSchema = z.object({
  model_name: nameSchema,
  head_name: nameSchema,
  version: z.number().int().positive(),
  file_count: z.number().int().min(0).optional(),
  created_at: z.string().optional(),
  labels: z.record(labelSchema, labelCalibrationSchema).refine((l) => Object.keys(l).length > 0, 'must list at least one label'),
});

export type CalibrationFile = z.infer<typeof calibrationFileSchema>;
export type LabelCalibration = z.infer<typeof labelCalibrationSchema>;

function insideModelsDir(modelsDir: string, model: string, file: string): string {
  if (!NAME_PATTERN.test(model)) throw new Error(`unsafe model name ${JSON.stringify(model)}`);
  const root = resolve(modelsDir);
  const path = join(root, model, 'heads', file);
  const rel = relative(root, path);
  if (rel.startsWith('..') || isAbsolute(rel)) throw new Error(`path escapes MODELS_DIR: ${path}`);
  return path;
}

/** Advisory lock around writing a head's reference file and moving its pointer (update-reference, import). */
export function referenceLockKey(model: string, head: string): string {
  return `caliber:reference:${model}/${head}`;
}

export function versionedCalibrationPath(modelsDir: string, model: string, head: string, version: number): string {
  if (!NAME_PATTERN.test(head)) throw new Error(`unsafe head name ${JSON.stringify(head)}`);
  return insideModelsDir(modelsDir, model, `${head}-calibration-v${version}.json`);
}

export function referenceCalibrationPath(modelsDir: string, model: string, head: string): string {
  if (!NAME_PATTERN.test(head)) throw new Error(`unsafe head name ${JSON.stringify(head)}`);
  return insideModelsDir(modelsDir, model, `${head}-calibration.json`);
}

export interface StagedFile {
  /** Renames the staged file over its target. */
  commit(): Promise<void>;
  /** Removes the staged file. */
  discard(): Promise<void>;
}

/**
 * Writes JSON to a temp file beside `path`, flushed to disk, ready to be renamed over it: staging
 * several files first lets a caller replace none of them if any write fails.
 */
export async function stageJson(path: string, data: unknown): Promise<StagedFile> {
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temp, 'w', 0o644);
  try {
    await handle.writeFile(`${JSON.stringify(data, null, 2)}\n`);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  const discard = () => rm(temp, { force: true });
  return {
    discard,
    async commit() {
      try {
        await rename(temp, path);
      } catch (err) {
        await discard();
        throw err;
      }
    },
  };
}

/** Writes JSON so a reader sees either the old file or the new one, never a torn one. */
export async function writeJsonAtomic(path: string, data: unknown): Promise<void> {
  await (await stageJson(path, data)).commit();
}
