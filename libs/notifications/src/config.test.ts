import { describe, expect, it } from 'vitest';
import { loadNotificationsConfig } from './config.ts';

describe('loadNotificationsConfig', () => {
  it('has no webhook by default', () => {
    const config = loadNotificationsConfig({});
    expect(config.NOTIFY_WEBHOOK_URL).toBeUndefined();
    expect(config).toMatchObject({ NOTIFY_MAX_ATTEMPTS: 8, NOTIFY_TIMEOUT_MS: 10_000, NOTIFY_BACKOFF_MS: 2_000 });
  });

  it('needs a secret with a webhook URL, and never echoes it', () => {
    expect(() => loadNotificationsConfig({ NOTIFY_WEBHOOK_URL: 'https://hooks.example.com/caliber' })).toThrow(/NOTIFY_WEBHOOK_SECRET: is required when NOTIFY_WEBHOOK_URL is set/);
    expect(() => loadNotificationsConfig({ NOTIFY_WEBHOOK_URL: 'https://hooks.example.com/x', NOTIFY_WEBHOOK_SECRET: 'short-secret' })).toThrow(/NOTIFY_WEBHOOK_SECRET: must be at least 16/);
    try {
      loadNotificationsConfig({ NOTIFY_WEBHOOK_URL: 'https://hooks.example.com/x', NOTIFY_WEBHOOK_SECRET: 'short-secret' });
    } catch (err) {
      expect((err as Error).message).not.toContain('short-secret');
    }
  });

  it('refuses a URL with a user or password, without echoing it', () => {
    const attempt = () => loadNotificationsConfig({ NOTIFY_WEBHOOK_URL: 'https://bot:hunter2@hooks.example.com/x', NOTIFY_WEBHOOK_SECRET: 'x'.repeat(16) });
    expect(attempt).toThrow(/NOTIFY_WEBHOOK_URL: must not contain a user or password/);
    expect(attempt).not.toThrow(/hunter2/);
  });

  it('refuses a URL that is not http(s)', () => {
    expect(() => loadNotificationsConfig({ NOTIFY_WEBHOOK_URL: 'ftp://hooks.example.com', NOTIFY_WEBHOOK_SECRET: 'x'.repeat(16) })).toThrow(/NOTIFY_WEBHOOK_URL: must be an http\(s\) URL/);
  });
});
