import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, open, readdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { FineTuningConfig } from '../config.ts';
import { datasetPaths } from '../dataset.ts';
import type { FineTuneProvider, FollowResult, ProviderJob } from './provider.ts';

/** Settings of Caliber's own that a training command has no business reading. */
const WITHHELD_ENV = ['CALIBER_API_KEY', 'FINE_TUNE_API_KEY', 'AA_API_KEY', 'DATABASE_URL', 'REDIS_URL', 'TEST_DATABASE_URL', 'TEST_REDIS_URL'];

/** A line a training command prints to name the model it produced. */
const RESULT_LINE = /^\s*fine_tuned_model\s*[=:]\s*(\S+)\s*$/;

/** Output read per poll at most; the rest is read by the next ones. */
const MAX_READ_BYTES = 1 << 20;

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

/** Where run `run` of a job keeps its output and, once it ends, its exit code. */
export function runFiles(dir: string, run: number) {
  const output = join(dir, 'output');
  return { output, log: join(output, `run-${run}.log`), exit: join(output, `run-${run}.exit`) };
}

const hasProc = async () => readdir('/proc').then(() => true, () => false);

/**
 * Whether `pid` is a live process of the job's run: running (a zombie waiting to be reaped is not)
 * and, where /proc says so, with the job's id and run in its environment — a pid the system reused
 * for something else is not ours.
 */
async function isRunProcess(pid: number, jobId: string, run: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  if (!(await hasProc())) return true;
  const [stat, environ] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ''), readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '')]);
  if (/^\d+ \(.*\) Z/s.test(stat)) return false;
  const vars = environ.split('\0');
  return vars.includes(`CALIBER_FINE_TUNE_JOB_ID=${jobId}`) && vars.includes(`CALIBER_RUN=${run}`);
}

/** The process group leader of a job's run on this host, if one runs (found through /proc). */
async function findRunProcess(jobId: string, run: number): Promise<number | undefined> {
  if (!(await hasProc())) return undefined;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    const pgrp = Number(/^\d+ \(.*\) \S+ \d+ (\d+)/s.exec(stat)?.[1]);
    if (pgrp === pid && (await isRunProcess(pid, jobId, run))) return pid;
  }
  return undefined;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** Complete lines of `file` from `offset` (all that is left, partial last line too, when `final`). */
async function readLines(file: string, offset: number, final: boolean): Promise<{ lines: string[]; offset: number; more: boolean }> {
  const handle = await open(file, 'r').catch(() => undefined);
  if (!handle) return { lines: [], offset, more: false };
  try {
    const { size } = await handle.stat();
    const length = Math.min(size - offset, MAX_READ_BYTES);
    if (length <= 0) return { lines: [], offset, more: false };
    const buf = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buf, 0, length, offset);
    const more = offset + bytesRead < size;
    const end = final && !more ? bytesRead : buf.lastIndexOf(0x0a, bytesRead - 1) + 1;
    if (end <= 0) return { lines: [], offset, more };
    const text = buf.subarray(0, end).toString('utf8');
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    return { lines: lines.map((l) => l.replace(/\r$/, '')), offset: offset + end, more };
  } finally {
    await handle.close();
  }
}

/** The last non-empty line of a file (its last 4 KiB), for a failure's message. */
async function lastLine(file: string): Promise<string> {
  const handle = await open(file, 'r').catch(() => undefined);
  if (!handle) return '';
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, 4096);
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, size - length);
    return buf.toString('utf8').split('\n').map((l) => l.trim()).filter(Boolean).at(-1) ?? '';
  } finally {
    await handle.close();
  }
}

/**
 * Self-hosted training: runs FINE_TUNE_COMMAND through `/bin/sh -c` with the training file (and the
 * validation file, when there is one) as arguments, detached in a process group of its own, its
 * output appended to `<job dir>/output/run-<n>.log` and its exit code written beside it when it
 * ends. Nothing ties it to the worker that started it: each poll (every FINE_TUNE_COMMAND_POLL_MS,
 * by any worker on the same host) copies new output lines into the job's log and checks whether it
 * still runs, so a worker restarting or dying does not stop the training. Exit code 0 succeeds; a
 * line `fine_tuned_model=<id>` names the result. Cancel sends SIGTERM to the group, then SIGKILL
 * after FINE_TUNE_KILL_GRACE_MS.
 */
