import { describe, expect, it } from 'vitest';
import { decideFineTune, type FineTunePolicy, type FineTuneStats } from './criteria.ts';

const policy: FineTunePolicy = {
  FINE_TUNE_MIN_CORRECTIONS: 50,
  FINE_TUNE_MIN_EXAMPLES: 10,
  FINE_TUNE_MIN_ERROR_RATE: 0.1,
  FINE_TUNE_WINDOW_DAYS: 30,
  FINE_TUNE_COOLDOWN_HOURS: 168,
  FINE_TUNE_CREDIT_COST: 100,
};
const now = new Date('2026-12-01T12:00:00Z');
const ready: FineTuneStats = {
  model_id: 'mistral-small',
  examples: 64,
  new_corrections: 64,
  feedback: 400,
  negative_feedback: 92,
  error_rate: 0.23,
  window_days: 30,
  last_job: null,
  active_job: null,
  cooldown_ends_at: null,
  account_id: 'acme',
  balance: 500,
  credit_cost: 100,
};

describe('decideFineTune', () => {
  it('says yes when every criterion holds, with every reason', () => {
    const d = decideFineTune(ready, policy, now);
    expect(d.should_fine_tune).toBe(true);
    expect(d.criteria.map((c) => [c.name, c.passed])).toEqual([
      ['corrections', true],
      ['dataset', true],
      ['error_rate', true],
      ['cooldown', true],
      ['credits', true],
    ]);
    expect(d.reasons).toEqual([
      '64 corrected problematic responses since the last successful fine-tune (50 needed)',
      '64 examples after removing duplicates (10 needed)',
      '23% of 400 feedback in the last 30 days is negative (10% needed)',
      'no earlier job',
      'account "acme" has 500 credits (100 needed)',
    ]);
  });

  it.each<[string, Partial<FineTuneStats>, string, string]>([
    ['too few new corrections', { new_corrections: 49 }, 'corrections', '49 corrected problematic responses since the last successful fine-tune (50 needed)'],
    ['too few examples after dedup', { examples: 9 }, 'dataset', '9 examples after removing duplicates (10 needed)'],
    ['error rate below the threshold', { error_rate: 0.0999, feedback: 1000 }, 'error_rate', '10% of 1000 feedback in the last 30 days is negative (10% needed)'],
    ['no feedback at all', { error_rate: null, feedback: 0 }, 'error_rate', 'no feedback in the last 30 days'],
    ['a job still running', { active_job: { id: 'j1', status: 'running' } }, 'cooldown', 'job j1 is still running'],
    [
      'inside the cooldown',
      { last_job: { id: 'j0', status: 'succeeded', created_at: '2026-11-28T12:00:00.000Z' }, cooldown_ends_at: '2026-12-05T12:00:00.000Z' },
      'cooldown',
      'last job j0 was created at 2026-11-28T12:00:00.000Z; cooldown ends at 2026-12-05T12:00:00.000Z',
    ],
    ['short of credits', { balance: 99 }, 'credits', 'account "acme" has 99 credits (100 needed)'],
    ['an account never granted anything', { balance: null }, 'credits', 'account "acme" has 0 credits (100 needed); it has never been granted any'],
    ['no account to charge', { account_id: null, balance: null }, 'credits', 'no account to charge: pass account_id or set FINE_TUNE_ACCOUNT'],
  ])('says no for %s, naming only what failed', (_, change, name, reason) => {
    const d = decideFineTune({ ...ready, ...change }, policy, now);
    expect(d.should_fine_tune).toBe(false);
    expect(d.criteria.filter((c) => !c.passed).map((c) => c.name)).toEqual([name]);
    expect(d.reasons).toEqual([reason]);
  });

  it('counts the cooldown as over at its exact end, and the threshold as met at equality', () => {
    const d = decideFineTune(
      { ...ready, new_corrections: 50, error_rate: 0.1, balance: 100, last_job: { id: 'j0', status: 'succeeded', created_at: '2026-11-24T12:00:00.000Z' }, cooldown_ends_at: now.toISOString() },
      policy,
      now,
    );
    expect(d.should_fine_tune).toBe(true);
    expect(d.reasons).toContain('cooldown since job j0 is over');
  });
});
