import { defineJob } from '@caliber/platform';
import { z } from 'zod';

/** Loads AA benchmark data, maps every working_version model, writes coverage. */
export const mapModelsJob = defineJob('map-models', 'map', z.object({ requested_by: z.string().max(200).optional() }));

/** Drops cached best-model answers; written to the outbox by whatever changed the mappings. */
export const invalidateBestModelJob = defineJob('map-models', 'invalidate-best-model', z.object({ reason: z.string().max(200) }));
