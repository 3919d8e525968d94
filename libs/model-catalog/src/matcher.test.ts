import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadAliases } from './aliases.ts';
import { buildMatcherIndex, matchModel, normalizeModelId, signature, type AaEntry } from './matcher.ts';

// A few entries carry AA's display-name dates, as the real list does.
const NAMES: Record<string, string> = {
  'gpt-4o': "GPT-4o (Nov '24)",
  'gpt-4o-2024-08-06': "GPT-4o (Aug '24)",
  'claude-35-sonnet': "Claude 3.5 Sonnet (Oct '24)",
  'claude-35-sonnet-june-24': "Claude 3.5 Sonnet (June '24)",
  'deepseek-r1': "DeepSeek R1 (Jan '25)",
};
const entries: AaEntry[] = [
  'llama-3-1-instruct-8b', 'llama-3-1-instruct-70b', 'llama-3-1-instruct-405b', 'llama-3-3-instruct-70b', 'llama-3-2-instruct-90b-vision',
  'gpt-4o', 'gpt-4o-mini', 'gpt-4o-2024-08-06', 'o1', 'o1-mini', 'o3-mini', 'gpt-4', 'gpt-4-turbo',
  'deepseek-r1', 'deepseek-v3', 'deepseek-r1-distill-llama-70b',
  'gemini-1-5-pro', 'gemini-1-5-pro-may-2024', 'gemini-1-5-flash', 'gemini-1-5-flash-8b', 'gemini-2-0-flash', 'gemini-2-0-flash-experimental',
  'claude-35-sonnet', 'claude-35-sonnet-june-24', 'claude-3-5-haiku', 'claude-3-7-sonnet', 'claude-3-7-sonnet-thinking',
  'gemma-2-9b', 'gemma-2-27b', 'mixtral-8x7b-instruct', 'qwq-32b', 'qwen2-5-72b-instruct', 'llama-4-scout', 'llama-3-instruct-70b',
  'mistral-medium', 'mistral-medium-3', 'claude-3-opus',
].map((slug) => ({ slug, name: NAMES[slug] ?? slug }));
const index = buildMatcherIndex(entries, {});
const match = (provider: string, modelId: string, name?: string) => matchModel(index, { provider, modelId, name });

describe('normalisation', () => {
  it.each([
    ['openai/gpt-4o-mini', 'gpt-4o-mini'],
    ['models/gemini-1.5-pro-latest', 'gemini-1.5-pro-latest'],
    ['meta-llama/llama-3.1-405b-instruct:free', 'llama-3.1-405b-instruct'],
    ['accounts/fireworks/models/llama-v3p1-8b-instruct', 'llama-v3p1-8b-instruct'],
    ['anthropic/claude-3.7-sonnet:thinking', 'claude-3.7-sonnet-thinking'],
    ['Qwen/Qwen2.5-72B-Instruct-Turbo', 'qwen2.5-72b-instruct-turbo'],
  ])('%s → %s', (id, expected) => expect(normalizeModelId(id)).toBe(expected));

  it('reads versions written with dots or dashes alike, and dates apart', () => {
    expect(signature('llama-3.1-70b-instruct')).toMatchObject({ key: '70b llama v3.1', date: null });
    expect(signature('llama-3-1-instruct-70b').key).toBe('70b llama v3.1');
    expect(signature('claude-3-5-sonnet-20240620')).toMatchObject({ key: 'claude sonnet v3.5', date: '2406' });
    expect(signature('claude-35-sonnet-june-24')).toMatchObject({ date: '2406' });
    expect(signature('gpt-4o-2024-08-06')).toMatchObject({ key: 'gpt o v4', date: '2408' });
  });
});

