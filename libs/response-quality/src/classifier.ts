import type { ErrorCategory } from './taxonomy.ts';

/**
 * Reads error categories out of a feedback comment: each category has phrases that, found as
 * whole words (case-insensitive), say the user saw that problem. Deliberately plain — no model,
 * no network — so what it does is visible here and the same on every run. Negations ("not
 * outdated") are not understood; phrases are chosen to be specific rather than clever.
 */
export const COMMENT_PHRASES: Record<ErrorCategory, string[]> = {
  factual_error: ['wrong', 'incorrect', 'not true', 'false', 'inaccurate', 'mistake', 'factually', 'that is not right', "that's not right"],
  hallucination: ['made up', 'makes up', 'hallucinat', 'invented', 'does not exist', "doesn't exist", 'fake', 'fabricat', 'no such'],
  incomplete: ['incomplete', 'cut off', 'stopped', 'unfinished', 'missing', 'left out', 'only answered', 'partial'],
  off_topic: ['off topic', 'off-topic', 'irrelevant', 'not what i asked', 'unrelated', 'different question', 'did not answer', "didn't answer"],
  formatting: ['format', 'markdown', 'broken table', 'indentation', 'not valid json', 'invalid json', 'layout', 'bullet'],
  outdated_information: ['outdated', 'out of date', 'old version', 'deprecated', 'no longer', 'obsolete', 'not current', 'as of 20', 'from 20'],
  unsafe: ['unsafe', 'dangerous', 'harmful', 'offensive', 'inappropriate', 'insecure', 'toxic'],
  too_verbose: ['too long', 'verbose', 'wordy', 'rambl', 'too much text', 'shorter'],
  too_brief: ['too short', 'too brief', 'more detail', 'not enough detail', 'one word', 'terse'],
  instruction_following: ['ignored', 'did not follow', "didn't follow", 'i asked for', 'instructions', 'i said'],
  code_error: ['does not compile', "doesn't compile", 'syntax error', 'exception', 'bug', 'does not run', "doesn't run", 'compile error', 'stack trace'],
  reasoning_error: ['math is wrong', 'miscalculat', 'logic', 'does not follow', 'arithmetic', 'wrong calculation', 'reasoning'],
};

const PATTERNS = Object.entries(COMMENT_PHRASES).map(([category, phrases]) => ({
  category: category as ErrorCategory,
  // A phrase starts at a word boundary; a stem ("hallucinat") may run on into a longer word.
  re: new RegExp(`(?:^|[^a-z0-9])(?:${phrases.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})`, 'i'),
}));

/** The categories a comment names, in taxonomy order; [] for no comment. */
export function classifyComment(comment: string | null | undefined): ErrorCategory[] {
  if (!comment) return [];
  return PATTERNS.filter((p) => p.re.test(comment)).map((p) => p.category);
}
