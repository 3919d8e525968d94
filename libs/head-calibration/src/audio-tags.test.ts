import { describe, expect, it } from 'vitest';
import { formatScore, tagKey, vorbisFieldName } from './audio-tags.ts';

describe('tag names', () => {
  it.each([
    [{ model_name: 'effnet', head_name: 'mood_happy', label: 'happy' }, 'effnet:mood_happy:happy', 'EFFNET:MOOD_HAPPY:HAPPY'],
    [{ model_name: 'effnet', head_name: 'genre', label: 'hip hop' }, 'effnet:genre:hip hop', 'EFFNET:GENRE:HIP HOP'],
    // "=" separates a Vorbis comment's name from its value, "~" and non-ASCII are not allowed in it.
    [{ model_name: 'm', head_name: 'h', label: 'a=b~ü' }, 'm:h:a=b~ü', 'M:H:A_B__'],
  ])('%o → %s (Vorbis %s)', (tag, key, vorbis) => {
    expect(tagKey(tag)).toBe(key);
    expect(vorbisFieldName(key)).toBe(vorbis);
  });

  it.each([0, 1, 0.5, 0.1 + 0.2, 1e-7, 0.123456789012345])('writes %d so it reads back as the same double', (value) => {
    expect(Number(formatScore(value))).toBe(value);
  });
});