describe('matching', () => {
  it.each([
    // sizes and versions must agree
    ['groq', 'llama-3.1-8b-instant', 'llama-3-1-instruct-8b'],
    ['groq', 'llama-3.3-70b-versatile', 'llama-3-3-instruct-70b'],
    ['together', 'meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo', 'llama-3-1-instruct-70b'],
    ['groq', 'llama-3.2-90b-vision-preview', 'llama-3-2-instruct-90b-vision'],
    ['openrouter', 'meta-llama/llama-3.1-405b-instruct:free', 'llama-3-1-instruct-405b'],
    // mini is not the base model; R1 is not V3; a distill is neither
    ['openai', 'gpt-4o-mini', 'gpt-4o-mini'],
    ['openai', 'gpt-4o', 'gpt-4o'],
    ['openai', 'o1-mini', 'o1-mini'],
    ['openrouter', 'deepseek/deepseek-r1', 'deepseek-r1'],
    ['together', 'deepseek-ai/DeepSeek-V3', 'deepseek-v3'],
    ['groq', 'deepseek-r1-distill-llama-70b', 'deepseek-r1-distill-llama-70b'],
    // Google: -latest, -exp, numbered and dated snapshots
    ['google', 'gemini-1.5-pro-latest', 'gemini-1-5-pro'],
    ['google', 'gemini-1.5-flash-8b', 'gemini-1-5-flash-8b'],
    ['google', 'gemini-2.0-flash-exp', 'gemini-2-0-flash-experimental'],
    ['google', 'gemini-2.0-flash-001', 'gemini-2-0-flash'],
    ['openrouter', 'google/gemini-flash-1.5', 'gemini-1-5-flash'],
    // dated snapshots go to the AA entry of that date, else to the family
    ['openai', 'gpt-4o-2024-08-06', 'gpt-4o-2024-08-06'],
    ['openai', 'gpt-4o-2024-11-20', 'gpt-4o'],
    ['anthropic', 'claude-3-5-sonnet-20240620', 'claude-35-sonnet-june-24'],
    ['anthropic', 'claude-3-5-sonnet-20241022', 'claude-35-sonnet'],
    ['openrouter', 'anthropic/claude-3.7-sonnet:thinking', 'claude-3-7-sonnet-thinking'],
    ['openai', 'gpt-4-turbo-2024-04-09', 'gpt-4-turbo'],
    ['groq', 'gemma2-9b-it', 'gemma-2-9b'],
    ['groq', 'mixtral-8x7b-32768', 'mixtral-8x7b-instruct'],
    ['groq', 'qwen-qwq-32b', 'qwq-32b'],
    ['groq', 'meta-llama/llama-4-scout-17b-16e-instruct', 'llama-4-scout'],
    // a context size is not a date
    ['groq', 'llama3-70b-8192', 'llama-3-instruct-70b'],
    // AA lists the model once with no date: the snapshot maps, with a lower score
    ['anthropic', 'claude-3-opus-20240229', 'claude-3-opus'],
  ])('%s %s → %s', (provider, id, slug) => {
    const d = match(provider, id);
    expect(d.slug, d.reason).toBe(slug);
    expect(d.reason.length).toBeGreaterThan(0);
  });

  it('scores a snapshot AA does not date below a dated match', () => {
    expect(match('anthropic', 'claude-3-opus-20240229')).toMatchObject({ method: 'snapshot_family', score: 0.8 });
    expect(matchModel(index, { provider: 'anthropic', modelId: 'claude-3-opus-20240229' }, 0.85).slug).toBeNull();
    expect(match('anthropic', 'claude-3-5-sonnet-20241022')).toMatchObject({ slug: 'claude-35-sonnet', method: 'loose_version' });
  });

  it.each([
    ['groq', 'llama-3.1-70b-specdec-8b', 'two sizes'],
    ['groq', 'llama-3.2-3b-preview', 'a size AA does not list'],
    ['openai', 'gpt-4.5-preview', 'a version AA does not list'],
    ['openai', 'text-embedding-3-small', 'not a chat model'],
    ['groq', 'whisper-large-v3', 'speech'],
    ['openrouter', 'meta-llama/llama-3.1-405b', 'a base model where AA benchmarks the instruct one'],
    ['google', 'gemma-2-2b-it', 'a size AA does not list'],
    ['openai', 'o1-pro', 'a variant AA does not list'],
    ['openai', 'o1-preview', 'preview names a different model outside Groq'],
    ['openai', 'gpt-4-1106-preview', 'GPT-4 Turbo preview, not GPT-4 (the alias table knows it)'],
    ['deepseek', 'deepseek-r1-0528', "a later snapshot than AA's (Jan '25) entry"],
    ['mistral', 'mistral-medium-2505', 'no version, and AA lists Medium and Medium 3'],
    ['google', 'gemini-1.5-pro-001', 'a numbered revision where AA lists several snapshots'],
    ['together', 'mistralai/Mixtral-8x7B-v0.1', 'a base model on a provider that says Instruct'],
  ])('%s %s → unmapped (%s)', (provider, id) => {
    const d = match(provider, id);
    expect(d.slug, d.reason).toBeNull();
  });

  it('never breaks a tie by picking one: two candidates and no date to choose means no match', () => {
    const tied = buildMatcherIndex([{ slug: 'foo-1-pro', name: 'Foo 1 Pro' }, { slug: 'foo-1-pro-2', name: 'Foo 1 Pro (v2)' }].concat([{ slug: 'foo-pro-1', name: 'x' }]), {});
    expect(matchModel(tied, { provider: 'x', modelId: 'foo-1-pro' }).slug).toBe('foo-1-pro'); // the exact slug wins
    const d = matchModel(tied, { provider: 'x', modelId: 'foo-pro-v1' });
    expect(d.slug, d.reason).toBeNull();
    expect(d.reason).toMatch(/ambiguous/);
  });

  it('takes the alias table first, including "never map"', () => {
    const withAliases = buildMatcherIndex(entries, { 'deepseek-chat': 'deepseek-v3', 'groq:gpt-4o': null });
    expect(matchModel(withAliases, { provider: 'deepseek', modelId: 'deepseek-chat' })).toMatchObject({ slug: 'deepseek-v3', method: 'alias' });
    expect(matchModel(withAliases, { provider: 'groq', modelId: 'gpt-4o' })).toMatchObject({ slug: null });
    expect(matchModel(withAliases, { provider: 'openai', modelId: 'gpt-4o' })).toMatchObject({ slug: 'gpt-4o', method: 'exact' });
  });
});

