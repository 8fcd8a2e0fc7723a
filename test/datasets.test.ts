/**
 * Datasets of any shape: CIFAR-10 binary batches and image folders (generated here in their formats),
 * subsets keeping the shape, colour image dumps, and the CLI's one-line errors for bad files and for
 * data whose shape does not match the model.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../src/errors.js';
import {
  batches,
  CIFAR10_CLASS_NAMES,
  encodeCifar10Batch,
  imageAt,
  loadDataset,
  loadDatasetAsync,
  loadImageFolder,
  parseCifar10Batch,
  splitShape,
  stratifiedSubset,
  applyTestSubset,
} from '../src/data/index.js';
import { dumpScale, renderRow, rowSize, writeDump } from '../src/io/images.js';
import { cnnf, cnnfInProcess, inParallel, oneLineError, referenceModel } from './helpers/cli.js';

const tmp = (): string => mkdtempSync(join(tmpdir(), 'cnnf-datasets-'));
const px = (v: number): number => Math.fround((v / 255) * 2 - 1);

function refused(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect((e as Error).message).not.toContain('\n');
    return (e as Error).message;
  }
  throw new Error('expected a UsageError');
}
async function refusedAsync(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect((e as Error).message).not.toContain('\n');
    return (e as Error).message;
  }
  throw new Error('expected a UsageError');
}

/** n images of 32x32x3 (NHWC bytes) whose value at (i, y, x, c) is a known function, and labels i mod 10. */
function synthCifar(n: number, salt: number): { labels: number[]; rgb: Uint8Array } {
  const rgb = new Uint8Array(n * 3072);
  for (let i = 0; i < n; i++) for (let p = 0; p < 1024; p++) for (let c = 0; c < 3; c++) rgb[i * 3072 + p * 3 + c] = (i * 31 + p * 7 + c * 85 + salt) % 256;
  return { labels: Array.from({ length: n }, (_, i) => (i + salt) % 10), rgb };
}

function writeCifarDir(opts: { train?: number; test?: number; meta?: string } = {}): string {
  const dir = tmp();
  for (let b = 1; b <= 5; b++) {
    const s = synthCifar(opts.train ?? 4, b);
    writeFileSync(join(dir, `data_batch_${b}.bin`), encodeCifar10Batch(s.labels, s.rgb));
  }
  const t = synthCifar(opts.test ?? 12, 0);
  writeFileSync(join(dir, 'test_batch.bin'), encodeCifar10Batch(t.labels, t.rgb));
  if (opts.meta !== undefined) writeFileSync(join(dir, 'batches.meta.txt'), opts.meta);
  return dir;
}

