import { describe, expect, it } from 'vitest';
import { classifyComment } from './classifier.ts';

describe('classifyComment', () => {
  it.each([
    ['The prices are from 2023, totally outdated', ['outdated_information']],
    ['It made up a library that does not exist', ['hallucination']],
    ['That is not right: Paris is not in Spain', ['factual_error']],
    ['Answer got cut off halfway', ['incomplete']],
    ['Way too long and wordy', ['too_verbose']],
    ['The code does not compile, syntax error on line 3', ['code_error']],
    ['I asked for a table and it ignored that', ['instruction_following']],
    ['The markdown table is broken', ['formatting']],
    ['Not what I asked', ['off_topic']],
    ['great answer, thanks!', []],
    ['', []],
    [null, []],
  ])('%s → %j', (comment, expected) => {
    expect(classifyComment(comment)).toEqual(expected);
  });

  it('finds several problems in one comment, in taxonomy order', () => {
    expect(classifyComment('Deprecated API, and the code has a bug')).toEqual(['outdated_information', 'code_error']);
  });

  it('matches whole words only at the start: "mistaken" counts, "formatted" counts, "platform" does not', () => {
    expect(classifyComment('This is mistaken')).toEqual(['factual_error']);
    expect(classifyComment('a platform question')).toEqual([]);
  });
});
