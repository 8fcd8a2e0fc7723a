/**
 * TF.js LayersModels as attack victims: a Keras-style model trained here with the tfjs layers API is
 * saved as a model.json + weights.bin folder, loaded back through cnnf's file reader, and must give
 * exactly tfjs's own predictions through cnnf's input adapter; PGD in cnnf's [-1, 1] space must lower
 * its accuracy. A generated 32x32x3 model checks the adapter (range, mean/std, NCHW, probabilities).
 */
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf, wasm } from './helpers/tf.js';
import { loadDataset } from '../src/data/index.js';
import { loadTfjsLayersModel, saveTfjsLayersModel } from '../src/io/tfjs.js';
import { FGSM, PGD, predictLogits, type Victim } from '../src/attacks/index.js';
import { UsageError } from '../src/errors.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'cnnf-tfjs-'));
const hex = (t: tf.Tensor) => Buffer.from((t.dataSync() as Float32Array).buffer).toString('hex');
const accuracy = (logits: tf.Tensor, labels: Int32Array) => {
  const p = logits.argMax(1).dataSync();
  let ok = 0;
  for (let i = 0; i < labels.length; i++) if (p[i] === labels[i]) ok++;
  return ok / labels.length;
};
async function refused(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect((e as Error).message).not.toContain('\n');
    return (e as Error).message;
  }
  throw new Error('expected a UsageError');
}

beforeAll(wasm);

