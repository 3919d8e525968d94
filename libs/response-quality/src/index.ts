import { responseQualityDashboard } from './dashboard.ts';
import { jobHandler, type DomainModule } from '@caliber/platform';
import { analyzeErrorsJob, runAnalyzeErrors } from './analyze-errors.ts';
import { loadResponseQualityConfig, type ResponseQualityConfig } from './config.ts';
import { modelImprovementRoutes, responseQualityRoutes } from './routes.ts';

export { ERROR_CATEGORIES, ERROR_CATEGORY_NAMES, type ErrorCategory } from './taxonomy.ts';
export { feedbackSchema, isNegative, recordFeedback, recordResponses, responseSchema } from './feedback.ts';
export { classifyComment, COMMENT_PHRASES } from './classifier.ts';
export { analyzeErrorsJob, fineTuneCheckJob, runAnalyzeErrors, SUGGESTED_ACTIONS, type AnalyzeErrorsSummary } from './analyze-errors.ts';
export { loadResponseQualityConfig, type ResponseQualityConfig } from './config.ts';

/** Response quality: responses and feedback, quality reports, and the weekly error analysis. */
export function responseQualityModule(config: ResponseQualityConfig = loadResponseQualityConfig()): DomainModule {
  return {
    name: 'response-quality',
    dashboard: (ctx) => responseQualityDashboard(ctx),
    routes: (ctx) => {
      const app = responseQualityRoutes(ctx);
      app.route('/', modelImprovementRoutes(ctx));
      return app;
    },
    jobs: [
      jobHandler(analyzeErrorsJob, (_payload, job) =>
        runAnalyzeErrors(job.platform, config, { jobKey: job.jobKey, log: job.log, createdAt: new Date(job.job.timestamp) }),
      ),
    ],
    schedules: (platform) => [
      {
        id: 'analyze-errors',
        description: 'Error patterns, weekly trends and improvement suggestions from user feedback (ANALYZE_ERRORS_CRON)',
        job: analyzeErrorsJob,
        payload: { requested_by: 'schedule' },
        pattern: config.ANALYZE_ERRORS_CRON || undefined,
        tz: platform.TZ,
      },
    ],
  };
}
