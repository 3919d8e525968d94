import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  type CallToolResult,
} from '@modelcontextprotocol/sdk/types.js';
import { inputJsonSchema, toApiRequest, type ApiRequest, type Tool } from './tools.ts';

/** Sends one API request as the caller (their key) and gives back the status and the JSON body. */
export type CallApi = (request: ApiRequest) => Promise<{ status: number; body: unknown }>;

export type McpPrincipal = 'admin' | 'tenant';

const DOCS_URI = 'caliber://docs/tools';
const REFERENCE_TEMPLATE = 'caliber://calibration/references/{model}/{head}';
const REFERENCE_PREFIX = 'caliber://calibration/references/';
/** JSON-RPC's code for a resource that does not exist (MCP specification). */
const RESOURCE_NOT_FOUND = -32002;

function instructions(principal: McpPrincipal): string {
  return [
    principal === 'admin'
      ? 'Caliber calibrates model heads, re-tags libraries, maps and ranks models, analyses feedback and fine-tunes.'
      : "Caliber's confidence calibration for your tenant: reliability of your models' confidence scores, and temperature fits.",
    "Each tool is one Caliber API route, called with your key; errors carry the API's codes (invalid_request, not_found, forbidden, …).",
    'Tools that start long work return at once with `poll`: the tool and arguments that follow the job.',
    `${DOCS_URI} describes every tool you may use.`,
  ].join(' ');
}

function tenantMayUse(tool: Tool): boolean {
  return tool.spec.tenant === true;
}

/** What a tool call returns: the route's JSON as structured content, or a tool error with its code. */
export function toolResult(status: number, body: unknown, poll?: Tool['spec']['poll']): CallToolResult {
  if (status >= 400) {
    const error = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
    const code = error?.code ?? `http_${status}`;
    const message = error?.message ?? `HTTP ${status}`;
    return { isError: true, content: [{ type: 'text', text: `${code}: ${message}` }], structuredContent: { status, error: { ...error, code, message } } };
  }
  let structured = body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : { result: body ?? null };
  // A queued job says which call follows it, so an agent need not guess.
  if (poll && status === 202) structured = { ...structured, poll: poll(structured) };
  return { content: [{ type: 'text', text: JSON.stringify(structured) }], structuredContent: structured };
}

function toolError(code: string, message: string): CallToolResult {
  return toolResult(code === 'forbidden' ? 403 : 400, { error: { code, message } });
}

