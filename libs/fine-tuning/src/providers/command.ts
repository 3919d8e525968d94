import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { FineTuningConfig } from '../config.ts';
import type { FineTuneProvider, ProviderContext, ProviderState } from './provider.ts';

/** Settings of Caliber's own that a training command has no business reading. */
const WITHHELD_ENV = ['CALIBER_API_KEY', 'FINE_TUNE_API_KEY', 'AA_API_KEY', 'DATABASE_URL', 'REDIS_URL', 'TEST_DATABASE_URL', 'TEST_REDIS_URL'];

/** A line a training command prints to name the model it produced. */
const RESULT_LINE = /^\s*fine_tuned_model\s*[=:]\s*(\S+)\s*$/;

export function fineTunedModelFrom(line: string): string | undefined {
  return RESULT_LINE.exec(line)?.[1];
}

/** `pid:<pid>@<host>`: the process group a job's command runs in. */
export function commandJobId(pid: number, host = hostname()): string {
  return `pid:${pid}@${host}`;
}

export function parseCommandJobId(id: string): { pid: number; host: string } | undefined {
  const m = /^pid:(\d+)@(.+)$/.exec(id);
  return m ? { pid: Number(m[1]), host: m[2]! } : undefined;
}

interface RunningCommand {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  lastLine: string;
  fineTunedModel: string | undefined;
}

/** Commands this process started, by job id; killed with the process if it exits while they run. */
const running = new Map<string, RunningCommand>();
let exitHookInstalled = false;

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const r of running.values()) if (r.child.exitCode === null && r.child.signalCode === null) killGroup(r.child.pid, 'SIGKILL');
  });
}

/**
 * Stops what is left of a job's command started by a process that died (SIGKILL, a crash), when
 * it runs on this host and is verifiably that job's (its environment names the job). Returns what
 * was found.
 */
async function stopOrphan(jobId: string, providerJobId: string): Promise<'stopped' | 'gone' | 'elsewhere'> {
  const ref = parseCommandJobId(providerJobId);
  if (!ref) return 'gone';
  if (ref.host !== hostname()) return 'elsewhere';
  const environ = await readFile(`/proc/${ref.pid}/environ`, 'utf8').catch(() => undefined);
  if (environ === undefined || !environ.split('\0').includes(`CALIBER_FINE_TUNE_JOB_ID=${jobId}`)) return 'gone';
  killGroup(ref.pid, 'SIGKILL');
  return 'stopped';
}

async function stop(r: RunningCommand, graceMs: number): Promise<void> {
  killGroup(r.child.pid, 'SIGTERM');
  const timer = setTimeout(() => killGroup(r.child.pid, 'SIGKILL'), graceMs);
  await r.exited;
  clearTimeout(timer);
}

/**
 * Self-hosted training: runs FINE_TUNE_COMMAND through `/bin/sh -c` with the training file (and the
 * validation file, when there is one) as arguments, in a process group of its own. Its output
 * goes line by line into the job's log; its exit code decides (0: succeeded); a line
 * `fine_tuned_model=<id>` names the result. Cancel sends SIGTERM to the group, then SIGKILL after
 * FINE_TUNE_KILL_GRACE_MS. If the worker dies, the next one stops what is left of the process
 * (same host) and starts the command again: training commands are expected to restart (or resume
 * from CALIBER_OUTPUT_DIR).
 */
export function commandProvider(config: Pick<FineTuningConfig, 'FINE_TUNE_COMMAND' | 'FINE_TUNE_KILL_GRACE_MS'>): FineTuneProvider {
  const command = config.FINE_TUNE_COMMAND!;
  return {
    name: 'command',
    waits: true,

    async submit(job, dataset, ctx) {
      const outputDir = join(dataset.dir, 'output');
      await mkdir(outputDir, { recursive: true });
      const env: NodeJS.ProcessEnv = { ...process.env };
      for (const k of WITHHELD_ENV) delete env[k];
      Object.assign(env, {
        CALIBER_FINE_TUNE_JOB_ID: job.id,
        CALIBER_MODEL_ID: job.modelId,
        CALIBER_BASE_MODEL: job.baseModel,
        CALIBER_TRAINING_FILE: dataset.trainingPath,
        CALIBER_VALIDATION_FILE: dataset.validationPath ?? '',
        CALIBER_OUTPUT_DIR: outputDir,
        CALIBER_RUN: String(job.runs + 1),
      });
      const args = [dataset.trainingPath, ...(dataset.validationPath ? [dataset.validationPath] : [])];
      const child = spawn('/bin/sh', ['-c', `${command} "$@"`, 'caliber-fine-tune', ...args], {
        cwd: outputDir,
        env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const r: RunningCommand = {
        child,
        exited: new Promise((resolve) => {
          // Output may still be in the pipes at exit: wait for them to close, but not for a
          // background process the command left holding them.
          child.once('exit', (code, signal) => {
            const timer = setTimeout(() => resolve({ code, signal }), 2_000);
            child.once('close', () => {
              clearTimeout(timer);
              resolve({ code, signal });
            });
          });
          child.once('error', (err) => {
            r.lastLine = `could not run the command: ${err.message}`;
            resolve({ code: null, signal: null });
          });
        }),
        lastLine: '',
        fineTunedModel: undefined,
      };
      for (const stream of [child.stdout!, child.stderr!]) {
        createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
          if (line.trim()) r.lastLine = line;
          r.fineTunedModel = fineTunedModelFrom(line) ?? r.fineTunedModel;
          ctx.output([line]);
        });
      }
      installExitHook();
      // Kept until follow() has read how it ended (a quick command may end before it is called).
      running.set(job.id, r);
      ctx.log.info({ pid: child.pid, run: job.runs + 1 }, 'training command started');
      return { providerJobId: commandJobId(child.pid ?? 0), state: { status: 'running', providerStatus: 'started' } };
    },

    async follow(job, ctx: ProviderContext): Promise<ProviderState> {
      const r = running.get(job.id);
      if (!r) {
        const found = await stopOrphan(job.id, job.providerJobId);
        ctx.log.warn({ found, providerJobId: job.providerJobId }, 'training command lost with its worker');
        return { status: 'lost', providerStatus: found === 'elsewhere' ? `may still run on ${parseCommandJobId(job.providerJobId)?.host}` : found };
      }
      const onAbort = () => void stop(r, config.FINE_TUNE_KILL_GRACE_MS);
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      if (ctx.signal.aborted) onAbort();
      try {
        const { code, signal } = await r.exited;
        if (ctx.signal.aborted) return { status: 'cancelled', providerStatus: `stopped (${signal ?? `exit ${code}`})` };
        if (code === 0) return { status: 'succeeded', providerStatus: 'exit 0', fineTunedModel: r.fineTunedModel ?? null };
        const how = code === null ? (signal ? `was killed by ${signal}` : 'could not start') : `exited with code ${code}`;
        return { status: 'failed', providerStatus: code === null ? String(signal) : `exit ${code}`, error: `training command ${how}${r.lastLine ? `: ${r.lastLine.slice(0, 500)}` : ''}` };
      } finally {
        ctx.signal.removeEventListener('abort', onAbort);
        running.delete(job.id);
      }
    },

    async cancel(job) {
      const r = running.get(job.id);
      if (r) {
        await stop(r, config.FINE_TUNE_KILL_GRACE_MS);
        running.delete(job.id);
      } else await stopOrphan(job.id, job.providerJobId);
    },
  };
}
