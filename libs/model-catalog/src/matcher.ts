/**
 * Maps an inference provider's model id to an Artificial Analysis (AA) entry, or to nothing.
 * A wrong match is worse than none: names are reduced to the tokens that tell models apart
 * (family words, version, parameter count, variant words like "mini" or "flash"), and a provider
 * model maps only to an AA entry whose tokens are the same set. Dated snapshots go to the AA entry
 * of the same date, else to the family's undated entry. What rules cannot decide is in the alias
 * table (data). Every decision carries its reason.
 */

export interface AaEntry {
  slug: string;
  name: string;
  creator?: string | null;
}

export interface ProviderModel {
  provider: string;
  modelId: string;
  name?: string | null;
}

export type MatchMethod = 'manual' | 'alias' | 'exact' | 'normalized' | 'name' | 'loose_version' | 'snapshot_family';

export interface MatchDecision {
  slug: string | null;
  method: MatchMethod | null;
  score: number;
  reason: string;
}

/** Alias table: a provider model id (any provider, or `provider:id`) → AA slug, or null for "never map". */
export type AliasTable = Record<string, string | null>;

/** Scores per method; a match below the threshold is left unmapped. */
export const METHOD_SCORES: Record<Exclude<MatchMethod, 'manual'>, number> = {
  alias: 1,
  exact: 1,
  normalized: 0.9,
  name: 0.85,
  loose_version: 0.8,
  snapshot_family: 0.8,
};

/**
 * Words that say how a model is served or packaged, not which model it is: dropped before
 * comparing. Deliberately short; anything not here (mini, flash, lite, vision, coder, …) counts.
 */
const NEUTRAL = new Set([
  'instruct', 'chat', 'it', 'hf', 'latest', 'versatile', 'instant', 'fp8', 'fp16', 'bf16', 'awq', 'int4', 'int8',
  'gguf', 'meta', 'model', 'models', 'the', 'v', 'api', 'serverless',
]);

/** Words that say the model was tuned to follow instructions (AA benchmarks those, not base models). */
const INSTRUCT = new Set(['instruct', 'chat', 'it']);

/**
 * Words a provider adds that AA leaves out, tried only when the full token set matches nothing:
 * Groq's "-preview"/"-specdec", Mistral's "open-" prefix, vendor words before a family name.
 */
const SOFT = new Set(['open', 'qwen', 'mistralai']);

/** Provider-only words of one provider: Groq marks models it is still trialling "-preview". */
const PROVIDER_SOFT: Record<string, Set<string>> = {
  groq: new Set(['preview', 'specdec']),
};

/** OpenRouter routing suffixes (`:free`); other suffixes (`:thinking`) name a variant and stay. */
const ROUTING_SUFFIXES = /:(free|beta|extended|nitro|floor|online)$/;

/** Words one provider adds to every id: Together's "-Turbo" (its serving stack) and "-Free". */
const PROVIDER_NEUTRAL: Record<string, Set<string>> = {
  together: new Set(['turbo', 'free']),
};

/** Words a provider writes but AA spells otherwise. */
const SYNONYMS: Record<string, string> = { exp: 'experimental', reasoning: 'thinking' };

const MONTHS: Record<string, string> = {
  jan: '01', january: '01', feb: '02', february: '02', mar: '03', march: '03', apr: '04', april: '04', may: '05', jun: '06', june: '06',
  jul: '07', july: '07', aug: '08', august: '08', sep: '09', sept: '09', september: '09', oct: '10', october: '10', nov: '11',
  november: '11', dec: '12', december: '12',
};

export interface Signature {
  /** Sorted significant tokens: words, `v<version>`, `<n>b` sizes. */
  key: string;
  /** A snapshot date in a comparable form, if the name has one. */
  date: string | null;
  /** The key with versions written without dots ("v3.5" → "v35"), for AA's "claude-35-sonnet". */
  looseKey: string;
  /** The key without provider-only words (SOFT) and packaging revisions ("v0.1", "16e", context sizes). */
  softKey: string;
  /** Says "instruct"/"chat"/"it". */
  instruct: boolean;
  /** Carries a revision number (Google's -001/-002): one particular snapshot, date unknown. */
  revision: boolean;
}

