import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export const REDIS_SERVER = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => existsSync(p));
const REDIS_CLI = ['/usr/bin/redis-cli', '/usr/local/bin/redis-cli'].find((p) => existsSync(p));

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * A local Redis Cluster of `masters` masters (no replicas) on spare ports, made the way an
 * operator would: `redis-server --cluster-enabled yes` per node, then `redis-cli --cluster create`.
 */
export async function startRedisCluster(masters = 3): Promise<{ url: string; ports: number[]; keysPerNode(pattern: string): Promise<number[]>; stop(): Promise<void> }> {
  if (!REDIS_SERVER || !REDIS_CLI) throw new Error('redis-server and redis-cli are needed');
  const dir = await mkdtemp(join(tmpdir(), 'caliber-redis-cluster-'));
  const ports: number[] = [];
  const children: ChildProcess[] = [];
  for (let i = 0; i < masters; i++) {
    // Cluster nodes also listen on port + 10000 (the bus). Both are picked below the kernel's
    // ephemeral range (where port-0 servers of other tests land), so nothing else takes them
    // between the check and redis-server's bind.
    let port = 0;
    for (;;) {
      port = 12_000 + Math.floor(Math.random() * 9_000);
      if (ports.includes(port)) continue;
      if ((await portFree(port)) && (await portFree(port + 10_000))) break;
    }
    ports.push(port);
    children.push(
      spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' }),
    );
  }
  const stop = async () => {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(undefined) : c.once('exit', r)))));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 10_000;
    for (const port of ports) {
      for (;;) {
        const r = spawnSync(REDIS_CLI, ['-p', String(port), 'ping'], { encoding: 'utf8' });
        if (r.stdout.trim() === 'PONG') break;
        if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start`);
        await new Promise((res) => setTimeout(res, 50));
      }
    }
    const created = spawnSync(REDIS_CLI, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8' });
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
    for (const port of ports) {
      for (;;) {
        const info = spawnSync(REDIS_CLI, ['-p', String(port), 'cluster', 'info'], { encoding: 'utf8' }).stdout;
        if (info.includes('cluster_state:ok')) break;
        if (Date.now() > deadline + 20_000) throw new Error(`cluster not ok on ${port}: ${info}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: `redis-cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    ports,
    async keysPerNode(pattern: string) {
      return Promise.all(
        ports.map(async (port) => {
          const node = new Redis({ port, host: '127.0.0.1', lazyConnect: true });
          await node.connect();
          let cursor = '0';
          let n = 0;
          do {
            const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
            n += keys.length;
            cursor = next;
          } while (cursor !== '0');
          node.disconnect();
          return n;
        }),
      );
    },
    stop,
  };
}
