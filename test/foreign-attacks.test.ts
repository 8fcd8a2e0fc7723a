/**
 * Foreign models of another input shape as attack victims: a tiny TF.js LayersModel with 32x32x3
 * inputs, trained here on generated colour images (the class is the dominant colour channel), saved
 * and loaded back as a LayersModel folder; the test images are written as a CIFAR-10 binary batch and
 * read through --dataset cifar10's loader. White-box PGD and APGD and gradient-free Square, in cnnf's
 * [-1, 1] space, must lower its accuracy and stay inside the eps ball and the box.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf, wasm } from './helpers/tf.js';
import { encodeCifar10Batch, loadDataset, mulberry32, splitShape } from '../src/data/index.js';
import { loadTfjsLayersModel, saveTfjsLayersModel } from '../src/io/tfjs.js';
import { APGD, attackMethods, getAttack, parseAttackSpec, PGD, predictLogits, SquareAttack, verifyAdversarial, type Victim } from '../src/attacks/index.js';
import { UsageError } from '../src/errors.js';
import { referenceModel } from './helpers/cli.js';

beforeAll(wasm);

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

const accuracy = (v: Victim, x: tf.Tensor4D, labels: Int32Array): number => {
  const p = tf.tidy(() => predictLogits(v, x).argMax(1).dataSync());
  let ok = 0;
  for (let i = 0; i < labels.length; i++) if (p[i] === labels[i]) ok++;
  return ok / labels.length;
};

let shared: Promise<{ v: Victim; x: tf.Tensor4D; y: tf.Tensor1D; labels: Int32Array }> | undefined;

/** The trained model (saved and loaded back) and the test images read as a CIFAR-10 batch, built once. */
function setup(): Promise<{ v: Victim; x: tf.Tensor4D; y: tf.Tensor1D; labels: Int32Array }> {
  shared ??= (async () => {
    // train on [0, 1] pixels, as a Keras user would
    const train = colourImages(240, 1);
    const net = tfl.sequential({
      layers: [
        // frozen: the wasm backend has no filter gradient (Conv2DBackpropFilter); the input gradient the attacks need exists
        tfl.layers.conv2d({ inputShape: [32, 32, 3], filters: 8, kernelSize: 3, strides: 2, activation: 'relu', trainable: false, kernelInitializer: tfl.initializers.glorotUniform({ seed: 5 }) }),
        tfl.layers.globalAveragePooling2d({}),
        tfl.layers.dense({ units: 3, kernelInitializer: tfl.initializers.glorotUniform({ seed: 6 }) }),
      ],
    });
    net.compile({ optimizer: tfl.train.adam(0.03), loss: (y: tf.Tensor, p: tf.Tensor) => tf.losses.softmaxCrossEntropy(y, p) });
    const xTrain = tf.div(tf.tensor4d(Float32Array.from(train.rgb), [240, 32, 32, 3]), 255);
    const yTrain = tf.oneHot(tf.tensor1d(train.labels, 'int32'), 3);
    await net.fit(xTrain, yTrain, { epochs: 15, batchSize: 32, shuffle: false, verbose: 0 });
    const dir = mkdtempSync(join(tmpdir(), 'cnnf-foreign-'));
    await saveTfjsLayersModel(net, dir);
    const m = await loadTfjsLayersModel(join(dir, 'model.json'), { range: '0,1' });
    expect(m.inputShape).toEqual([32, 32, 3]);

    // test images through the CIFAR-10 loader (labels 0..2 of its 10)
    const test = colourImages(24, 2);
    writeFileSync(join(dir, 'test_batch.bin'), encodeCifar10Batch(test.labels, test.rgb));
    const ds = loadDataset({ dataset: 'cifar10', dataDir: dir, testOnly: true });
    expect(splitShape(ds.test)).toEqual([32, 32, 3]);
    const x = tf.tensor4d(ds.test.images, [ds.test.count, 32, 32, 3]);
    const y = tf.tensor1d(ds.test.labels, 'int32');
    const v: Victim = { model: m, mode: 'first', cycles: 0, readout: 'last' };
    return { v, x, y, labels: ds.test.labels };
  })();
  return shared;
}

