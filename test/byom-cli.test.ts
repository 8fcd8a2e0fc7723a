/**
 * Bring your own model, end to end through the CLI (issue 12, "what must be shown"): a Keras-style
 * TF.js LayersModel trained here on Fashion-MNIST and saved as a model.json folder is evaluated by
 * `cnnf eval --model DIR/model.json --input-range 0,1`; its clean accuracy is exactly tfjs's own
 * (same count) and PGD lowers it. The same for a generated 32x32x3 model on generated CIFAR-10
 * batches (`--dataset cifar10 --data-dir`). Bad inputs (adapter flags on a cnnf checkpoint, a shape
 * mismatch, absurd weight sizes, a missing shard, a gradient attack on a model tfjs cannot
 * differentiate) give one line and exit 2.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import * as tfl from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf, wasm } from './helpers/tf.js';
import { cnnf, cnnfInProcess, oneLineError, referenceModel } from './helpers/cli.js';
import { encodeCifar10Batch, loadDataset, mulberry32 } from '../src/data/index.js';
import { saveTfjsLayersModel } from '../src/io/tfjs.js';
import { rowSize } from '../src/io/images.js';
import { evaluate, evaluateShard, makePlan } from '../src/eval/evaluate.js';
import { mergeShards } from '../src/eval/shard.js';
import { parsePlan, planToJson } from '../src/eval/plan.js';
import { parseSuite } from '../src/eval/suite.js';
import { DEFAULT_ADAPTER, type ForeignClassifier } from '../src/models/foreign.js';
import { UsageError } from '../src/errors.js';
import type { EvalResults } from '../src/eval/results.js';

beforeAll(wasm);

const tmp = (): string => mkdtempSync(join(tmpdir(), 'cnnf-byom-'));
const CLI_ENV = { CNNF_FROM_SOURCE: '1' };

/** Correct predictions of a tfjs model on [0, 1] images made from cnnf's [-1, 1] split. */
function ownCorrect(net: tfl.LayersModel, images: Float32Array, labels: Int32Array, shape: number[]): number {
  const n = labels.length;
  const pred = tf.tidy(() => (net.predict(tf.div(tf.add(tf.tensor4d(images, [n, ...shape] as [number, number, number, number]), 1), 2)) as tf.Tensor).argMax(1).dataSync());
  let ok = 0;
  for (let i = 0; i < n; i++) if (pred[i] === labels[i]) ok++;
  return ok;
}

const pgdAccuracy = (r: EvalResults): number => r.models[0].attacks.find((a) => a.method === 'pgd')!.points[0].accuracy;

