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
