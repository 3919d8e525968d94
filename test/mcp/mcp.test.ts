import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOOL_SPECS } from '../../libs/mcp/src/index.ts';
import { libraryBatch, skewed } from '../fixtures.ts';
import { ROOT, useHarness, waitFor } from '../harness.ts';

// Agents reach Caliber through MCP: the SDK's own client, over Streamable HTTP (the gateway's
// /mcp) and over stdio (apps/mcp as a child process), against the real stack.
const FIXTURES = join(ROOT, 'test/fixtures/model-catalog');
const ENV = {
  AA_METRICS_FILE: join(FIXTURES, 'aa-models.json'),
  MAP_MODELS_CRON: '',
  ANALYZE_ERRORS_CRON: '',
  FINE_TUNE_BASE_URL: 'http://127.0.0.1:9/v1',
  FINE_TUNE_RECONCILE_CRON: '',
};
const t = useHarness({ env: ENV, workers: ['calibrate', 'update-reference', 'retag-file', 'map-models', 'analyze-errors'] });
const RQ = '/api/analytics/response-quality';
const MOOD = 'effnet/mood_happy';
const workingVersion = JSON.parse(readFileSync(join(FIXTURES, 'working-version.json'), 'utf8')) as { inference_provider: string; model_id: string; human_readable_name: string | null; expected_aa_slug: string | null }[];

type Transport = 'http' | 'stdio';
const clients: Client[] = [];

