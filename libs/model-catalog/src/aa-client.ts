import { readFile } from 'node:fs/promises';
import { delay, summarizeIssues, type Logger } from '@caliber/platform';
import { z } from 'zod';
import type { ModelCatalogConfig } from './config.ts';

/** A number AA measured, or null: AA sends null (or leaves the field out) for "not measured". */
const measured = z.number().nullable().optional().transform((v) => v ?? null);

/** One model of AA's `/data/llms/models`; fields this code does not use are kept in `evaluations`/`pricing`. */
export const aaModelSchema = z.object({
  id: z.string().min(1),
  name: z.string().min(1),
  slug: z.string().min(1),
  model_creator: z.object({ id: z.string().optional(), name: z.string().nullable().optional(), slug: z.string().nullable().optional() }).nullable().optional(),
  evaluations: z
    .object({
      artificial_analysis_intelligence_index: measured,
      artificial_analysis_coding_index: measured,
      artificial_analysis_math_index: measured,
    })
    .catchall(z.unknown())
    .nullable()
    .optional(),
  pricing: z.record(z.string(), z.unknown()).nullable().optional(),
  median_output_tokens_per_second: measured,
  median_time_to_first_token_seconds: measured,
});

export const aaResponseSchema = z.object({ status: z.number().optional(), data: z.array(z.unknown()) });

export type AaModel = z.infer<typeof aaModelSchema>;

/** A failure retrying will not fix (a rejected key, a malformed answer): the job fails at once. */
export class AaPermanentError extends Error {
  override name = 'AaPermanentError';
}

export interface LoadedAaModels {
  models: AaModel[];
  /** Entries left out because they did not have the expected shape, with why. */
  skipped: { index: number; problem: string }[];
  source: 'api' | 'file';
}

/** Parses an AA response body; malformed entries are skipped (and reported), not fatal. */
export function parseAaResponse(body: unknown): Omit<LoadedAaModels, 'source'> {
  const envelope = aaResponseSchema.safeParse(body);
  if (!envelope.success) throw new AaPermanentError(`Artificial Analysis answered an unexpected shape: ${summarizeIssues(envelope.error.issues)}`);
  const models: AaModel[] = [];
  const skipped: LoadedAaModels['skipped'] = [];
  envelope.data.data.forEach((entry, index) => {
    const parsed = aaModelSchema.safeParse(entry);
    if (parsed.success) models.push(parsed.data);
    else skipped.push({ index, problem: summarizeIssues(parsed.error.issues) });
  });
  return { models, skipped };
}

/** Seconds or an HTTP date, as `Retry-After` may say; undefined when absent or unreadable. */
function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/**
 * Loads AA's models from AA_METRICS_FILE when set, else from the API with `x-api-key`. 429 and 5xx
 * answers and network errors are retried with exponential backoff (a 429's Retry-After is
 * honoured, capped at a minute); 401/403 fail at once with a message naming the setting.
 */
export async function loadAaModels(
  config: Pick<ModelCatalogConfig, 'AA_API_URL' | 'AA_API_KEY' | 'AA_METRICS_FILE' | 'AA_TIMEOUT_MS' | 'AA_MAX_ATTEMPTS' | 'AA_RETRY_BASE_MS'>,
  log: Logger,
): Promise<LoadedAaModels> {
  if (config.AA_METRICS_FILE) {
    let text: string;
    try {
      text = await readFile(config.AA_METRICS_FILE, 'utf8');
    } catch (err) {
      throw new AaPermanentError(`Cannot read AA_METRICS_FILE ${config.AA_METRICS_FILE}: ${(err as Error).message}`);
    }
    try {
      return { ...parseAaResponse(JSON.parse(text)), source: 'file' };
    } catch (err) {
      if (err instanceof AaPermanentError) throw err;
      throw new AaPermanentError(`AA_METRICS_FILE ${config.AA_METRICS_FILE} is not JSON: ${(err as Error).message}`);
    }
  }
  if (!config.AA_API_KEY) throw new AaPermanentError('Set AA_API_KEY (Artificial Analysis API key) or AA_METRICS_FILE to load benchmark data');

  let lastProblem = '';
  for (let attempt = 1; attempt <= config.AA_MAX_ATTEMPTS; attempt++) {
    let wait = config.AA_RETRY_BASE_MS * 2 ** (attempt - 1);
    try {
      const res = await fetch(config.AA_API_URL, {
        headers: { 'x-api-key': config.AA_API_KEY, accept: 'application/json' },
        signal: AbortSignal.timeout(config.AA_TIMEOUT_MS),
      });
      if (res.status === 401 || res.status === 403) {
        throw new AaPermanentError(`Artificial Analysis refused the API key (HTTP ${res.status}); check AA_API_KEY`);
      }
      if (res.ok) return { ...parseAaResponse(await res.json()), source: 'api' };
      lastProblem = `HTTP ${res.status}`;
      if (res.status === 429) wait = Math.min(retryAfterMs(res.headers.get('retry-after')) ?? wait, 60_000);
      else if (res.status < 500) throw new AaPermanentError(`Artificial Analysis answered HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
      await res.body?.cancel().catch(() => {});
    } catch (err) {
      if (err instanceof AaPermanentError) throw err;
      lastProblem = (err as Error).name === 'TimeoutError' ? `no answer within ${config.AA_TIMEOUT_MS} ms` : (err as Error).message;
    }
    if (attempt < config.AA_MAX_ATTEMPTS) {
      log.warn({ attempt, problem: lastProblem, retryInMs: wait }, 'Artificial Analysis request failed; retrying');
      await delay(wait);
    }
  }
  throw new Error(`Artificial Analysis did not answer after ${config.AA_MAX_ATTEMPTS} attempts (last: ${lastProblem})`);
}
