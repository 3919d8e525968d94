import { serve } from '@hono/node-server';
import { createGateway } from '../apps/gateway/src/app.ts';
import { createPlatform, createRouter, loadPlatformConfig, type DomainModule } from '../libs/platform/src/index.ts';

/**
 * The floor for `best-model`: the real gateway (same middleware: request id, logging, metrics,
 * body limit, Bearer auth, error handling) in its own process, with one extra route answering a
 * constant JSON shaped like a best-model answer. The ratio then prices exactly what the
 * best-model handler adds: query validation, the Redis cache lookup, the JSON.
 * Started as `node --import tsx bench/floor-server.ts <port>` with the stack's settings.
 */
const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) throw new Error('usage: floor-server.ts <port>');

const answer = { model: 'llama-3.3-70b-versatile', provider: 'groq', aa_slug: 'llama-3-3-instruct-70b', metric: 'intelligence_index', value: 41 };
const constant: DomainModule = {
  name: 'bench-floor',
  routes: () => {
    const app = createRouter();
    app.get('/best-model', (c) => c.json(answer, 200));
    return app;
  },
};

const platform = createPlatform(loadPlatformConfig(), { name: 'bench-floor' });
const gateway = createGateway(platform, [constant]);
const server = serve({ fetch: gateway.app.fetch, port, hostname: '127.0.0.1' });
process.once('SIGTERM', () =>
  server.close(async () => {
    await gateway.close();
    await platform.close();
    process.exit(0);
  }),
);