describe('the provider fixture (public model lists, real AA slugs)', () => {
  const dir = new URL('../../../test/fixtures/model-catalog/', import.meta.url);
  const aa = JSON.parse(readFileSync(new URL('aa-models.json', dir), 'utf8')).data as { slug: string; name: string }[];
  const rows = JSON.parse(readFileSync(new URL('working-version.json', dir), 'utf8')) as {
    inference_provider: string;
    model_id: string;
    human_readable_name: string | null;
    expected_aa_slug: string | null;
  }[];

  const score = (aliases: Record<string, string | null>) => {
    const idx = buildMatcherIndex(aa, aliases);
    let right = 0;
    let wrong = 0;
    let mappable = 0;
    const mistakes: string[] = [];
    for (const r of rows) {
      const d = matchModel(idx, { provider: r.inference_provider, modelId: r.model_id, name: r.human_readable_name });
      if (r.expected_aa_slug) mappable++;
      if (d.slug && d.slug === r.expected_aa_slug) right++;
      else if (d.slug) {
        wrong++;
        mistakes.push(`${r.model_id} → ${d.slug} (expected ${r.expected_aa_slug}): ${d.reason}`);
      }
    }
    return { precision: right / (right + wrong), coverage: right / mappable, right, wrong, mappable, mistakes };
  };

  it('maps with precision ≥ 0.98 and covers ≥ 0.90 of the mappable models', () => {
    expect(rows.length).toBeGreaterThanOrEqual(80);
    const rulesOnly = score({});
    const withAliases = score(loadAliases());
    console.log(
      `model matching on ${rows.length} provider rows (${withAliases.mappable} mappable, ${aa.length} AA entries): ` +
        `rules only precision ${rulesOnly.precision.toFixed(3)} coverage ${rulesOnly.coverage.toFixed(3)}; ` +
        `with the alias table precision ${withAliases.precision.toFixed(3)} coverage ${withAliases.coverage.toFixed(3)}`,
    );
    expect(withAliases.precision, withAliases.mistakes.join('\n')).toBeGreaterThanOrEqual(0.98);
    expect(withAliases.coverage).toBeGreaterThanOrEqual(0.9);
    // The rules alone must be just as careful: aliases add coverage, never correctness.
    expect(rulesOnly.mistakes).toEqual([]);
    expect(withAliases.mistakes).toEqual([]);
  });
});