describe('a 32x32x3 TF.js LayersModel as the victim of PGD, APGD and Square', () => {
  it('every attack lowers accuracy and stays in the eps ball and the [-1, 1] box', async () => {
    const { v, x, y, labels } = await setup();
    const clean = accuracy(v, x, labels);
    expect(clean).toBeGreaterThanOrEqual(0.9);

    // eps 0.3 in [-1, 1] units: 0.15 in [0, 1] pixels (38/255), against a class signal of 70/255
    const eps = 0.3;
    let seed = 1;
    const ctx = { nextSeed: () => seed++ };
    const results: Record<string, number> = {};
    // control: random +/-eps corners of the ball barely matter; the attacks must do much better
    const corner = tf.tidy(() => tf.clipByValue(tf.add(x, tf.mul(tf.sign(tf.randomUniform(x.shape, -1, 1, 'float32', 9)), eps)), -1, 1) as tf.Tensor4D);
    results.random = accuracy(v, corner, labels);
    for (const [name, attack] of [
      ['pgd', new PGD({ steps: 10 })],
      ['apgd', new APGD({ iterations: 20 })],
      ['square', new SquareAttack({ queries: 300 })],
    ] as const) {
      const adv = await attack.perturb(v, x, y, eps, ctx);
      expect(adv.shape).toEqual([24, 32, 32, 3]);
      await verifyAdversarial(name, x, adv, eps, 'linf'); // throws outside the ball or the box
      const d = tf.tidy(() => tf.max(tf.abs(tf.sub(adv, x))).dataSync()[0]);
      expect(d).toBeLessThanOrEqual(eps + 1e-6);
      expect(tf.min(adv).dataSync()[0]).toBeGreaterThanOrEqual(-1);
      expect(tf.max(adv).dataSync()[0]).toBeLessThanOrEqual(1);
      results[name] = accuracy(v, adv, labels);
      adv.dispose();
    }
    console.log(`tfjs conv 32x32x3 on 24 generated colour images: clean ${clean}, PGD10@${eps} ${results.pgd}, APGD20@${eps} ${results.apgd}, Square300@${eps} ${results.square}, random corners ${results.random}`);
    expect(results.random).toBeGreaterThanOrEqual(0.75);
    expect(results.pgd).toBeLessThan(clean / 2);
    expect(results.apgd).toBeLessThan(clean / 2);
    expect(results.square).toBeLessThan(results.random - 0.2);
  }, 180_000);

  it('every registered attack runs on it with small budgets, shape kept, inside the ball and the box', async () => {
    const { v, x, y } = await setup();
    const small: Record<string, Record<string, unknown>> = {
      pgd: { steps: 3 }, apgd: { iterations: 5 }, fab: { iterations: 5, nTargetClasses: 2 }, square: { queries: 30 }, spsa: { steps: 2, samples: 4 },
      autoattack: { iterations: 3, queries: 20, nTargetClasses: 2 },
    };
    const ran: string[] = [];
    const xs = tf.slice(x, 0, 6) as tf.Tensor4D;
    const ys = tf.slice(y, 0, 6) as tf.Tensor1D;
    for (const method of attackMethods()) {
      if (method === 'transfer') {
        // a cnnf surrogate takes 28x28x1 images: refused up front for 32x32x3 data
        const spec = parseAttackSpec({ method, eps: [0.1], surrogate: referenceModel('cnn-adv') }, 'suite');
        let err: unknown;
        try {
          getAttack(method).prepare?.(spec, { numClasses: 10, shape: [32, 32, 3] });
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(UsageError);
        expect((err as Error).message).toMatch(/the surrogate takes 28x28x1 inputs, the data has 32x32x3/);
        continue;
      }
      const spec = parseAttackSpec({ method, eps: [0.3], ...small[method] }, `suite: ${method}`, 32 * 32 * 3);
      const attack = getAttack(method).build(spec);
      let seed = 11;
      const adv = await attack.perturb(v, xs, ys, 0.3, { nextSeed: () => seed++, trueLabels: ys });
      expect(adv.shape, method).toEqual([6, 32, 32, 3]);
      await verifyAdversarial(method, xs, adv, 0.3, attack.norm);
      adv.dispose();
      ran.push(method);
    }
    expect(ran).toEqual(['gaussian', 'fgsm', 'pgd', 'apgd', 'fab', 'square', 'spsa', 'autoattack']);
  }, 180_000);
});
