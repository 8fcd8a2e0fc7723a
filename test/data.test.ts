import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { cnnf } from './helpers/cli.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { UsageError } from '../src/errors.js';
import {
  applyTestSubset,
  batches,
  classCounts,
  deriveSeed,
  encodeIdxImages,
  encodeIdxLabels,
  fashionMnistEmptyRecords,
  fillGaussian,
  gaussian,
  IMAGE_PIXELS,
  imageAt,
  loadDataset,
  mulberry32,
  parseFashionClassJson,
  parseTestSubset,
  permutation,
  shuffle,
  stratifiedQuotas,
  stratifiedSubset,
  type Dataset,
  type Split,
} from '../src/data/index.js';

const px = (v: number): number => Math.fround((v / 255) * 2 - 1);

function expectImageEqualsBytes(img: Float32Array, bytes: ArrayLike<number>): void {
  expect(img.length).toBe(IMAGE_PIXELS);
  expect(bytes.length).toBe(IMAGE_PIXELS);
  for (let i = 0; i < IMAGE_PIXELS; i++) {
    if (img[i] !== px(bytes[i])) throw new Error(`pixel ${i}: ${img[i]} !== ${px(bytes[i])} (byte ${bytes[i]})`);
  }
}

/** Catches a thrown error and checks it is a UsageError whose single-line message contains every fragment. */
function expectUsageError(fn: () => unknown, ...fragments: string[]): UsageError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UsageError);
  const msg = (err as Error).message;
  expect(msg).not.toContain('\n');
  for (const f of fragments) expect(msg).toContain(f);
  return err as UsageError;
}

// ---------- synthetic IDX fixtures ----------