export function commandProvider(config: Pick<FineTuningConfig, 'FINE_TUNE_COMMAND' | 'FINE_TUNE_KILL_GRACE_MS' | 'FINE_TUNE_COMMAND_POLL_MS' | 'FINE_TUNE_DATA_DIR'>): FineTuneProvider {
  const command = config.FINE_TUNE_COMMAND!;
  const wrapper = `{ ${command} "$@"\n} >> "$CALIBER_COMMAND_LOG" 2>&1; echo $? > "$CALIBER_COMMAND_EXIT.tmp" && mv "$CALIBER_COMMAND_EXIT.tmp" "$CALIBER_COMMAND_EXIT"`;

  const located = (job: ProviderJob & { providerJobId: string }) => {
    const ref = parseCommandJobId(job.providerJobId);
    if (!ref) throw new Error(`not a command's process: ${job.providerJobId}`);
    return ref;
  };

  return {
    name: 'command',
    pollMs: config.FINE_TUNE_COMMAND_POLL_MS,

    async submit(job, dataset, ctx) {
      const run = job.runs + 1;
      const files = runFiles(dataset.dir, run);
      // An earlier attempt may have started this run and died before recording it.
      const running = await findRunProcess(job.id, run);
      if (running) {
        ctx.log.info({ pid: running, run }, 'found the training command an earlier attempt started');
        return { providerJobId: commandJobId(running), state: { status: 'running', providerStatus: `pid ${running}` } };
      }
      if (ctx.cancelRequested) return null;
      await mkdir(files.output, { recursive: true });
      const env: NodeJS.ProcessEnv = { ...process.env };
      for (const k of WITHHELD_ENV) delete env[k];
      Object.assign(env, {
        CALIBER_FINE_TUNE_JOB_ID: job.id,
        CALIBER_MODEL_ID: job.modelId,
        CALIBER_BASE_MODEL: job.baseModel,
        CALIBER_TRAINING_FILE: dataset.trainingPath,
        CALIBER_VALIDATION_FILE: dataset.validationPath ?? '',
        CALIBER_OUTPUT_DIR: files.output,
        CALIBER_RUN: String(run),
        CALIBER_COMMAND_LOG: files.log,
        CALIBER_COMMAND_EXIT: files.exit,
        // Output goes to a file: without this, Python would hold it back in its buffer.
        PYTHONUNBUFFERED: env.PYTHONUNBUFFERED ?? '1',
      });
      const args = [dataset.trainingPath, ...(dataset.validationPath ? [dataset.validationPath] : [])];
      const child = spawn('/bin/sh', ['-c', wrapper, 'caliber-fine-tune', ...args], { cwd: files.output, env, detached: true, stdio: 'ignore' });
      child.unref();
      const [outcome] = (await Promise.race([once(child, 'spawn').then(() => ['spawned']), once(child, 'error')])) as [unknown];
      if (outcome !== 'spawned') throw new Error(`could not run /bin/sh for FINE_TUNE_COMMAND: ${(outcome as Error).message}`);
      ctx.log.info({ pid: child.pid, run }, 'training command started');
      return { providerJobId: commandJobId(child.pid!), state: { status: 'running', providerStatus: `pid ${child.pid}` } };
    },

    async follow(job): Promise<FollowResult> {
      const ref = located(job);
      if (ref.host !== hostname()) return { status: 'elsewhere', providerStatus: `runs on ${ref.host}` };
      const files = runFiles(datasetPaths(config, job.id).dir, job.runs);
      const alive = await isRunProcess(ref.pid, job.id, job.runs);
      const read = await readLines(files.log, job.outputOffset, !alive);
      const fineTunedModel = read.lines.map(fineTunedModelFrom).filter(Boolean).at(-1) ?? null;
      const output = { lines: read.lines, offset: read.offset };
      // Still running, or output left to copy before its end is reported.
      if (alive || read.more) return { status: 'running', providerStatus: alive ? `pid ${ref.pid}` : 'ended; copying its output', output, fineTunedModel };
      const exit = await readFile(files.exit, 'utf8').then((t) => Number(t.trim()), () => undefined);
      if (exit === 0) return { status: 'succeeded', providerStatus: 'exit 0', output, fineTunedModel };
      if (exit === undefined && job.cancelSentAt) return { status: 'cancelled', providerStatus: 'stopped', output };
      const last = read.lines.map((l) => l.trim()).filter(Boolean).at(-1) ?? (await lastLine(files.log));
      const how = exit === undefined || Number.isNaN(exit) ? 'stopped without an exit status (killed?)' : `exited with code ${exit}`;
      return { status: 'failed', providerStatus: exit === undefined ? 'killed' : `exit ${exit}`, error: `training command ${how}${last ? `: ${last.slice(0, 500)}` : ''}`, output };
    },

    async cancel(job, ctx) {
      const ref = located(job);
      if (ref.host !== hostname() || !(await isRunProcess(ref.pid, job.id, job.runs))) return;
      if (job.cancelSentAt && Date.now() - job.cancelSentAt.getTime() < config.FINE_TUNE_KILL_GRACE_MS) return;
      if (!job.cancelSentAt) return killGroup(ref.pid, 'SIGTERM');
      ctx.log.warn({ pid: ref.pid }, 'training command still runs after FINE_TUNE_KILL_GRACE_MS; killing it');
      killGroup(ref.pid, 'SIGKILL');
    },
  };
}
