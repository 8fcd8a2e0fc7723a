/**
 * IDX file format (the MNIST family's format): parsing with validation, gzip handling, locating
 * the four files of a dataset directory, and encoding (for fixtures and tests).
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { constants as zlibConstants, gunzipSync } from 'node:zlib';
import { UsageError } from '../errors.js';
import { INPUT_LIMITS, readInputFile } from '../io/files.js';

export const IDX_IMAGES_MAGIC = 2051; // 0x00000803: unsigned byte, 3 dims
export const IDX_LABELS_MAGIC = 2049; // 0x00000801: unsigned byte, 1 dim

export interface IdxImages {
  count: number;
  rows: number;
  cols: number;
  /** count*rows*cols bytes, row-major. */
  pixels: Uint8Array;
}

function magicName(magic: number): string {
  if (magic === IDX_IMAGES_MAGIC) return 'an IDX image file';
  if (magic === IDX_LABELS_MAGIC) return 'an IDX label file';
  return 'not an IDX ubyte file';
}

function header(buf: Uint8Array, words: number, file: string, what: string): number[] {
  if (buf.length < words * 4) {
    throw new UsageError(`${file}: truncated ${what} (${buf.length} bytes, IDX header alone needs ${words * 4})`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return Array.from({ length: words }, (_, i) => dv.getUint32(i * 4, false));
}

/** Parses an IDX3 ubyte image file. Requires `expectRows`x`expectCols` images (28x28 by default). */
export function parseIdxImages(buf: Uint8Array, file: string, expectRows = 28, expectCols = 28): IdxImages {
  const [magic] = header(buf, 1, file, 'image file');
  if (magic !== IDX_IMAGES_MAGIC) {
    throw new UsageError(
      `${file}: bad magic number ${magic} (0x${magic.toString(16).padStart(8, '0')}), expected ${IDX_IMAGES_MAGIC} for an IDX image file; this looks like ${magicName(magic)}`,
    );
  }
  const [, count, rows, cols] = header(buf, 4, file, 'image file');
  if (rows !== expectRows || cols !== expectCols) {
    throw new UsageError(`${file}: images are ${rows}x${cols}, expected ${expectRows}x${expectCols}`);
  }
  const need = 16 + count * rows * cols;
  if (buf.length < need) {
    throw new UsageError(`${file}: truncated: header declares ${count} images of ${rows}x${cols} (${need} bytes) but the file has ${buf.length} bytes`);
  }
  if (buf.length > need) {
    throw new UsageError(`${file}: ${buf.length - need} unexpected trailing bytes after ${count} images of ${rows}x${cols}`);
  }
  return { count, rows, cols, pixels: buf.subarray(16, need) };
}

/** Parses an IDX1 ubyte label file. */
export function parseIdxLabels(buf: Uint8Array, file: string): Uint8Array {
  const [magic] = header(buf, 1, file, 'label file');
  if (magic !== IDX_LABELS_MAGIC) {
    throw new UsageError(
      `${file}: bad magic number ${magic} (0x${magic.toString(16).padStart(8, '0')}), expected ${IDX_LABELS_MAGIC} for an IDX label file; this looks like ${magicName(magic)}`,
    );
  }
  const [, count] = header(buf, 2, file, 'label file');
  const need = 8 + count;
  if (buf.length < need) {
    throw new UsageError(`${file}: truncated: header declares ${count} labels (${need} bytes) but the file has ${buf.length} bytes`);
  }
  if (buf.length > need) {
    throw new UsageError(`${file}: ${buf.length - need} unexpected trailing bytes after ${count} labels`);
  }
  return buf.subarray(8, need);
}

/** Largest decoded IDX file accepted (EMNIST letters train images: 98 MB). */
export const MAX_IDX_BYTES = INPUT_LIMITS.idx;

/**
 * Total size in bytes an IDX ubyte file declares in its header (16 + count*rows*cols for images,
 * 8 + count for labels); a one-line UsageError for a bad magic, a short header or a size over the limit.
 */
export function idxDeclaredBytes(head: Uint8Array, file: string): number {
  const [magic] = header(head, 1, file, 'IDX file');
  let need: number;
  if (magic === IDX_IMAGES_MAGIC) {
    const [, count, rows, cols] = header(head, 4, file, 'image file');
    need = 16 + count * rows * cols;
  } else if (magic === IDX_LABELS_MAGIC) {
    const [, count] = header(head, 2, file, 'label file');
    need = 8 + count;
  } else {
    throw new UsageError(
      `${file}: bad magic number ${magic} (0x${magic.toString(16).padStart(8, '0')}), expected ${IDX_IMAGES_MAGIC} (images) or ${IDX_LABELS_MAGIC} (labels)`,
    );
  }
  if (need > MAX_IDX_BYTES) throw new UsageError(`${file}: header declares ${need} bytes of data, more than the ${MAX_IDX_BYTES} byte limit`);
  return need;
}

/** Compressed bytes decoded to read a gzipped IDX header (deflate expands at most ~1032x: <= ~1 MB). */
const GZIP_HEAD_PREFIX = 1024;

/**
 * Reads a file, transparently gunzipping it when it starts with the gzip magic bytes. Only regular
 * files up to the IDX limit are read. A gzipped file is decoded in two steps: first a small prefix,
 * for the IDX header; then the whole stream, limited to the size that header declares, so a gzip
 * bomb fails after a bounded amount of memory instead of inflating gigabytes.
 */
export function readMaybeGzip(path: string): Uint8Array {
  return decodeMaybeGzip(readInputFile(path, 'IDX file', { maxBytes: MAX_IDX_BYTES, missing: (p) => `cannot read ${p}: ENOENT` }), path);
}

/** The bytes of an IDX file as read (see readMaybeGzip); `path` names them in messages. */
export function decodeMaybeGzip(raw: Buffer, path: string): Uint8Array {
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    let head: Buffer;
    try {
      head = gunzipSync(raw.subarray(0, GZIP_HEAD_PREFIX), { finishFlush: zlibConstants.Z_SYNC_FLUSH });
    } catch (e) {
      throw new UsageError(`${path}: cannot decompress gzip data: ${(e as Error).message.split('\n')[0]}`);
    }
    const need = idxDeclaredBytes(head, path);
    try {
      // one byte over the declared size is enough to tell "trailing bytes" from a match
      return gunzipSync(raw, { maxOutputLength: need + 1 });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
        throw new UsageError(`${path}: gzip data inflates to more than the ${need} bytes its IDX header declares`);
      }
      throw new UsageError(`${path}: cannot decompress gzip data: ${err.message.split('\n')[0]}`);
    }
  }
  return raw;
}

