// What Postgres can store exactly as sent. Checked by the zod schemas and the score fast path
// alike; a value failing here would otherwise be a 500 from the database, or be stored changed.

/** No NUL (text and jsonb cannot hold it) and no unpaired surrogate (stored as U+FFFD, or refused by jsonb). */
export function isStorableText(s: string): boolean {
  // String#isWellFormed is in Node 20+, not yet in the TypeScript lib this repo targets.
  return !s.includes('\u0000') && (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** Postgres timestamps run from 4713 BC to 294276 AD, but ISO-8601 text only from year 0001 to 9999. */
export const MIN_INSTANT_MS = -62_135_596_800_000; // 0001-01-01T00:00:00Z
export const MAX_INSTANT_MS = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

export function isStorableInstant(value: string | number): boolean {
  const ms = typeof value === 'number' ? value : Date.parse(value);
  return Number.isFinite(ms) && ms >= MIN_INSTANT_MS && ms <= MAX_INSTANT_MS;
}

/** Whether every key and string inside a JSON value is storable text (depth-limited walk). */
export function isStorableJson(value: unknown, depth = 0): boolean {
  if (typeof value === 'string') return isStorableText(value);
  if (value === null || typeof value !== 'object') return true;
  if (depth > 32) return false;
  if (Array.isArray(value)) return value.every((v) => isStorableJson(v, depth + 1));
  for (const key of Object.keys(value)) {
    if (!isStorableText(key) || !isStorableJson((value as Record<string, unknown>)[key], depth + 1)) return false;
  }
  return true;
}
