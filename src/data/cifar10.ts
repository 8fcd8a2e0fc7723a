/**
 * CIFAR-10 from its standard binary distribution (cifar-10-binary.tar.gz, extracted): files
 * `data_batch_1.bin` .. `data_batch_5.bin` (train) and `test_batch.bin` (test), each a sequence of
 * 3073-byte records: 1 label byte (0..9), then 1024 red, 1024 green and 1024 blue bytes (32x32, row-major
 * planes). `batches.meta.txt` (one class name per line) names the classes when present. Images become
 * NHWC float32 in cnnf's [-1, 1] space (byte/255*2-1), in file order.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { readInputFile } from '../io/files.js';
import { emptySplit, PIXEL_LUT, type ImageShape, type Split } from './types.js';

export const CIFAR10_SHAPE: Readonly<ImageShape> = [32, 32, 3];
export const CIFAR10_RECORD_BYTES = 1 + 32 * 32 * 3;
export const CIFAR10_CLASS_NAMES: readonly string[] = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
export const CIFAR10_TRAIN_FILES: readonly string[] = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`);
export const CIFAR10_TEST_FILE = 'test_batch.bin';
/** Most records one batch file may hold (the standard files hold 10000). */
export const CIFAR10_MAX_RECORDS = 60_000;
const MAX_META_BYTES = 64 * 1024;

/** Decodes CIFAR-10 records (label byte + R, G, B planes) into an NHWC [-1, 1] split; `file` names it in messages. */
export function parseCifar10Batch(buf: Uint8Array, file: string): Split {
  const R = CIFAR10_RECORD_BYTES;
  if (buf.length === 0) throw new UsageError(`${file}: empty file, expected CIFAR-10 records of ${R} bytes`);
  if (buf.length % R !== 0) {
    throw new UsageError(`${file}: ${buf.length} bytes is not a whole number of CIFAR-10 records of ${R} bytes (1 label + 3x32x32 pixels); is this the binary version?`);
  }
  const count = buf.length / R;
  if (count > CIFAR10_MAX_RECORDS) throw new UsageError(`${file}: ${count} records, more than the ${CIFAR10_MAX_RECORDS} a batch file may hold`);
  const plane = 32 * 32;
  const images = new Float32Array(count * 3 * plane);
  const labels = new Int32Array(count);
  const lut = PIXEL_LUT;
  for (let i = 0; i < count; i++) {
    const base = i * R;
    const y = buf[base];
    if (y > 9) throw new UsageError(`${file}: record ${i} has label ${y}, expected 0..9`);
    labels[i] = y;
    const out = i * 3 * plane;
    for (let p = 0; p < plane; p++) {
      const o = out + p * 3;
      images[o] = lut[buf[base + 1 + p]];
      images[o + 1] = lut[buf[base + 1 + plane + p]];
      images[o + 2] = lut[buf[base + 1 + 2 * plane + p]];
    }
  }
  return { images, labels, count, height: 32, width: 32, channels: 3 };
}

/** The directory holding the batch files: DIR itself, or DIR/cifar-10-batches-bin as the tarball extracts. */
export function cifar10Dir(dir: string): string {
  if (!existsSync(dir)) throw new UsageError(`--data-dir ${dir} does not exist`);
  if (!statSync(dir).isDirectory()) throw new UsageError(`--data-dir ${dir} is not a directory`);
  if (existsSync(join(dir, CIFAR10_TEST_FILE))) return dir;
  const nested = join(dir, 'cifar-10-batches-bin');
  if (existsSync(join(nested, CIFAR10_TEST_FILE))) return nested;
  throw new UsageError(`${dir}: no ${CIFAR10_TEST_FILE} (nor cifar-10-batches-bin/${CIFAR10_TEST_FILE}); expected the extracted CIFAR-10 binary version`);
}

function readBatch(path: string): Split {
  const buf = readInputFile(path, 'CIFAR-10 batch', {
    maxBytes: CIFAR10_MAX_RECORDS * CIFAR10_RECORD_BYTES,
    missing: (p) => `CIFAR-10 batch not found: ${p}`,
    tooBig: (p, bytes) => {
      const records = Math.floor(bytes / CIFAR10_RECORD_BYTES);
      const rest = bytes % CIFAR10_RECORD_BYTES;
      return `CIFAR-10 batch ${p} is ${bytes} bytes (${records} records of ${CIFAR10_RECORD_BYTES} bytes${rest ? ` and ${rest} bytes more` : ''}), ` +
        `more than the ${CIFAR10_MAX_RECORDS} records (${CIFAR10_MAX_RECORDS * CIFAR10_RECORD_BYTES} bytes) a batch may hold`;
    },
  });
  return parseCifar10Batch(buf, path);
}

function concat(parts: Split[]): Split {
  const count = parts.reduce((s, p) => s + p.count, 0);
  const out = { ...emptySplit(CIFAR10_SHAPE), count, images: new Float32Array(count * 3072), labels: new Int32Array(count) };
  let at = 0;
  for (const p of parts) {
    out.images.set(p.images, at * 3072);
    out.labels.set(p.labels, at);
    at += p.count;
  }
  return out;
}

/** Class names from batches.meta.txt (10 non-empty lines) or the standard names when the file is absent. */
export function cifar10ClassNames(dir: string): string[] {
  const path = join(dir, 'batches.meta.txt');
  if (!existsSync(path)) return [...CIFAR10_CLASS_NAMES];
  const lines = readInputFile(path, 'CIFAR-10 class names', { maxBytes: MAX_META_BYTES }).toString('utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
  if (lines.length !== 10) throw new UsageError(`${path}: ${lines.length} class names, expected 10 (one per line)`);
  if (new Set(lines).size !== 10) throw new UsageError(`${path}: class names repeat`);
  return lines;
}

/**
 * Reads a CIFAR-10 binary directory. `testOnly` skips the five training batches (the train split is
 * then empty), which an evaluation does not need; otherwise all five must be present.
 */
export function loadCifar10(dataDir: string, opts: { testOnly?: boolean } = {}): { train: Split; test: Split; classNames: string[] } {
  const dir = cifar10Dir(dataDir);
  const classNames = cifar10ClassNames(dir);
  const test = readBatch(join(dir, CIFAR10_TEST_FILE));
  if (opts.testOnly) return { train: emptySplit(CIFAR10_SHAPE), test, classNames };
  const missing = CIFAR10_TRAIN_FILES.filter((f) => !existsSync(join(dir, f)));
  if (missing.length > 0) throw new UsageError(`${dir}: missing CIFAR-10 training batches ${missing.join(', ')}`);
  const train = concat(CIFAR10_TRAIN_FILES.map((f) => readBatch(join(dir, f))));
  return { train, test, classNames };
}

/** Encodes NHWC 32x32x3 byte images (R, G, B interleaved) and their labels as CIFAR-10 records (for fixtures and tests). */
export function encodeCifar10Batch(labels: ArrayLike<number>, rgbBytes: Uint8Array): Uint8Array {
  const n = labels.length;
  if (rgbBytes.length !== n * 3072) throw new Error(`encodeCifar10Batch: ${rgbBytes.length} bytes for ${n} images of 32x32x3`);
  const out = new Uint8Array(n * CIFAR10_RECORD_BYTES);
  for (let i = 0; i < n; i++) {
    const base = i * CIFAR10_RECORD_BYTES;
    out[base] = labels[i];
    for (let p = 0; p < 1024; p++) for (let c = 0; c < 3; c++) out[base + 1 + c * 1024 + p] = rgbBytes[i * 3072 + p * 3 + c];
  }
  return out;
}
