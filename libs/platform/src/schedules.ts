import type { Logger } from './logger.ts';
import type { JobDefinition, Queues } from './queues.ts';

/**
 * A recurring job. `pattern` is a cron expression (with seconds optional); when it is unset the
 * schedule is disabled and removed from BullMQ, so turning a setting off takes effect on restart.
 */
export interface ScheduleDefinition {
  id: string;
  description: string;
  job: JobDefinition;
  payload: unknown;
  pattern: string | undefined;
  tz: string;
}

/** Upserts every enabled schedule and removes disabled ones; running it again changes nothing. */
export async function syncSchedules(queues: Queues, schedules: ScheduleDefinition[], log: Logger): Promise<void> {
  for (const s of schedules) {
    const queue = queues.get(s.job.queue);
    if (s.pattern) {
      await queue.upsertJobScheduler(
        s.id,
        { pattern: s.pattern, tz: s.tz },
        { name: s.job.name, data: s.job.schema.parse(s.payload) },
      );
      log.info({ schedule: s.id, pattern: s.pattern, tz: s.tz }, 'job scheduler registered');
    } else if (await queue.removeJobScheduler(s.id)) {
      log.info({ schedule: s.id }, 'job scheduler removed (disabled)');
    }
  }
}

export async function describeSchedules(queues: Queues, schedules: ScheduleDefinition[]) {
  return Promise.all(
    schedules.map(async (s) => {
      const scheduler = await queues.connected(s.job.queue).getJobScheduler(s.id);
      return {
        id: s.id,
        description: s.description,
        queue: s.job.queue,
        job: s.job.name,
        pattern: s.pattern ?? null,
        tz: s.tz,
        enabled: Boolean(s.pattern),
        registered: Boolean(scheduler),
        next_run_at: scheduler?.next ? new Date(scheduler.next).toISOString() : null,
      };
    }),
  );
}

/** Starts a schedule's job now, outside its timetable. */
export async function runScheduleNow(queues: Queues, schedule: ScheduleDefinition) {
  return queues.enqueue(schedule.job, schedule.payload);
}
