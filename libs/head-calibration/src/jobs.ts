import { defineJob } from '@caliber/platform';
import { z } from 'zod';
import { nameSchema } from './calibration-files.ts';

/** A head-calibration run over the whole library (the `heads` kind of the `calibrate` queue). */
export const calibrateHeadsJob = defineJob(
  'calibrate',
  'heads',
  z.object({ requested_by: z.string().max(200).optional() }),
);

/** Installs a run's calibration as a head's reference file and moves its reference pointer. */
export const updateReferenceJob = defineJob(
  'update-reference',
  'head-reference',
  z.object({ model_name: nameSchema, head_name: nameSchema, version: z.number().int().positive() }),
);

const headRefSchema = z.object({ model_name: nameSchema, head_name: nameSchema });

/**
 * Re-tags the files whose ids fall in [first_id, last_id] (a fixed range of RETAG_BATCH_SIZE ids)
 * with each head's reference, in one set-based write. Ranges are fixed, so a file always lands in
 * the same job and a pending job deduplicates its files.
 */
export const retagFileJob = defineJob(
  'retag-file',
  'files',
  z
    .object({
      first_id: z.number().int().positive(),
      last_id: z.number().int().positive(),
      /** Tagged files in the range when it was queued (progress is counted in files). */
      files: z.number().int().min(0),
      /** Only these heads' tags, and (RETAG_WRITE_FILES) the files that have them: AUTO_RETAG. */
      heads: z.array(headRefSchema).min(1).optional(),
    })
    .refine((p) => p.last_id >= p.first_id, 'last_id must be at least first_id'),
);

/** Queues the `files` jobs for every tagged file, or for the files with scores of `heads` (AUTO_RETAG). */
export const retagBacklogJob = defineJob(
  'retag-file',
  'enqueue-backlog',
  z.object({
    heads: z.array(headRefSchema).min(1).optional(),
    reason: z.string().max(200),
    version: z.number().int().positive().optional(),
  }),
);
