import { describe, expect, it } from 'vitest';
import { commandJobId, fineTunedModelFrom, parseCommandJobId, parseExitCode, parseProcStat, splitOutput } from './command.ts';
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

describe('reading what a command left', () => {
  it.each<[string, boolean, boolean, string[], number]>([
    // text, final, full read, lines, bytes consumed
    ['a\nb\n', false, false, ['a', 'b'], 4],
    ['a\nb', false, false, ['a'], 2], // b may still grow
    ['a\nb', true, false, ['a', 'b'], 3],
    ['a\r\nb\r\n', false, false, ['a', 'b'], 6],
    ['10%\r50%\r100%\n', false, false, ['10%', '50%', '100%'], 13],
    ['10%\r50%', false, false, ['10%'], 4],
    ['\n\n  \nx\n', false, false, ['x'], 7],
    ['no line end yet', false, false, [], 0],
    ['no line end in a whole read', false, true, ['no line end in a whole read'], 27],
    ['ü€\n', false, false, ['ü€'], 6],
  ])('%j (final %s, full %s) → %j', (text, final, full, lines, consumed) => {
    expect(splitOutput(Buffer.from(text), final, full)).toEqual({ lines, consumed });
  });

  it.each([
    ['0\n', 0],
    ['143', 143],
    ['', undefined],
    [undefined, undefined],
    ['garbage', undefined],
    ['-1', undefined],
  ])('reads the exit file %j as %j', (text, code) => expect(parseExitCode(text)).toBe(code));

  it('reads state and process group from /proc/<pid>/stat, whatever the process is called', () => {
    expect(parseProcStat('4242 (sh) S 1 4242 4242 0 -1 4194560 …')).toEqual({ state: 'S', pgrp: 4242 });
    expect(parseProcStat('77 (my (weird) Z name) R 1 70 70 0')).toEqual({ state: 'R', pgrp: 70 });
    expect(parseProcStat('')).toBeUndefined();
  });
});
