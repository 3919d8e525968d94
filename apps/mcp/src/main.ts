import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createGateway } from '@caliber/gateway';
import { gatewayModules } from '@caliber/gateway/modules';
import { buildTools, createCaliberMcpServer, gatewayCaller, type McpPrincipal } from '@caliber/mcp';
import { ConfigError, createLogger, createPlatform, findTenantKey, loadPlatformConfig, redactUrl, runMain, secretsEqual, TENANT_KEY_PREFIX } from '@caliber/platform';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** How long a closing session waits for the answers still being worked out. */
const DRAIN_MS = 30_000;

async function until(ready: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

/**
 * Caliber over MCP's stdio transport, for an MCP client on this machine: the gateway's routes in
 * this process (no port), each tool called as the key in CALIBER_MCP_KEY (default: the admin
 * key). Jobs are done by the workers `npm start` runs. stdout carries the protocol only: logs go
 * to stderr.
 */
runMain(async () => {
  process.chdir(ROOT);
  if (existsSync('.env')) process.loadEnvFile('.env');
  const keyFile = '.caliber/api-key';
  const apiKey = process.env.CALIBER_API_KEY ?? (existsSync(keyFile) ? readFileSync(keyFile, 'utf8').trim() : undefined);
  const config = loadPlatformConfig({ ...process.env, ...(apiKey ? { CALIBER_API_KEY: apiKey } : {}) });
  const key = process.env.CALIBER_MCP_KEY ?? config.CALIBER_API_KEY;
  if (!key) throw new ConfigError(['CALIBER_MCP_KEY (or CALIBER_API_KEY, or .caliber/api-key from npm start): the key the tools act as']);
  const log = createLogger({ level: config.LOG_LEVEL, name: 'mcp', destination: process.stderr });
  const platform = createPlatform(config, { name: 'mcp', log });

  // Ended before it started (a client giving up): leave quietly.
  let stopping = false;
  const early = () => {
    stopping = true;
  };
  process.once('SIGINT', early).once('SIGTERM', early);

  let principal: McpPrincipal | undefined;
  if (config.CALIBER_API_KEY && secretsEqual(key, config.CALIBER_API_KEY)) principal = 'admin';
  else if (key.startsWith(TENANT_KEY_PREFIX)) {
    const tenant = await findTenantKey(platform.pool, key).catch((err: Error) => {
      throw new Error(`Postgres did not answer at ${redactUrl(config.DATABASE_URL)} (${err.message}); it is needed to check CALIBER_MCP_KEY`);
    });
    if (tenant) principal = 'tenant';
  }
  if (!principal) {
    await platform.close();
    throw new Error('CALIBER_MCP_KEY is neither the admin key nor an active tenant key');
  }
  // A client calls a tool at once after starting us: be connected first (the gateway's Redis client
  // fails fast rather than queueing commands, so an early call would get 503).
  if (!(await until(() => platform.redis.status === 'ready' || stopping, 5_000))) {
    log.warn({ redis: redactUrl(config.REDIS_URL) }, 'Redis is not answering yet; tools that start jobs answer queue_unavailable until it does');
  }
  if (stopping) {
    await platform.close();
    process.exit(0);
  }

  const gateway = createGateway(platform, gatewayModules());
  const tools = buildTools(gateway.app.openAPIRegistry.definitions);
  const call = gatewayCaller({ fetch: (request) => gateway.app.fetch(request), origin: 'http://caliber.mcp', headers: { authorization: `Bearer ${key}` }, mayNameTenant: principal === 'admin' });
  const server = createCaliberMcpServer({ tools, principal, call });
  const transport = new StdioServerTransport();
  await server.connect(transport);

  // Requests read but not yet answered: a client that writes its last request and closes stdin
  // still gets every answer before we exit.
  const pending = new Set<string | number>();
  const receive = transport.onmessage;
  transport.onmessage = (message: JSONRPCMessage) => {
    if ('method' in message && 'id' in message) pending.add(message.id);
    receive?.(message);
  };
  const send = transport.send.bind(transport);
  transport.send = async (message: JSONRPCMessage) => {
    await send(message);
    if (('result' in message || 'error' in message) && 'id' in message && message.id !== undefined) pending.delete(message.id as string | number);
  };

  let closing: Promise<void> | undefined;
  const shutdown = (why: string) =>
    (closing ??= (async () => {
      const drained = await until(() => pending.size === 0, DRAIN_MS);
      if (!drained) log.warn({ pending: pending.size }, 'closing with requests unanswered');
      log.info({ why }, 'MCP session ending');
      await server.close().catch(() => undefined);
      await gateway.close();
      await platform.close();
      process.exit(0);
    })());
  process.stdin.on('end', () => void shutdown('stdin closed'));
  process.removeListener('SIGINT', early).removeListener('SIGTERM', early);
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  log.info({ principal, tools: principal === 'admin' ? tools.length : tools.filter((t) => t.spec.tenant).length }, 'MCP server on stdio');
});
