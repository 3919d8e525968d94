import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { delay } from '@caliber/platform';
import type { FineTuningConfig } from '../config.ts';
import { datasetPaths } from '../dataset.ts';
import type { FineTuneProvider, FollowResult, ProviderJob } from './provider.ts';

/** Settings of Caliber's own that a training command has no business reading. */
const WITHHELD_ENV = ['CALIBER_API_KEY', 'FINE_TUNE_API_KEY', 'AA_API_KEY', 'DATABASE_URL', 'REDIS_URL', 'TEST_DATABASE_URL', 'TEST_REDIS_URL'];

/** A line a training command prints to name the model it produced. */
const RESULT_LINE = /^\s*fine_tuned_model\s*[=:]\s*(\S+)\s*$/;

/** Output read per poll at most; the rest is read by the next ones. */
export const MAX_READ_BYTES = 1 << 20;

/**
 * The process started for a run. It ignores SIGTERM itself (the command in it gets the signal),
 * runs the command in a shell of its own — so `exec`, `exit`, `set -e` or a syntax error end only
 * that shell, with the message in the log — and writes the exit code once the command has ended.
 */
const WRAPPER = `trap : TERM INT
/bin/sh -c "$CALIBER_COMMAND"' "$@"' caliber-fine-tune "$@" >> "$CALIBER_COMMAND_LOG" 2>&1
code=$?
echo "$code" > "$CALIBER_COMMAND_EXIT.tmp" && mv "$CALIBER_COMMAND_EXIT.tmp" "$CALIBER_COMMAND_EXIT"`;

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

/** Where run `run` of a job keeps its output, its process id and, once it ends, its exit code. */
export function runFiles(dir: string, run: number) {
  const output = join(dir, 'output');
  const base = join(output, `run-${run}`);
  return { output, log: `${base}.log`, pid: `${base}.pid`, exit: `${base}.exit` };
}

/** An exit code as the wrapper wrote it, or undefined for a missing, empty or garbled file. */
export function parseExitCode(text: string | undefined): number | undefined {
  const t = text?.trim() ?? '';
  return /^\d{1,3}$/.test(t) ? Number(t) : undefined;
}

/** State and process group of /proc/<pid>/stat; the name in parentheses may hold anything. */
export function parseProcStat(stat: string): { state: string; pgrp: number } | undefined {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const pgrp = Number(fields[2]);
  return fields[0] && Number.isInteger(pgrp) ? { state: fields[0], pgrp } : undefined;
}

/**
 * Splits what was read into lines at `\n`, `\r\n` or a lone `\r` (progress bars redraw with it),
 * leaving an unfinished last line for the next read — unless this is the last read (`final`), or
 * the chunk is a full read with no line end at all (one line longer than a read: it is cut).
 */
export function splitOutput(buf: Buffer, final: boolean, full: boolean): { lines: string[]; consumed: number } {
  let end = buf.length;
  if (!final) {
    end = Math.max(buf.lastIndexOf(0x0a), buf.lastIndexOf(0x0d)) + 1;
    if (end === 0 && full) end = buf.length;
  }
  const lines = buf
    .subarray(0, end)
    .toString('utf8')
    .split(/\r\n|\r|\n/)
    .filter((l) => l.trim() !== '');
  return { lines, consumed: end };
}

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
    const { lines, consumed } = splitOutput(buf.subarray(0, bytesRead), final && !more, bytesRead === MAX_READ_BYTES);
    return { lines, offset: offset + consumed, more };
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
    return splitOutput(buf, true, false).lines.at(-1)?.trim() ?? '';
  } finally {
    await handle.close();
  }
}

const hasProc = async () => readdir('/proc').then(() => true, () => false);

/**
 * Whether anything of a run's process group still runs — the wrapper, the command, or what the
 * command started and left behind in the group. Where /proc exists, zombies do not count and a
 * process counts only with the job's id and run in its environment (a pid the system reused for
 * something else is not ours).
 */
async function groupAlive(pgid: number, jobId: string, run: number): Promise<boolean> {
  if (!(await hasProc())) {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  }
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = parseProcStat(await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => ''));
    if (!stat || stat.pgrp !== pgid || stat.state === 'Z') continue;
    const environ = (await readFile(`/proc/${entry}/environ`, 'utf8').catch(() => '')).split('\0');
    if (environ.includes(`CALIBER_FINE_TUNE_JOB_ID=${jobId}`) && environ.includes(`CALIBER_RUN=${run}`)) return true;
  }
  return false;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/**
 * Self-hosted training: runs FINE_TUNE_COMMAND with the training file (and the validation file,
 * when there is one) as its last arguments, detached in a process group of its own, its output
 * appended to `<job dir>/output/run-<n>.log` and its exit code written beside it when it ends.
 * Nothing ties it to the worker that started it: each poll (every FINE_TUNE_COMMAND_POLL_MS, by
 * any worker on the same host) copies new output lines into the job's log and looks whether the
 * group still runs. Exit code 0 succeeds; a line `fine_tuned_model=<id>` names the result. Cancel
 * sends SIGTERM to the group, then SIGKILL once FINE_TUNE_KILL_GRACE_MS has passed.
 */
