import { MAX_BATCH, MAX_CONSENSUS_CHARS, type ConfidenceScoreInput } from './ingest.ts';
import { isStorableJson, isStorableText, MAX_INSTANT_MS } from '@caliber/platform';

// A batch of 10 000 scores spent most of its gateway time in zod (and in collecting the copies zod
// makes). This check accepts only what `scoreBatchSchema` certainly accepts — a subset, tested
// against zod on generated batches — and hands the parsed JSON through unchanged; anything it is
// unsure of (a missing field, an unusual timestamp, any error) goes to zod, which stays the
// authority and gives the precise issues.

const FIELDS = new Set([
  'request_id',
  'model',
  'factual_confidence',
  'reasoning_confidence',
  'contextual_relevance',
  'uncertainty_lower',
  'uncertainty_upper',
  'model_consensus',
  'created_at',
]);

const isName = (v: unknown) => typeof v === 'string' && v.length >= 1 && v.length <= 200 && isStorableText(v);
const isUnit = (v: unknown): v is number => typeof v === 'number' && v >= 0 && v <= 1;
const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

const digitsAt = (v: string, from: number, count: number): number => {
  let n = 0;
  for (let i = from; i < from + count; i++) {
    const d = v.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
};
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * `Date#toISOString`'s own form of a real instant, `YYYY-MM-DDTHH:MM:SS.sssZ` (what most clients
 * send), checked field by field: building Dates to compare was a tenth of a batch's gateway time.
 */
export function isCanonicalIso(v: string): boolean {
  if (v.length !== 24 || v[4] !== '-' || v[7] !== '-' || v[10] !== 'T' || v[13] !== ':' || v[16] !== ':' || v[19] !== '.' || v[23] !== 'Z') return false;
  const [year, month, day, hour, minute, second, ms] = [digitsAt(v, 0, 4), digitsAt(v, 5, 2), digitsAt(v, 8, 2), digitsAt(v, 11, 2), digitsAt(v, 14, 2), digitsAt(v, 17, 2), digitsAt(v, 20, 3)];
  if (year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59 || ms < 0) return false;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return day <= (month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!);
}

/** A model_consensus zod would take and store alike: a plain object, storable, within the size limit. */
function isAcceptableConsensus(v: unknown): boolean {
  // zod's record leaves a "__proto__" key out of its output; zod decides those.
  if (!isPlainObject(v) || Object.hasOwn(v, '__proto__')) return false;
  return JSON.stringify(v).length <= MAX_CONSENSUS_CHARS && isStorableJson(v);
}

function isCertainlyValidScore(s: unknown): boolean {
  if (!isPlainObject(s)) return false;
  for (const key in s) if (!FIELDS.has(key)) return false;
  if (!isName(s.request_id) || !isName(s.model)) return false;
  if (!isUnit(s.factual_confidence) || !isUnit(s.reasoning_confidence) || !isUnit(s.contextual_relevance)) return false;
  if (!isUnit(s.uncertainty_lower) || !isUnit(s.uncertainty_upper) || s.uncertainty_lower > s.uncertainty_upper) return false;
  const at = s.created_at;
  if (at !== undefined) {
    if (typeof at === 'number') {
      if (!Number.isInteger(at) || at < 0 || at > MAX_INSTANT_MS) return false;
    } else if (typeof at !== 'string' || !isCanonicalIso(at)) return false;
  }
  const consensus = s.model_consensus;
  return consensus === undefined || isAcceptableConsensus(consensus);
}

/** The batch as is when it is certainly valid; undefined means "ask zod". */
export function certainlyValidScoreBatch(body: unknown): { scores: ConfidenceScoreInput[] } | undefined {
  if (!isPlainObject(body)) return undefined;
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== 'scores') return undefined;
  const scores = body.scores;
  if (!Array.isArray(scores) || scores.length < 1 || scores.length > MAX_BATCH) return undefined;
  for (const s of scores) if (!isCertainlyValidScore(s)) return undefined;
  return body as { scores: ConfidenceScoreInput[] };
}