describe('cnnf eval on a TF.js LayersModel trained on Fashion-MNIST', () => {
  it('clean accuracy is exactly tfjs\'s own; PGD lowers it; the model is labelled with its source', async () => {
    const data = loadDataset({ trainSize: 400 });
    const net = tfl.sequential({
      layers: [
        tfl.layers.flatten({ inputShape: [28, 28, 1] }),
        tfl.layers.dense({ units: 32, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }),
        tfl.layers.dense({ units: 10, kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }),
      ],
    });
    net.compile({ optimizer: tfl.train.adam(0.003), loss: (y: tf.Tensor, p: tf.Tensor) => tf.losses.softmaxCrossEntropy(y, p) });
    // the stratified subset is ordered by class: a fixed shuffle (tfjs's own shuffle is not seeded)
    const n = data.train.count;
    const order = Array.from({ length: n }, (_, i) => i);
    const rng = mulberry32(7);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const idx = tf.tensor1d(order, 'int32');
    const xTrain = tf.gather(tf.div(tf.add(tf.tensor4d(data.train.images, [n, 28, 28, 1]), 1), 2), idx);
    const yTrain = tf.oneHot(tf.gather(tf.tensor1d(data.train.labels, 'int32'), idx), 10);
    await net.fit(xTrain, yTrain, { epochs: 8, batchSize: 32, shuffle: false, verbose: 0 });
    tf.dispose([idx, xTrain, yTrain]);
    const dir = tmp();
    await saveTfjsLayersModel(net, dir);

    // the test split the CLI reads with --test-size 200
    const test = loadDataset({ testSize: 200, testOnly: true }).test;
    const own = ownCorrect(net, test.images, test.labels, [28, 28, 1]);
    expect(own).toBeGreaterThan(120); // well above chance (20 of 200)

    const json = join(dir, 'results.json');
    const r = await cnnf(['eval', '--model', join(dir, 'model.json'), '--input-range', '0,1', '--attacks', 'pgd', '--eps', '0.2', '--steps', '10',
      '--test-size', '200', '--json', json, '--seed', '1'], { env: CLI_ENV });
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(readFileSync(json, 'utf8')) as EvalResults;
    const m = res.models[0];
    expect(Math.round(m.clean.accuracy * 200)).toBe(own);
    expect(m.arch).toBe('TF.js LayersModel');
    expect(m.path).toBe(join(dir, 'model.json'));
    expect(m.cycles).toBe(0);
    expect(m.attacks.map((a) => `${a.method}/${a.mode}`)).toEqual(['pgd/first']);
    expect(pgdAccuracy(res)).toBeLessThan(m.clean.accuracy / 2);
    expect(m.name).toBe(dir.split(/[\\/]/).pop());
    expect(r.stdout).toContain(`foreign models:\n  ${m.name}: TF.js LayersModel ${join(dir, 'model.json')} (main thread)`);
    console.log(`byom fmnist dense 784-32-10 (400 train images): clean ${m.clean.accuracy} (tfjs ${own}/200), PGD-10@0.2 ${pgdAccuracy(res)}`);

    // the results feed `cnnf report`, which names the model's source
    const out = join(dir, 'report');
    const rep = await cnnf(['report', json, '--out', out], { env: CLI_ENV });
    expect(rep.code, rep.stderr).toBe(0);
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toContain(m.arch);

    // bad inputs, one line each, exit 2: the first through the launcher, the rest through the CLI's main in
    // this process (the same code path without ~2 s of start-up each)
    let launched = false;
    const bad = async (args: string[], re: RegExp): Promise<void> => {
      const b = launched ? await cnnfInProcess(args) : await cnnf(args, { env: CLI_ENV });
      launched = true;
      expect(b.code, b.stderr).toBe(2);
      expect(oneLineError(b)).toMatch(re);
    };
    const ck = referenceModel('cnn-standard');
    await bad(['eval', '--model', ck, '--input-range', '0,1', '--attacks', 'pgd', '--eps', '0.1', '--test-size', '20'], /--input-range applies to foreign models .* is a cnnf checkpoint/);
    await bad(['attack', '--model', ck, '--mean', '0.5', '--method', 'fgsm', '--eps', '0.1', '--test-size', '20'], /--mean applies to foreign models/);
    // --format forces the kind: a checkpoint is not a TF.js model, a model.json is not a checkpoint, no other kinds
    await bad(['eval', '--model', ck, '--format', 'tfjs', '--attacks', 'pgd', '--eps', '0.1', '--test-size', '20'], /--format tfjs: .* is not a TF\.js model/);
    await bad(['attack', '--model', dir, '--format', 'cnnf', '--method', 'fgsm', '--eps', '0.1', '--test-size', '20'], /--format cnnf: .* is a TF\.js model/);
    await bad(['eval', '--model', ck, '--format', 'keras', '--attacks', 'pgd', '--eps', '0.1', '--test-size', '20'], /--format must be one of auto, cnnf, tfjs, onnx/);
    await bad(['eval', '--model', ck, '--format', 'onnx', '--attacks', 'pgd', '--eps', '0.1', '--test-size', '20'], /not an ONNX model/);
    // shape: a 28x28x1 model on 32x32x3 CIFAR-format data
    const cifar = tmp();
    const rgb = new Uint8Array(4 * 3072).fill(100);
    writeFileSync(join(cifar, 'test_batch.bin'), encodeCifar10Batch([0, 1, 2, 3], rgb));
    await bad(['eval', '--model', join(dir, 'model.json'), '--attacks', 'pgd', '--eps', '0.1', '--dataset', 'cifar10', '--data-dir', cifar],
      /model.json takes 28x28x1 images \(HxWxC\), the cifar10 test images are 32x32x3/);
    // absurd weight sizes in model.json
    const j = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
    j.weightsManifest[0].weights[0].shape = [1e9, 1e9];
    const huge = tmp();
    writeFileSync(join(huge, 'model.json'), JSON.stringify(j));
    writeFileSync(join(huge, 'weights.bin'), readFileSync(join(dir, 'weights.bin')));
    await bad(['eval', '--model', join(huge, 'model.json'), '--attacks', 'pgd', '--eps', '0.1'], /weights larger than \d+ bytes/);
    // missing shard
    rmSync(join(huge, 'weights.bin'));
    writeFileSync(join(huge, 'model.json'), readFileSync(join(dir, 'model.json')));
    await bad(['attack', '--model', huge, '--method', 'fgsm', '--eps', '0.1'], /cannot read weight shard .*weights.bin: no such file/);
    net.dispose();
  }, 600_000);
});

