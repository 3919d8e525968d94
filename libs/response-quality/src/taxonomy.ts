/**
 * The fixed taxonomy of what can be wrong with a response. Feedback names categories from it, and
 * analyze-errors reads them out of comments too; the descriptions are part of the API's docs.
 */
export const ERROR_CATEGORIES = {
  factual_error: 'States something false',
  hallucination: 'Invents facts, sources, APIs or quotes',
  incomplete: 'Leaves out part of what was asked, or stops early',
  off_topic: 'Answers a different question',
  formatting: 'Right content, wrong or broken format (markdown, code, tables, JSON)',
  outdated_information: 'Was true once, is not now',
  unsafe: 'Harmful, insecure or inappropriate content',
  too_verbose: 'Far longer than needed',
  too_brief: 'Too short to be useful',
  instruction_following: 'Ignores an explicit instruction or constraint',
  code_error: 'Code that does not run or does the wrong thing',
  reasoning_error: 'Wrong logic or arithmetic on the way to the answer',
} as const;

export type ErrorCategory = keyof typeof ERROR_CATEGORIES;
export const ERROR_CATEGORY_NAMES = Object.keys(ERROR_CATEGORIES) as [ErrorCategory, ...ErrorCategory[]];
