import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AaPermanentError, loadAaModels } from '../../libs/model-catalog/src/index.ts';
import { createLogger } from '../../libs/platform/src/index.ts';
import { ROOT } from '../harness.ts';
import { readFileSync } from 'node:fs';

const fixture = readFileSync(join(ROOT, 'test/fixtures/model-catalog/aa-models.json'), 'utf8');
const log = createLogger({ level: 'silent', name: 'test' });

/** A stand-in for the Artificial Analysis API: answers from a script of responses, records requests. */
let server: Server;
let url: string;
let script: ((req: IncomingMessage, res: ServerResponse) => void)[] = [];
const seen: { key: string | undefined; path: string }[] = [];
beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ key: req.headers['x-api-key'] as string | undefined, path: req.url ?? '' });
    const next = script.shift() ?? ((_q, r) => r.writeHead(500).end('script exhausted'));
    next(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v2/data/llms/models`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const ok = (body = fixture) => (_req: IncomingMessage, res: ServerResponse) => res.writeHead(200, { 'content-type': 'application/json' }).end(body);
const status = (code: number, headers: Record<string, string> = {}) => (_req: IncomingMessage, res: ServerResponse) =>
  res.writeHead(code, { 'content-type': 'application/json', ...headers }).end(JSON.stringify({ status: code, error: 'nope' }));
const config = (over: Record<string, unknown> = {}) => ({
  AA_API_URL: url,
  AA_API_KEY: 'aa-secret-key',
  AA_METRICS_FILE: undefined,
  AA_TIMEOUT_MS: 2_000,
  AA_MAX_ATTEMPTS: 3,
  AA_RETRY_BASE_MS: 10,
  ...over,
});

describe('the Artificial Analysis loader', () => {
  it('reads the real response shape with the x-api-key header; nulls stay "not measured"', async () => {
    seen.length = 0;
    script = [ok()];
    const loaded = await loadAaModels(config(), log);
    expect(seen).toEqual([{ key: 'aa-secret-key', path: '/api/v2/data/llms/models' }]);
    expect(loaded.source).toBe('api');
    expect(loaded.models.length).toBe(JSON.parse(fixture).data.length);
    const withNull = loaded.models.find((m) => m.median_output_tokens_per_second === null);
    expect(withNull).toBeDefined();
  });

  it('fails at once with a clear error on 401, without retrying', async () => {
    seen.length = 0;
    script = [status(401), ok()];
    await expect(loadAaModels(config(), log)).rejects.toThrow(new AaPermanentError('Artificial Analysis refused the API key (HTTP 401); check AA_API_KEY'));
    expect(seen).toHaveLength(1);
    script = [];
  });

  it('waits out a 429 (Retry-After) and a 503, then succeeds', async () => {
    seen.length = 0;
    script = [status(429, { 'retry-after': '0' }), status(503), ok()];
    const loaded = await loadAaModels(config(), log);
    expect(seen).toHaveLength(3);
    expect(loaded.models.length).toBeGreaterThan(50);
  });

  it('gives up after AA_MAX_ATTEMPTS, saying what the last answer was', async () => {
    script = [status(429), status(429), status(429)];
    await expect(loadAaModels(config(), log)).rejects.toThrow('did not answer after 3 attempts (last: HTTP 429)');
  });

  it('skips malformed entries and keeps the rest', async () => {
    const body = JSON.parse(fixture);
    body.data.push({ id: 'x', name: 'No slug' }, 'garbage');
    script = [ok(JSON.stringify(body))];
    const loaded = await loadAaModels(config(), log);
    expect(loaded.skipped.map((s) => s.index)).toEqual([body.data.length - 2, body.data.length - 1]);
    expect(loaded.models.length).toBe(body.data.length - 2);
  });

  it('rejects an answer that is not the models envelope', async () => {
    script = [ok(JSON.stringify({ models: [] }))];
    await expect(loadAaModels(config(), log)).rejects.toThrow(/unexpected shape/);
  });

  it('reads AA_METRICS_FILE instead of the API, and needs one of the two', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'caliber-aa-'));
    await writeFile(join(dir, 'aa.json'), fixture);
    const loaded = await loadAaModels(config({ AA_METRICS_FILE: join(dir, 'aa.json'), AA_API_KEY: undefined }), log);
    expect(loaded.source).toBe('file');
    await expect(loadAaModels(config({ AA_API_KEY: undefined }), log)).rejects.toThrow(/Set AA_API_KEY/);
  });
});