/** The tools document (`caliber://docs/tools`): each tool, the route it calls and its arguments. */
export function toolsMarkdown(tools: Tool[], principal: McpPrincipal = 'admin'): string {
  const lines = ['# Caliber MCP tools', '', instructions(principal), ''];
  for (const tool of tools) {
    const schema = inputJsonSchema(tool) as { properties?: Record<string, { type?: string; description?: string; enum?: unknown[] }>; required?: string[] };
    lines.push(`## \`${tool.spec.name}\` — ${tool.spec.title}`, '', tool.description, '', `Calls \`${tool.method} ${tool.path}\`${tool.spec.tenant ? ' (a tenant route: tenant keys may use it)' : ' (admin key)'}.`, '');
    const props = Object.entries(schema.properties ?? {});
    if (props.length === 0) {
      lines.push('No arguments.', '');
      continue;
    }
    lines.push('| argument | type | required | description |', '|---|---|---|---|');
    for (const [name, p] of props) {
      const type = p.enum ? p.enum.map((v) => `\`${String(v)}\``).join(' \\| ') : (p.type ?? 'object');
      lines.push(`| \`${name}\` | ${type} | ${schema.required?.includes(name) ? 'yes' : ''} | ${(p.description ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

/**
 * Caliber as an MCP server for one caller: the tools (and resources) that caller's key may use,
 * each call sent to the API as that caller. Transport-agnostic: stdio and Streamable HTTP both
 * connect it.
 */
export function createCaliberMcpServer(opts: { tools: Tool[]; principal: McpPrincipal; call: CallApi; version?: string }): Server {
  const allowed = opts.principal === 'admin' ? opts.tools : opts.tools.filter(tenantMayUse);
  const byName = new Map(allowed.map((t) => [t.spec.name, t]));
  const known = new Set(opts.tools.map((t) => t.spec.name));
  const server = new Server({ name: 'caliber', title: 'Caliber', version: opts.version ?? '0.1.0' }, { capabilities: { tools: {}, resources: {} }, instructions: instructions(opts.principal) });

  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: allowed.map((t) => ({
      name: t.spec.name,
      title: t.spec.title,
      description: t.description,
      inputSchema: inputJsonSchema(t),
      annotations: { title: t.spec.title, readOnlyHint: t.readOnly, openWorldHint: false },
    })),
  }));

  server.setRequestHandler(CallToolRequestSchema, async (request) => {
    const name = request.params.name;
    const tool = byName.get(name);
    if (!tool) {
      // A tool of the catalogue this key may not use answers as its route would: forbidden.
      if (known.has(name)) return toolError('forbidden', `${name} needs the admin key`);
      throw new McpError(ErrorCode.InvalidParams, `Unknown tool ${name}`);
    }
    const args = request.params.arguments ?? {};
    const apiRequest = toApiRequest(tool, args);
    if ('error' in apiRequest) return toolError('invalid_request', `${name}: ${apiRequest.error}`);
    try {
      const { status, body } = await opts.call(apiRequest);
      return toolResult(status, body, tool.spec.poll);
    } catch (err) {
      return toolResult(503, { error: { code: 'unavailable', message: `Caliber did not answer: ${(err as Error).message}` } });
    }
  });

  const references = async () => {
    const { status, body } = await opts.call({ method: 'GET', path: '/admin/calibration/references', query: new URLSearchParams() });
    if (status !== 200) throw new McpError(ErrorCode.InternalError, `Reading the references failed with HTTP ${status}`);
    return (body as { items: { model_name: string; head_name: string; version: number }[] }).items;
  };

  server.setRequestHandler(ListResourcesRequestSchema, async () => {
    const docs = { uri: DOCS_URI, name: 'tools', title: 'Caliber MCP tools', description: 'Every tool, the API route it calls and its arguments', mimeType: 'text/markdown' };
    if (opts.principal !== 'admin') return { resources: [docs] };
    // The docs stay listed even when the references cannot be read.
    const items = await references().catch(() => []);
    const heads = items.map((r) => ({
      uri: `${REFERENCE_PREFIX}${encodeURIComponent(r.model_name)}/${encodeURIComponent(r.head_name)}`,
      name: `${r.model_name}/${r.head_name}`,
      title: `Reference calibration of ${r.model_name}/${r.head_name} (v${r.version})`,
      mimeType: 'application/json',
    }));
    return { resources: [docs, ...heads] };
  });

  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates:
      opts.principal === 'admin'
        ? [{ uriTemplate: REFERENCE_TEMPLATE, name: 'reference', title: 'Current reference calibration of a head', description: 'p5/p95 per label, version and source', mimeType: 'application/json' }]
        : [],
  }));

  server.setRequestHandler(ReadResourceRequestSchema, async (request) => {
    const uri = request.params.uri;
    if (uri === DOCS_URI) return { contents: [{ uri, mimeType: 'text/markdown', text: toolsMarkdown(allowed, opts.principal) }] };
    if (uri.startsWith(REFERENCE_PREFIX) && opts.principal === 'admin') {
      const parts = uri.slice(REFERENCE_PREFIX.length).split('/');
      if (parts.length === 2) {
        let model: string;
        let head: string;
        try {
          [model, head] = parts.map((p) => decodeURIComponent(p)) as [string, string];
        } catch {
          throw new McpError(RESOURCE_NOT_FOUND, `No resource ${uri}`);
        }
        const reference = (await references()).find((r) => r.model_name === model && r.head_name === head);
        if (reference) return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify(reference, null, 2) }] };
      }
    }
    throw new McpError(RESOURCE_NOT_FOUND, `No resource ${uri}`);
  });

  return server;
}
