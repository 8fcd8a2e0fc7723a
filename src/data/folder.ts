/**
 * An image folder (as torchvision's ImageFolder): DIR/<class>/<image>.png|.jpg|.jpeg, read with sharp.
 *
 * Split rule: every image is a test image (the train split is empty); cnnf evaluates and attacks a
 * folder, it does not train on one. Classes are the subfolder names sorted by code point (label k =
 * the k-th name); images are ordered by class, then by file name (code point order). Hidden entries
 * (".name") and files of other extensions are skipped; subfolders of a class folder are not read; a
 * class folder without images is an error. The content must really be PNG or JPEG.
 *
 * Conversion to the target shape [h, w, c] (the model's input) is explicit:
 * - `resize`: `exact` (default: an image of another size is an error), `stretch` (resized to h x w,
 *   aspect ratio not kept), `cover` (scaled to cover h x w, the centre cropped) or `contain` (scaled to
 *   fit inside, letterboxed with black). sharp's default kernel (lanczos3) resamples.
 * - channels: an image whose colour differs from c (grey for c = 1, RGB for c = 3) is an error unless
 *   `convertChannels`: RGB -> grey uses sharp's greyscale conversion (luminance), grey -> RGB copies the
 *   grey value to R, G and B. An alpha channel is dropped (not composited). EXIF orientation is not
 *   applied (as PIL and torchvision).
 * Without a target shape, the first image fixes it (its size, 1 channel if grey else 3).
 */
import { readdirSync, statSync, type Dirent } from 'node:fs';
import { extname, join } from 'node:path';
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { UsageError } from '../errors.js';
import { MiB, readInputFile } from '../io/files.js';
import { bytesToPixels, emptySplit, formatShape, type ImageShape, type Split } from './types.js';

export type ResizePolicy = 'exact' | 'stretch' | 'cover' | 'contain';
export const RESIZE_POLICIES: readonly ResizePolicy[] = ['exact', 'stretch', 'cover', 'contain'];

export const FOLDER_LIMITS = {
  classes: 1000,
  images: 100_000,
  /** Bytes of one image file. */
  fileBytes: 64 * MiB,
  /** Pixels of one decoded input image (sharp's limitInputPixels). */
  inputPixels: 8192 * 8192,
  /** Side of the target shape. */
  side: 4096,
  /** Float values of the whole split (1 GiB of float32). */
  values: 2 ** 28,
} as const;

const IMAGE_EXTS = new Set(['.png', '.jpg', '.jpeg']);

export interface FolderOptions {
  /** Target [h, w, c] with c 1 or 3 (default: from the first image). */
  shape?: Readonly<ImageShape>;
  resize?: ResizePolicy;
  convertChannels?: boolean;
}

export interface FolderListing {
  classNames: string[];
  /** Image paths in split order (class, then file name). */
  files: string[];
  labels: Int32Array;
}

