import { serve } from '@hono/node-server';
import { createPlatform, loadPlatformConfig, onShutdownSignal, redactUrl, runMain } from '@caliber/platform';
import { createGateway } from './app.ts';
import { gatewayModules } from './modules.ts';

runMain(async () => {
  const config = loadPlatformConfig();
  const modules = gatewayModules();
  const platform = createPlatform(config, { name: 'gateway' });
  const gateway = createGateway(platform, modules);
  const server = serve({ fetch: gateway.app.fetch, port: config.PORT });
  server.on('listening', () =>
    platform.log.info({ port: config.PORT, database: redactUrl(config.DATABASE_URL), redis: redactUrl(config.REDIS_URL) }, 'gateway listening'),
  );

  onShutdownSignal(platform.log, async () => {
    // Stop accepting, let requests in flight finish (bounded), then close connections.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    const timer = setTimeout(() => {
      platform.log.warn('requests still open after SHUTDOWN_TIMEOUT_MS; closing them');
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
    }, config.SHUTDOWN_TIMEOUT_MS);
    (server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
    await closed;
    clearTimeout(timer);
    await gateway.close();
    await platform.close();
  });
});