describe('CIFAR-10 binary batches', () => {
  it('decodes label + R, G, B planes to NHWC [-1, 1], in file order', () => {
    // one record by hand: label 7, pixel p of plane c = (p + 100c) mod 256
    const rec = new Uint8Array(3073);
    rec[0] = 7;
    for (let c = 0; c < 3; c++) for (let p = 0; p < 1024; p++) rec[1 + c * 1024 + p] = (p + 100 * c) % 256;
    const s = parseCifar10Batch(rec, 'one.bin');
    expect(splitShape(s)).toEqual([32, 32, 3]);
    expect(s.count).toBe(1);
    expect(Array.from(s.labels)).toEqual([7]);
    // pixel (y=1, x=2) is plane index 34: R, G, B next to each other
    expect(Array.from(s.images.subarray(34 * 3, 34 * 3 + 3))).toEqual([px(34), px(134), px(234)]);
    expect(s.images[0]).toBe(-1);
    expect(s.images[3071]).toBe(px((1023 + 200) % 256));
  });

  it('loads a directory: 5 train batches concatenated, the test batch, standard or meta class names', () => {
    const dir = writeCifarDir({ train: 4, test: 12 });
    const ds = loadDataset({ dataset: 'cifar10', dataDir: dir });
    expect(ds.classNames).toEqual([...CIFAR10_CLASS_NAMES]);
    expect([ds.train.count, ds.test.count]).toEqual([20, 12]);
    expect(splitShape(ds.train)).toEqual([32, 32, 3]);
    // train image 5 is batch 2's image 1
    const b2 = synthCifar(4, 2);
    expect(ds.train.labels[5]).toBe(b2.labels[1]);
    expect(Array.from(imageAt(ds.train, 5))).toEqual(Array.from(b2.rgb.subarray(3072, 6144), px));
    const t = synthCifar(12, 0);
    expect(Array.from(ds.test.labels)).toEqual(t.labels);
    expect(Array.from(imageAt(ds.test, 11))).toEqual(Array.from(t.rgb.subarray(11 * 3072), px));
    // subsets keep the shape and copy whole colour images
    const sub = applyTestSubset(stratifiedSubset(ds.test, 10, 10, 'test'), 'stride:3');
    expect(splitShape(sub)).toEqual([32, 32, 3]);
    expect(sub.count).toBe(4);
    expect(Array.from(imageAt(sub, 1))).toEqual(Array.from(imageAt(ds.test, 3)));
    const [first] = batches(sub, 3);
    expect(first.x.length).toBe(3 * 3072);
    expect(Array.from(first.x.subarray(3072, 6144))).toEqual(Array.from(imageAt(ds.test, 3)));
    // test only: the train batches are not read (nor needed)
    const onlyTest = tmp();
    writeFileSync(join(onlyTest, 'test_batch.bin'), readFileSync(join(dir, 'test_batch.bin')));
    const d2 = loadDataset({ dataset: 'cifar10', dataDir: onlyTest, testOnly: true });
    expect([d2.train.count, d2.test.count]).toEqual([0, 12]);
    expect(refused(() => loadDataset({ dataset: 'cifar10', dataDir: onlyTest }))).toMatch(/missing CIFAR-10 training batches data_batch_1\.bin, .*data_batch_5\.bin/);
    // class names from batches.meta.txt; the tarball's nested folder is found
    const named = writeCifarDir({ meta: 'a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n' });
    expect(loadDataset({ dataset: 'cifar10', dataDir: named, testOnly: true }).classNames).toEqual('abcdefghij'.split(''));
    const outer = tmp();
    mkdirSync(join(outer, 'cifar-10-batches-bin'));
    writeFileSync(join(outer, 'cifar-10-batches-bin', 'test_batch.bin'), readFileSync(join(dir, 'test_batch.bin')));
    expect(loadDataset({ dataset: 'cifar10', dataDir: outer, testOnly: true }).test.count).toBe(12);
  });

  it('refuses bad files with one line', () => {
    const rec = encodeCifar10Batch([3, 4], new Uint8Array(2 * 3072));
    expect(refused(() => parseCifar10Batch(rec.subarray(0, 3073 + 5), 'x.bin'))).toMatch(/x\.bin: 3078 bytes is not a whole number of CIFAR-10 records of 3073 bytes/);
    expect(refused(() => parseCifar10Batch(new Uint8Array(0), 'x.bin'))).toContain('empty file');
    const bad = Uint8Array.from(rec);
    bad[3073] = 10;
    expect(refused(() => parseCifar10Batch(bad, 'x.bin'))).toBe('x.bin: record 1 has label 10, expected 0..9');
    const dir = writeCifarDir({ meta: 'a\nb\n' });
    expect(refused(() => loadDataset({ dataset: 'cifar10', dataDir: dir }))).toMatch(/batches\.meta\.txt: 2 class names, expected 10/);
    expect(refused(() => loadDataset({ dataset: 'cifar10', dataDir: tmp() }))).toMatch(/no test_batch\.bin/);
    expect(refused(() => loadDataset({ dataset: 'cifar10' }))).toMatch(/needs a data directory/);
    expect(refused(() => loadDataset({ dataset: 'cifar10', dataDir: dir, resize: 'stretch' }))).toMatch(/folder only/);
  });
});

/** A w x h PNG (or JPEG) whose pixel (x, y) has value f(x, y, c), c < channels. */
async function image(path: string, w: number, h: number, channels: 1 | 3 | 4, f: (x: number, y: number, c: number) => number, format: 'png' | 'jpeg' = 'png'): Promise<void> {
  const raw = Buffer.alloc(w * h * channels);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < channels; c++) raw[(y * w + x) * channels + c] = f(x, y, c);
  let img = sharp(raw, { raw: { width: w, height: h, channels } });
  if (channels === 1) img = img.toColourspace('b-w'); // else sharp writes an RGB PNG
  writeFileSync(path, await (format === 'png' ? img.png() : img.jpeg({ quality: 95 })).toBuffer());
}