const tmpRoot = mkdtempSync(join(tmpdir(), 'cnnf-data-test-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
let dirCounter = 0;

interface SynthSplit {
  pixels: Uint8Array;
  labels: number[];
}

function synthSplit(labels: number[], seed: number): SynthSplit {
  const rng = mulberry32(seed);
  const pixels = new Uint8Array(labels.length * IMAGE_PIXELS);
  for (let i = 0; i < pixels.length; i++) pixels[i] = Math.floor(rng() * 256);
  return { pixels, labels };
}

interface WriteOpts {
  gz?: Partial<Record<'trainImages' | 'trainLabels' | 'testImages' | 'testLabels', boolean>>;
  prefix?: string;
  override?: Partial<Record<'trainImages' | 'trainLabels' | 'testImages' | 'testLabels', Uint8Array>>;
}

const NAMES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
} as const;

function writeIdxDir(train: SynthSplit, test: SynthSplit, opts: WriteOpts = {}): string {
  const dir = join(tmpRoot, `d${dirCounter++}`);
  mkdirSync(dir);
  const files = {
    trainImages: encodeIdxImages(train.pixels, train.labels.length),
    trainLabels: encodeIdxLabels(train.labels),
    testImages: encodeIdxImages(test.pixels, test.labels.length),
    testLabels: encodeIdxLabels(test.labels),
    ...opts.override,
  };
  for (const role of Object.keys(NAMES) as (keyof typeof NAMES)[]) {
    const gz = opts.gz?.[role] ?? false;
    const name = (opts.prefix ?? '') + NAMES[role] + (gz ? '.gz' : '');
    writeFileSync(join(dir, name), gz ? gzipSync(files[role]) : files[role]);
  }
  return dir;
}

const TRAIN_LABELS = [0, 1, 2, 0, 1, 2, 2];
const TEST_LABELS = [2, 0, 1, 1];
const synthTrain = synthSplit(TRAIN_LABELS, 1);
const synthTest = synthSplit(TEST_LABELS, 2);

function expectSplitMatches(split: Split, src: SynthSplit, labelShift = 0): void {
  expect(split.count).toBe(src.labels.length);
  expect(Array.from(split.labels)).toEqual(src.labels.map((l) => l + labelShift));
  for (let i = 0; i < split.count; i++) expectImageEqualsBytes(imageAt(split, i), src.pixels.subarray(i * IMAGE_PIXELS, (i + 1) * IMAGE_PIXELS));
}

// ---------- Fashion-MNIST ----------

describe('fashion-mnist', () => {
  let ds: Dataset;
  let rawClass0: number[][];
  beforeAll(() => {
    const t0 = performance.now();
    ds = loadDataset({ dataset: 'fashion-mnist' });
    console.log(`fashion-mnist load: ${Math.round(performance.now() - t0)} ms`);
    const pkgDir = dirname(createRequire(import.meta.url).resolve('fashion-mnist/package.json'));
    rawClass0 = JSON.parse(readFileSync(join(pkgDir, 'src', 'clothes', '0.json'), 'utf8')).data;
  });

  it('has 60000/10000 images, 6000/1000 per class, ordered by class', () => {
    expect(ds.name).toBe('fashion-mnist');
    expect(ds.numClasses).toBe(10);
    expect(ds.classNames).toEqual(['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']);
    expect(ds.train.count).toBe(60000);
    expect(ds.test.count).toBe(10000);
    expect(ds.train.images.length).toBe(60000 * 784);
    expect(ds.test.images.length).toBe(10000 * 784);
    expect(classCounts(ds.train, 10)).toEqual(new Array(10).fill(6000));
    expect(classCounts(ds.test, 10)).toEqual(new Array(10).fill(1000));
    for (let i = 0; i < ds.train.count; i += 997) expect(ds.train.labels[i]).toBe(Math.floor(i / 6000));
    for (let i = 0; i < ds.test.count; i += 97) expect(ds.test.labels[i]).toBe(Math.floor(i / 1000));
    expect([ds.train.height, ds.train.width]).toEqual([28, 28]);
  });

  it('scales pixels into [-1, 1] (first train image and the whole set)', () => {
    const first = imageAt(ds.train, 0);
    expectImageEqualsBytes(first, rawClass0[0]);
    expect(Math.min(...first)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...first)).toBeLessThanOrEqual(1);
    expect(new Set(first).size).toBeGreaterThan(10);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of ds.train.images) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    expect(lo).toBe(-1);
    expect(hi).toBe(1);
  });

  it('drops the two empty class-0 records at positions 1000 and 7001', () => {
    expect(rawClass0.length).toBe(7002);
    expect(rawClass0[1000]).toEqual([]);
    expect(rawClass0[7001]).toEqual([]);
    expect(fashionMnistEmptyRecords()).toEqual([
      { classIndex: 0, position: 1000 },
      { classIndex: 0, position: 7001 },
    ]);
    // no empty / all-zero (all -1 after scaling) image in class 0's training images
    for (let i = 0; i < 6000; i++) {
      const img = imageAt(ds.train, i);
      expect(img.some((v) => v !== -1)).toBe(true);
    }
    // train image 999 is record 999, train image 1000 is record 1001 (record 1000 was empty)
    expectImageEqualsBytes(imageAt(ds.train, 999), rawClass0[999]);
    expectImageEqualsBytes(imageAt(ds.train, 1000), rawClass0[1001]);
    expectImageEqualsBytes(imageAt(ds.train, 5999), rawClass0[6000]);
    // the first class-0 test image is the 6001st non-empty record (raw position 6001); the last is raw 7000
    const nonEmpty = rawClass0.filter((r) => r.length > 0);
    expect(nonEmpty.length).toBe(7000);
    expectImageEqualsBytes(imageAt(ds.test, 0), nonEmpty[6000]);
    expectImageEqualsBytes(imageAt(ds.test, 0), rawClass0[6001]);
    expectImageEqualsBytes(imageAt(ds.test, 999), rawClass0[7000]);
  });

  it('fast JSON scanner agrees with JSON.parse on class 0', () => {
    const pkgDir = dirname(createRequire(import.meta.url).resolve('fashion-mnist/package.json'));
    const file = join(pkgDir, 'src', 'clothes', '0.json');
    const rec = parseFashionClassJson(readFileSync(file), file);
    expect(rec.count).toBe(7000);
    expect(rec.emptyPositions).toEqual([1000, 7001]);
    const flat = Uint8Array.from(rawClass0.flat());
    expect(Buffer.compare(Buffer.from(rec.pixels), Buffer.from(flat))).toBe(0);
  });

  it('fast JSON scanner rejects malformed input', () => {
    const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
    const rec784 = `[${new Array(784).fill(7).join(',')}]`;
    expect(parseFashionClassJson(enc(`{"data":[${rec784},[], ${rec784}]}`), 'x.json').count).toBe(2);
    expectUsageError(() => parseFashionClassJson(enc('{"data":[[1,2,3]]}'), 'short.json'), 'short.json', 'has 3 values');
    expectUsageError(() => parseFashionClassJson(enc(`{"data":[${rec784.replace('7', '256')}]}`), 'big.json'), 'big.json', '256');
    expectUsageError(() => parseFashionClassJson(enc(`{"data":[${rec784.replace('7', '0.5')}]}`), 'frac.json'), 'frac.json');
    expectUsageError(() => parseFashionClassJson(enc(`{"data":[${rec784}`), 'cut.json'), 'cut.json');
  });

  it('caches the parsed splits in-process', () => {
    // the same arrays come back (no re-parse; no wall-clock assertion, which a loaded machine breaks)
    const again = loadDataset();
    expect(again.train.images).toBe(ds.train.images);
    expect(again.test.images).toBe(ds.test.images);
  });

  it('stratified train subset takes the first images of each class, remainder to the lowest classes', () => {
    const sub = loadDataset({ trainSize: 25 });
    expect(sub.train.count).toBe(25);
    expect(classCounts(sub.train, 10)).toEqual([3, 3, 3, 3, 3, 2, 2, 2, 2, 2]);
    let k = 0;
    for (let c = 0; c < 10; c++) {
      const per = c < 5 ? 3 : 2;
      for (let j = 0; j < per; j++, k++) {
        expect(sub.train.labels[k]).toBe(c);
        expect(Array.from(imageAt(sub.train, k))).toEqual(Array.from(imageAt(ds.train, c * 6000 + j)));
      }
    }
    expect(sub.test.count).toBe(10000);
    expect(classCounts(loadDataset({ trainSize: 1000 }).train, 10)).toEqual(new Array(10).fill(100));
  });

  it('a train subset loaded first converts only its images and equals the subset of the full split', async () => {
    // a fresh module instance: nothing cached, so loadDataset takes the subset-only path
    vi.resetModules();
    const fresh = (await import('../src/data/index.js')) as typeof import('../src/data/index.js');
    const sub = fresh.loadDataset({ trainSize: 103, testSubset: 'first:5' });
    const want = stratifiedSubset(ds.train, 103, 10);
    expect(sub.train.count).toBe(103);
    expect(sub.train.images.length).toBe(103 * 784);
    expect(Buffer.from(sub.train.images.buffer).equals(Buffer.from(want.images.buffer))).toBe(true);
    expect(Array.from(sub.train.labels)).toEqual(Array.from(want.labels));
    expect(Array.from(sub.test.labels)).toEqual(Array.from(ds.test.labels.subarray(0, 5)));
    // the full split loaded afterwards in that instance is complete, not the subset
    expect(fresh.loadDataset().train.count).toBe(60000);
    expect(fresh.loadDataset({ trainSize: 60000 }).train.count).toBe(60000);
  });

  it('stride and first test subsets, applied after testSize', () => {
    const s = loadDataset({ testSubset: 'stride:1000' });
    expect(s.test.count).toBe(10);
    expect(Array.from(s.test.labels)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (let k = 0; k < 10; k++) expect(Array.from(imageAt(s.test, k))).toEqual(Array.from(imageAt(ds.test, k * 1000)));
    const s3 = loadDataset({ testSubset: 'stride:3' });
    expect(s3.test.count).toBe(3334);
    expect(Array.from(imageAt(s3.test, 5))).toEqual(Array.from(imageAt(ds.test, 15)));
    const f = loadDataset({ testSubset: 'first:5' });
    expect(f.test.count).toBe(5);
    expect(Array.from(f.test.labels)).toEqual([0, 0, 0, 0, 0]);
    // testSize 100 -> 10 per class (first 10 of each class), then stride:10 -> one per class
    const both = loadDataset({ testSize: 100, testSubset: 'stride:10' });
    expect(both.test.count).toBe(10);
    expect(Array.from(both.test.labels)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(Array.from(imageAt(both.test, 3))).toEqual(Array.from(imageAt(ds.test, 3000)));
  });

  it('rejects bad subset sizes and specs', () => {
    expectUsageError(() => loadDataset({ trainSize: 60001 }), '60001', '60000');
    expectUsageError(() => loadDataset({ trainSize: 0 }), 'train');
    expectUsageError(() => loadDataset({ testSize: 1.5 }), 'test');
    expectUsageError(() => loadDataset({ testSubset: 'first:10001' }), 'first:10001');
    for (const bad of ['bogus', 'stride:0', 'stride:', 'stride:-2', 'every:3', 'first:0', 'stride:2.5']) {
      expectUsageError(() => parseTestSubset(bad), JSON.stringify(bad));
      expectUsageError(() => loadDataset({ testSubset: bad }));
    }
    expectUsageError(() => loadDataset({ dataset: 'fashion-mnist', dataDir: '/tmp' }), 'idx');
    expectUsageError(() => loadDataset({ dataset: 'mnist', numClasses: 3 }), 'idx');
  });

  it('batches cover the split once; shuffling is seeded', () => {
    const split = loadDataset({ trainSize: 103 }).train;
    const seen = new Array(split.count).fill(0);
    let n = 0;
    for (const b of batches(split, 10)) {
      expect(b.x.length).toBe(b.y.length * IMAGE_PIXELS);
      for (let k = 0; k < b.indices.length; k++) {
        seen[b.indices[k]]++;
        expect(b.y[k]).toBe(split.labels[b.indices[k]]);
        expect(b.x[k * IMAGE_PIXELS + 300]).toBe(split.images[b.indices[k] * IMAGE_PIXELS + 300]);
      }
      n++;
    }
    expect(n).toBe(11);
    expect(seen.every((c) => c === 1)).toBe(true);
    expect([...batches(split, 10, { dropLast: true })].length).toBe(10);
    const order = (seed: number): number[] => [...batches(split, 16, { shuffle: true, rng: mulberry32(seed) })].flatMap((b) => Array.from(b.indices));
    expect(order(5)).toEqual(order(5));
    expect(order(5)).not.toEqual(order(6));
    expect([...order(5)].sort((a, b) => a - b)).toEqual(Array.from({ length: 103 }, (_, i) => i));
    expect(() => [...batches(split, 16, { shuffle: true })]).toThrow(/rng/);
    expect(() => [...batches(split, 0)]).toThrow(/batchSize/);
  });
});

// ---------- MNIST ----------

describe('mnist', () => {
  it('loads the canonical 60k/10k split with known class counts', () => {
    const ds = loadDataset({ dataset: 'mnist' });
    expect(ds.classNames).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(ds.train.count).toBe(60000);
    expect(ds.test.count).toBe(10000);
    expect(classCounts(ds.train, 10)).toEqual([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    expect(classCounts(ds.test, 10)).toEqual([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    // the canonical first training label is 5, first test label is 7
    expect(ds.train.labels[0]).toBe(5);
    expect(ds.test.labels[0]).toBe(7);
    const img = imageAt(ds.train, 0);
    expect(img[0]).toBe(-1);
    expect(Math.max(...img)).toBe(1);
    // stratified subset on unbalanced classes: proportional
    const sub = loadDataset({ dataset: 'mnist', trainSize: 600 });
    const counts = classCounts(sub.train, 10);
    expect(counts.reduce((a, b) => a + b)).toBe(600);
    expect(counts[1]).toBe(67); // 600*6742/60000 = 67.42
    expect(counts[5]).toBe(54); // 600*5421/60000 = 54.21
  });
});

// ---------- IDX / EMNIST ----------

describe('idx', () => {
  it('round-trips a plain synthetic IDX directory', () => {
    const dir = writeIdxDir(synthTrain, synthTest);
    const ds = loadDataset({ dataset: 'idx', dataDir: dir });
    expect(ds.name).toBe('idx');
    expect(ds.numClasses).toBe(3);
    expect(ds.classNames).toEqual(['0', '1', '2']);
    expectSplitMatches(ds.train, synthTrain);
    expectSplitMatches(ds.test, synthTest);
  });

  it('round-trips gzipped files (all or some)', () => {
    for (const gz of [
      { trainImages: true, trainLabels: true, testImages: true, testLabels: true },
      { trainImages: true, testLabels: true },
    ]) {
      const dir = writeIdxDir(synthTrain, synthTest, { gz });
      const ds = loadDataset({ dataset: 'idx', dataDir: dir });
      expectSplitMatches(ds.train, synthTrain);
      expectSplitMatches(ds.test, synthTest);
    }
  });

  it('respects numClasses and stratified subsets on unbalanced classes', () => {
    const dir = writeIdxDir(synthTrain, synthTest);
    const ds = loadDataset({ dataset: 'idx', dataDir: dir, numClasses: 5 });
    expect(ds.numClasses).toBe(5);
    expect(classCounts(ds.train, 5)).toEqual([2, 2, 3, 0, 0]);
    // 4 of 7 images; quotas 8/7, 8/7, 12/7 -> floors 1,1,1, remainder to class 2 (largest fraction)
    const sub = loadDataset({ dataset: 'idx', dataDir: dir, trainSize: 4 });
    expect(Array.from(sub.train.labels)).toEqual([0, 1, 2, 2]);
    expectImageEqualsBytes(imageAt(sub.train, 3), synthTrain.pixels.subarray(5 * IMAGE_PIXELS, 6 * IMAGE_PIXELS));
    expectUsageError(() => loadDataset({ dataset: 'idx', dataDir: dir, trainSize: 8 }), '8', '7');
  });

  it('emnist-letters transposes images and maps labels 1..26 to 0..25', () => {
    const train = synthSplit([1, 26, 5, 2], 3);
    const test = synthSplit([13, 1], 4);
    for (const opts of [{}, { prefix: 'emnist-letters-', gz: { trainImages: true } }] as WriteOpts[]) {
      const dir = writeIdxDir(train, test, opts);
      const ds = loadDataset({ dataset: 'emnist-letters', dataDir: dir });
      expect(ds.numClasses).toBe(26);
      expect(ds.classNames[0]).toBe('a');
      expect(ds.classNames[25]).toBe('z');
      expect(ds.classNames.length).toBe(26);
      expect(Array.from(ds.train.labels)).toEqual([0, 25, 4, 1]);
      expect(Array.from(ds.test.labels)).toEqual([12, 0]);
      for (const [split, src] of [[ds.train, train], [ds.test, test]] as const) {
        for (let i = 0; i < split.count; i++) {
          const img = imageAt(split, i);
          for (let r = 0; r < 28; r++) {
            for (let c = 0; c < 28; c++) {
              const want = px(src.pixels[i * IMAGE_PIXELS + c * 28 + r]);
              if (img[r * 28 + c] !== want) throw new Error(`image ${i} (${r},${c}) not transposed`);
            }
          }
        }
      }
      // not equal to the untransposed image (random pixels are not symmetric)
      expect(imageAt(ds.train, 0)[1]).not.toBe(px(train.pixels[1]));
    }
  });

  it('emnist-letters rejects labels outside 1..26 and a missing data dir', () => {
    for (const bad of [0, 27]) {
      const dir = writeIdxDir(synthSplit([1, bad, 3], 5), synthSplit([2], 6));
      expectUsageError(() => loadDataset({ dataset: 'emnist-letters', dataDir: dir }), 'train-labels-idx1-ubyte', `label ${bad}`, '1..26');
    }
    expectUsageError(() => loadDataset({ dataset: 'emnist-letters' }), 'emnist-letters', 'data directory');
    expectUsageError(() => loadDataset({ dataset: 'idx' }), 'idx', 'data directory');
    expectUsageError(() => loadDataset({ dataset: 'idx', dataDir: join(tmpRoot, 'nope') }), join(tmpRoot, 'nope'));
  });

  describe('malformed data raises a one-line UsageError naming the file', () => {
    const imgs = (): Uint8Array => encodeIdxImages(synthTrain.pixels, TRAIN_LABELS.length);

    it('bad magic number', () => {
      const wrong = imgs();
      wrong[3] = 0x01; // 2049: a label file's magic
      let dir = writeIdxDir(synthTrain, synthTest, { override: { trainImages: wrong } });
      expectUsageError(() => loadDataset({ dataset: 'idx', dataDir: dir }), 'train-images-idx3-ubyte', 'magic', '2051');
      const labels = encodeIdxLabels(TEST_LABELS);
      labels[2] = 0x09;
      dir = writeIdxDir(synthTrain, synthTest, { override: { testLabels: labels } });
      expectUsageError(() => loadDataset({ dataset: 'idx', dataDir: dir }), 't10k-labels-idx1-ubyte', 'magic', '2049');
    });

    it('truncated files (data, header, gzip stream)', () => {
      let dir = writeIdxDir(synthTrain, synthTest, { override: { trainImages: imgs().subarray(0, 16 + 3 * IMAGE_PIXELS + 100) } });
      expectUsageError(() => loadDataset({ dataset: 'idx', dataDir: dir }), 'train-images-idx3-ubyte', 'truncated');
      dir = writeIdxDir(synthTrain, synthTest, { override: { testLabels: encodeIdxLabels(TEST_LABELS).subarray(0, 6) } });
      expectUsageError(() => loadDataset({ dataset: 'idx', dataDir: dir }), 't10k-labels-idx1-ubyte', 'truncated');
      dir = writeIdxDir(synthTrain, synthTest, { override: { testLabels: encodeIdxLabels(TEST_LABELS).subarray(0, 9) } });
      expectUsageError(() => loadDataset({ dataset: 'idx', dataDir: dir }), 't10k-labels-idx1-ubyte', 'truncated');
      dir = writeIdxDir(synthTrain, synthTest);
      const gz = gzipSync(imgs());
      writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gz.subarray(0, gz.length >> 1));
      unlinkSync(join(dir, 'train-images-idx3-ubyte'));
      expectUsageError(() => loadDataset({ dataset: 'idx', dataDir: dir }), 'train-images-idx3-ubyte.gz', 'gzip');
    });

    it('wrong image size and trailing bytes', () => {
      const small = encodeIdxImages(new Uint8Array(2 * 27 * 28), 2, 27, 28);
      let dir = writeIdxDir(synthTrain, synthTest, { override: { testImages: small } });
      expectUsageError(() => loadDataset({ dataset: 'idx', dataDir: dir }), 't10k-images-idx3-ubyte', '27x28', '28x28');
      const extra = new Uint8Array(imgs().length + 5);
      extra.set(imgs());
      dir = writeIdxDir(synthTrain, synthTest, { override: { trainImages: extra } });
      expectUsageError(() => loadDataset({ dataset: 'idx', dataDir: dir }), 'train-images-idx3-ubyte', 'trailing');
    });

    it('image/label count mismatch', () => {
      const dir = writeIdxDir(synthTrain, synthTest, { override: { trainLabels: encodeIdxLabels(TRAIN_LABELS.slice(0, 6)) } });
      expectUsageError(() => loadDataset({ dataset: 'idx', dataDir: dir }), 'train-images-idx3-ubyte', 'train-labels-idx1-ubyte', '7 images', '6 labels');
    });

    it('label out of range', () => {
      const dir = writeIdxDir(synthTrain, synthTest);
      expectUsageError(() => loadDataset({ dataset: 'idx', dataDir: dir, numClasses: 2 }), 'train-labels-idx1-ubyte', 'label 2', '0..1');
      const dir2 = writeIdxDir(synthTrain, synthSplit([0, 1, 3], 9));
      expectUsageError(() => loadDataset({ dataset: 'idx', dataDir: dir2, numClasses: 3 }), 't10k-labels-idx1-ubyte', 'label 3');
    });

    it('missing file names the expected files', () => {
      const dir = writeIdxDir(synthTrain, synthTest, { gz: { testLabels: true } });
      unlinkSync(join(dir, 't10k-labels-idx1-ubyte.gz'));
      const err = expectUsageError(
        () => loadDataset({ dataset: 'idx', dataDir: dir }),
        'missing t10k-labels-idx1-ubyte',
        'train-images-idx3-ubyte',
        'train-labels-idx1-ubyte',
        't10k-images-idx3-ubyte',
        '.gz',
      );
      expect(err.exitCode).toBe(2);
    });
  });
});

// ---------- subsets on synthetic splits ----------

describe('subsets', () => {
  const mk = (labels: number[]): Split => ({
    images: Float32Array.from({ length: labels.length * IMAGE_PIXELS }, (_, i) => Math.floor(i / IMAGE_PIXELS)),
    labels: Int32Array.from(labels),
    count: labels.length,
    height: 28,
    width: 28,
    channels: 1,
  });

  it('stratifiedQuotas: balanced remainder to lowest classes, unbalanced largest remainder', () => {
    expect(stratifiedQuotas([10, 10, 10], 7)).toEqual([3, 2, 2]);
    expect(stratifiedQuotas([10, 10, 10, 10], 2)).toEqual([1, 1, 0, 0]);
    expect(stratifiedQuotas([5, 3, 2], 5)).toEqual([3, 1, 1]);
    expect(stratifiedQuotas([90, 10], 10)).toEqual([9, 1]);
    expect(stratifiedQuotas([0, 4], 3)).toEqual([0, 3]);
  });

  it('stratifiedSubset keeps split order and takes the first images of each class', () => {
    const s = mk([1, 0, 1, 2, 0, 0, 1, 2, 2, 0]);
    const sub = stratifiedSubset(s, 5, 3);
    // counts 4,3,3 of 10 -> 2.0, 1.5, 1.5 -> [2,2,1]: class 0 images 1,4; class 1 images 0,2; class 2 image 3
    expect(Array.from(sub.labels)).toEqual([1, 0, 1, 2, 0]);
    expect(Array.from({ length: sub.count }, (_, i) => sub.images[i * IMAGE_PIXELS + 7])).toEqual([0, 1, 2, 3, 4]);
    expectUsageError(() => stratifiedSubset(s, 11, 3), '11', '10');
  });

  it('applyTestSubset stride and first', () => {
    const s = mk([0, 1, 2, 0, 1, 2, 0]);
    const st = applyTestSubset(s, 'stride:3');
    expect(Array.from({ length: st.count }, (_, i) => st.images[i * IMAGE_PIXELS])).toEqual([0, 3, 6]);
    expect(applyTestSubset(s, 'stride:100').count).toBe(1);
    expect(applyTestSubset(s, { kind: 'first', n: 2 }).count).toBe(2);
    expectUsageError(() => applyTestSubset(s, 'first:8'), 'first:8');
  });
});

// ---------- RNG ----------

describe('rng', () => {
  it('mulberry32 is deterministic, in [0,1), and seed-sensitive', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(xs).toEqual(Array.from({ length: 1000 }, () => b()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05);
    expect(mulberry32(43)()).not.toBe(mulberry32(42)());
    expect(deriveSeed(1, 'init')).not.toBe(deriveSeed(1, 'shuffle'));
    expect(deriveSeed(1, 'init')).toBe(deriveSeed(1, 'init'));
    expect(deriveSeed(1, 'init')).not.toBe(deriveSeed(2, 'init'));
  });

  it('gaussian has mean ~0 and std ~1', () => {
    const rng = mulberry32(7);
    const n = 20000;
    const xs = Array.from({ length: n }, () => gaussian(rng));
    const m = xs.reduce((s, x) => s + x, 0) / n;
    const sd = Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / n);
    expect(Math.abs(m)).toBeLessThan(0.03);
    expect(Math.abs(sd - 1)).toBeLessThan(0.03);
    const f = fillGaussian(new Float32Array(20001), mulberry32(8), 2, 0.5);
    const fm = f.reduce((s, x) => s + x, 0) / f.length;
    expect(Math.abs(fm - 2)).toBeLessThan(0.02);
    expect(f.every(Number.isFinite)).toBe(true);
  });

  it('shuffle and permutation are seeded permutations', () => {
    const arr = Array.from({ length: 50 }, (_, i) => i);
    const s1 = shuffle([...arr], mulberry32(1));
    expect(s1).not.toEqual(arr);
    expect([...s1].sort((x, y) => x - y)).toEqual(arr);
    expect(shuffle([...arr], mulberry32(1))).toEqual(s1);
    const p = permutation(50, mulberry32(1));
    expect(Array.from(p)).toEqual(s1);
  });
});

// ---------- CLI ----------

describe('cnnf data info', () => {
  // asynchronous: a blocking spawnSync starves vitest's worker RPC while the CLI loads data
  const run = (...args: string[]) => cnnf(['data', 'info', ...args]);

  it('bad flags exit 2 with a single-line message and no stack trace', async () => {
    for (const args of [['--test-subset', 'bogus'], ['--dataset', 'cifar'], ['--train-size', '0'], ['--dataset', 'idx']]) {
      const r = await run(...args);
      expect(r.code, args.join(' ')).toBe(2);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines.length, r.stderr).toBe(1);
      expect(lines[0]).toMatch(/^cnnf: /);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe('');
    }
    expect((await run('--test-subset', 'bogus')).stderr).toContain('--test-subset');
  });

  it('malformed IDX file exits 2 naming the file', async () => {
    const dir = writeIdxDir(synthTrain, synthTest, { override: { testLabels: encodeIdxLabels([0, 1, 9]) } });
    const r = await run('--dataset', 'idx', '--data-dir', dir);
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split('\n').length).toBe(1);
    expect(r.stderr).toContain('t10k-images-idx3-ubyte');
  });

  it('prints JSON counts and a table', async () => {
    const dir = writeIdxDir(synthTrain, synthTest);
    const r = await run('--dataset', 'idx', '--data-dir', dir, '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.dataset).toBe('idx');
    expect(out.totals).toEqual({ train: 7, test: 4 });
    expect(out.classes.map((c: { train: number }) => c.train)).toEqual([2, 2, 3]);
    expect(out.classes.map((c: { test: number }) => c.test)).toEqual([1, 2, 1]);
    expect(typeof out.loadMs).toBe('number');
    const t = await run('--dataset', 'idx', '--data-dir', dir, '--test-subset', 'first:2');
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/total\s*│\s*7\s*│\s*2/);
    expect(t.stdout).toMatch(/loaded in \d+ ms/);
  });
});
