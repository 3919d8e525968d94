// The browser entry point (bundled to /widget/caliber-feedback.js): defines <caliber-feedback>.
import { defineCaliberFeedback } from './element.ts';

export { CaliberFeedbackElement, defineCaliberFeedback, VARIANTS, type FeedbackState, type Variant } from './element.ts';

defineCaliberFeedback();