const byCodePoint = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function entries(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    throw new UsageError(`cannot read directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Lists the classes and image files of a folder dataset (no image is read). */
export function listImageFolder(dir: string): FolderListing {
  if (!isDir(dir)) throw new UsageError(`--data-dir ${dir} is not a directory`);
  const classNames = entries(dir)
    .filter((e) => !e.name.startsWith('.') && (e.isDirectory() || (e.isSymbolicLink() && isDir(join(dir, e.name)))))
    .map((e) => e.name)
    .sort(byCodePoint);
  if (classNames.length === 0) throw new UsageError(`${dir}: no class subfolders (expected DIR/<class>/<image>.png|.jpg)`);
  if (classNames.length > FOLDER_LIMITS.classes) throw new UsageError(`${dir}: ${classNames.length} class folders, more than the ${FOLDER_LIMITS.classes} limit`);
  const files: string[] = [];
  const labels: number[] = [];
  classNames.forEach((c, k) => {
    const names = entries(join(dir, c))
      .filter((e) => !e.name.startsWith('.') && IMAGE_EXTS.has(extname(e.name).toLowerCase()) && !e.isDirectory())
      .map((e) => e.name)
      .sort(byCodePoint);
    if (names.length === 0) throw new UsageError(`${join(dir, c)}: no .png, .jpg or .jpeg images in class folder ${JSON.stringify(c)}`);
    if (files.length + names.length > FOLDER_LIMITS.images) throw new UsageError(`${dir}: more than ${FOLDER_LIMITS.images} images`);
    for (const n of names) {
      files.push(join(dir, c, n));
      labels.push(k);
    }
  });
  return { classNames, files, labels: Int32Array.from(labels) };
}

interface Probe {
  width: number;
  height: number;
  /** Colour channels without alpha: 1 (grey) or 3. */
  channels: 1 | 3;
}

function decodeError(file: string, e: unknown): UsageError {
  if (e instanceof UsageError) return e;
  return new UsageError(`${file}: cannot decode image: ${String((e as Error).message ?? e).split('\n')[0]}`);
}

async function probe(file: string, buf: Buffer): Promise<Probe> {
  let meta: Metadata;
  try {
    meta = await sharp(buf, { limitInputPixels: FOLDER_LIMITS.inputPixels }).metadata();
  } catch (e) {
    throw decodeError(file, e);
  }
  if (meta.format !== 'png' && meta.format !== 'jpeg') throw new UsageError(`${file}: content is ${meta.format ?? 'unknown'}, not PNG or JPEG`);
  const { width, height } = meta;
  if (!width || !height) throw new UsageError(`${file}: image has no size`);
  if (width * height > FOLDER_LIMITS.inputPixels) throw new UsageError(`${file}: ${width}x${height} pixels, more than the ${FOLDER_LIMITS.inputPixels} pixel limit`);
  const colour = (meta.channels ?? 3) - (meta.hasAlpha ? 1 : 0);
  return { width, height, channels: colour <= 1 ? 1 : 3 };
}

function checkShape(shape: Readonly<ImageShape>): void {
  const [h, w, c] = shape;
  for (const v of [h, w]) {
    if (!Number.isInteger(v) || v < 1 || v > FOLDER_LIMITS.side) throw new UsageError(`image size ${formatShape(shape)}: sides must be integers 1..${FOLDER_LIMITS.side}`);
  }
  if (c !== 1 && c !== 3) throw new UsageError(`image shape ${formatShape(shape)}: folder images are read with 1 (grey) or 3 (RGB) channels, not ${c}`);
}

/** Reads every image of a folder dataset into the test split (see the module comment for the rules). */
export async function loadImageFolder(dir: string, opts: FolderOptions = {}): Promise<{ train: Split; test: Split; classNames: string[]; files: string[] }> {
  const resize = opts.resize ?? 'exact';
  if (!RESIZE_POLICIES.includes(resize)) throw new UsageError(`--resize must be one of ${RESIZE_POLICIES.join(', ')}, got ${JSON.stringify(resize)}`);
  const list = listImageFolder(dir);
  const read = (f: string): Buffer => readInputFile(f, 'image', { maxBytes: FOLDER_LIMITS.fileBytes });
  let shape = opts.shape;
  let first: { buf: Buffer; p: Probe } | undefined;
  if (!shape) {
    const buf = read(list.files[0]);
    const p = await probe(list.files[0], buf);
    first = { buf, p };
    shape = [p.height, p.width, p.channels];
  }
  checkShape(shape);
  const [h, w, c] = shape;
  const per = h * w * c;
  const n = list.files.length;
  if (n * per > FOLDER_LIMITS.values) throw new UsageError(`${dir}: ${n} images of ${formatShape(shape)} are more than the ${FOLDER_LIMITS.values} value limit`);
  const test: Split = { images: new Float32Array(n * per), labels: list.labels, count: n, height: h, width: w, channels: c };
  for (let i = 0; i < n; i++) {
    const file = list.files[i];
    const buf = i === 0 && first ? first.buf : read(file);
    const p = i === 0 && first ? first.p : await probe(file, buf);
    if (resize === 'exact' && (p.width !== w || p.height !== h)) {
      throw new UsageError(`${file}: image is ${p.width}x${p.height} (WxH), expected ${w}x${h}; choose --resize stretch, cover or contain to resize`);
    }
    if (p.channels !== c && !opts.convertChannels) {
      const name = (k: number): string => (k === 1 ? 'grey' : 'RGB');
      throw new UsageError(`${file}: image is ${name(p.channels)}, the target has ${c} channel${c === 1 ? '' : 's'} (${name(c)}); add --convert-channels to convert`);
    }
    let img = sharp(buf, { limitInputPixels: FOLDER_LIMITS.inputPixels }).removeAlpha();
    if (resize !== 'exact' && (p.width !== w || p.height !== h)) {
      img = img.resize(w, h, resize === 'stretch' ? { fit: 'fill' } : resize === 'cover' ? { fit: 'cover', position: 'centre' } : { fit: 'contain', background: { r: 0, g: 0, b: 0 } });
    }
    img = img.toColourspace(c === 1 ? 'b-w' : 'srgb');
    let out: { data: Buffer; info: OutputInfo };
    try {
      out = await img.raw().toBuffer({ resolveWithObject: true });
    } catch (e) {
      throw decodeError(file, e);
    }
    if (out.info.width !== w || out.info.height !== h || out.info.channels !== c || out.data.length !== per) {
      throw new Error(`loadImageFolder: ${file} decoded to ${out.info.width}x${out.info.height}x${out.info.channels}, expected ${w}x${h}x${c} (bug)`);
    }
    bytesToPixels(out.data, test.images, i * per);
  }
  return { train: emptySplit(shape), test, classNames: list.classNames, files: list.files };
}
