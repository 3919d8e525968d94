import { describe, expect, it } from 'vitest';
import { createLogger, syncSchedules, type ScheduleDefinition } from '../../libs/platform/src/index.ts';
import { calibrateHeadsJob } from '../../libs/head-calibration/src/index.ts';
import { useHarness, waitFor } from '../harness.ts';
import { parseQueuesArg } from '../../apps/worker/src/worker.ts';

const t = useHarness({ env: { CALIBRATION_CRON: '0 3 * * 1' }, workers: ['calibrate', 'update-reference'] });

describe('job processing', () => {
  it('fails a job whose payload breaks its schema at once, without retries', async () => {
    const job = await t.h.platform.queues.get('calibrate').add('heads', { requested_by: 42 });
    const failed = await waitFor(async () => ((await job.getState()) === 'failed' ? t.h.platform.queues.get('calibrate').getJob(job.id ?? '') : false), {
      what: 'failed job',
    });
    expect(failed?.attemptsMade).toBe(1);
    expect(failed?.failedReason).toMatch(/^Invalid payload: requested_by/);
  });

  it('fails a job nobody handles, naming it', async () => {
    const job = await t.h.platform.queues.get('calibrate').add('no-such-kind', {});
    await waitFor(async () => (await job.getState()) === 'failed', { what: 'failed job' });
    const failed = await t.h.platform.queues.get('calibrate').getJob(job.id ?? '');
    expect(failed?.failedReason).toBe('No handler for job "no-such-kind" on queue "calibrate"');
  });

  it('parses --queues and refuses unknown queue names', () => {
    expect(parseQueuesArg(['--queues', 'calibrate,update-reference'])).toEqual(['calibrate', 'update-reference']);
    expect(parseQueuesArg(['--queues=retag-file'])).toEqual(['retag-file']);
    expect(parseQueuesArg([])).toBeUndefined();
    expect(() => parseQueuesArg(['--queues', 'calibrate,bogus'])).toThrow(/unknown queue\(s\) bogus/);
  });
});

describe('job schedulers', () => {
  it('registers the enabled schedules at worker start, and lists them with their next run', async () => {
    const res = await t.h.request('GET', '/admin/schedules');
    expect(res.status).toBe(200);
    const schedule = res.body.items.find((s: { id: string }) => s.id === 'calibrate-heads');
    expect(schedule).toMatchObject({ queue: 'calibrate', job: 'heads', pattern: '0 3 * * 1', enabled: true, registered: true });
    const next = new Date(schedule.next_run_at);
    expect(next.getTime()).toBeGreaterThan(Date.now());
    expect(next.getUTCDay()).toBe(1);
    expect(next.getUTCHours()).toBe(3);
  });

  it('upserts idempotently and removes a schedule whose setting is turned off', async () => {
    const base: ScheduleDefinition = { id: 'calibrate-heads', description: '', job: calibrateHeadsJob, payload: {}, pattern: '0 3 * * 1', tz: 'UTC' };
    const log = createLogger({ level: 'silent', name: 't' });
    const queue = t.h.platform.queues.get('calibrate');
    // Other schedules share the calibrate queue (the confidence temperature fits): count this one.
    const count = async () => (await queue.getJobSchedulers()).filter((s) => s.key === base.id).length;
    await syncSchedules(t.h.platform.queues, [base], log);
    await syncSchedules(t.h.platform.queues, [base], log);
    expect(await count()).toBe(1);
    await syncSchedules(t.h.platform.queues, [{ ...base, pattern: undefined }], log);
    expect(await count()).toBe(0);
    await syncSchedules(t.h.platform.queues, [base], log);
    expect(await count()).toBe(1);
  });

  it('runs a schedule by hand, and 404s an unknown one', async () => {
    const res = await t.h.request('POST', '/admin/schedules/calibrate-heads/run');
    expect(res.status).toBe(202);
    expect((await t.h.platform.queues.get('calibrate').getJob(res.body.jobId))?.name).toBe('heads');
    expect((await t.h.request('POST', '/admin/schedules/nope/run')).status).toBe(404);
  });
});
