import { randomBytes } from 'node:crypto';
import { copyFile, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, extname, join } from 'node:path';
import {
  AiffFile,
  File as TaggedFile,
  FlacFile,
  Id3v2FrameClassType,
  Id3v2UserTextInformationFrame,
  Mpeg4File,
  MpegAudioFile,
  MpegAudioFileSettings,
  OggFile,
  RiffFile,
  TagTypes,
  type Id3v2Tag,
  type Mpeg4AppleTag,
  type XiphComment,
} from 'node-taglib-sharp';

// The library adds an ID3v1 tag to every MP3 it saves unless told otherwise; a file should only
// gain the ID3v2 frames written here.
MpegAudioFileSettings.defaultTagTypes = TagTypes.Id3v2;

/** One calibrated value to store in a file: `<model>:<head>:<label>` → value. */
export interface CalibratedTag {
  model_name: string;
  head_name: string;
  label: string;
  calibrated_score: number;
}

/** A file that cannot be tagged for a reason retrying will not fix (missing, corrupt, unsupported). */
export class AudioFileError extends Error {
  override name = 'AudioFileError';
  constructor(
    readonly path: string,
    readonly reason: 'missing' | 'not_a_file' | 'corrupt' | 'unsupported' | 'unwritable',
    detail: string,
  ) {
    super(`${path}: ${detail}`);
  }
}

/** The freeform MP4 atom namespace other taggers (foobar2000, Picard, Mp3tag) use for custom fields. */
const ITUNES_MEAN = 'com.apple.iTunes';

export function tagKey(tag: Pick<CalibratedTag, 'model_name' | 'head_name' | 'label'>): string {
  return `${tag.model_name}:${tag.head_name}:${tag.label}`;
}

/**
 * Vorbis comment field names are ASCII 0x20–0x7D without "=", and compared case-insensitively;
 * other characters (labels may hold any text) become "_".
 */
export function vorbisFieldName(key: string): string {
  return key.replace(/[^\x20-\x3c\x3e-\x7d]/g, '_').toUpperCase();
}

/** Shortest text that reads back as the same double. */
export function formatScore(value: number): string {
  return String(value);
}

function setTags(file: TaggedFile, tags: CalibratedTag[]): void {
  if (file instanceof MpegAudioFile || file instanceof AiffFile || file instanceof RiffFile) {
    const id3 = file.getTag(TagTypes.Id3v2, true) as Id3v2Tag;
    const frames = id3.getFramesByClassType<Id3v2UserTextInformationFrame>(Id3v2FrameClassType.UserTextInformationFrame);
    for (const tag of tags) {
      const key = tagKey(tag);
      let frame = Id3v2UserTextInformationFrame.findUserTextInformationFrame(frames, key, true);
      if (!frame) {
        frame = Id3v2UserTextInformationFrame.fromDescription(key);
        id3.addFrame(frame);
      }
      frame.text = [formatScore(tag.calibrated_score)];
    }
    return;
  }
  if (file instanceof FlacFile || file instanceof OggFile) {
    const xiph = file.getTag(TagTypes.Xiph, true) as XiphComment;
    for (const tag of tags) xiph.setFieldAsStrings(vorbisFieldName(tagKey(tag)), formatScore(tag.calibrated_score));
    return;
  }
  if (file instanceof Mpeg4File) {
    const apple = file.getTag(TagTypes.Apple, true) as Mpeg4AppleTag;
    for (const tag of tags) apple.setItunesStrings(ITUNES_MEAN, tagKey(tag), formatScore(tag.calibrated_score));
    return;
  }
  throw new AudioFileError(file.name, 'unsupported', `no calibrated-tag support for ${file.mimeType}; supported: MP3 (ID3v2), FLAC, Ogg (Vorbis comments), MP4/M4A`);
}

/**
 * Writes calibrated tags into an audio file, keeping its other tags and its audio. The file is
 * copied next to itself, tagged there, flushed to disk and renamed over the original, so a reader
 * (or a crash) sees either the old file or the new one, never a half-written one.
 */
export async function writeCalibratedTags(path: string, tags: CalibratedTag[]): Promise<void> {
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new AudioFileError(path, 'missing', 'file not found');
    if (err.code && PERMANENT_ERRNO.has(err.code)) throw new AudioFileError(path, 'unwritable', `cannot reach the file (${err.code})`);
    throw err;
  });
  if (!info.isFile()) throw new AudioFileError(path, 'not_a_file', 'not a regular file');

  const ext = extname(path);
  // Short (a long file name must still fit), hidden, and ending in the extension: the tagging
  // library picks the format by it.
  const temp = join(dirname(path), `.caliber-${randomBytes(4).toString('hex')}${ext}`);
  try {
    await copyFile(path, temp);
    let file: TaggedFile | undefined;
    try {
      file = TaggedFile.createFromPath(temp);
      setTags(file, tags);
      file.save();
    } catch (err) {
      if (err instanceof AudioFileError) throw new AudioFileError(path, err.reason, err.message.slice(err.path.length + 2));
      // The library signals an unknown extension/mimetype with a plain Error.
      if (err instanceof Error && /^Unsupported format/i.test(err.message)) {
        throw new AudioFileError(path, 'unsupported', `unsupported audio format "${ext}"`);
      }
      // File system errors carry an errno code (classified below); a TypeError or ReferenceError is a
      // bug of ours, not of the file. Anything else the parser throws (CorruptFileError, or a plain
      // Error or RangeError on a malformed box) means the file cannot be read as audio, and will
      // not be on the next attempt either.
      if ((err as NodeJS.ErrnoException).code || err instanceof TypeError || err instanceof ReferenceError) throw err;
      throw new AudioFileError(path, 'corrupt', `unreadable audio file: ${(err as Error).message}`);
    } finally {
      file?.dispose();
    }
    const handle = await open(temp, 'r+');
    try {
      await handle.chmod(info.mode);
      // Keep the owner when we may (running as root); otherwise the file is ours, as any edit makes it.
      await handle.chown(info.uid, info.gid).catch(() => {});
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
    // The rename itself is durable once the directory is flushed.
    const dir = await open(dirname(path), 'r');
    await dir.sync().finally(() => dir.close());
  } catch (err) {
    await rm(temp, { force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if (code && PERMANENT_ERRNO.has(code)) throw new AudioFileError(path, 'unwritable', `cannot write the file (${code})`);
    throw err;
  }
}

/** File system errors that another attempt would meet again; the rest (EIO, ENOSPC, …) are retried. */
const PERMANENT_ERRNO = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR', 'ENAMETOOLONG', 'ELOOP']);
