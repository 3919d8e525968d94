import { Cluster, Redis, type RedisOptions } from 'ioredis';

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

const CLUSTER_URL = /^(rediss?)-cluster:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]+)\/?$/;

/** `redis-cluster://[user:password@]host:port,host:port,…` (or `rediss-cluster://` for TLS): the seed nodes of a Redis Cluster. */
export function parseClusterUrl(url: string): { nodes: { host: string; port: number }[]; username?: string; password?: string; tls: boolean } | undefined {
  const m = CLUSTER_URL.exec(url);
  if (!m) return undefined;
  const nodes = m[4]!.split(',').map((hp) => {
    const at = hp.lastIndexOf(':');
    const host = at > 0 ? hp.slice(0, at).replace(/^\[|\]$/g, '') : hp;
    const port = at > 0 ? Number(hp.slice(at + 1)) : 6379;
    return { host, port };
  });
  if (nodes.some((n) => !n.host || !Number.isInteger(n.port) || n.port < 1 || n.port > 65535)) return undefined;
  const decode = (v: string | undefined) => (v ? decodeURIComponent(v) : undefined);
  return { nodes, username: decode(m[2]), password: decode(m[3]), tls: m[1] === 'rediss' };
}

/**
 * A Redis client for `url`: one server, or a Redis Cluster (`redis-cluster://h1:7000,h2:7001`).
 * Every key Caliber uses carries a hash tag (a queue's keys share `{<prefix>:<queue>}`), so
 * BullMQ's scripts and our own stay in one slot while different queues spread over the cluster.
 * A Cluster speaks the same commands; it is typed as `Redis` so callers need not care which.
 */
export function createRedis(url: string, role: RedisRole, name: string): Redis {
  const cluster = parseClusterUrl(url);
  if (cluster) {
    const options = redisOptions(role);
    const client = new Cluster(cluster.nodes, {
      redisOptions: {
        ...options,
        connectionName: name,
        username: cluster.username,
        password: cluster.password,
        ...(cluster.tls ? { tls: {} } : {}),
      },
      enableOfflineQueue: options.enableOfflineQueue ?? true,
      clusterRetryStrategy: options.retryStrategy,
      // A slot moving (resharding, failover) is followed, not reported as an error.
      maxRedirections: 16,
    });
    client.on('error', () => {});
    return client as unknown as Redis;
  }
  const client = new Redis(url, { ...redisOptions(role), connectionName: name });
  // Errors surface on the commands that fail; without a listener ioredis would print each retry.
  client.on('error', () => {});
  return client;
}

/**
 * Whether Redis answers within `timeoutMs`; never throws. On a Cluster, a PING reaches one node
 * only: the cluster must also say its state is ok (every slot served).
 */
export async function pingRedis(client: Redis, timeoutMs = 1_000): Promise<boolean> {
  try {
    const answer = await Promise.race([
      (client as unknown as { isCluster?: boolean }).isCluster
        ? (client as unknown as Cluster).cluster('INFO').then((info) => (/cluster_state:ok/.test(String(info)) ? 'PONG' : 'FAIL'))
        : client.ping(),
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
