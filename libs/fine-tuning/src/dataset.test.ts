import { describe, expect, it } from 'vitest';
import { exampleLine, validationSize } from './dataset.ts';

describe('validationSize', () => {
  it.each([
    // n, split, min training, held out
    [100, 0.1, 10, 10],
    [22, 0.1, 10, 2],
    [19, 0.1, 10, 1],
    [10, 0.1, 10, 0], // the training set keeps its minimum
    [12, 0.5, 10, 2],
    [9, 0.1, 10, 0],
    [1000, 0, 10, 0],
    [7, 0.5, 1, 3],
  ])('holds out %i × %f with %i kept for training → %i', (n, split, min, held) => {
    expect(validationSize(n, split, min)).toBe(held);
  });
});

describe('exampleLine', () => {
  it('writes one chat-format JSON line, the system prompt first when there is one', () => {
    expect(exampleLine('Latest Node LTS?', 'Node 24', 'Answer briefly.')).toBe(
      '{"messages":[{"role":"system","content":"Answer briefly."},{"role":"user","content":"Latest Node LTS?"},{"role":"assistant","content":"Node 24"}]}\n',
    );
    expect(JSON.parse(exampleLine('a\nb "q"', 'ü\u2028'))).toEqual({ messages: [{ role: 'user', content: 'a\nb "q"' }, { role: 'assistant', content: 'ü\u2028' }] });
    expect(exampleLine('line\nbreaks', 'stay\nescaped').split('\n')).toHaveLength(2);
  });
});