const rgbAt = (x: number, y: number, c: number): number => (x * 8 + y * 3 + c * 60) % 256;

async function writeFolder(): Promise<string> {
  const dir = tmp();
  for (const c of ['dog', 'cat', 'Zebra']) mkdirSync(join(dir, c));
  mkdirSync(join(dir, '.hidden'));
  await image(join(dir, 'cat', 'b.png'), 8, 6, 3, rgbAt);
  await image(join(dir, 'cat', 'a.png'), 8, 6, 3, (x, y, c) => 255 - rgbAt(x, y, c));
  await image(join(dir, 'dog', 'z.png'), 8, 6, 4, (x, y, c) => (c === 3 ? 128 : rgbAt(y, x, c))); // alpha is dropped
  await image(join(dir, 'Zebra', 'only.png'), 8, 6, 3, () => 200);
  writeFileSync(join(dir, 'cat', 'notes.txt'), 'not an image');
  writeFileSync(join(dir, 'cat', '.DS_Store'), 'junk');
  return dir;
}

describe('image folders', () => {
  it('classes are sorted folder names, images ordered by class then file name, pixels exact at the native size', async () => {
    const dir = await writeFolder();
    const ds = await loadDatasetAsync({ dataset: 'folder', dataDir: dir });
    expect(ds.classNames).toEqual(['Zebra', 'cat', 'dog']); // code point order: upper case first
    expect(ds.train.count).toBe(0);
    expect(ds.test.count).toBe(4);
    expect(Array.from(ds.test.labels)).toEqual([0, 1, 1, 2]);
    expect(splitShape(ds.test)).toEqual([6, 8, 3]); // from the first image
    const a = imageAt(ds.test, 1); // cat/a.png
    const b = imageAt(ds.test, 2); // cat/b.png
    for (let y = 0; y < 6; y++) for (let x = 0; x < 8; x++) for (let c = 0; c < 3; c++) {
      const i = (y * 8 + x) * 3 + c;
      if (b[i] !== px(rgbAt(x, y, c)) || a[i] !== px(255 - rgbAt(x, y, c))) throw new Error(`pixel ${x},${y},${c}`);
    }
    expect(imageAt(ds.test, 3)[5]).toBe(px(rgbAt(0, 1, 2))); // dog/z.png: (x=1, y=0) blue holds rgbAt(y, x, 2); alpha dropped
    expect(Array.from(new Set(imageAt(ds.test, 0)))).toEqual([px(200)]);
    // the synchronous loader points to the asynchronous one
    expect(refused(() => loadDataset({ dataset: 'folder', dataDir: dir }))).toMatch(/folder holds test images only/);
  });

  it('resizes only with an explicit policy and converts channels only when asked', async () => {
    const dir = await writeFolder();
    const shape: [number, number, number] = [4, 4, 3];
    expect(await refusedAsync(loadImageFolder(dir, { shape }))).toMatch(/Zebra\/only\.png: image is 8x6 \(WxH\), expected 4x4; choose --resize stretch, cover or contain/);
    for (const resize of ['stretch', 'cover', 'contain'] as const) {
      const r = await loadImageFolder(dir, { shape, resize });
      expect(splitShape(r.test)).toEqual(shape);
      expect(r.test.images.length).toBe(4 * 48);
      // a uniform image stays uniform, except contain's black letterbox (8x6 -> 4x3 plus one black row)
      const z = Array.from(imageAt(r.test, 0));
      if (resize === 'contain') {
        expect(z.filter((v) => v === -1).length).toBe(12);
        expect(z.filter((v) => v === px(200)).length).toBe(36);
      } else expect(new Set(z)).toEqual(new Set([px(200)]));
    }
    // colour: RGB images for a grey target need --convert-channels
    expect(await refusedAsync(loadImageFolder(dir, { shape: [6, 8, 1] }))).toMatch(/only\.png: image is RGB, the target has 1 channel \(grey\); add --convert-channels/);
    const grey = await loadImageFolder(dir, { shape: [6, 8, 1], convertChannels: true });
    expect(splitShape(grey.test)).toEqual([6, 8, 1]);
    expect(Array.from(new Set(imageAt(grey.test, 0)))).toEqual([px(200)]); // grey 200 stays 200
    // grey images to RGB: the grey value in R, G and B
    const g = tmp();
    mkdirSync(join(g, 'one'));
    await image(join(g, 'one', 'g.png'), 5, 5, 1, (x, y) => x * 40 + y);
    expect(await refusedAsync(loadImageFolder(g, { shape: [5, 5, 3] }))).toMatch(/image is grey, the target has 3 channels \(RGB\)/);
    const rgb = await loadImageFolder(g, { shape: [5, 5, 3], convertChannels: true });
    const v = imageAt(rgb.test, 0);
    expect(Array.from(v.subarray(3 * 7, 3 * 7 + 3))).toEqual([px(81), px(81), px(81)]); // (x=2, y=1)
    // JPEG is read too
    await image(join(g, 'one', 'h.jpg'), 5, 5, 3, () => 90, 'jpeg');
    const j = await loadImageFolder(g, { shape: [5, 5, 3], convertChannels: true });
    expect(j.test.count).toBe(2);
    expect(Math.abs(imageAt(j.test, 1)[0] - px(90))).toBeLessThan(0.05);
  });

  it('refuses bad folders with one line', async () => {
    expect(await refusedAsync(loadImageFolder(join(tmp(), 'missing')))).toMatch(/is not a directory/);
    expect(await refusedAsync(loadImageFolder(tmp()))).toMatch(/no class subfolders/);
    const empty = tmp();
    mkdirSync(join(empty, 'a'));
    writeFileSync(join(empty, 'a', 'x.txt'), '');
    expect(await refusedAsync(loadImageFolder(empty))).toMatch(/no \.png, \.jpg or \.jpeg images in class folder "a"/);
    const fake = tmp();
    mkdirSync(join(fake, 'a'));
    writeFileSync(join(fake, 'a', 'x.png'), 'GIF89a not really');
    expect(await refusedAsync(loadImageFolder(fake))).toMatch(/a\/x\.png: cannot decode image/);
    const gif = tmp();
    mkdirSync(join(gif, 'a'));
    writeFileSync(join(gif, 'a', 'x.png'), await sharp({ create: { width: 2, height: 2, channels: 3, background: '#000' } }).gif().toBuffer());
    expect(await refusedAsync(loadImageFolder(gif))).toMatch(/content is gif, not PNG or JPEG/);
    // a decompression bomb: a tiny PNG whose header claims 20000x20000 pixels is refused from the header
    const bomb = tmp();
    mkdirSync(join(bomb, 'a'));
    const png = Buffer.from(await sharp({ create: { width: 1, height: 1, channels: 3, background: '#000' } }).png().toBuffer());
    png.writeUInt32BE(20000, 16); // IHDR width
    png.writeUInt32BE(20000, 20); // IHDR height
    png.writeUInt32BE(crc32(png.subarray(12, 29)), 29); // IHDR CRC over type + data
    writeFileSync(join(bomb, 'a', 'big.png'), png);
    expect(await refusedAsync(loadImageFolder(bomb))).toMatch(/big\.png: (20000x20000 pixels, more than the 67108864 pixel limit|cannot decode image: .*pixel limit)/);
    const dir = await writeFolder();
    expect(await refusedAsync(loadImageFolder(dir, { shape: [6, 8, 2] }))).toMatch(/1 \(grey\) or 3 \(RGB\) channels, not 2/);
    expect(await refusedAsync(loadImageFolder(dir, { shape: [5000, 8, 3] }))).toMatch(/sides must be integers 1\.\.4096/);
    expect(await refusedAsync(loadDatasetAsync({ dataset: 'folder', dataDir: dir, resize: 'squash' as never }))).toMatch(/resize policy must be one of/);
  });
});

