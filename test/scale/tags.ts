import { minmaxCalibrate } from '../../libs/head-calibration/src/math.ts';
import type { Harness } from '../harness.ts';

type Reference = { model_name: string; head_name: string; version: number; labels: Record<string, { p5: number; p95: number }> };

/**
 * Every tag of the library, read as the owner, and those whose stored value is not minmax of its
 * head's reference (or not at its version): none when a re-tag is right.
 */
export async function tagsAgainstReferences(h: Harness): Promise<{ references: Reference[]; tags: number; wrong: unknown[] }> {
  const references = await h.ownerQuery<Reference>('SELECT model_name, head_name, version, labels FROM calibration_references');
  const byHead = new Map(references.map((r) => [`${r.model_name}/${r.head_name}`, r]));
  const tags = await h.ownerQuery<{ model_name: string; head_name: string; label: string; raw_score: number; calibrated_score: number; calibration_version: number }>(
    'SELECT model_name, head_name, label, raw_score, calibrated_score, calibration_version FROM library_tags',
  );
  const wrong = tags.filter((t) => {
    const ref = byHead.get(`${t.model_name}/${t.head_name}`)!;
    const label = ref.labels[t.label]!;
    return t.calibration_version !== ref.version || t.calibrated_score !== minmaxCalibrate(t.raw_score, label.p5, label.p95);
  });
  return { references, tags: tags.length, wrong };
}
