import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError, envVar, loadPlatformConfig, parseEnv } from './config.ts';

const base = { NODE_ENV: 'production', CALIBER_API_KEY: 'a-long-enough-admin-key' };

describe('loadPlatformConfig', () => {
  it('applies the SPEC defaults', () => {
    expect(loadPlatformConfig(base)).toMatchObject({
      DATABASE_URL: 'postgres://postgres:postgres@127.0.0.1:5432/caliber',
      REDIS_URL: 'redis://127.0.0.1:6379',
      PORT: 8356,
      QUEUE_PREFIX: 'caliber',
      LOG_LEVEL: 'info',
    });
  });

  it('treats an empty value as unset', () => {
    expect(loadPlatformConfig({ ...base, PORT: '' }).PORT).toBe(8356);
  });

  it.each([
    ['PORT', 'eighty', /^PORT: .*\(got "eighty"\)$/],
    ['PORT', '70000', /^PORT: /],
    ['DATABASE_URL', 'mysql://x', /^DATABASE_URL: must be a URL/],
    ['REDIS_URL', 'not a url', /^REDIS_URL: /],
    ['LOG_LEVEL', 'loud', /^LOG_LEVEL: /],
    ['QUEUE_PREFIX', 'a:b', /^QUEUE_PREFIX: /],
  ])('names %s when its value is wrong', (name, value, message) => {
    try {
      loadPlatformConfig({ ...base, [name]: value });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems).toEqual([expect.stringMatching(message)]);
    }
  });

  it('requires the admin key outside tests, and never echoes a secret', () => {
    expect(() => loadPlatformConfig({ NODE_ENV: 'production' })).toThrow(/CALIBER_API_KEY: is required/);
    expect(loadPlatformConfig({ NODE_ENV: 'test' }).CALIBER_API_KEY).toBeUndefined();
    try {
      loadPlatformConfig({ NODE_ENV: 'production', CALIBER_API_KEY: 'short' });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).toMatch(/CALIBER_API_KEY: must be at least 16 characters/);
      expect((err as Error).message).not.toContain('short"');
    }
  });

  it('never echoes the password of a URL it refuses', () => {
    expect(() => loadPlatformConfig({ ...base, DATABASE_URL: 'mysql://admin:hunter2@db:3306/x' })).toThrow(/got "mysql:\/\/admin:\*\*\*@db:3306\/x"/);
  });

  it('reports every wrong variable at once', () => {
    expect(() => loadPlatformConfig({ ...base, PORT: 'x', LOG_LEVEL: 'y' })).toThrow(/PORT[\s\S]*LOG_LEVEL/);
  });
});

describe('envVar.cron', () => {
  const schema = z.object({ X_CRON: envVar.cron('0 5 * * *') });
  it.each([
    [undefined, '0 5 * * *'],
    ['', ''],
    ['off', ''],
    [' OFF ', ''],
    ['*/5 * * * *', '*/5 * * * *'],
    ['0 0 3 * * MON', '0 0 3 * * MON'],
  ])('%j → %j (empty or off: the schedule is off)', (value, pattern) => {
    expect(parseEnv(schema, { X_CRON: value }).X_CRON).toBe(pattern);
  });

  it('refuses a pattern cron cannot read, naming the variable', () => {
    expect(() => parseEnv(schema, { X_CRON: '61 * * * *' })).toThrow(/X_CRON: must be a cron pattern .*got "61 \* \* \* \*"/);
    expect(() => parseEnv(schema, { X_CRON: 'daily' })).toThrow(/X_CRON: must be a cron pattern/);
  });
});
