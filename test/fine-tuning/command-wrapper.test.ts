import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../libs/platform/src/index.ts';
import { commandProvider } from '../../libs/fine-tuning/src/providers/command.ts';
import type { FollowResult, ProviderJob } from '../../libs/fine-tuning/src/providers/provider.ts';
import { waitFor } from '../harness.ts';
import { alive, TRAIN_SCRIPT } from './seed.ts';

// The command provider on its own, with real processes: what the wrapper makes of the commands
// people write, and how it ends them.
const log = createLogger({ level: 'silent', name: 'test' });
let n = 0;

async function runCommand(command: string, baseModel: string, opts: { cancelAfter?: (job: ProviderJob) => boolean; grace?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'caliber-cmd-'));
  const training = join(dir, 'train.jsonl');
  writeFileSync(training, '{"messages":[]}\n{"messages":[]}\n');
  mkdirSync(join(dir, 'output'), { recursive: true });
  const provider = commandProvider({ FINE_TUNE_COMMAND: command, FINE_TUNE_KILL_GRACE_MS: opts.grace ?? 10_000, FINE_TUNE_COMMAND_POLL_MS: 20, FINE_TUNE_DATA_DIR: dir });
  let job: ProviderJob & { providerJobId: string } = {
    id: `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`,
    modelId: 'm',
    baseModel,
    providerJobId: '',
    providerTrainingFileId: null,
    providerValidationFileId: null,
    runs: 0,
    outputOffset: 0,
    cancelSentAt: null,
    dir,
  };
  const submitted = await provider.submit(job, { trainingPath: training, validationPath: null, dir }, { log, cancelRequested: false, remember: async () => {} });
  job = { ...job, providerJobId: submitted!.providerJobId, runs: 1 };
  const lines: string[] = [];
  let state: FollowResult | undefined;
  // As the runner does: a model named in any poll's lines is kept.
  let model: string | null = null;
  await waitFor(async () => {
    if (opts.cancelAfter?.(job) && (await provider.cancel(job, { log })) && !job.cancelSentAt) job = { ...job, cancelSentAt: new Date() };
    state = await provider.follow(job, { log });
    lines.push(...(state.output?.lines ?? []));
    model = state.fineTunedModel ?? model;
    job = { ...job, outputOffset: state.output?.offset ?? job.outputOffset };
    return state.status !== 'running';
  }, { what: `${command} to end`, timeoutMs: 20_000 });
  return { state: { ...state!, fineTunedModel: model }, lines, dir };
}

describe('the command wrapper', () => {
  it('passes the training file as the last argument and reads the model line', async () => {
    const { state, lines } = await runCommand(`sh ${TRAIN_SCRIPT}`, 'plain');
    expect(state).toMatchObject({ status: 'succeeded', fineTunedModel: 'local/plain-run1' });
    expect(lines[0]).toBe('training plain on 2 examples (run 1)');
  });

  it.each([
    ['exec', `exec sh ${TRAIN_SCRIPT}`],
    ['set -e and a prefix command', `set -e; cd /tmp && sh ${TRAIN_SCRIPT}`],
    ['a trailing newline and spaces', `sh ${TRAIN_SCRIPT}\n  `],
  ])('copes with %s', async (_, command) => {
    const { state } = await runCommand(command, 'plain');
    expect(state).toMatchObject({ status: 'succeeded', fineTunedModel: 'local/plain-run1' });
  });

  it('fails with the shell’s own message when the command does not parse', async () => {
    const { state } = await runCommand(`sh ${TRAIN_SCRIPT} 'unbalanced`, 'plain');
    expect(state.status).toBe('failed');
    expect(state.error).toMatch(/^training command exited with code 2: .*(Unterminated|unexpected EOF|matching)/i);
  });

  it('fails with the exit code and the last line', async () => {
    const { state } = await runCommand(`sh ${TRAIN_SCRIPT}`, 'fail');
    expect(state).toMatchObject({ status: 'failed', error: 'training command exited with code 3: CUDA out of memory' });
  });

  it('splits progress bars redrawn with \\r into lines and keeps a last line without a newline', async () => {
    const { state, lines } = await runCommand(`sh ${TRAIN_SCRIPT}`, 'progress');
    expect(state.status).toBe('succeeded');
    expect(lines.slice(-4)).toEqual(['epoch 1 10%', 'epoch 1 50%', 'epoch 1 100%', 'no newline at the end']);
  });

  it('kills a command that ignores SIGTERM once the grace has passed, and all it started', async () => {
    let pids: number[] = [];
    const { state, dir } = await runCommand(`sh ${TRAIN_SCRIPT}`, 'stubborn', {
      grace: 300,
      cancelAfter: (job) => {
        pids = readFileSync(join(job.dir!, 'output', 'pids'), 'utf8').trim().split('\n').map(Number).filter(Boolean);
        return pids.length > 0;
      },
    });
    // SIGTERM ended the shell around it, not the command: only SIGKILL, after the grace, did.
    expect(state.status).toBe('cancelled');
    expect(pids.length).toBe(1);
    expect(alive(pids[0]!)).toBe(false);
    expect(readFileSync(join(dir, 'output', 'run-1.log'), 'utf8')).toContain('ignoring SIGTERM');
  });
});
