import type { DomainModule } from '@caliber/platform';
import { responseQualityRoutes } from './routes.ts';

export { ERROR_CATEGORIES, ERROR_CATEGORY_NAMES, type ErrorCategory } from './taxonomy.ts';
export { feedbackSchema, isNegative, recordFeedback, recordResponses, responseSchema } from './feedback.ts';

/** Response quality: LLM responses and user feedback, quality metrics, problematic responses. */
export function responseQualityModule(): DomainModule {
  return { name: 'response-quality', routes: (ctx) => responseQualityRoutes(ctx) };
}