describe('colour image dumps', () => {
  it('draws RGB rows for [h, w, 3] images, tiles upscaled to about 112 pixels', async () => {
    const n = 32 * 32 * 3;
    const clean = Float32Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 1 : -1)); // pure red
    const perturbed = Float32Array.from(clean, (v, i) => (i % 3 === 2 ? -0.5 : v));
    const ex = { index: 2, clean, perturbed, recons: [], label: 0, pred: 1, classNames: ['a', 'b'], shape: [32, 32, 3] as const };
    expect(dumpScale([32, 32, 3])).toBe(4);
    expect(dumpScale([28, 28, 1])).toBe(4);
    expect(dumpScale([224, 224, 3])).toBe(1);
    const png = await renderRow(ex);
    const want = rowSize(3, undefined, [32, 32, 3]);
    expect(want).toEqual({ width: 3 * 128 + 2 * 4, height: 16 + 128 + 22 });
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([want.width, want.height]);
    expect(info.channels).toBeGreaterThanOrEqual(3);
    const at = (x: number, y: number): number[] => Array.from(data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3));
    expect(at(10, 16 + 10)).toEqual([255, 0, 0]); // clean tile: red
    expect(at(132 + 10, 16 + 10)).toEqual([255, 0, 64]); // perturbed: blue -0.5 -> 64
    expect(at(264 + 10, 16 + 10)).toEqual([128, 128, 255]); // perturbation amplified: only blue moved
    const dir = tmp();
    const files = await writeDump(dir, [ex]);
    expect(files).toHaveLength(1);
    expect(JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')).scale).toBe(4);
    await expect(renderRow({ ...ex, clean: clean.subarray(0, 100) })).rejects.toThrow(/100 pixels for shape 32x32x3/);
  });

  it('keeps grey rows grey at the 28x28 default', async () => {
    const clean = Float32Array.from({ length: 784 }, (_, i) => (i % 28) / 14 - 1);
    const png = await renderRow({ index: 0, clean, perturbed: clean, recons: [], label: 0, pred: 0, classNames: ['a'] });
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height]).toEqual([rowSize(3).width, rowSize(3).height]);
    expect(rowSize(3)).toEqual({ width: 3 * 112 + 2 * 4, height: 16 + 112 + 22 });
  });

  it('draws class names with control characters and markup (cleanText, then XML escaping: the label SVG stays valid)', async () => {
    const clean = Float32Array.from({ length: 784 }, (_, i) => (i % 28) / 14 - 1);
    const png = await renderRow({ index: 0, clean, perturbed: clean, recons: [], label: 0, pred: 1, classNames: ['a<b&"c\'\u001b]0;x\u0007\u202e', 'nul\u0000\n'] });
    expect((await sharp(png).metadata()).format).toBe('png');
  });
});

