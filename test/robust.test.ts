/**
 * The Foolbox-style library API: attacks take a plain seed number, and robustAccuracy() gives
 * per-example success and robust accuracy for a list of epsilons. FGSM is deterministic, so its
 * robustAccuracy must equal what evaluate() (the engine behind `cnnf eval`) measures on the same images.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { FGSM, GaussianNoise, PGD, type Victim } from '../src/attacks/index.js';
import { loadDataset, IMAGE_PIXELS } from '../src/data/index.js';
import { evaluate, parseSuite, robustAccuracy } from '../src/eval/index.js';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint.js';
import { referenceModel } from './helpers/cli.js';

const N = 20;
let cnn: LoadedCheckpoint;
let x: tf.Tensor4D;
let y: tf.Tensor1D;
let labels: Int32Array;
let split: ReturnType<typeof loadDataset>['test'];

beforeAll(async () => {
  await useBackend('wasm', { quiet: true });
  cnn = await loadCheckpoint(referenceModel('cnn-standard'));
  const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: 'stride:500' });
  split = ds.test;
  x = tf.tensor4d(ds.test.images.subarray(0, N * IMAGE_PIXELS), [N, 28, 28, 1]);
  labels = Int32Array.from(ds.test.labels.subarray(0, N));
  y = tf.tensor1d(labels, 'int32');
});

afterAll(() => {
  x?.dispose();
  y?.dispose();
  cnn?.model.dispose();
});

describe('attacks take a plain seed number', () => {
  it('the same seed gives the same perturbation, another seed another one, and the default is seed 0', async () => {
    const v: Victim = { model: cnn.model, mode: 'first', cycles: 0, readout: 'last' };
    const pgd = new PGD({ steps: 2 });
    const xs = tf.slice(x, [0, 0, 0, 0], [4, -1, -1, -1]);
    const ys = tf.slice(y, [0], [4]);
    const [a, b, c, d] = [await pgd.perturb(v, xs, ys, 0.1, 5), await pgd.perturb(v, xs, ys, 0.1, 5), await pgd.perturb(v, xs, ys, 0.1, 6), await pgd.perturb(v, xs, ys, 0.1)];
    const e = await pgd.perturb(v, xs, ys, 0.1, 0);
    expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBe(0);
    expect(tf.max(tf.abs(tf.sub(a, c))).dataSync()[0]).toBeGreaterThan(0);
    expect(tf.max(tf.abs(tf.sub(d, e))).dataSync()[0]).toBe(0);
    // a seed number and the { nextSeed } context it stands for are the same thing
    const noise = new GaussianNoise();
    const n1 = await noise.perturb(v, xs, ys, 0.3, 9);
    const n2 = await noise.perturb(v, xs, ys, 0.3, 9);
    expect(tf.max(tf.abs(tf.sub(n1, n2))).dataSync()[0]).toBe(0);
    await expect(noise.perturb(v, xs, ys, 0.3, Number.NaN)).rejects.toThrow(/finite/);
    tf.dispose([xs, ys, a, b, c, d, e, n1, n2]);
  });
});

describe('robustAccuracy', () => {
  it('FGSM: per-epsilon robust accuracy equals evaluate() on the same images; success is the complement', async () => {
    const eps = [0, 0.05, 0.2];
    const before = tf.memory().numTensors;
    const r = await robustAccuracy(cnn.model, x, labels, new FGSM(), eps, { batchSize: 7 });
    expect(tf.memory().numTensors).toBe(before);
    const sub = { ...split, count: N, images: split.images.subarray(0, N * IMAGE_PIXELS), labels: split.labels.subarray(0, N) };
    const suite = parseSuite({ name: 't', attacks: [{ name: 'fgsm', method: 'fgsm', eps, modes: ['first'] }] }, 't');
    const ev = await evaluate([cnn], { name: 'fashion-mnist', classNames: cnn.info.classNames, numClasses: 10, split: sub, testSubset: 'first:20' }, suite, { seed: 0, batchSize: 10 });
    const m = ev.models[0];
    expect(r.cleanAccuracy).toBe(m.clean.accuracy);
    expect(r.robustAccuracy).toEqual(m.attacks[0].points.map((p) => p.accuracy));
    // at eps 0 the attack succeeds exactly where the clean input is already misclassified
    expect(Array.from(r.success[0])).toEqual(Array.from(r.clean, (c) => 1 - c));
    for (const [e] of eps.entries()) {
      const s = r.success[e].reduce((a, b) => a + b, 0);
      expect(1 - s / N).toBeCloseTo(r.robustAccuracy[e], 12);
    }
    // a standard-trained CNN loses most of these images to FGSM at 0.2
    expect(r.robustAccuracy[2]).toBeLessThan(r.cleanAccuracy - 0.3);
  });

  it('PGD with a seed is reproducible and does not depend on the batch size for deterministic starts', async () => {
    const pgd = new PGD({ steps: 3, randomStart: false });
    const a = await robustAccuracy(cnn.model, x, y, pgd, [0.1], { batchSize: 20 });
    const b = await robustAccuracy(cnn.model, x, y, pgd, [0.1], { batchSize: 6 });
    expect(Array.from(a.success[0])).toEqual(Array.from(b.success[0]));
    const rs = new PGD({ steps: 3 });
    const c = await robustAccuracy(cnn.model, x, y, rs, [0.1], { seed: 3 });
    const d = await robustAccuracy(cnn.model, x, y, rs, [0.1], { seed: 3 });
    expect(Array.from(c.success[0])).toEqual(Array.from(d.success[0]));
  });

  it('targeted attacks need targets and count success as hitting them', async () => {
    const t = new PGD({ steps: 3, targeted: true, randomStart: false });
    await expect(robustAccuracy(cnn.model, x, y, t, [0.2])).rejects.toThrow(/targets/);
    const targets = Array.from(labels, (l) => (l + 1) % 10);
    const r = await robustAccuracy(cnn.model, x, y, t, [0, 0.3], { targets });
    // eps 0 leaves the inputs alone: a target is hit only where the clean prediction already is the target
    expect(r.success[0].reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(N - r.clean.reduce((a, b) => a + b, 0));
    expect(r.success[1].reduce((a, b) => a + b, 0)).toBeGreaterThan(r.success[0].reduce((a, b) => a + b, 0));
  });
});
