import { Redis, type RedisOptions } from 'ioredis';

/**
 * `producer`: request/response clients (the gateway). They fail fast instead of queueing commands
 * while Redis is away, so an HTTP request answers 503 at once rather than hanging.
 * `blocking`: workers and event listeners. BullMQ requires `maxRetriesPerRequest: null` for them,
 * and they wait for Redis to come back.
 */
export type RedisRole = 'producer' | 'blocking';

export function redisOptions(role: RedisRole): RedisOptions {
  const common: RedisOptions = {
    connectTimeout: 5_000,
    // Reconnect forever, backing off up to 2 s: a Redis restart must not need a process restart.
    retryStrategy: (times) => Math.min(times * 100, 2_000),
  };
  return role === 'producer'
    ? { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 1 }
    : { ...common, maxRetriesPerRequest: null };
}

export function createRedis(url: string, role: RedisRole, name: string): Redis {
  const client = new Redis(url, { ...redisOptions(role), connectionName: name });
  // Errors surface on the commands that fail; without a listener ioredis would print each retry.
  client.on('error', () => {});
  return client;
}

/** Whether Redis answers within `timeoutMs`; never throws. */
export async function pingRedis(client: Redis, timeoutMs = 1_000): Promise<boolean> {
  try {
    const answer = await Promise.race([
      client.ping(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), timeoutMs).unref()),
    ]);
    return answer === 'PONG';
  } catch {
    return false;
  }
}

/** Closes a client politely when it can, and at once when Redis is away (QUIT would wait forever). */
export async function closeRedis(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  if (client.status === 'ready') {
    const quit = client.quit().catch(() => {});
    const timeout = new Promise((r) => setTimeout(r, 1_000).unref());
    await Promise.race([quit, timeout]);
  }
  client.disconnect();
}

export type { Redis };
