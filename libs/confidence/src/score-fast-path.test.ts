import { describe, expect, it } from 'vitest';
import { rng } from '../../../test/fixtures.ts';
import { scoreBatchSchema } from './ingest.ts';
import { certainlyValidScoreBatch, isCanonicalIso } from './score-fast-path.ts';

const valid = (i: number) => ({
  request_id: `r-${i}`,
  model: 'gpt-4o',
  factual_confidence: 0.5,
  reasoning_confidence: 0.25,
  contextual_relevance: 1,
  uncertainty_lower: 0,
  uncertainty_upper: 0.75,
  model_consensus: { 'gpt-4o': 0.9, claude: 'agree', abstained: null, voted: true },
  created_at: '2026-11-30T10:15:00.123Z',
});

// Each turns a valid score into something that may or may not be valid; zod decides.
const MUTATIONS: ((s: Record<string, unknown>, r: () => number) => void)[] = [
  (s) => (s.factual_confidence = 1.2),
  (s) => (s.reasoning_confidence = -0.0001),
  (s) => (s.contextual_relevance = '0.5'),
  (s) => (s.uncertainty_lower = 0.9),
  (s) => delete s.model,
  (s) => (s.request_id = ''),
  (s) => (s.request_id = 'x'.repeat(201)),
  (s) => (s.request_id = 'nul\u0000'),
  (s) => (s.model = 7),
  (s) => (s.extra = 1),
  (s) => (s.tenant_id = 'b'),
  (s) => (s.created_at = '2026-02-29T00:00:00.000Z'),
  (s) => (s.created_at = '2024-02-29T00:00:00.000Z'),
  (s) => (s.created_at = '2026-04-31T00:00:00.000Z'),
  (s) => (s.created_at = '2026-11-30T24:00:00.000Z'),
  (s) => (s.created_at = '2026-11-30T10:15:60.000Z'),
  (s) => (s.created_at = '0000-01-01T00:00:00.000Z'),
  (s) => (s.created_at = '2026-11-30T10:15:00Z'),
  (s) => (s.created_at = '2026-11-30T10:15:00.123+01:00'),
  (s) => (s.created_at = '2026-11-30 10:15:00.123Z'),
  (s) => (s.created_at = 1_764_496_500_000),
  (s) => (s.created_at = 1.5),
  (s) => (s.created_at = -1),
  (s) => (s.created_at = 9e15),
  (s) => delete s.created_at,
  (s) => delete s.model_consensus,
  (s) => (s.model_consensus = []),
  (s) => (s.model_consensus = null),
  (s) => (s.model_consensus = { nested: { deep: 1 } }),
  (s) => (s.model_consensus = { bad: 'nul\u0000' }),
  (s) => (s.model_consensus = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`m${i}`, i]))),
  (s) => (s.model_consensus = { big: 'y'.repeat(10_001) }),
  (s, r) => (s.uncertainty_upper = Math.round(r() * 1e4) / 1e4),
  (s) => (s.request_id = 'lone\ud800'),
  (s) => (s.model = 'pair\ud83d\ude00'),
  (s) => (s.model_consensus = { ['k\udfff']: 1 }),
  (s) => (s.model_consensus = { a: '\\u0000 is six characters' }),
  (s) => (s.model_consensus = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`m${i}`, '\u0001'.repeat(150)]))),
  (s) => (s.model_consensus = JSON.parse('{"__proto__": 1, "a": 2}')),
  (s) => (s.created_at = 253_402_300_799_999),
  (s) => (s.created_at = 253_402_300_800_000),
  (s) => (s.created_at = '9999-12-31T23:59:59.999Z'),
];

describe('the score fast path', () => {
  it('accepts a plain valid batch without zod, returning it unchanged', () => {
    const body = { scores: [valid(1), valid(2)] };
    expect(certainlyValidScoreBatch(body)).toBe(body);
    expect(scoreBatchSchema.safeParse(body).success).toBe(true);
  });

  it('never accepts what zod refuses, and hands zod the same value it would have produced', () => {
    const random = rng(11);
    let fast = 0;
    let refused = 0;
    for (let n = 0; n < 3_000; n++) {
      const scores = Array.from({ length: 1 + Math.floor(random() * 3) }, (_, i) => {
        const s: Record<string, unknown> = structuredClone(valid(n * 10 + i));
        for (let m = Math.floor(random() * 3); m > 0; m--) MUTATIONS[Math.floor(random() * MUTATIONS.length)]!(s, random);
        return s;
      });
      const body = { scores };
      const zod = scoreBatchSchema.safeParse(body);
      if (!zod.success) refused++;
      if (certainlyValidScoreBatch(body)) {
        fast++;
        expect(zod.success, JSON.stringify(body)).toBe(true);
        expect(body).toEqual(zod.data);
      }
    }
    // Both sides were exercised.
    expect(fast).toBeGreaterThan(300);
    expect(refused).toBeGreaterThan(300);
  });

  it('defers whole-batch problems to zod', () => {
    expect(certainlyValidScoreBatch({ scores: [] })).toBeUndefined();
    expect(certainlyValidScoreBatch({ scores: [valid(1)], extra: true })).toBeUndefined();
    expect(certainlyValidScoreBatch([valid(1)])).toBeUndefined();
    expect(certainlyValidScoreBatch({ scores: Array.from({ length: 10_001 }, (_, i) => valid(i)) })).toBeUndefined();
  });

  it('reads only real instants in toISOString form', () => {
    for (const [v, ok] of [
      ['2026-11-30T10:15:00.123Z', true],
      ['2024-02-29T23:59:59.999Z', true],
      ['2100-02-29T00:00:00.000Z', false],
      ['2000-02-29T00:00:00.000Z', true],
      ['2026-13-01T00:00:00.000Z', false],
      ['2026-11-30T10:15:00.12Z', false],
      ['2026-11-30T10:15:00.1234', false],
    ] as const) {
      expect([v, isCanonicalIso(v)]).toEqual([v, ok]);
    }
  });
});