async function connect(transport: Transport, key: string): Promise<Client> {
  const client = new Client({ name: 'caliber-test', version: '1.0.0' });
  if (transport === 'http') {
    await client.connect(new StreamableHTTPClientTransport(new URL(`${t.h.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  } else {
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [join(ROOT, 'apps/mcp/bin/caliber-mcp.js')],
        env: { ...(process.env as Record<string, string>), ...t.env.env, ...ENV, CALIBER_MCP_KEY: key, LOG_LEVEL: 'warn' },
        stderr: 'pipe',
      }),
    );
  }
  clients.push(client);
  return client;
}

/** Tools called through each transport: every one of the catalogue must be. */
const called = new Map<Client, Set<string>>();

async function call(client: Client, name: string, args: Record<string, unknown> = {}) {
  if (!called.has(client)) called.set(client, new Set());
  called.get(client)!.add(name);
  return (await client.callTool({ name, arguments: args })) as CallToolResult & { structuredContent?: any };
}

/** The result of a tool that succeeded (fails the test with the tool's error otherwise). */
async function ok(client: Client, name: string, args: Record<string, unknown> = {}) {
  const res = await call(client, name, args);
  expect(res.isError, `${name}: ${JSON.stringify(res.content)}`).toBeFalsy();
  expect(JSON.parse((res.content[0] as { text: string }).text)).toEqual(res.structuredContent);
  return res.structuredContent;
}

/** The error code a tool answered with. */
async function fails(client: Client, name: string, args: Record<string, unknown> = {}) {
  const res = await call(client, name, args);
  expect(res.isError, `${name} should fail: ${JSON.stringify(res.structuredContent)}`).toBe(true);
  expect((res.content[0] as { text: string }).text).toMatch(/^[a-z_0-9]+: /);
  return res.structuredContent.error as { code: string; message: string };
}

async function pollJob(client: Client, poll: { name: string; arguments: Record<string, unknown> }) {
  return waitFor(
    async () => {
      const job = await ok(client, poll.name, poll.arguments);
      if (job.state === 'failed') throw new Error(`job failed: ${job.failedReason}`);
      return job.state === 'completed' ? job : undefined;
    },
    { what: `${poll.name} to say completed`, timeoutMs: 30_000 },
  );
}

let tenantA: { id: string; key: string };
let tenantB: { id: string; key: string };

beforeAll(async () => {
  // A library to calibrate and re-tag, models to map, credits to spend, and one tenant's scores.
  expect((await t.h.request('POST', '/library/files', { json: libraryBatch(0, 400, { [MOOD]: skewed(2) }, 1) })).status).toBe(200);
  const owner = new pg.Client({ connectionString: t.env.databaseUrl });
  await owner.connect();
  await owner.query('INSERT INTO working_version (inference_provider, model_id, human_readable_name) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])', [
    workingVersion.map((r) => r.inference_provider),
    workingVersion.map((r) => r.model_id),
    workingVersion.map((r) => r.human_readable_name),
  ]);
  await owner.end();
  expect((await t.h.request('POST', '/admin/models/map?wait=true')).status).toBe(200);
  expect((await t.h.request('POST', '/admin/credits/acme/grant', { json: { amount: 1000 } })).status).toBe(201);
  tenantA = await t.h.createTenant('mcp-a');
  tenantB = await t.h.createTenant('mcp-b');
  const scores = Array.from({ length: 40 }, (_, i) => ({
    request_id: `b-${i}`,
    model: 'tenant-b-secret-model',
    factual_confidence: i % 2 ? 0.9 : 0.2,
    reasoning_confidence: 0.5,
    contextual_relevance: 0.5,
    uncertainty_lower: 0.1,
    uncertainty_upper: 0.9,
    created_at: new Date(Date.now() - 3_600_000).toISOString(),
  }));
  expect((await t.h.request('POST', '/confidence/scores', { key: tenantB.key, json: { scores } })).status).toBe(201);
  const outcomes = scores.map((s, i) => ({ request_id: s.request_id, correct: i % 3 === 0, validation_method: 'human_review' }));
  expect((await t.h.request('POST', '/confidence/outcomes', { key: tenantB.key, json: { outcomes } })).status).toBe(201);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
});

describe.each<Transport>(['http', 'stdio'])('Caliber over MCP (%s)', (transport) => {
  let admin: Client;
  beforeAll(async () => {
    admin = await connect(transport, t.env.apiKey);
  });

  it('lists every tool with an object input schema made of its route\'s schemas, and documents them', async () => {
    const { tools } = await admin.listTools();
    expect(tools.map((x) => x.name).sort()).toEqual(TOOL_SPECS.map((s) => s.name).sort());
    for (const tool of tools) {
      expect(tool.inputSchema.type, tool.name).toBe('object');
      expect(tool.description!.length, tool.name).toBeGreaterThan(10);
    }
    // The route's own constraints show: best_model's metric is the route's enum, feedback the taxonomy.
    const best = tools.find((x) => x.name === 'best_model')!;
    expect((best.inputSchema.properties as any).metric.enum).toEqual(['intelligence_index', 'coding_index', 'math_index']);
    expect(JSON.stringify(tools.find((x) => x.name === 'record_feedback')!.inputSchema)).toContain('outdated_information');
    expect(tools.find((x) => x.name === 'calibration_history')!.annotations?.readOnlyHint).toBe(true);
    // No tool can be told to block: the routes' wait/timeout are not offered.
    expect(JSON.stringify(tools.find((x) => x.name === 'calibration_run')!.inputSchema)).not.toContain('wait');

    const docs = await admin.readResource({ uri: 'caliber://docs/tools' });
    const text = (docs.contents[0] as { text: string }).text;
    for (const spec of TOOL_SPECS) expect(text).toContain(`\`${spec.name}\``);
    expect(text).toContain('GET /best-model');
  });

  it('starts a calibration run, polls its job, and reads the history and the new reference', async () => {
    const started = await ok(admin, 'calibration_run');
    expect(started).toMatchObject({ jobId: expect.any(String), queue: 'calibrate', poll: { name: 'job_status', arguments: { queue: 'calibrate', id: started.jobId } } });
    const job = await pollJob(admin, started.poll);
    expect(job.result.calibration.heads[MOOD]).toMatchObject({ model_name: 'effnet', head_name: 'mood_happy' });
    const version = job.result.calibration.version as number;
    const history = await ok(admin, 'calibration_history', { model: 'effnet', head: 'mood_happy' });
    expect(history.runs.map((r: { version: number }) => r.version)).toContain(version);
    const reference = await waitFor(async () => {
      const { resources } = await admin.listResources();
      const uri = resources.find((r) => r.name === MOOD)?.uri;
      if (!uri) return undefined;
      const read = JSON.parse(((await admin.readResource({ uri })).contents[0] as { text: string }).text);
      // The first run installs v1; a later, stable one keeps it.
      return read.version >= 1 ? read : undefined;
    }, { what: 'the reference of the head' });
    expect(reference).toMatchObject({ model_name: 'effnet', head_name: 'mood_happy', labels: { mood_happy: { p5: expect.any(Number), p95: expect.any(Number) } } });
    const templates = await admin.listResourceTemplates();
    expect(templates.resourceTemplates.map((r) => r.uriTemplate)).toEqual(['caliber://calibration/references/{model}/{head}']);
    await expect(admin.readResource({ uri: 'caliber://calibration/references/effnet/nope' })).rejects.toThrow(/No resource/);
    // Unknown job: the API's 404.
    expect(await fails(admin, 'job_status', { queue: 'calibrate', id: 'no-such-job' })).toMatchObject({ code: 'not_found' });
  });

  it('re-tags the library and reports progress', async () => {
    // The backlog before (the other transport's, if it ran first) must be over; ours is the next one.
    const before = await waitFor(async () => {
      const status = await ok(admin, 'retag_status');
      return status.state === 'idle' ? status : undefined;
    }, { what: 'an earlier retag backlog to finish', timeoutMs: 30_000 });
    await ok(admin, 'retag_start');
    const done = await waitFor(async () => {
      const status = await ok(admin, 'retag_status');
      return status.state === 'idle' && status.started_at !== before.started_at ? status : undefined;
    }, { what: 'the retag backlog to finish', timeoutMs: 30_000 });
    expect(done).toMatchObject({ total: 400, done: 400, failed: 0 });
  });

  it('answers the best model, the mapping coverage, and maps a model by hand', async () => {
    const best = await ok(admin, 'best_model', { metric: 'intelligence_index' });
    expect(best).toMatchObject({ aa_slug: expect.any(String) });
    const coverage = await ok(admin, 'model_mapping_coverage');
    expect(coverage.total).toBe(new Set(workingVersion.map((r) => r.model_id)).size);
    const unmapped = workingVersion.find((r) => !r.expected_aa_slug)!;
    const slug = workingVersion.find((r) => r.expected_aa_slug)!.expected_aa_slug!;
    const mapped = await ok(admin, 'model_mapping_set', { name: unmapped.model_id, aa_slug: slug });
    expect(mapped).toMatchObject({ model_name: unmapped.model_id, aa_slug: slug, manual: true });
    expect(await fails(admin, 'model_mapping_set', { name: 'no/such-model', aa_slug: slug })).toMatchObject({ code: 'not_found' });
    expect(await fails(admin, 'best_model', { metric: 'vibes' })).toMatchObject({ code: 'invalid_request' });
    expect(await fails(admin, 'model_config', { language: 'cobol', size: 'small' })).toMatchObject({ code: 'not_found' });
  });

  it('records feedback, analyses errors, and reads patterns and suggestions', async () => {
    const id = `${transport}-r-1`;
    expect((await t.h.request('POST', `${RQ}/response`, { json: { response_id: id, model_id: 'mcp-bot', query: 'Latest LTS?', response: 'Node 18' } })).status).toBe(201);
    const feedback = { response_id: id, type: 'full', categories: ['outdated_information'], comment: 'that was 2023', idempotency_key: `${transport}-fb-1` };
    expect(await ok(admin, 'record_feedback', { feedback })).toEqual({ recorded: 1, duplicates: 0 });
    expect(await ok(admin, 'record_feedback', { feedback })).toEqual({ recorded: 0, duplicates: 1 });
    // Bad input and unknown ids get the API's codes, and write nothing.
    expect(await fails(admin, 'record_feedback', { feedback: { response_id: id, type: 'stars', stars: 9 } })).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('stars') });
    expect(await fails(admin, 'record_feedback', { feedback: { response_id: `${transport}-missing`, type: 'thumbs', thumbs_up: true } })).toMatchObject({ code: 'not_found' });
    expect(await fails(admin, 'record_feedback', { feedback, extra: 1 })).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('extra') });
    expect(await t.h.query(`SELECT count(*)::int AS n FROM response_feedback f JOIN llm_responses r ON r.id = f.response_ref WHERE r.response_id = $1`, [id])).toEqual([{ n: 1 }]);

    const analysis = await ok(admin, 'analyze_errors');
    await pollJob(admin, analysis.poll);
    const patterns = await ok(admin, 'error_patterns', { model_id: 'mcp-bot' });
    expect(patterns.patterns).toContainEqual(expect.objectContaining({ model_id: 'mcp-bot', category: 'outdated_information' }));
    const suggestions = await ok(admin, 'improvement_suggestions', { model_id: 'mcp-bot' });
    expect(suggestions).toHaveProperty('suggestions');
  });

  it('checks, creates, starts, follows and cancels a fine-tune', async () => {
    const check = await ok(admin, 'fine_tuning_check', { model_id: 'mcp-bot' });
    expect(check).toMatchObject({ should_fine_tune: false, reasons: expect.arrayContaining([expect.stringContaining('corrected')]) });
    const { job } = await ok(admin, 'fine_tuning_create', { model_id: 'mcp-bot', account_id: 'acme' });
    expect(job).toMatchObject({ id: expect.any(String), status: 'pending' });
    // Started: credits reserved and the job queued (no fine-tune worker runs here, so it waits there).
    const started = await ok(admin, 'fine_tuning_start', { job_id: job.id });
    expect(started).toMatchObject({ job: { id: job.id }, queue: 'fine-tune', poll: { name: 'fine_tuning_status', arguments: { job_id: job.id } } });
    expect((await ok(admin, started.poll.name, started.poll.arguments)).job).toMatchObject({ id: job.id });
    // Started again (an agent retrying): the same job, credits reserved once.
    expect((await ok(admin, 'fine_tuning_start', { job_id: job.id })).job).toMatchObject({ id: job.id, credits_reserved: started.job.credits_reserved, queue_job: started.job.queue_job });
    expect((await ok(admin, 'fine_tuning_cancel', { job_id: job.id })).job.status).toBe('cancelled');
    expect((await ok(admin, 'fine_tuning_status', { job_id: job.id })).job.status).toBe('cancelled');
    expect(await fails(admin, 'fine_tuning_status', { job_id: randomUUID() })).toMatchObject({ code: 'not_found' });
    expect(await fails(admin, 'fine_tuning_status', { job_id: 'not-a-uuid' })).toMatchObject({ code: 'invalid_request' });
    expect(await fails(admin, 'fine_tuning_status', {})).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('job_id') });
  });

  it('reads a tenant\'s confidence calibration as the admin, naming the tenant', async () => {
    const report = await ok(admin, 'confidence_calibration', { tenant_id: tenantB.id, model: 'tenant-b-secret-model' });
    expect(JSON.stringify(report)).toContain('tenant-b-secret-model');
    expect(await fails(admin, 'confidence_calibration', {})).toMatchObject({ code: 'tenant_required' });
    const fit = await ok(admin, 'confidence_calibrate', { tenant_id: tenantB.id });
    expect(fit.poll).toEqual({ name: 'confidence_job_status', arguments: { id: fit.jobId } });
    // The job belongs to tenant B: read back in B's name.
    const done = await waitFor(async () => {
      const job = await ok(admin, 'confidence_job_status', { ...fit.poll.arguments, tenant_id: tenantB.id });
      return job.state === 'completed' ? job : undefined;
    }, { what: 'the confidence fit', timeoutMs: 30_000 });
    expect(done.state).toBe('completed');
  });

  it('gives a tenant key only the tenant tools, on its own data', async () => {
    const tenant = await connect(transport, tenantA.key);
    const { tools } = await tenant.listTools();
    expect(tools.map((x) => x.name).sort()).toEqual(TOOL_SPECS.filter((s) => s.tenant).map((s) => s.name).sort());
    // An admin tool by name: forbidden, and nothing of the admin's data comes back.
    const refused = await fails(tenant, 'calibration_history');
    expect(refused.code).toBe('forbidden');
    // Naming another tenant changes nothing: a tenant key always reads its own.
    const own = await ok(tenant, 'confidence_calibration', { tenant_id: tenantB.id });
    expect(JSON.stringify(own)).not.toContain('tenant-b-secret-model');
    const { resources } = await tenant.listResources();
    expect(resources.map((r) => r.uri)).toEqual(['caliber://docs/tools']);
    await expect(tenant.readResource({ uri: `caliber://calibration/references/effnet/mood_happy` })).rejects.toThrow(/No resource/);
    const docs = ((await tenant.readResource({ uri: 'caliber://docs/tools' })).contents[0] as { text: string }).text;
    expect(docs).not.toContain('calibration_run');
  });

  it('has called every tool of the catalogue', () => {
    const names = new Set([...called.entries()].filter(([c]) => c === admin).flatMap(([, n]) => [...n]));
    expect([...names].sort()).toEqual(TOOL_SPECS.map((s) => s.name).sort());
  });

  it('refuses a wrong key, an unknown tool, and arguments that would reach another route', async () => {
    await expect(connect(transport, 'wrong-key-0123456789abcdef')).rejects.toThrow();
    await expect(admin.callTool({ name: 'drop_database', arguments: {} })).rejects.toThrow(/Unknown tool/);
    // "/admin/jobs/../queues" would be Bull Board: a path argument is one segment of its route, or refused.
    expect(await fails(admin, 'job_status', { queue: '..', id: 'queues' })).toMatchObject({ code: 'invalid_request' });
    expect(await fails(admin, 'model_mapping_set', { name: '.', aa_slug: 'x' })).toMatchObject({ code: 'invalid_request' });
    // Only tenant tools take tenant_id, and only a UUID (no header smuggling).
    expect(await fails(admin, 'retag_status', { tenant_id: tenantB.id })).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('tenant_id') });
    expect(await fails(admin, 'confidence_calibration', { tenant_id: `${tenantB.id}\r\nx-evil: 1` })).toMatchObject({ code: 'invalid_request' });
  });
});