describe('cnnf data info / eval with CIFAR-10 and folders', () => {
  it('class names with escape sequences, bidi overrides and line breaks reach the terminal escaped (table rows stay whole)', async () => {
    const dir = tmp();
    const evil = 'x\u001b]0;owned\u0007\u202eq';
    for (const c of [evil, 'plain']) mkdirSync(join(dir, c));
    await image(join(dir, evil, 'a.png'), 8, 6, 3, rgbAt);
    await image(join(dir, 'plain', 'b.png'), 8, 6, 3, rgbAt);
    const r = await cnnf(['data', 'info', '--dataset', 'folder', '--data-dir', dir]);
    expect(r.code, r.stderr).toBe(0);
    // eslint-disable-next-line no-control-regex
    expect(r.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    expect(r.stdout).toContain('x\\x1b]0;owned\\x07\\u202eq');
  });

  it('data info reads both, and eval refuses data of another shape than the model with one line', async () => {
    const cifar = writeCifarDir({ test: 12 });
    const r = await cnnf(['data', 'info', '--dataset', 'cifar10', '--data-dir', cifar, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.imageShape).toEqual([32, 32, 3]);
    expect(out.totals).toEqual({ train: 20, test: 12 });
    expect(out.classes[0]).toEqual({ index: 0, name: 'airplane', train: 0, test: 2 }); // train labels (i + batch) mod 10, i < 4
    expect(out.classes[5]).toEqual({ index: 5, name: 'dog', train: 4, test: 1 });
    const folder = await writeFolder();
    const f = await cnnf(['data', 'info', '--dataset', 'folder', '--data-dir', folder, '--image-shape', '16x16x1', '--resize', 'cover', '--convert-channels']);
    expect(f.code, f.stderr).toBe(0);
    expect(f.stdout).toMatch(/^folder: 3 classes, 16x16x1 images/);
    expect(f.stdout).toMatch(/total\s*│\s*0\s*│\s*4/);
    const cases = [
      [['--dataset', 'cifar10', '--data-dir', cifar, '--resize', 'cover'], /--resize only applies to --dataset folder/],
      [['--dataset', 'folder', '--data-dir', folder, '--resize', 'squash'], /--resize must be one of exact, stretch, cover, contain/],
      [['--dataset', 'folder', '--data-dir', folder, '--image-shape', '3x3'], /--image-shape must be HxWxC/],
      [['--dataset', 'cifar10'], /--dataset cifar10 needs --data-dir DIR/],
      [['--dataset', 'folder', '--data-dir', folder, '--image-shape', '16x16x1'], /image is 8x6 \(WxH\), expected 16x16/],
    ] as const;
    // through the CLI's main in this process (the two runs above are the launcher's): no ~2 s start-up each
    const errs = await inParallel(cases.map(([args]) => () => cnnfInProcess(['data', 'info', ...args])));
    errs.forEach((e, i) => {
      expect(e.code, cases[i][0].join(' ')).toBe(2);
      expect(oneLineError(e)).toMatch(cases[i][1]);
    });
    const ev = await cnnf(['eval', '--model', referenceModel('cnn-adv'), '--attacks', 'gaussian', '--eps', '0.1', '--dataset', 'cifar10', '--data-dir', cifar, '--workers', '1']);
    expect(ev.code, ev.stderr).toBe(2);
    expect(oneLineError(ev)).toMatch(/reference-cnn-adv\.safetensors takes 28x28x1 images \(HxWxC\), the cifar10 test images are 32x32x3$/);
    expect(ev.stdout).toBe('');
    const tr = await cnnf(['train', '--model', 'cnn', '--dataset', 'cifar10', '--data-dir', cifar, '--out', join(tmp(), 'run'), '--epochs', '1']);
    expect(tr.code).toBe(2);
    expect(oneLineError(tr)).toMatch(/--dataset cifar10 can be evaluated and attacked .* not trained on/);
  }, 240_000);

  it('eval on a folder of Fashion-MNIST PNGs gives exactly the results of the same images from the package', async () => {
    // the first test image of each class (the split is ordered by class: index 1000c), as grey PNGs
    const ds = loadDataset({ testSubset: 'stride:1000' });
    const dir = tmp();
    for (let i = 0; i < 10; i++) {
      const cls = join(dir, `class${i}`);
      mkdirSync(cls);
      const bytes = Buffer.from(Array.from(imageAt(ds.test, i), (v) => Math.round((v + 1) * 127.5)));
      writeFileSync(join(cls, 'img.png'), await sharp(bytes, { raw: { width: 28, height: 28, channels: 1 } }).toColourspace('b-w').png().toBuffer());
    }
    const common = ['--model', referenceModel('cnn-adv'), '--attacks', 'gaussian,fgsm', '--eps', '0.1,0.3', '--seed', '3', '--workers', '1'];
    const [a, b] = await inParallel([
      () => cnnf(['eval', ...common, '--dataset', 'folder', '--data-dir', dir, '--json', join(dir, 'folder.json')]),
      () => cnnf(['eval', ...common, '--test-subset', 'stride:1000', '--json', join(dir, 'package.json')]),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    const fa = JSON.parse(readFileSync(join(dir, 'folder.json'), 'utf8'));
    const fb = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    expect(fa.provenance.dataset).toBe('folder');
    expect(fa.provenance.examples).toBe(10);
    expect(fa.models[0].metrics).toEqual(fb.models[0].metrics);
    expect(fa.models[0].metrics.clean).toBeGreaterThan(0.5);
  }, 240_000);
});