/** n NHWC 32x32x3 byte images: uniform noise in 40..160, the label's channel raised by 70; labels 0..2. */
function colourImages(n: number, seed: number): { rgb: Uint8Array; labels: number[] } {
  const rng = mulberry32(seed);
  const rgb = new Uint8Array(n * 3072);
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const y = Math.floor(rng() * 3);
    labels.push(y);
    for (let p = 0; p < 1024; p++) for (let c = 0; c < 3; c++) rgb[i * 3072 + p * 3 + c] = 40 + Math.floor(rng() * 120) + (c === y ? 70 : 0);
  }
  return { rgb, labels };
}

describe('cnnf eval on a generated 32x32x3 TF.js model and generated CIFAR-10 batches', () => {
  it('clean accuracy is exactly tfjs\'s own; PGD lowers it; colour dumps are written', async () => {
    const train = colourImages(240, 1);
    const net = tfl.sequential({
      layers: [
        // frozen: the wasm backend has no filter gradient (Conv2DBackpropFilter); the input gradient the attacks need exists
        tfl.layers.conv2d({ inputShape: [32, 32, 3], filters: 8, kernelSize: 3, strides: 2, activation: 'relu', trainable: false, kernelInitializer: tfl.initializers.glorotUniform({ seed: 5 }) }),
        tfl.layers.globalAveragePooling2d({}),
        tfl.layers.dense({ units: 10, kernelInitializer: tfl.initializers.glorotUniform({ seed: 6 }) }),
      ],
    });
    net.compile({ optimizer: tfl.train.adam(0.03), loss: (y: tf.Tensor, p: tf.Tensor) => tf.losses.softmaxCrossEntropy(y, p) });
    const xTrain = tf.div(tf.tensor4d(Float32Array.from(train.rgb), [240, 32, 32, 3]), 255);
    const yTrain = tf.oneHot(tf.tensor1d(train.labels, 'int32'), 10);
    await net.fit(xTrain, yTrain, { epochs: 15, batchSize: 32, shuffle: false, verbose: 0 });
    tf.dispose([xTrain, yTrain]);
    const dir = tmp();
    // the adapter and class names typed once, in model.cnnf.json
    const classNames = ['red', 'green', 'blue', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9'];
    await saveTfjsLayersModel(net, dir, { range: '0,1', classNames });
    const test = colourImages(40, 2);
    writeFileSync(join(dir, 'test_batch.bin'), encodeCifar10Batch(test.labels, test.rgb));
    const split = loadDataset({ dataset: 'cifar10', dataDir: dir, testOnly: true }).test;
    const own = ownCorrect(net, split.images, split.labels, [32, 32, 3]);
    expect(own).toBeGreaterThan(30);

    const json = join(dir, 'results.json');
    const dump = join(dir, 'dump');
    // eps 0.3 in [-1, 1] units: 0.15 in [0, 1] pixels (38/255), against a class signal of 70/255
    const r = await cnnf(['eval', '--model', dir, '--attacks', 'pgd,square', '--eps', '0.3', '--steps', '10', '--queries', '100',
      '--dataset', 'cifar10', '--data-dir', dir, '--json', json, '--dump', dump, '--dump-count', '2', '--workers', '2'], { env: CLI_ENV });
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(readFileSync(json, 'utf8')) as EvalResults;
    const m = res.models[0];
    expect(Math.round(m.clean.accuracy * 40)).toBe(own);
    expect(m.arch).toBe('TF.js LayersModel');
    expect(m.classNames).toEqual(classNames);
    expect(pgdAccuracy(res)).toBeLessThan(m.clean.accuracy / 2);
    expect(m.dumps!.length).toBeGreaterThan(0);
    // colour rows of 32x32 tiles: clean | perturbed | perturbation (no reconstructions for a foreign model)
    const png = await sharp(join(dirname(json), m.dumps![0])).metadata();
    expect(png.channels).toBeGreaterThanOrEqual(3);
    expect([png.width, png.height]).toEqual(Object.values(rowSize(3, undefined, [32, 32, 3])));
    // the clean tile is coloured: its R, G, B means differ (a grey dump has equal channels)
    const st = await sharp(join(dirname(json), m.dumps![0])).stats();
    expect(Math.max(...st.channels.slice(0, 3).map((c) => c.mean)) - Math.min(...st.channels.slice(0, 3).map((c) => c.mean))).toBeGreaterThan(1);
    console.log(`byom 32x32x3 conv (240 generated train images): clean ${m.clean.accuracy} (tfjs ${own}/40), ` +
      m.attacks.map((a) => `${a.name}@0.3 ${a.points[0].accuracy}`).join(', '));
    net.dispose();
  }, 600_000);
});

describe('a foreign model tfjs cannot differentiate', () => {
  it('gradient attacks are refused up front with one line naming the gradient-free ones; square runs', async () => {
    const w = tf.randomNormal([784, 10], 0, 0.1, 'float32', 3);
    const fake: ForeignClassifier = {
      foreign: true, source: 'TF.js GraphModel fake/model.json', inputShape: [28, 28, 1], numClasses: 10, differentiable: false,
      adapter: DEFAULT_ADAPTER,
      logits: (x) => tf.tidy(() => tf.matMul(tf.reshape(x, [x.shape[0], 784]), w) as tf.Tensor2D),
      dispose: () => undefined,
    };
    const ds = loadDataset({ testSize: 20, testOnly: true });
    const data = { name: 'fashion-mnist', classNames: ds.classNames, numClasses: 10, split: ds.test, testSubset: 'test-size:20' };
    const model = { model: fake, path: 'fake/model.json', sha256: '0'.repeat(64), source: 'TF.js GraphModel' };
    const pgd = parseSuite({ name: 's', attacks: [{ method: 'pgd', eps: [0.1], modes: ['first'] }, { method: 'square', eps: [0.1], queries: 20 }] }, 't');
    let err: unknown;
    try {
      await evaluate([model], data, pgd, { seed: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toBe('fake/model.json: tfjs cannot differentiate this TF.js GraphModel, so gradient attacks (pgd7) cannot run on it; use the gradient-free square, spsa or transfer (and gaussian)');
    const sq = parseSuite({ name: 's', attacks: [{ method: 'square', eps: [0.1], queries: 20 }] }, 't');
    const res = await evaluate([model], data, sq, { seed: 1 });
    expect(res.models[0].arch).toBe('TF.js GraphModel');
    // probe checks 1 and 7 need gradients: not raised for it
    expect((res.checks ?? []).filter((c) => c.number === 1 || c.number === 7)).toEqual([]);
    expect(res.models[0].attacks[0].points[0].accuracy).toBeLessThanOrEqual(res.models[0].clean.accuracy);
    w.dispose();
  }, 300_000);
});

/**
 * A hand-written TF.js GraphModel (the converter's format): x [-1, 28, 28, 1] -> Reshape [-1, 784] ->
 * MatMul (or Einsum, which tfjs cannot differentiate) with fixed pseudo-random weights [784, 10].
 */
function writeGraphModel(dir: string, op: 'MatMul' | 'Einsum'): void {
  const dim = (...d: number[]) => ({ dim: d.map((v) => ({ size: String(v) })) });
  const last = op === 'MatMul'
    ? { name: 'logits', op, input: ['flat', 'W'], attr: { T: { type: 'DT_FLOAT' }, transpose_a: { b: false }, transpose_b: { b: false } } }
    : { name: 'logits', op, input: ['flat', 'W'], attr: { equation: { s: Buffer.from('ij,jk->ik').toString('base64') }, N: { i: '2' }, T: { type: 'DT_FLOAT' } } };
  const json = {
    format: 'graph-model',
    modelTopology: {
      node: [
        { name: 'x', op: 'Placeholder', attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: dim(-1, 28, 28, 1) } } },
        { name: 'shape', op: 'Const', attr: { dtype: { type: 'DT_INT32' }, value: { tensor: { dtype: 'DT_INT32', tensorShape: dim(2) } } } },
        { name: 'W', op: 'Const', attr: { dtype: { type: 'DT_FLOAT' }, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: dim(784, 10) } } } },
        { name: 'flat', op: 'Reshape', input: ['x', 'shape'], attr: { T: { type: 'DT_FLOAT' }, Tshape: { type: 'DT_INT32' } } },
        last,
      ],
      library: {},
      versions: {},
    },
    weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'shape', shape: [2], dtype: 'int32' }, { name: 'W', shape: [784, 10], dtype: 'float32' }] }],
  };
  const rng = mulberry32(11);
  const w = Float32Array.from({ length: 7840 }, () => (rng() - 0.5) * 0.2);
  writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
  writeFileSync(join(dir, 'w.bin'), Buffer.concat([Buffer.from(new Int32Array([-1, 784]).buffer), Buffer.from(w.buffer)]));
}