describe('POST /mcp', () => {
  it('is behind the gateway\'s auth, refuses publishable keys, and is stateless', async () => {
    const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'curl', version: '1' } } };
    const headers = { accept: 'application/json, text/event-stream' };
    expect((await t.h.request('POST', '/mcp', { key: null, json: init, headers })).status).toBe(401);
    const issued = await t.h.request('POST', '/admin/publishable-keys', { json: { name: 'page', project: 'p', model_ids: ['m'], allowed_origins: ['https://x.example'] } });
    expect((await t.h.request('POST', '/mcp', { key: issued.body.key, json: init, headers: { ...headers, origin: 'https://x.example' } })).status).toBe(403);
    const res = await t.h.request('POST', '/mcp', { json: init, headers });
    expect(res.status).toBe(200);
    expect(res.body.result.serverInfo.name).toBe('caliber');
    expect(res.headers.get('mcp-session-id')).toBeNull();
    expect((await t.h.request('GET', '/mcp', { headers })).status).toBe(405);
    // One message per request: a batch could fan out into many jobs.
    const batch = await t.h.request('POST', '/mcp', { json: [init, { ...init, id: 2 }], headers });
    expect(batch.status).toBe(400);
    expect(batch.body).toMatchObject({ jsonrpc: '2.0', error: { code: -32600 } });
  });
});

describe('apps/mcp on stdio', () => {
  it('answers every request a client wrote before closing stdin', async () => {
    const child = spawn(process.execPath, [join(ROOT, 'apps/mcp/bin/caliber-mcp.js')], { env: { ...process.env, ...t.env.env, ...ENV, LOG_LEVEL: 'warn' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const messages = [
      { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'pipe', version: '1' } } },
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'model_mapping_coverage', arguments: {} } },
      { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'calibration_history', arguments: { limit: 1 } } },
      { jsonrpc: '2.0', id: 4, method: 'resources/list' },
    ];
    child.stdin.end(messages.map((m) => JSON.stringify(m)).join('\n') + '\n');
    expect(await exited).toBe(0);
    const answers = out.trim().split('\n').map((l) => JSON.parse(l));
    expect(answers.map((a) => a.id).sort()).toEqual([1, 2, 3, 4]);
    expect(answers.find((a) => a.id === 2).result.structuredContent).toHaveProperty('total');
  });
});