/** Lower-cased, provider prefixes and `:suffix` removed, separators unified. */
export function normalizeModelId(id: string): string {
  let s = id.trim().toLowerCase();
  s = s.replace(ROUTING_SUFFIXES, '').replace(/:/g, '-');
  s = s.slice(s.lastIndexOf('/') + 1); // "openai/", "meta-llama/", "models/", "accounts/fireworks/models/"
  s = s.replace(/\([^)]*\)/g, ' '); // AA names: "GPT-4o (Nov '24)" — the date is read separately
  s = s.replace(/[_\s.,]+(?=[a-z])/g, '-').replace(/[_\s,]+/g, '-');
  return s.replace(/-+/g, '-').replace(/^-|-$/g, '');
}

/** Splits "qwen2" → qwen 2, "4o" → 4 o, "o1" → o 1, keeping sizes ("70b", "8x7b") and versions ("3.1") whole. */
function splitToken(token: string): string[] {
  if (/^\d+(\.\d+)?[bmk]$/.test(token) || /^\d+x\d+(\.\d+)?b$/.test(token) || /^\d+(\.\d+)+$/.test(token) || /^\d+e$/.test(token)) return [token];
  if (/^(fp|bf|int)\d+$/.test(token)) return [token]; // a number format (fp8, bf16, int4), not a version
  return token.match(/[a-z]+|\d+(?:\.\d+)*/g) ?? [];
}