/** The four files of an IDX dataset directory. */
export const IDX_FILE_NAMES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
} as const;
export type IdxFileRole = keyof typeof IDX_FILE_NAMES;

/**
 * Finds `name` or `name.gz` in `dir`, also trying each of `prefixes` (e.g. "emnist-letters-").
 * Returns undefined when none exists.
 */
export function findIdxFile(dir: string, name: string, prefixes: readonly string[] = ['']): string | undefined {
  for (const prefix of prefixes) {
    for (const suffix of ['', '.gz']) {
      const p = join(dir, prefix + name + suffix);
      if (existsSync(p)) return p;
    }
  }
  return undefined;
}

export interface IdxSplitBytes {
  pixels: Uint8Array;
  labels: Uint8Array;
  imagesFile: string;
  labelsFile: string;
}

/** Loads and cross-checks the train and test image/label files of an IDX directory. */
export function readIdxDirectory(dir: string, prefixes: readonly string[] = ['']): { train: IdxSplitBytes; test: IdxSplitBytes } {
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) throw new UsageError(`data directory ${dir} does not exist or is not a directory`);
  const expected = Object.values(IDX_FILE_NAMES)
    .flatMap((n) => prefixes.map((p) => p + n))
    .join(', ');
  const paths = {} as Record<IdxFileRole, string>;
  const missing: string[] = [];
  for (const role of Object.keys(IDX_FILE_NAMES) as IdxFileRole[]) {
    const found = findIdxFile(dir, IDX_FILE_NAMES[role], prefixes);
    if (found) paths[role] = found;
    else missing.push(IDX_FILE_NAMES[role]);
  }
  if (missing.length > 0) {
    throw new UsageError(
      `${dir} is missing ${missing.join(', ')}; an IDX data directory needs ${expected} (each optionally gzipped with a .gz suffix)`,
    );
  }
  const one = (imagesFile: string, labelsFile: string): IdxSplitBytes => {
    const images = parseIdxImages(readMaybeGzip(imagesFile), imagesFile);
    const labels = parseIdxLabels(readMaybeGzip(labelsFile), labelsFile);
    if (images.count !== labels.length) {
      throw new UsageError(`${imagesFile} has ${images.count} images but ${labelsFile} has ${labels.length} labels`);
    }
    return { pixels: images.pixels, labels, imagesFile, labelsFile };
  };
  return { train: one(paths.trainImages, paths.trainLabels), test: one(paths.testImages, paths.testLabels) };
}

/** Encodes images (count*rows*cols bytes) as an IDX3 ubyte file. */
export function encodeIdxImages(pixels: Uint8Array, count: number, rows = 28, cols = 28): Uint8Array {
  if (pixels.length !== count * rows * cols) throw new Error(`encodeIdxImages: ${pixels.length} bytes for ${count}x${rows}x${cols}`);
  const out = new Uint8Array(16 + pixels.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, IDX_IMAGES_MAGIC, false);
  dv.setUint32(4, count, false);
  dv.setUint32(8, rows, false);
  dv.setUint32(12, cols, false);
  out.set(pixels, 16);
  return out;
}

/** Encodes labels as an IDX1 ubyte file. */
export function encodeIdxLabels(labels: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(8 + labels.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, IDX_LABELS_MAGIC, false);
  dv.setUint32(4, labels.length, false);
  for (let i = 0; i < labels.length; i++) out[8 + i] = labels[i];
  return out;
}
