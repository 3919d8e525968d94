import { createRouter, errorBody, errorSchema, jsonContent, standardErrors } from '@caliber/platform';
import { z } from '@hono/zod-openapi';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import { gatewayCaller } from './call.ts';
import { createCaliberMcpServer } from './server.ts';
import type { Tool } from './tools.ts';

/**
 * `POST /mcp`: MCP over Streamable HTTP, stateless (each request is a whole exchange, answered as
 * JSON), so any gateway instance can answer any request. Behind the gateway's Bearer auth; the
 * tools run as the caller.
 */
export function mcpRoutes(opts: { tools: () => Tool[]; fetch: (request: Request, env: unknown) => Response | Promise<Response> }) {
  const app = createRouter();
  // Documented here, handled below as plain routes: the transport reads the body itself.
  const messageSchema = z.record(z.string(), z.unknown()).openapi({ description: 'One JSON-RPC 2.0 message of the Model Context Protocol' });
  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/mcp',
    tags: ['mcp'],
    summary: 'Model Context Protocol over Streamable HTTP (stateless, JSON answers): Caliber\'s tools for agents',
    description: 'Each tool calls one API route as the caller. The admin key gets every tool; a tenant key gets the tenant tools. Send `Accept: application/json, text/event-stream`.',
    security: [{ bearer: [] }],
    request: { body: { required: true, content: { 'application/json': { schema: messageSchema } } } },
    responses: { 200: jsonContent(messageSchema, 'The JSON-RPC answer'), 202: { description: 'A notification, accepted' }, ...standardErrors },
  });
  for (const method of ['get', 'delete'] as const) {
    app.openAPIRegistry.registerPath({
      method,
      path: '/mcp',
      tags: ['mcp'],
      summary: 'Not used: this MCP endpoint keeps no sessions and opens no server stream (405)',
      security: [{ bearer: [] }],
      responses: { 405: jsonContent(errorSchema, 'Use POST'), ...standardErrors },
    });
  }
  // No server-initiated stream and no sessions to end: only POST carries messages here.
  app.on(['GET', 'DELETE'], '/mcp', (c) => c.json(errorBody('method_not_allowed', 'This MCP endpoint is stateless: send JSON-RPC messages with POST'), 405, { allow: 'POST' }));
  app.post('/mcp', async (c) => {
    const principal = c.get('principal');
    if (principal?.kind !== 'admin' && principal?.kind !== 'tenant') return c.json(errorBody('forbidden', 'MCP needs the admin key or a tenant key'), 403);
    const headers: Record<string, string> = { 'x-request-id': c.get('requestId') };
    for (const name of ['authorization', 'cookie']) {
      const value = c.req.header(name);
      if (value) headers[name] = value;
    }
    const call = gatewayCaller({ fetch: (request) => opts.fetch(request, c.env), origin: new URL(c.req.url).origin, headers, mayNameTenant: principal.kind === 'admin' });
    const server = createCaliberMcpServer({ tools: opts.tools(), principal: principal.kind, call });
    const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    // One message per request: the protocol (2025-06-18) has no batches, and one POST must not
    // fan out into a hundred jobs.
    let message: unknown;
    try {
      message = await c.req.json();
    } catch {
      return c.json({ jsonrpc: '2.0', error: { code: -32700, message: 'Parse error: the body is not JSON' }, id: null }, 400);
    }
    if (Array.isArray(message)) return c.json({ jsonrpc: '2.0', error: { code: -32600, message: 'Send one JSON-RPC message per request (no batches)' }, id: null }, 400);
    await server.connect(transport);
    try {
      return await transport.handleRequest(c.req.raw, { parsedBody: message });
    } finally {
      await server.close();
    }
  });
  return app;
}