describe('TF.js GraphModels', () => {
  it('a differentiable one takes PGD (white-box); one with an op tfjs cannot differentiate gets the gradient-free attacks only', async () => {
    const mm = join(tmp(), 'graph-mm');
    const es = join(tmp(), 'graph-einsum');
    mkdirSync(mm);
    mkdirSync(es);
    writeGraphModel(mm, 'MatMul');
    writeGraphModel(es, 'Einsum');
    const r = await cnnf(['eval', '--model', join(mm, 'model.json'), '--attacks', 'pgd', '--eps', '0.5', '--steps', '10', '--test-size', '40', '--json', join(mm, 'r.json')], { env: CLI_ENV });
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(readFileSync(join(mm, 'r.json'), 'utf8')) as EvalResults;
    expect(res.models[0].arch).toBe('TF.js GraphModel');
    expect(res.models[0].clean.accuracy).toBeGreaterThan(0);
    expect(pgdAccuracy(res)).toBe(0); // a linear model at eps 0.5: every example flips
    // Einsum: the wasm backend has no kernel for it, the cpu backend runs it but has no gradient
    const env = { ...CLI_ENV, CNNF_BACKEND: 'cpu' };
    const b = await cnnf(['eval', '--model', es, '--attacks', 'fgsm,square', '--eps', '0.2', '--test-size', '20'], { env });
    expect(b.code, b.stderr).toBe(2);
    expect(oneLineError(b)).toMatch(/graph-einsum: tfjs cannot differentiate this TF.js GraphModel, so gradient attacks \(fgsm\) cannot run on it; use the gradient-free square, spsa or transfer/);
    const sq = await cnnf(['attack', '--model', es, '--method', 'square', '--queries', '30', '--eps', '0.2', '--test-size', '20', '--json'], { env });
    expect(sq.code, sq.stderr).toBe(0);
    const sres = JSON.parse(sq.stdout) as EvalResults;
    expect(sres.models[0].attacks[0].points[0].accuracy).toBeLessThanOrEqual(sres.models[0].clean.accuracy);
    const w = await cnnf(['eval', '--model', es, '--attacks', 'fgsm', '--eps', '0.2', '--test-size', '20'], { env: CLI_ENV });
    expect(w.code).toBe(2);
    expect(oneLineError(w)).toMatch(/tfjs cannot run this GraphModel: Kernel 'Einsum' not registered for backend 'wasm'/);
  }, 300_000);
});

