/**
 * cnnf as a TypeScript library: load a shipped checkpoint, predict with feedback cycles, attack it
 * with PGD end to end, and measure robust accuracy over several epsilons the way Foolbox users do.
 * `npm test` type-checks this file. In this repository `cnnf` maps to src/ (tsconfig paths):
 *   node --import tsx examples/library.ts
 * In a project that installed cnnf, the same imports resolve to the compiled package (dist/).
 */
import { tf, PGD, loadCheckpoint, loadDataset, robustAccuracy, shippedModel, useBackend, type Victim } from 'cnnf';

await useBackend('auto');
const { model, info } = await loadCheckpoint(shippedModel('reference-cnnf-adv'));
const data = loadDataset({ dataset: 'fashion-mnist', testSubset: 'stride:100' });
const n = data.test.count;
const x = tf.tensor4d(data.test.images, [n, 28, 28, 1]);
const y = tf.tensor1d(data.test.labels, 'int32');

// computed in tf.tidy, read after it (await: cnnf and its examples never read a tensor synchronously)
const accuracy = async (images: tf.Tensor): Promise<number> => {
  const acc = tf.tidy(() => tf.mean(tf.cast(tf.equal(tf.argMax(model.logits(images, info.readout), 1), y), 'float32')));
  const value = (await acc.data())[0];
  acc.dispose();
  return value;
};

const victim: Victim = { model, mode: 'e2e', cycles: info.config.cycles, readout: info.readout };
// the last argument is the seed of the random start: a plain number
const adv = await new PGD({ steps: 7, stepSize: 0.071, randomStart: true }).perturb(victim, x, y, 0.2, 1);
console.log(`clean accuracy ${(await accuracy(x)).toFixed(3)}, PGD-7 e2e at eps 0.2: ${(await accuracy(adv)).toFixed(3)} (${n} images)`);

// per-example success and robust accuracy for a list of epsilons (Foolbox: attack(fmodel, x, y, epsilons=...))
const r = await robustAccuracy(victim, x, y, new PGD({ steps: 7 }), [0.05, 0.1, 0.2], { seed: 1 });
r.epsilons.forEach((eps, i) => console.log(`eps ${eps}: robust accuracy ${r.robustAccuracy[i].toFixed(3)}, attack succeeded on ${r.success[i].reduce((a, b) => a + b, 0)} of ${n}`));
