import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { commandProvider } from '../../libs/fine-tuning/src/providers/command.ts';
import { useHarness, waitFor, type Harness } from '../harness.ts';
import { alive, createJob, FT, grant, jobWhen, ledgerKinds, letGo, scriptPids, seedCorrections, TRAIN_SCRIPT } from './seed.ts';

const events = async (h: Harness, id: string) =>
  (await h.request('GET', `${FT}/jobs/${id}/events?limit=1000`)).body.items.map((e: { kind: string; message: string }) => `${e.kind}: ${e.message}`) as string[];

const dataDir = mkdtempSync(join(tmpdir(), 'caliber-ft-cmd-'));

describe('fine-tuning with a training command', () => {
  const t = useHarness({
    env: {
      FINE_TUNE_PROVIDER: 'command',
      FINE_TUNE_COMMAND: `sh ${TRAIN_SCRIPT}`,
      FINE_TUNE_DATA_DIR: dataDir,
      FINE_TUNE_COMMAND_POLL_MS: '50',
      FINE_TUNE_KILL_GRACE_MS: '2000',
      FINE_TUNE_LOG_MAX_LINES: '20',
      FINE_TUNE_RECONCILE_CRON: '',
      FINE_TUNE_API_KEY: 'sk-never-shown-to-commands',
    },
    workers: ['fine-tune'],
  });

  beforeAll(async () => {
    await seedCorrections(t.h, 'local-bot', 30);
    await grant(t.h, 'lab', 1000);
  });

  it('runs the command on the dataset, streams its output into the log and reads the model it names', async () => {
    const job = await createJob(t.h, { model_id: 'local-bot', account_id: 'lab', base_model: 'llama-3-8b' });
    expect(job).toMatchObject({ provider: 'command', base_model: 'llama-3-8b' });
    const res = await t.h.request('POST', `${FT}/jobs/${job.id}/start?wait=true&timeout=30`);
    expect(res.body.job).toMatchObject({ status: 'succeeded', credits: 'charged', fine_tuned_model: 'local/llama-3-8b-run1', dataset_rows: 27, validation_rows: 3, runs: 1 });
    expect(res.body.job.provider_job_id).toMatch(/^pid:\d+@/);
    const log = await events(t.h, job.id);
    expect(log).toContain('output: training llama-3-8b on 27 examples (run 1)');
    expect(log).toContain('output: validating on 3 examples');
    // Caliber's own secrets are not handed to the command.
    expect(log).toContain('output: withheld: none none none');
    expect((await t.h.request('GET', '/admin/credits/lab')).body).toMatchObject({ balance: 900, reserved: 0 });
    // The BullMQ job log (Bull Board's Logs tab) has the same output.
    const queued = await t.h.platform.queues.get('fine-tune').getJobLogs(res.body.job.queue_job.jobId);
    expect(queued.logs.join('\n')).toContain('training llama-3-8b on 27 examples (run 1)');
  });

  it('fails the job on a non-zero exit, with the code and the last line, and refunds it', async () => {
    const job = await createJob(t.h, { model_id: 'local-bot', account_id: 'lab', base_model: 'fail-llama' });
    const res = await t.h.request('POST', `${FT}/jobs/${job.id}/start?wait=true&timeout=30`);
    expect(res.body.job).toMatchObject({ status: 'failed', credits: 'refunded', error: 'training command exited with code 3: CUDA out of memory' });
    expect((await t.h.request('GET', '/admin/credits/lab')).body).toMatchObject({ balance: 900, reserved: 0 });
    expect((await ledgerKinds(t.h, 'lab')).slice(0, 2)).toEqual(['refund', 'reserve']);
  });

  it('keeps FINE_TUNE_LOG_MAX_LINES lines of output and counts the rest', async () => {
    const job = await createJob(t.h, { model_id: 'local-bot', account_id: 'lab', base_model: 'noisy-llama' });
    const res = await t.h.request('POST', `${FT}/jobs/${job.id}/start?wait=true&timeout=30`);
    // The model line is printed last, after the cap: it is still read.
    expect(res.body.job).toMatchObject({ status: 'succeeded', fine_tuned_model: 'local/noisy-llama-run1' });
    const log = await events(t.h, job.id);
    expect(log.filter((l) => l.startsWith('output: '))).toHaveLength(20);
    expect(log).toContain("info: output past 20 lines is not copied here (FINE_TUNE_LOG_MAX_LINES); the whole of it is in the run's log file");
    expect(readFileSync(join(dataDir, job.id, 'output', 'run-1.log'), 'utf8').trim().split('\n')).toHaveLength(44);
  });

  it('stops the whole process group on cancel, and refunds the job', async () => {
    const job = await createJob(t.h, { model_id: 'local-bot', account_id: 'lab', base_model: 'wait-llama' });
    expect((await t.h.request('POST', `${FT}/jobs/${job.id}/start`)).status).toBe(202);
    const running = await jobWhen(t.h, job.id, (j) => j.status === 'running', 'command running');
    await waitFor(() => scriptPids(dataDir, job.id).length === 1, { what: 'script started' });
    const [pid] = scriptPids(dataDir, job.id);
    const groupLeader = Number(running.provider_job_id.slice(4).split('@')[0]);
    expect(alive(pid!) && alive(groupLeader)).toBe(true);
    await waitFor(async () => (await events(t.h, job.id)).includes('output: waiting for go'), { what: 'output while it runs' });

    const res = await t.h.request('POST', `${FT}/jobs/${job.id}/cancel?wait=true&timeout=30`);
    expect(res.body.job).toMatchObject({ status: 'cancelled', credits: 'refunded' });
    expect(alive(pid!)).toBe(false);
    expect(alive(groupLeader)).toBe(false);
    expect((await t.h.request('GET', '/admin/credits/lab')).body).toMatchObject({ balance: 800, reserved: 0 });
  });

  it('takes over the command an earlier attempt started but did not record, instead of starting a second', async () => {
    const job = await createJob(t.h, { model_id: 'local-bot', account_id: 'lab', base_model: 'wait-adopt' });
    // An attempt that started run 1 and died before writing it down.
    const spare = join(dataDir, 'spare-train.jsonl');
    writeFileSync(spare, '{"messages":[]}\n');
    const provider = commandProvider({ FINE_TUNE_COMMAND: `sh ${TRAIN_SCRIPT}`, FINE_TUNE_KILL_GRACE_MS: 2000, FINE_TUNE_COMMAND_POLL_MS: 50, FINE_TUNE_DATA_DIR: dataDir });
    const pjob = { id: job.id, modelId: 'local-bot', baseModel: 'wait-adopt', providerJobId: null, providerTrainingFileId: null, providerValidationFileId: null, runs: 0, outputOffset: 0, cancelSentAt: null, dir: join(dataDir, job.id) };
    const first = await provider.submit(pjob, { trainingPath: spare, validationPath: null, dir: join(dataDir, job.id) }, { log: t.h.platform.log, cancelRequested: false, remember: async () => {} });
    await waitFor(() => scriptPids(dataDir, job.id).length === 1, { what: 'the unrecorded run started' });

    await t.h.request('POST', `${FT}/jobs/${job.id}/start`);
    const running = await jobWhen(t.h, job.id, (j) => j.status === 'running', 'job running');
    expect(running.provider_job_id).toBe(first!.providerJobId);
    letGo(dataDir, job.id);
    const done = await jobWhen(t.h, job.id, (j) => j.status === 'succeeded', 'job succeeded');
    expect(done).toMatchObject({ runs: 1, fine_tuned_model: 'local/wait-adopt-run1' });
    expect(scriptPids(dataDir, job.id)).toHaveLength(1);
  });
});
