import { ApiError, isStorableInstant, isStorableText, type Executor } from '@caliber/platform';
import { z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import { ANY, SIZE_CATEGORIES } from './schema.ts';

/** The most results one request may carry; a bigger batch is split by the client. */
export const MAX_RESULTS = 10_000;

/**
 * Trimmed, non-empty text of at most `maxBytes` UTF-8 bytes: the natural key's columns share one
 * btree entry (at most 2 704 bytes), so their sizes are bounded in bytes, not characters.
 */
const text = (maxBytes: number) =>
  z
    .string()
    .trim()
    .min(1)
    .refine(isStorableText, 'must not contain NUL or unpaired surrogates')
    .refine((s) => Buffer.byteLength(s, 'utf8') <= maxBytes, `must be at most ${maxBytes} bytes (UTF-8)`);

/** Lower-cased, so `TypeScript` and `typescript` are one language; `any` names the pooled configurations. */
export const languageSchema = text(64)
  .transform((s) => s.toLowerCase())
  .refine((s) => s !== ANY, `"${ANY}" is reserved for configurations over every language`)
  .openapi({ example: 'typescript' });

/** Bounded well inside float8, so sums and averages over millions of results cannot overflow. */
export const MAX_LATENCY_MS = 86_400_000;
export const MAX_COST_USD = 1_000_000;
/** A result may be stamped this far ahead of the server's clock (clock skew), no further. */
const FUTURE_SKEW_MS = 3_600_000;

export const resultSchema = z
  .object({
    run_id: text(200).openapi({ description: 'The test run that produced the result' }),
    language: languageSchema,
    size_category: z.enum(SIZE_CATEGORIES).openapi({ description: 'small: < 10 000 lines (or < 100 files); medium: < 100 000 lines (< 1 000 files); large: the rest' }),
    model_id: text(200).openapi({ description: 'As the provider names it (case kept)' }),
    provider: text(100)
      .transform((s) => s.toLowerCase())
      .openapi({ description: 'Lower-cased, so `OpenAI` and `openai` are one provider' }),
    repository: text(1000).optional().openapi({ description: 'What was tested; a run reports each (language, size, model, repository) once' }),
    quality_score: z.number().min(0).max(1),
    latency_ms: z.number().min(0).max(MAX_LATENCY_MS).openapi({ description: `Milliseconds, at most ${MAX_LATENCY_MS} (a day)` }),
    cost_usd: z.number().min(0).max(MAX_COST_USD),
    tested_at: z.iso
      .datetime({ offset: true })
      .refine(isStorableInstant, 'must be between years 0001 and 9999')
      .refine((v) => Date.parse(v) <= Date.now() + FUTURE_SKEW_MS, 'must not be in the future')
      // Postgres refuses some offsets ISO allows (+16:00) and rounds past microseconds: send UTC.
      .transform((v) => new Date(Date.parse(v)).toISOString())
      .optional()
      .openapi({ description: 'When the evaluation ran; default now. Not in the future' }),
  })
  .strict()
  .openapi('CalibrationResult');

export const resultBatchSchema = z
  .object({ results: z.array(resultSchema).min(1).max(MAX_RESULTS) })
  .strict()
  .superRefine((batch, ctx) => {
    const seen = new Map<string, number>();
    batch.results.forEach((r, i) => {
      const key = JSON.stringify([r.run_id, r.language, r.size_category, r.provider, r.model_id, r.repository ?? '']);
      const first = seen.get(key);
      if (first === undefined) seen.set(key, i);
      else ctx.addIssue({ code: 'custom', path: ['results', i], message: `repeats results[${first}] (same run_id, language, size_category, provider, model_id and repository)` });
    });
  })
  .openapi('CalibrationResultBatch');

export type CalibrationResultInput = z.infer<typeof resultSchema>;

/**
 * Stores a validated batch in one statement (one array per column). A result a run already
 * reported is left as it is and counted as a duplicate, so a retried upload adds nothing.
 */
export async function insertResults(tx: Executor, results: CalibrationResultInput[]): Promise<{ inserted: number; duplicates: number }> {
  if (results.length > MAX_RESULTS) throw new ApiError(400, 'invalid_request', `At most ${MAX_RESULTS} results per request`);
  const col = <T>(f: (r: CalibrationResultInput) => T) => sql.param(results.map(f));
  const { rows } = await tx.execute<{ n: number }>(sql`
    WITH ins AS (
      INSERT INTO calibration_results (run_id, language, size_category, model_id, provider, repository, quality_score, latency_ms, cost_usd, tested_at)
      SELECT run_id, language, size_category, model_id, provider, repository, quality_score, latency_ms, cost_usd, coalesce(tested_at, now())
        FROM unnest(${col((r) => r.run_id)}::text[], ${col((r) => r.language)}::text[], ${col((r) => r.size_category)}::text[],
                    ${col((r) => r.model_id)}::text[], ${col((r) => r.provider)}::text[], ${col((r) => r.repository ?? '')}::text[],
                    ${col((r) => r.quality_score)}::float8[], ${col((r) => r.latency_ms)}::float8[], ${col((r) => r.cost_usd)}::float8[],
                    ${col((r) => r.tested_at ?? null)}::timestamptz[])
             AS u(run_id, language, size_category, model_id, provider, repository, quality_score, latency_ms, cost_usd, tested_at)
       -- In one order (any total order will do; bytewise is the cheap one): concurrent batches
       -- sharing results then take their index locks in the same order and cannot deadlock.
       ORDER BY run_id COLLATE "C", language COLLATE "C", size_category COLLATE "C", provider COLLATE "C", model_id COLLATE "C", repository COLLATE "C"
      ON CONFLICT (run_id, language, size_category, provider, model_id, repository) DO NOTHING
      RETURNING 1)
    SELECT count(*)::int AS n FROM ins`);
  const inserted = rows[0]?.n ?? 0;
  return { inserted, duplicates: results.length - inserted };
}
