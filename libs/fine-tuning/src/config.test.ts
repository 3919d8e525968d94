import { describe, expect, it } from 'vitest';
import { loadFineTuningConfig, providerProblem } from './config.ts';

describe('fine-tuning settings', () => {
  it('has the documented defaults', () => {
    const config = loadFineTuningConfig({});
    expect(config).toMatchObject({
      AUTO_FINE_TUNE: false,
      FINE_TUNE_PROVIDER: 'openai-compatible',
      FINE_TUNE_CREDIT_COST: 100,
      FINE_TUNE_MIN_EXAMPLES: 10,
      FINE_TUNE_VALIDATION_SPLIT: 0.1,
      FINE_TUNE_BASE_MODELS: {},
      FINE_TUNE_POLL_MS: 30_000,
      FINE_TUNE_COMMAND_POLL_MS: 2_000,
      FINE_TUNE_MIN_CORRECTIONS: 50,
      FINE_TUNE_RECONCILE_CRON: '*/5 * * * *',
    });
    expect(providerProblem(config, 'openai-compatible')).toMatch(/FINE_TUNE_BASE_URL/);
    expect(providerProblem(config, 'command')).toMatch(/FINE_TUNE_COMMAND/);
  });

  it('reads the base model map', () => {
    expect(loadFineTuningConfig({ FINE_TUNE_BASE_MODELS: '{"support-bot":"gpt-4o-mini"}' }).FINE_TUNE_BASE_MODELS).toEqual({ 'support-bot': 'gpt-4o-mini' });
  });

  it.each([
    [{ FINE_TUNE_BASE_MODELS: 'support-bot=gpt' }, /FINE_TUNE_BASE_MODELS: must be JSON, e\.g\./],
    [{ FINE_TUNE_BASE_MODELS: '{"support-bot":7}' }, /FINE_TUNE_BASE_MODELS/],
    [{ AUTO_FINE_TUNE: 'true', FINE_TUNE_BASE_URL: 'https://api.openai.com/v1' }, /FINE_TUNE_ACCOUNT: is required with AUTO_FINE_TUNE=true/],
    [{ AUTO_FINE_TUNE: 'true', FINE_TUNE_ACCOUNT: 'acme' }, /FINE_TUNE_PROVIDER: AUTO_FINE_TUNE=true, but provider "openai-compatible" needs FINE_TUNE_BASE_URL/],
    [{ AUTO_FINE_TUNE: 'true', FINE_TUNE_ACCOUNT: 'acme', FINE_TUNE_PROVIDER: 'command' }, /needs FINE_TUNE_COMMAND/],
    [{ FINE_TUNE_BASE_URL: 'ftp://x' }, /FINE_TUNE_BASE_URL/],
    [{ FINE_TUNE_PROVIDER: 'sagemaker' }, /FINE_TUNE_PROVIDER/],
    [{ FINE_TUNE_VALIDATION_SPLIT: '0.9' }, /FINE_TUNE_VALIDATION_SPLIT/],
  ])('refuses %j, naming the variable', (env, message) => {
    expect(() => loadFineTuningConfig(env)).toThrow(message);
  });
});
