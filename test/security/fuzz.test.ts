import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { QUEUE_NAMES } from '../../libs/platform/src/index.ts';
import { useHarness } from '../harness.ts';

// Every documented operation gets random and malformed input: always a 4xx with the error shape,
// never a 5xx, and a refused request writes nothing (no row, no job).
const t = useHarness({ env: { CALIBRATE_HEADS: 'true' } });

interface Operation {
  method: string;
  path: string;
  body: boolean;
  query: string[];
}

function fill(template: string): string {
  return template.replace(/\{([A-Za-z_]+)\}/g, (_, name: string) =>
    name === 'queue' ? 'calibrate' : name === 'id' ? '1' : name.endsWith('_id') ? 'acct-1' : name === 'name' ? 'model-x' : 'x',
  );
}

async function operations(): Promise<Operation[]> {
  const doc = (await t.h.request('GET', '/openapi.json', { key: null })).body as { paths: Record<string, Record<string, { requestBody?: unknown; parameters?: { in: string; name: string }[] }>> };
  const ops: Operation[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      ops.push({ method: method.toUpperCase(), path, body: Boolean(op.requestBody), query: (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name) });
    }
  }
  return ops;
}

/** Rows in every table (as the owner: row-level security would hide tenants' rows) and jobs in every queue. */
async function footprint(): Promise<string> {
  const tables = await t.h.ownerQuery<{ name: string }>(`SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`);
  const counts = await t.h.ownerQuery(tables.map((x) => `SELECT '${x.name}' AS t, count(*)::int AS n FROM "${x.name}"`).join(' UNION ALL '));
  const jobs = await Promise.all(QUEUE_NAMES.map(async (q) => [q, await t.h.platform.queues.get(q).getJobCounts()]));
  return JSON.stringify({ counts, jobs });
}

const deep = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
const MALFORMED_BODIES: { label: string; body: string; type?: string }[] = [
  { label: 'broken JSON', body: '{"a":' },
  { label: 'a bare number', body: '42' },
  { label: 'null', body: 'null' },
  { label: 'an array', body: '[1,2,3]' },
  { label: 'a huge number', body: '{"x":1e400,"amount":1e400,"results":1e400}' },
  { label: 'deep JSON', body: deep(50_000) },
  { label: 'deep objects', body: '{"a":'.repeat(2000) + '1' + '}'.repeat(2000) },
  { label: 'NUL in strings', body: JSON.stringify({ name: 'a\u0000b', model_id: '\u0000', response_id: 'x\u0000' }) },
  { label: 'a lone surrogate', body: '{"name":"\\ud800","model_id":"\\udfff"}' },
  { label: 'text/plain', body: '{}', type: 'text/plain' },
  { label: 'XML', body: '<a/>', type: 'application/xml' },
  { label: 'form data', body: 'a=1&b=2', type: 'application/x-www-form-urlencoded' },
  { label: 'an empty body', body: '' },
];

describe('fuzzing every route', () => {
  it('refuses random and malformed bodies with a 4xx and writes nothing', async () => {
    const ops = (await operations()).filter((o) => o.body);
    expect(ops.length).toBeGreaterThan(10);
    const randomBodies: { label: string; body: string; type?: string }[] = fc.sample(fc.jsonValue({ maxDepth: 4 }), { numRuns: 12, seed: 20261201 }).map((v) => ({ label: 'random JSON', body: JSON.stringify(v) ?? 'null' }));
    const problems: string[] = [];
    let checked = 0;
    for (const op of ops) {
      const before = await footprint();
      let accepted = false;
      for (const input of [...MALFORMED_BODIES, ...randomBodies]) {
        // MCP speaks JSON-RPC: its refusals are JSON-RPC errors, as its clients expect.
        const mcp = op.path === '/mcp';
        const res = await t.h.request(op.method, fill(op.path), { body: input.body, headers: { 'content-type': input.type ?? 'application/json', ...(mcp ? { accept: 'application/json, text/event-stream' } : {}) } });
        const shaped = mcp ? res.body?.jsonrpc === '2.0' && typeof res.body.error?.code === 'number' : typeof res.body?.error?.code === 'string';
        if (res.status >= 500) problems.push(`${op.method} ${op.path} with ${input.label}: ${res.status} ${res.text.slice(0, 200)}`);
        else if (res.status >= 400 && !shaped) problems.push(`${op.method} ${op.path} with ${input.label}: ${res.status} without the error shape`);
        else if (res.status < 400) {
          // A random JSON value may happen to be valid; the malformed inputs never are.
          if (input.label !== 'random JSON') problems.push(`${op.method} ${op.path} accepted ${input.label}: ${res.status}`);
          accepted = true;
        }
      }
      // A random value a route happened to accept may write; the rest must not have.
      if (!accepted) {
        checked++;
        if ((await footprint()) !== before) problems.push(`${op.method} ${op.path}: refused input left a write behind`);
      }
    }
    expect(problems).toEqual([]);
    expect(checked, 'routes whose every input was refused, so checked for writes').toBeGreaterThan(ops.length / 2);
  }, 180_000);

  it('refuses a 20 MiB body with 413 before reading it all', async () => {
    const huge = `{"results":[${'"x",'.repeat(5 * 1024 * 1024)}"x"]}`;
    const before = await footprint();
    for (const path of ['/admin/model-selection/results', '/library/files', '/api/analytics/response-quality/feedback']) {
      const res = await t.h.request('POST', path, { body: huge, headers: { 'content-type': 'application/json' } });
      expect(res.status, path).toBe(413);
      expect(res.body.error.code).toBe('payload_too_large');
    }
    expect(await footprint()).toBe(before);
  });

  it('refuses malformed query strings with a 4xx, never a 5xx', async () => {
    const ops = (await operations()).filter((o) => o.query.length > 0);
    const values = ['', ' ', '-1', '1e400', '0x10', 'NaN', 'x'.repeat(5000), '%00', '\u0000', '😀', '../../etc/passwd', "'; DROP TABLE outbox; --", '2026-13-45T99:99:99Z', '[]', '{}'];
    const problems: string[] = [];
    for (const op of ops) {
      for (const name of op.query) {
        for (const value of values) {
          const res = await t.h.request(op.method, `${fill(op.path)}?${name}=${encodeURIComponent(value)}`, op.method === 'GET' ? {} : { json: {} });
          if (res.status >= 500) problems.push(`${op.method} ${op.path}?${name}=${JSON.stringify(value).slice(0, 40)}: ${res.status} ${res.text.slice(0, 160)}`);
          else if (res.status >= 400 && typeof res.body?.error?.code !== 'string') problems.push(`${op.method} ${op.path}?${name}: ${res.status} without the error shape`);
        }
      }
    }
    expect(problems).toEqual([]);
  }, 180_000);

  it('keeps every name it writes to disk inside MODELS_DIR', async () => {
    for (const name of ['../escape', '/abs', 'a/../../b', 'nul\u0000', '..']) {
      const res = await t.h.request('POST', '/library/files', { json: { files: [{ path: '/music/a.mp3', scores: { [`${name}/head`]: { yes: 0.5, no: 0.5 } } }] } });
      expect(res.status, name).toBe(400);
      const history = await t.h.request('GET', `/admin/calibration/history?model=${encodeURIComponent(name)}&head=x`);
      expect(history.status, name).toBeLessThan(500);
    }
  });
});
