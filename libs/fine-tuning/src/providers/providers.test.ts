import { describe, expect, it } from 'vitest';
import { commandJobId, fineTunedModelFrom, parseCommandJobId } from './command.ts';
import { mapRemoteStatus } from './openai-compatible.ts';

describe('mapRemoteStatus', () => {
  it.each([
    ['validating_files', 'submitted'],
    ['queued', 'submitted'],
    ['running', 'running'],
    ['succeeded', 'succeeded'],
    ['failed', 'failed'],
    ['cancelled', 'cancelled'],
    ['paused', 'running'],
    ['something_new', 'running'],
  ])('%s → %s', (remote, ours) => expect(mapRemoteStatus(remote)).toBe(ours));
});

describe('the command provider', () => {
  it.each([
    ['fine_tuned_model=local/llama-ft-7', 'local/llama-ft-7'],
    ['  fine_tuned_model: ft:abc:1  ', 'ft:abc:1'],
    ['fine_tuned_model = x', 'x'],
    ['the fine_tuned_model=x', undefined],
    ['fine_tuned_model=', undefined],
    ['fine_tuned_model=a b', undefined],
  ])('reads %j as %j', (line, model) => expect(fineTunedModelFrom(line)).toBe(model));

  it('names a process group with its host and reads it back', () => {
    expect(commandJobId(4242, 'gpu-1.local')).toBe('pid:4242@gpu-1.local');
    expect(parseCommandJobId('pid:4242@gpu-1.local')).toEqual({ pid: 4242, host: 'gpu-1.local' });
    expect(parseCommandJobId('ftjob-1')).toBeUndefined();
  });
});