describe('shards and plans with a foreign 32x32x3 model', () => {
  it('2 shards merged equal the unsharded run; the plan records the shape and refuses a bad one', async () => {
    const w = tf.randomNormal([3072, 10], 0, 0.05, 'float32', 4);
    const lin: ForeignClassifier = {
      foreign: true, source: 'TF.js LayersModel lin/model.json', inputShape: [32, 32, 3], numClasses: 10, differentiable: true,
      adapter: DEFAULT_ADAPTER,
      logits: (x) => tf.tidy(() => tf.matMul(tf.reshape(x, [x.shape[0], 3072]), w) as tf.Tensor2D),
      dispose: () => undefined,
    };
    const n = 12;
    const rng = mulberry32(5);
    const split = { images: Float32Array.from({ length: n * 3072 }, () => rng() * 2 - 1), labels: Int32Array.from({ length: n }, (_, i) => i % 10), count: n, height: 32, width: 32, channels: 3 };
    const data = { name: 'cifar10', classNames: Array.from({ length: 10 }, (_, i) => `c${i}`), numClasses: 10, split, testSubset: 'full' };
    const model = { model: lin, path: 'lin/model.json', sha256: 'a'.repeat(64), source: 'TF.js LayersModel' };
    const suite = parseSuite({ name: 's', attacks: [{ method: 'pgd', eps: [0.05], modes: ['first'], steps: 3 }, { method: 'square', eps: [0.05], queries: 10 }] }, 't');
    const opts = { seed: 3, batchSize: 5 };
    const full = await evaluate([model], data, suite, opts);
    const dir = tmp();
    const files: string[] = [];
    for (const index of [1, 2]) {
      const s = await evaluateShard([model], data, suite, opts, { index, count: 2, source: 'test' });
      expect(s.plan.shape).toEqual([32, 32, 3]);
      files.push(join(dir, `s${index}.json`));
      writeFileSync(files[files.length - 1], JSON.stringify(s));
    }
    const merged = mergeShards(files).results;
    expect(merged.models[0].metrics).toEqual(full.models[0].metrics);
    expect(merged.models[0].arch).toBe('TF.js LayersModel');
    // a plan whose shape is absurd is refused with one line
    const plan = makePlan([model], data, suite, opts);
    expect(() => parsePlan({ ...planToJson(plan), shape: [32, 32, 0] }, 'x.json')).toThrow(/x.json: plan.shape must be \[h, w, c\]/);
    expect(() => parsePlan({ ...planToJson(plan), shape: [65536, 65536, 3] }, 'x.json')).toThrow(UsageError);
    expect(parsePlan(planToJson(plan), 'x.json').shape).toEqual([32, 32, 3]);
    w.dispose();
  }, 300_000);
});
