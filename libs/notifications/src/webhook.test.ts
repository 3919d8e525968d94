import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { parseRetryAfter, postWebhook, retryDelayMs, signBody, verifySignature } from './webhook.ts';

describe('signBody', () => {
  // Golden values from Python's hmac.new(secret, body, hashlib.sha256).hexdigest().
  it.each([
    ['whsec-0123456789abcdef', '{"event":"model_configuration.changed","run_id":7}', 'c6a7a12f7e067a927ded16dbcee55cf46f9e7e901b6e5b43f1e266afe8144660'],
    ['kkkkkkkkkkkkkkkk', 'café ☃', '6b14105d806fc209e1a17951ae0f050fd84b82937e97f931fefce932b7c8d404'],
  ])('HMAC-SHA256 of the UTF-8 body with %s', (secret, body, hex) => {
    expect(signBody(secret, body)).toBe(`sha256=${hex}`);
  });

  it('verifies its own signature and nothing else', () => {
    const body = '{"a":1}';
    const sig = signBody('s'.repeat(16), body);
    expect(verifySignature('s'.repeat(16), body, sig)).toBe(true);
    expect(verifySignature('s'.repeat(16), '{"a":2}', sig)).toBe(false);
    expect(verifySignature('t'.repeat(16), body, sig)).toBe(false);
    expect(verifySignature('s'.repeat(16), body, sig.slice(0, -1))).toBe(false);
    expect(verifySignature('s'.repeat(16), body, undefined)).toBe(false);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-12-01T10:00:00Z');
  it.each([
    ['120', 120_000],
    [' 3 ', 3_000],
    ['Tue, 01 Dec 2026 10:00:30 GMT', 30_000],
    ['Tue, 01 Dec 2026 09:00:00 GMT', 0],
    ['soon', null],
    [null, null],
  ])('%s → %s', (value, ms) => {
    expect(parseRetryAfter(value, now)).toBe(ms);
  });
});

describe('retryDelayMs', () => {
  it.each([
    // attempt, random → half of base·2^(n−1) plus random · the other half
    { attempt: 1, random: 0, ms: 500 },
    { attempt: 1, random: 1, ms: 1_000 },
    { attempt: 3, random: 0.5, ms: 3_000 },
    { attempt: 10, random: 1, ms: 60_000 }, // capped
    { attempt: 200, random: 0, ms: 30_000 }, // half the cap, no overflow
  ])('attempt $attempt, jitter $random → $ms ms', ({ attempt, random, ms }) => {
    expect(retryDelayMs(attempt, 1_000, 60_000, null, () => random)).toBe(ms);
  });

  it('waits at least what Retry-After asks, within the cap', () => {
    expect(retryDelayMs(1, 1_000, 60_000, 20_000, () => 0)).toBe(20_000);
    expect(retryDelayMs(1, 1_000, 60_000, 3_600_000, () => 0)).toBe(60_000);
  });
});

describe('postWebhook', () => {
  const secret = 's'.repeat(16);
  const withServer = async (handler: Parameters<typeof createServer>[1], fn: (url: string) => Promise<void>) => {
    const server = createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      await fn(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hook?token=t0ps3cret`);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  };

  it('does not follow a redirect, and says where it pointed', async () => {
    await withServer((_req, res) => res.writeHead(301, { location: 'https://elsewhere.example/' }).end(), async (url) => {
      expect(await postWebhook({ url, body: '{}', secret, headers: {}, timeoutMs: 2_000 })).toMatchObject({ outcome: 'failed', statusCode: 301, error: expect.stringContaining('redirect to https://elsewhere.example/') });
    });
  });

  it('counts a 2xx whose body stalls as delivered, within the timeout', async () => {
    await withServer((_req, res) => {
      res.writeHead(200);
      res.write('partial');
    }, async (url) => {
      const started = Date.now();
      const outcome = await postWebhook({ url, body: '{}', secret, headers: {}, timeoutMs: 300 });
      expect(outcome).toMatchObject({ outcome: 'delivered', statusCode: 200, response: expect.stringContaining('answer not read: timed out after 300 ms') });
      expect(Date.now() - started).toBeLessThan(5_000);
    });
  });

  it('retries a refused connection and a 503 with Retry-After', async () => {
    let url = '';
    await withServer((_req, res) => res.writeHead(503, { 'retry-after': '7' }).end(), async (u) => {
      url = u;
      expect(await postWebhook({ url, body: '{}', secret, headers: {}, timeoutMs: 2_000 })).toMatchObject({ outcome: 'retry', statusCode: 503, retryAfterMs: 7_000 });
    });
    // The server is closed now.
    expect(await postWebhook({ url, body: '{}', secret, headers: {}, timeoutMs: 2_000 })).toMatchObject({ outcome: 'retry', statusCode: null, error: expect.stringContaining('ECONNREFUSED') });
  });

  it('fails at once, never naming the URL, what fetch refuses to send', async () => {
    const badPort = await postWebhook({ url: 'http://127.0.0.1:6667/hook?token=t0ps3cret', body: '{}', secret, headers: {}, timeoutMs: 2_000 });
    expect(badPort).toMatchObject({ outcome: 'failed', error: expect.stringContaining('bad port') });
    const credentials = await postWebhook({ url: 'http://user:hunter2@127.0.0.1:9999/hook', body: '{}', secret, headers: {}, timeoutMs: 2_000 });
    expect(credentials.outcome).toBe('failed');
    expect(JSON.stringify(credentials)).not.toContain('hunter2');
    expect(JSON.stringify(credentials)).toContain('<NOTIFY_WEBHOOK_URL>');
  });
});