describe('a Keras-style TF.js LayersModel trained on Fashion-MNIST', () => {
  it('loads from model.json with tfjs\'s exact accuracy, and PGD/FGSM lower it', async () => {
    const data = loadDataset({ trainSize: 2000, testSize: 200 });
    const toUnit = (img: Float32Array, n: number) => tf.tidy(() => tf.div(tf.add(tf.tensor4d(img, [n, 28, 28, 1]), 1), 2));
    const net = tfl.sequential({
      layers: [
        tfl.layers.flatten({ inputShape: [28, 28, 1] }),
        tfl.layers.dense({ units: 64, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }),
        tfl.layers.dense({ units: 10, kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }),
      ],
    });
    net.compile({ optimizer: tfl.train.adam(0.003), loss: (y: tf.Tensor, p: tf.Tensor) => tf.losses.softmaxCrossEntropy(y, p) });
    // the stratified subset is ordered by class: a fixed shuffle (tfjs's own shuffle is not seeded)
    const order = Array.from({ length: data.train.count }, (_, i) => i);
    let s = 12345;
    for (let i = order.length - 1; i > 0; i--) {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      const j = s % (i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const idx = tf.tensor1d(order, 'int32');
    const xTrain = tf.gather(toUnit(data.train.images, data.train.count), idx);
    const yTrain = tf.oneHot(tf.gather(tf.tensor1d(data.train.labels, 'int32'), idx), 10);
    await net.fit(xTrain, yTrain, { epochs: 4, batchSize: 64, shuffle: false, verbose: 0 });
    const dir = tmp();
    await saveTfjsLayersModel(net, dir);
    expect(JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')).weightsManifest[0].paths).toEqual(['weights.bin']);

    // tfjs's own accuracy on [0, 1] pixels
    const xTest = toUnit(data.test.images, data.test.count);
    const own = net.predict(xTest) as tf.Tensor;
    const ownAcc = accuracy(own, data.test.labels);

    // cnnf: canonical [-1, 1] images through the adapter (--input-range 0,1)
    const m = await loadTfjsLayersModel(join(dir, 'model.json'), { range: '0,1' });
    expect(m.inputShape).toEqual([28, 28, 1]);
    expect(m.numClasses).toBe(10);
    expect(m.source).toMatch(/^TF.js LayersModel cnnf-tfjs-\w+\/model.json$/);
    const v: Victim = { model: m, mode: 'first', cycles: 0, readout: 'last' };
    const x = tf.tensor4d(data.test.images, [data.test.count, 28, 28, 1]);
    const logits = predictLogits(v, x);
    expect(hex(logits)).toBe(hex(own));
    const clean = accuracy(logits, data.test.labels);
    expect(clean).toBe(ownAcc);
    expect(clean).toBeGreaterThan(0.7);

    // white-box attacks in cnnf's space: eps 0.2 in [-1, 1] (0.1 in [0, 1] pixels, the paper's budget)
    const y = tf.tensor1d(data.test.labels, 'int32');
    let seed = 1;
    const ctx = { nextSeed: () => seed++ };
    const pgd = await new PGD({ steps: 10, randomStart: false }).perturb(v, x, y, 0.2, ctx);
    const fgsm = await new FGSM().perturb(v, x, y, 0.2, ctx);
    expect(tf.max(tf.abs(tf.sub(pgd, x))).dataSync()[0]).toBeLessThanOrEqual(0.2 + 1e-6);
    const pgdAcc = accuracy(predictLogits(v, pgd), data.test.labels);
    const fgsmAcc = accuracy(predictLogits(v, fgsm), data.test.labels);
    expect(pgdAcc).toBeLessThan(clean / 2);
    expect(fgsmAcc).toBeLessThan(clean);
    expect(pgdAcc).toBeLessThanOrEqual(fgsmAcc);
    console.log(`tfjs dense 784-64-10 on 200 Fashion-MNIST test images: clean ${clean}, FGSM@0.2 ${fgsmAcc}, PGD10@0.2 ${pgdAcc} (eps in [-1,1] units)`);
    m.dispose();
  }, 180_000);
});

describe('the input adapter on a generated 32x32x3 model', () => {
  // channels-first input (as a PyTorch export): Permute to NHWC, a conv, pooling, softmax output
  const build = () => tfl.sequential({
    layers: [
      tfl.layers.permute({ dims: [2, 3, 1], inputShape: [3, 32, 32] }),
      tfl.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }) }),
      tfl.layers.globalAveragePooling2d({}),
      tfl.layers.dense({ units: 5, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 4 }) }),
    ],
  });

  it('maps [-1, 1] NHWC to 0..255, mean/std, NCHW and uses log-probabilities as logits; model.cnnf.json records it', async () => {
    const net = build();
    const dir = tmp();
    const mean = [125.3, 123.0, 113.9];
    const std = [63.0, 62.1, 66.7];
    await saveTfjsLayersModel(net, dir, { range: '0,255', mean, std, layout: 'NCHW', output: 'probabilities', classNames: ['a', 'b', 'c', 'd', 'e'] });
    const m = await loadTfjsLayersModel(dir);
    expect(m.adapter).toEqual({ range: '0,255', mean, std, layout: 'NCHW', output: 'probabilities' });
    expect(m.inputShape).toEqual([32, 32, 3]);
    expect(m.classNames).toEqual(['a', 'b', 'c', 'd', 'e']);
    const x = tf.randomUniform([6, 32, 32, 3], -1, 1, 'float32', 7) as tf.Tensor4D;
    // by hand: pixels = (x + 1) * 127.5, per-channel (p - mean) / std, NHWC -> NCHW
    const manual = tf.transpose(tf.div(tf.sub(tf.mul(tf.add(x, 1), 127.5), tf.tensor1d(mean)), tf.tensor1d(std)), [0, 3, 1, 2]);
    const probs = net.predict(manual) as tf.Tensor;
    const got = m.logits(x);
    expect(tf.max(tf.abs(tf.sub(tf.softmax(got), probs))).dataSync()[0]).toBeLessThan(1e-6);
    expect(Array.from(got.argMax(1).dataSync())).toEqual(Array.from(probs.argMax(1).dataSync()));
    // white-box: the input gradient flows through the adapter and the model
    const g = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(m.logits(xx as tf.Tensor4D), tf.oneHot([0, 1, 2, 3, 4, 0], 5))))(x);
    expect(tf.max(tf.abs(g)).dataSync()[0]).toBeGreaterThan(0);
    // explicit flags override the side file
    const m2 = await loadTfjsLayersModel(dir, { output: 'logits', mean: [0], std: [1], range: '-1,1' });
    expect(m2.adapter.range).toBe('-1,1');
    expect(hex(m2.logits(x))).toBe(hex(net.predict(tf.transpose(tf.div(tf.sub(x, tf.tensor1d([0, 0, 0])), tf.tensor1d([1, 1, 1])), [0, 3, 1, 2])) as tf.Tensor));
  }, 60_000);

  it('refuses bad folders with one line: shard paths outside the folder, short shards, GraphModels, bad adapters', async () => {
    const net = build();
    const dir = tmp();
    await saveTfjsLayersModel(net, dir);
    const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
    const variant = (name: string, edit: (j: any) => void, shard?: Buffer) => {
      const d = join(dir, name);
      mkdirSync(d);
      const j = structuredClone(json);
      edit(j);
      writeFileSync(join(d, 'model.json'), JSON.stringify(j));
      writeFileSync(join(d, 'weights.bin'), shard ?? readFileSync(join(dir, 'weights.bin')));
      return d;
    };
    expect(await refused(loadTfjsLayersModel(variant('escape', (j) => { j.weightsManifest[0].paths = ['../weights.bin']; }))))
      .toMatch(/weight shard path "..\/weights.bin" leaves the model's folder/);
    expect(await refused(loadTfjsLayersModel(variant('short', () => {}, Buffer.alloc(12)))))
      .toMatch(/shards hold 12 bytes but its weights need \d+/);
    expect(await refused(loadTfjsLayersModel(variant('graph', (j) => { j.format = 'graph-model'; }))))
      .toMatch(/a TF.js GraphModel; cnnf reads LayersModels/);
    expect(await refused(loadTfjsLayersModel(variant('nolayer', (j) => { j.modelTopology.config.layers[1].class_name = 'Evil'; }))))
      .toMatch(/tfjs cannot build this LayersModel: .*Evil/);
    expect(await refused(loadTfjsLayersModel(join(dir, 'missing')))).toMatch(/cannot read model.json .*missing: no such file/);
    expect(await refused(loadTfjsLayersModel(dir, { std: [0] }))).toMatch(/--std must be numbers > 0/);
    // a wrong-length mean is refused at load as what it is (it used to surface as "tfjs cannot differentiate this model")
    expect(await refused(loadTfjsLayersModel(dir, { layout: 'NCHW', mean: [1, 2] })))
      .toMatch(/model.json: the input adapter's mean has 2 values \(--mean or model.cnnf.json\) for a model with 3 input channels \(give 1 or 3\)$/);
  }, 60_000);
});

describe('adapter flags', () => {
  it('parse into an adapter, one-line errors for bad values', async () => {
    const { adapterFromFlags } = await import('../src/cli/adapter-flags.js');
    expect(adapterFromFlags({ inputRange: '0,255', mean: '125.3, 123, 113.9', std: '63,62.1,66.7', layout: 'nchw', probabilities: true }))
      .toEqual({ range: '0,255', mean: [125.3, 123, 113.9], std: [63, 62.1, 66.7], layout: 'NCHW', output: 'probabilities' });
    expect(adapterFromFlags({})).toEqual({});
    expect(() => adapterFromFlags({ inputRange: '0,2' })).toThrow(/--input-range must be one of 0,1, -1,1, 0,255/);
    expect(() => adapterFromFlags({ std: '1,0' })).toThrow(/--std must be >= /);
    expect(() => adapterFromFlags({ logits: true, probabilities: true })).toThrow(/either --logits or --probabilities/);
  });
});
