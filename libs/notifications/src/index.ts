import { jobHandler, type DomainModule } from '@caliber/platform';
import { loadNotificationsConfig, type NotificationsConfig } from './config.ts';
import { deliverNotification, deliverNotificationJob, reconcileNotifications, reconcileNotificationsJob } from './notify.ts';
import { notificationRoutes } from './routes.ts';

export { loadNotificationsConfig, notificationsEnvSchema, type NotificationsConfig } from './config.ts';
export { deliverNotification, deliverNotificationJob, queueNotifications, reconcileNotifications, reconcileNotificationsJob, type NewNotification } from './notify.ts';
export { parseRetryAfter, postWebhook, retryDelayMs, signBody, verifySignature, SIGNATURE_HEADER } from './webhook.ts';

/** Notifications: signed webhook POSTs of what changed, retried with backoff, every attempt recorded. */
export function notificationsModule(config: NotificationsConfig = loadNotificationsConfig()): DomainModule {
  return {
    name: 'notifications',
    routes: (ctx) => notificationRoutes(ctx),
    jobs: [
      jobHandler(deliverNotificationJob, (payload, job) => deliverNotification(job, config, payload)),
      jobHandler(reconcileNotificationsJob, (_payload, job) => reconcileNotifications(job, config)),
    ],
    schedules: (platform) => [
      {
        id: 'notify-reconcile',
        description: 'Queue again pending notifications whose job was lost (NOTIFY_RECONCILE_CRON)',
        job: reconcileNotificationsJob,
        payload: { requested_by: 'schedule' },
        pattern: config.NOTIFY_RECONCILE_CRON || undefined,
        tz: platform.TZ,
      },
    ],
  };
}
