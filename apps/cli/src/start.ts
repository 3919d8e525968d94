import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { QUEUE_NAMES, type QueueName } from '@caliber/platform';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const GATEWAY_ENTRY = fileURLToPath(new URL('../../gateway/src/main.ts', import.meta.url));
const WORKER_ENTRY = fileURLToPath(new URL('../../worker/src/main.ts', import.meta.url));

/** Default worker processes: each group scales (and can be restarted) on its own. */
export const DEFAULT_WORKER_GROUPS = 'calibrate,update-reference;retag-file;map-models,analyze-errors,fine-tune,notify';

/**
 * `WORKER_GROUPS` ("a,b;c"), restricted to queues that have processors; empty groups are dropped.
 */
export function workerGroups(spec: string, withProcessors: ReadonlySet<QueueName>): QueueName[][] {
  const groups = spec.split(';').map((g) => g.split(',').map((q) => q.trim()).filter(Boolean));
  const unknown = groups.flat().filter((q) => !(QUEUE_NAMES as readonly string[]).includes(q));
  if (unknown.length > 0) throw new Error(`WORKER_GROUPS names unknown queue(s): ${unknown.join(', ')}`);
  return groups.map((g) => (g as QueueName[]).filter((q) => withProcessors.has(q))).filter((g) => g.length > 0);
}

/**
 * The admin key for a local `npm start` without CALIBER_API_KEY: generated once and kept in
 * `.caliber/api-key` (git-ignored) so it survives restarts.
 */
export function localApiKey(): { key: string; generated: boolean } {
  const dir = `${ROOT}.caliber`;
  const file = `${dir}/api-key`;
  if (existsSync(file)) return { key: readFileSync(file, 'utf8').trim(), generated: false };
  const key = randomBytes(24).toString('base64url');
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return { key, generated: true };
}

interface Supervised {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

function launch(name: string, entry: string, args: string[], env: NodeJS.ProcessEnv): Supervised {
  // Own process group: Ctrl-C reaches only the supervisor, which then stops each child once.
  const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], { cwd: ROOT, env, stdio: 'inherit', detached: true });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : null))));
  return { name, child, exited };
}

/**
 * Runs the gateway and one worker process per group until SIGINT/SIGTERM, then stops them all
 * (each finishes or releases its active jobs). If one dies on its own, the others are stopped too
 * and the exit code says so, so a process manager can restart the set.
 */
export async function superviseProcesses(opts: {
  env: NodeJS.ProcessEnv;
  groups: QueueName[][];
  shutdownTimeoutMs: number;
  log: (message: string) => void;
}): Promise<number> {
  const processes = [
    launch('gateway', GATEWAY_ENTRY, [], opts.env),
    ...opts.groups.map((g) => launch(`worker[${g.join(',')}]`, WORKER_ENTRY, ['--queues', g.join(',')], opts.env)),
  ];
  let stopping = false;
  const stopAll = async (reason: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    opts.log(`stopping (${reason})…`);
    for (const p of processes) if (p.child.exitCode === null) p.child.kill('SIGTERM');
    const killer = setTimeout(() => {
      for (const p of processes) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    }, opts.shutdownTimeoutMs + 5_000);
    await Promise.all(processes.map((p) => p.exited));
    clearTimeout(killer);
  };

  const firstExit = Promise.race(processes.map((p) => p.exited.then((code) => ({ p, code }))));
  const signalled = new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  // If the supervisor itself dies, take the children with it.
  process.once('exit', () => processes.forEach((p) => p.child.exitCode === null && p.child.kill('SIGKILL')));

  const outcome = await Promise.race([signalled.then((s) => ({ signal: s })), firstExit]);
  if ('signal' in outcome) {
    await stopAll(outcome.signal);
    const codes = await Promise.all(processes.map((p) => p.exited));
    const bad = processes.filter((_, i) => codes[i] !== 0);
    if (bad.length > 0) opts.log(`did not stop cleanly: ${bad.map((p) => p.name).join(', ')}`);
    opts.log('stopped');
    return bad.length > 0 ? 1 : 0;
  }
  opts.log(`${outcome.p.name} exited unexpectedly (code ${outcome.code})`);
  await stopAll(`${outcome.p.name} exited`);
  return 1;
}