/** Reads a date out of the text around a name ("(Nov '24)", "(Mar' 25)"), for AA names: YYMM. */
function dateInParentheses(text: string): string | null {
  const m = /\(\s*([a-z]+)\s*'?\s*(\d{2})\s*\)/i.exec(text);
  const month = m ? MONTHS[m[1]!.toLowerCase()] : undefined;
  return month ? `${m![2]}${month}` : null;
}

/**
 * A date's comparable form: YYMM when year and month are known (20240620, 2024-06-20, 08-2024,
 * june-24, dec-2024 all read as YYMM); otherwise its digits as written (Google's 03-25).
 */
function canonicalDate(parts: string[]): string {
  const joined = parts.join('');
  if (/^20\d{6}$/.test(joined)) return joined.slice(2, 6); // YYYYMMDD
  if (/^(0[1-9]|1[0-2])20\d{2}$/.test(joined)) return joined.slice(4, 6) + joined.slice(0, 2); // MM-YYYY
  return joined;
}

/** A 4-digit token is a date only if it reads as YYMM (2022–2029) or MMDD; 8192 or 4096 is a context size. */
function isFourDigitDate(t: string): boolean {
  const a = Number(t.slice(0, 2));
  const b = Number(t.slice(2));
  return (a >= 22 && a <= 29 && b >= 1 && b <= 12) || (a >= 1 && a <= 12 && b >= 1 && b <= 31);
}

/**
 * The comparable form of a name: significant tokens, versions ("3.1", also when written "3-1"),
 * sizes, and a snapshot date apart from them.
 */
export function signature(text: string, provider?: string): Signature {
  const providerNeutral = PROVIDER_NEUTRAL[provider?.toLowerCase() ?? ''];
  const providerSoft = PROVIDER_SOFT[provider?.toLowerCase() ?? ''];
  const parenDate = dateInParentheses(text);
  const s = normalizeModelId(text);
  const raw = s
    .split(/[-\s]+/)
    .flatMap(splitToken)
    .filter(Boolean)
    .map((t) => SYNONYMS[t] ?? t);

  const words: string[] = [];
  const soft: string[] = [];
  const dateParts: string[] = [];
  let monthDate: string | null = null;
  let instruct = false;
  let revision = false;
  for (let i = 0; i < raw.length; i++) {
    const t = raw[i]!;
    const next = raw[i + 1] ?? '';
    const month = MONTHS[t];
    if (month && /^\d{2}(\d{2})?$/.test(next)) {
      monthDate = `${next.slice(-2)}${month}`; // june-24, dec-2024 → YYMM
      i++;
    } else if (/^0\d\d$/.test(t)) {
      revision = true; // Google's -001/-002: a particular snapshot, not a date, not another model
    } else if (/^20\d{6}$/.test(t) || (/^\d{4}$/.test(t) && (isFourDigitDate(t) || /^20\d\d$/.test(t))) || /^0\d$/.test(t) || (dateParts.length > 0 && /^\d{2}$/.test(t))) {
      dateParts.push(t); // 20241022, 2407, 0613, "03"-"25", "2024"-"08"-"06", "08"-"2024"
    } else if (/^\d{4,}$/.test(t) || /^\d+e$/.test(t)) {
      soft.push(t); // a context length (8192, 32768) or an expert count (16e)
    } else if (/^\d{1,2}$/.test(t) && /^\d$/.test(next)) {
      words.push(`v${t}.${next}`); // "3" "1" → 3.1 (AA writes versions with dashes)
      i++;
    } else if (/^0\.\d+$/.test(t)) {
      soft.push(`v${t}`); // a packaging revision: Mixtral-8x7B-Instruct-v0.1
    } else if (/^\d+(\.\d+)*$/.test(t)) {
      words.push(`v${t}`);
    } else if (INSTRUCT.has(t)) {
      instruct = true;
    } else if (t === 'e' && /^\d+$/.test(raw[i - 1] ?? '')) {
      soft.push(t);
    } else if (!NEUTRAL.has(t) && !providerNeutral?.has(t)) {
      (SOFT.has(t) || providerSoft?.has(t) ? soft : words).push(t);
    }
  }
  const key = [...new Set([...words, ...soft])].sort().join(' ');
  const softKey = [...new Set(words)].sort().join(' ');
  const date = dateParts.length > 0 ? canonicalDate(dateParts) : (monthDate ?? parenDate);
  return { key, date, looseKey: key.replace(/\bv(\d+)\.(\d+)\b/g, 'v$1$2'), softKey, instruct, revision };
}

/** An AA entry under one key: the date its slug carries, and the date its display name gives ("(Nov '24)"). */
type Candidate = { entry: AaEntry; date: string | null; nameDate: string | null; instruct: boolean };

export interface MatcherIndex {
  bySlug: Map<string, AaEntry>;
  /** Signature key → AA entries with it (dated and undated snapshots of one model share a key). */
  byKey: Map<string, Candidate[]>;
  byLooseKey: Map<string, Candidate[]>;
  byNameKey: Map<string, Candidate[]>;
  /** A key less one version token → the AA slugs that have it with that version ("mistral large" → mistral-large-2). */
  versioned: Map<string, string[]>;
  /** Keys AA lists at some size once the size is removed ("llama v3.1" from "70b llama v3.1"). */
  sized: Set<string>;
  aliases: Map<string, string | null>;
}

const SIZE = /^\d+(\.\d+)?[bm]$|^\d+x\d+b$/;

function push<K, V>(map: Map<K, V[]>, key: K, value: V) {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

export function buildMatcherIndex(entries: AaEntry[], aliases: AliasTable = {}): MatcherIndex {
  const index: MatcherIndex = {
    bySlug: new Map(),
    byKey: new Map(),
    byLooseKey: new Map(),
    byNameKey: new Map(),
    versioned: new Map(),
    sized: new Set(),
    aliases: new Map(),
  };
  for (const entry of entries) {
    index.bySlug.set(entry.slug.toLowerCase(), entry);
    const sig = signature(entry.slug);
    const byName = signature(entry.name);
    const candidate: Candidate = { entry, date: sig.date, nameDate: byName.date, instruct: sig.instruct };
    push(index.byKey, sig.key, candidate);
    push(index.byLooseKey, sig.looseKey, candidate);
    push(index.byNameKey, byName.key, candidate);
    const words = sig.key.split(' ');
    for (const w of words) {
      const rest = words.filter((x) => x !== w).join(' ');
      if (/^v\d/.test(w)) push(index.versioned, rest, entry.slug);
      if (SIZE.test(w)) index.sized.add(rest);
    }
  }
  for (const [from, to] of Object.entries(aliases)) index.aliases.set(from.toLowerCase(), to);
  return index;
}

/**
 * Picks among AA entries sharing a signature: the one with the provider's snapshot date, else the
 * undated one (the family's entry). Two candidates left is a tie nobody can break: no match.
 */
function pickSnapshot(candidates: Candidate[], date: string | null, revision = false): { entry?: AaEntry; why: string; familyOnly?: boolean } {
  const unique = [...new Map(candidates.map((c) => [c.entry.slug, c])).values()];
  if (revision && !date && unique.length > 1) return { why: `a numbered revision, and AA lists several snapshots (${unique.map((c) => c.entry.slug).join(', ')})` };
  if (date) {
    // A snapshot maps to the AA entry of that date (in its slug or its name): AA benchmarks
    // snapshots separately, and a later snapshot is often a different model (R1-0528, Medium 3).
    const same = unique.filter((c) => c.date === date || c.nameDate === date);
    if (same.length === 1) return { entry: same[0]!.entry, why: `snapshot ${date}` };
    // AA lists the model once and says nothing of its date: most likely the same model, but not
    // known, so it maps with a lower score (MAPPING_MIN_SCORE above 0.8 refuses these).
    const only = unique.length === 1 ? unique[0]! : undefined;
    if (only && only.date === null && only.nameDate === null) return { entry: only.entry, why: `snapshot ${date}; AA lists the model once, undated`, familyOnly: true };
    return { why: `snapshot ${date} is not among AA's entries (${unique.map((c) => c.entry.slug + (c.nameDate ? ` ${c.nameDate}` : '')).join(', ')})` };
  }
  // No date: the model's current version, which AA lists under the slug without a date.
  const undated = unique.filter((c) => c.date === null);
  if (undated.length === 1) return { entry: undated[0]!.entry, why: unique.length > 1 ? 'the undated slug (current version)' : 'only entry' };
  return { why: `ambiguous between ${unique.map((c) => c.entry.slug).join(', ')}` };
}

export function matchModel(index: MatcherIndex, model: ProviderModel, minScore = 0.75): MatchDecision {
  const id = model.modelId.trim().toLowerCase();
  const bare = normalizeModelId(model.modelId);
  for (const key of [`${model.provider.toLowerCase()}:${id}`, id, bare]) {
    if (index.aliases.has(key)) {
      const slug = index.aliases.get(key) ?? null;
      if (slug === null) return { slug: null, method: null, score: 0, reason: `alias table: "${key}" is never mapped` };
      if (!index.bySlug.has(slug)) return { slug: null, method: null, score: 0, reason: `alias table names "${slug}", which AA does not list` };
      return decide(slug, 'alias', `alias table: "${key}"`, minScore);
    }
  }
  const sig = signature(model.modelId, model.provider);
  // Providers that list base and instruct models side by side say "instruct" when it is one.
  const baseModel = EXPLICIT_INSTRUCT_PROVIDERS.has(model.provider.toLowerCase()) && !sig.instruct;
  const exact = index.bySlug.get(bare);
  if (exact) {
    if (baseModel && signature(exact.slug).instruct) return { slug: null, method: null, score: 0, reason: `"${model.modelId}" is a base model; AA benchmarks the instruct one` };
    return decide(exact.slug, 'exact', `"${bare}" is an AA slug`, minScore);
  }

  const tokenAlias = index.aliases.get(`tokens:${sig.key}`) ?? index.aliases.get(`tokens:${sig.softKey}`);
  if (tokenAlias && index.bySlug.has(tokenAlias)) return decide(tokenAlias, 'alias', `alias table: tokens [${sig.key}]`, minScore);
  if (!sig.key) return { slug: null, method: null, score: 0, reason: 'no identifying tokens' };
  const attempt = (key: string, candidates: Candidate[] | undefined, date: string | null, method: Exclude<MatchMethod, 'manual'>, what: string): MatchDecision | undefined => {
    if (!candidates) return undefined;
    const usable = baseModel ? candidates.filter((c) => !c.instruct) : candidates;
    if (usable.length === 0) return { slug: null, method: null, score: 0, reason: `${what}, but AA benchmarks the instruct model and "${model.modelId}" is a base model` };
    const versions = versionSiblings(index, key);
    if (versions.length > 0) return { slug: null, method: null, score: 0, reason: `[${sig.key}] names no version, and AA lists ${versions.join(', ')}` };
    const pick = pickSnapshot(usable, date, sig.revision);
    if (pick.entry) return decide(pick.entry.slug, pick.familyOnly ? 'snapshot_family' : method, `${what} [${sig.key}] equal; ${pick.why}`, minScore);
    return { slug: null, method: null, score: 0, reason: `${what} [${sig.key}]: ${pick.why}` };
  };
  return (
    attempt(sig.key, index.byKey.get(sig.key), sig.date, 'normalized', 'tokens') ??
    attempt(sig.key, index.byLooseKey.get(sig.looseKey), sig.date, 'loose_version', 'tokens (versions without dots)') ??
    (sig.softKey !== sig.key ? attempt(sig.softKey, index.byKey.get(sig.softKey), sig.date, 'normalized', 'tokens without provider-only words') : undefined) ??
    attemptWithoutSize(index, sig, attempt) ??
    matchByName(index, model, sig, baseModel, minScore) ?? { slug: null, method: null, score: 0, reason: `no AA entry has tokens [${sig.key}]` }
  );
}

/**
 * A provider may state a parameter count AA leaves out of the name ("llama-4-scout-17b-16e" vs
 * "llama-4-scout"). Dropping it is safe only when AA lists that family at no size at all.
 */
function attemptWithoutSize(
  index: MatcherIndex,
  sig: Signature,
  attempt: (key: string, c: Candidate[] | undefined, date: string | null, method: Exclude<MatchMethod, 'manual'>, what: string) => MatchDecision | undefined,
): MatchDecision | undefined {
  const words = sig.softKey.split(' ');
  const sizes = words.filter((w) => SIZE.test(w));
  if (sizes.length === 0) return undefined;
  const rest = words.filter((w) => !sizes.includes(w)).join(' ');
  if (index.sized.has(rest)) return undefined;
  return attempt(rest, index.byKey.get(rest), sig.date, 'normalized', `tokens without the size ${sizes.join(' ')}`);
}

/** Providers whose ids say "instruct"/"chat"/"it" for tuned models (and list base models beside them). */
const EXPLICIT_INSTRUCT_PROVIDERS = new Set(['openrouter', 'together', 'fireworks', 'deepinfra', 'huggingface', 'replicate']);

/**
 * When a provider id names no version ("mistral-large-latest") but AA lists the family under
 * several versions ("mistral-large-2"), the id does not say which one it is.
 */
function versionSiblings(index: MatcherIndex, key: string): string[] {
  if (/\bv\d/.test(key)) return [];
  return index.versioned.get(key) ?? [];
}

function matchByName(index: MatcherIndex, model: ProviderModel, sig: Signature, baseModel: boolean, minScore: number): MatchDecision | undefined {
  if (!model.name) return undefined;
  const byName = signature(model.name.replace(/^[^:]{1,40}:\s*/, ''), model.provider);
  const found = byName.key ? index.byNameKey.get(byName.key) ?? index.byKey.get(byName.key) : undefined;
  const named = found && (baseModel && !byName.instruct ? found.filter((c) => !c.instruct) : found);
  if (!named || named.length === 0) return undefined;
  const pick = pickSnapshot(named, byName.date ?? sig.date, sig.revision || byName.revision);
  if (!pick.entry) return undefined;
  return decide(pick.entry.slug, pick.familyOnly ? 'snapshot_family' : 'name', `display name tokens [${byName.key}] equal; ${pick.why}`, minScore);
}

function decide(slug: string, method: Exclude<MatchMethod, 'manual'>, reason: string, minScore: number): MatchDecision {
  const score = METHOD_SCORES[method];
  if (score < minScore) return { slug: null, method: null, score, reason: `${reason}; score ${score} below ${minScore}` };
  return { slug, method, score, reason };
}
