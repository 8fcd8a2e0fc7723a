/**
 * cnnf as a TypeScript library: load a shipped checkpoint, predict with feedback cycles, attack it
 * with PGD end to end, and compare accuracies. `npm test` type-checks this file.
 *   node --import tsx examples/library.ts
 */
import * as tf from '@tensorflow/tfjs-core';
import { PGD, loadCheckpoint, loadDataset, useBackend, type Victim } from '../src/index.js';

await useBackend('auto');
const { model, info } = loadCheckpoint('models/reference-cnnf-adv.safetensors');
const data = loadDataset({ dataset: 'fashion-mnist', testSubset: 'stride:100' });
const n = data.test.count;
const x = tf.tensor4d(data.test.images, [n, 28, 28, 1]);
const y = tf.tensor1d(data.test.labels, 'int32');

const accuracy = (images: tf.Tensor) =>
  tf.tidy(() => tf.mean(tf.cast(tf.equal(tf.argMax(model.logits(images, info.readout), 1), y), 'float32')).dataSync()[0]);

const victim: Victim = { model, mode: 'e2e', cycles: info.config.cycles, readout: info.readout };
const adv = new PGD({ steps: 7, stepSize: 0.071, randomStart: true }).perturb(victim, x, y, 0.2, { nextSeed: () => 1 });
console.log(`clean accuracy ${accuracy(x).toFixed(3)}, PGD-7 e2e at eps 0.2: ${accuracy(adv).toFixed(3)} (${n} images)`);
