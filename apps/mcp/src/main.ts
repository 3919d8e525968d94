import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createGateway } from '@caliber/gateway';
import { gatewayModules } from '@caliber/gateway/modules';
import { buildTools, createCaliberMcpServer, gatewayCaller, type McpPrincipal } from '@caliber/mcp';
import { createLogger, createPlatform, findTenantKey, loadPlatformConfig, runMain, secretsEqual, TENANT_KEY_PREFIX } from '@caliber/platform';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * Caliber over MCP's stdio transport, for an MCP client on this machine: the gateway's routes in
 * this process (no port), each tool called as the key in CALIBER_MCP_KEY (default: the admin
 * key). Jobs are done by the workers `npm start` runs. stdout carries the protocol only: logs go
 * to stderr.
 */
async function waitFor(ready: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

runMain(async () => {
  process.chdir(ROOT);
  if (existsSync('.env')) process.loadEnvFile('.env');
  const keyFile = '.caliber/api-key';
  const apiKey = process.env.CALIBER_API_KEY ?? (existsSync(keyFile) ? readFileSync(keyFile, 'utf8').trim() : undefined);
  const config = loadPlatformConfig({ ...process.env, ...(apiKey ? { CALIBER_API_KEY: apiKey } : {}) });
  const log = createLogger({ level: config.LOG_LEVEL, name: 'mcp', destination: process.stderr });
  const platform = createPlatform(config, { name: 'mcp', log });
  const key = process.env.CALIBER_MCP_KEY ?? config.CALIBER_API_KEY!;

  let principal: McpPrincipal | undefined;
  if (config.CALIBER_API_KEY && secretsEqual(key, config.CALIBER_API_KEY)) principal = 'admin';
  else if (key.startsWith(TENANT_KEY_PREFIX) && (await findTenantKey(platform.pool, key))) principal = 'tenant';
  if (!principal) {
    await platform.close();
    throw new Error('CALIBER_MCP_KEY is neither the admin key nor an active tenant key');
  }

  // A client calls a tool at once after starting us: be connected first (the gateway's Redis client
  // fails fast rather than queueing commands, so an early call would get 503).
  const connected = await waitFor(() => platform.redis.status === 'ready', 10_000);
  if (!connected) log.warn('Redis is not answering yet; tools that start jobs answer queue_unavailable until it does');
  const gateway = createGateway(platform, gatewayModules());
  const tools = buildTools(gateway.app.openAPIRegistry.definitions);
  const call = gatewayCaller({ fetch: (request) => gateway.app.fetch(request), origin: 'http://caliber.mcp', headers: { authorization: `Bearer ${key}` }, mayNameTenant: principal === 'admin' });
  const server = createCaliberMcpServer({ tools, principal, call });

  let closing: Promise<void> | undefined;
  const shutdown = () =>
    (closing ??= (async () => {
      await server.close().catch(() => undefined);
      await gateway.close();
      await platform.close();
      process.exit(0);
    })());
  // The client ends the session by closing stdin (or with a signal).
  process.stdin.on('end', shutdown);
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  await server.connect(new StdioServerTransport());
  log.info({ principal, tools: principal === 'admin' ? tools.length : tools.filter((t) => t.spec.tenant).length }, 'MCP server on stdio');
});