export function commandProvider(config: Pick<FineTuningConfig, 'FINE_TUNE_COMMAND' | 'FINE_TUNE_KILL_GRACE_MS' | 'FINE_TUNE_COMMAND_POLL_MS' | 'FINE_TUNE_DATA_DIR'>): FineTuneProvider {
  const command = config.FINE_TUNE_COMMAND!.trim();
  const dirOf = (job: ProviderJob) => job.dir ?? datasetPaths(config, job.id).dir;
  const located = (job: ProviderJob & { providerJobId: string }) => {
    const ref = parseCommandJobId(job.providerJobId);
    if (!ref) throw new Error(`not a command's process: ${job.providerJobId}`);
    return { ...ref, here: ref.host === hostname() };
  };

  return {
    name: 'command',
    pollMs: config.FINE_TUNE_COMMAND_POLL_MS,

    async submit(job, dataset, ctx) {
      const run = job.runs + 1;
      const files = runFiles(dataset.dir, run);
      // An earlier attempt started this run and died before recording it: follow that one.
      const started = Number((await readFile(files.pid, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(started) && started > 0) {
        ctx.log.info({ pid: started, run }, 'found the training command an earlier attempt started');
        return { providerJobId: commandJobId(started), state: { status: 'running', providerStatus: `pid ${started}` } };
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
        CALIBER_COMMAND: command,
        CALIBER_COMMAND_LOG: files.log,
        CALIBER_COMMAND_EXIT: files.exit,
        // Output goes to a file: without this, Python would hold it back in its buffer.
        PYTHONUNBUFFERED: env.PYTHONUNBUFFERED ?? '1',
      });
      const args = [dataset.trainingPath, ...(dataset.validationPath ? [dataset.validationPath] : [])];
      const child = spawn('/bin/sh', ['-c', WRAPPER, 'caliber-fine-tune', ...args], { cwd: files.output, env, detached: true, stdio: 'ignore' });
      if (!child.pid) {
        const [err] = (await once(child, 'error')) as [Error];
        throw new Error(`could not run /bin/sh for FINE_TUNE_COMMAND: ${err.message}`);
      }
      // Written before anything else can fail, so a retry finds this run instead of starting another.
      writeFileSync(files.pid, String(child.pid));
      child.unref();
      ctx.log.info({ pid: child.pid, run }, 'training command started');
      return { providerJobId: commandJobId(child.pid), state: { status: 'running', providerStatus: `pid ${child.pid}` } };
    },

    async follow(job): Promise<FollowResult> {
      const ref = located(job);
      const files = runFiles(dirOf(job), job.runs);
      const exitFile = () => readFile(files.exit, 'utf8').catch(() => undefined);
      // On another host, only an exit file on shared storage tells anything.
      if (!ref.here && (await exitFile()) === undefined) return { status: 'elsewhere', providerStatus: `runs on ${ref.host}` };
      const alive = ref.here && (await groupAlive(ref.pid, job.id, job.runs));
      const read = await readLines(files.log, job.outputOffset, !alive);
      const fineTunedModel = read.lines.map(fineTunedModelFrom).filter(Boolean).at(-1) ?? null;
      const output = { lines: read.lines, offset: read.offset, more: read.more };
      if (alive || read.more) return { status: 'running', providerStatus: alive ? `pid ${ref.pid}` : 'ended; copying its output', output, fineTunedModel };
      const exit = parseExitCode(await exitFile());
      if (exit === 0) return { status: 'succeeded', providerStatus: 'exit 0', output, fineTunedModel };
      if (job.cancelSentAt) return { status: 'cancelled', providerStatus: exit === undefined ? 'killed' : `exit ${exit}`, output };
      const last = read.lines.at(-1)?.trim() ?? (await lastLine(files.log));
      const how = exit === undefined ? 'stopped without an exit status (killed?)' : `exited with code ${exit}`;
      return { status: 'failed', providerStatus: exit === undefined ? 'killed' : `exit ${exit}`, error: `training command ${how}${last ? `: ${last.slice(0, 500)}` : ''}`, output };
    },

    async cancel(job, ctx, opts = {}) {
      const ref = located(job);
      if (!ref.here || !(await groupAlive(ref.pid, job.id, job.runs))) return false;
      if (opts.final) {
        // The job has ended: stop the training now, waiting out the grace before SIGKILL.
        killGroup(ref.pid, 'SIGTERM');
        const deadline = Date.now() + config.FINE_TUNE_KILL_GRACE_MS;
        while (Date.now() < deadline && (await groupAlive(ref.pid, job.id, job.runs))) await delay(100);
        if (await groupAlive(ref.pid, job.id, job.runs)) killGroup(ref.pid, 'SIGKILL');
        return true;
      }
      if (!job.cancelSentAt) {
        killGroup(ref.pid, 'SIGTERM');
        return true;
      }
      if (Date.now() - job.cancelSentAt.getTime() < config.FINE_TUNE_KILL_GRACE_MS) return false;
      ctx.log.warn({ pid: ref.pid }, 'training command still runs after FINE_TUNE_KILL_GRACE_MS; killing it');
      killGroup(ref.pid, 'SIGKILL');
      return true;
    },
  };
}
