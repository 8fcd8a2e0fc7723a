/**
 * The webgpu backend (optional: the packages webgpu and @tensorflow/tfjs-backend-webgpu, and a Vulkan
 * adapter, e.g. Mesa's llvmpipe). Skipped with a one-line note where either is missing; the exit-2
 * errors for a missing package or adapter are tested everywhere (through CNNF_WEBGPU_DISABLE).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeAdapter, probeWebgpu } from '../src/backend/webgpu.js';
import { backendLabel, listBackends, releaseBackend, useBackend, tf } from '../src/backend/index.js';
import { UsageError } from '../src/errors.js';
import { readCheckpointFile, type CheckpointFile } from '../src/io/checkpoint.js';
import { CNNF } from '../src/models/cnnf.js';
import { loadDataset } from '../src/data/index.js';
import { runConformance } from '../src/eval/conformance.js';
import { evaluate, loadSuite, type EvalData } from '../src/eval/index.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { cnnf, oneLineError, referenceModel } from './helpers/cli.js';
import { relErr } from './helpers/tf.js';

const probe = probeWebgpu();
if (!probe.available) console.log(`webgpu tests skipped: ${probe.reason}`);

const ATTACK = ['attack', '--backend', 'webgpu', '--method', 'pgd', '--eps', '0.1', '--test-subset', 'first:2'];

describe('webgpu adapters', () => {
  it('tells software from hardware adapters by what they say, and prints their strings sanitised', () => {
    expect(describeAdapter({ vendor: 'mesa', architecture: 'software', device: 'llvmpipe-llvm-15', description: 'llvmpipe: Mesa 25.0.7' }).software).toBe(true);
    expect(describeAdapter({ vendor: 'google', architecture: '', device: '', description: 'SwiftShader Device (Subzero)' }).software).toBe(true);
    expect(describeAdapter({ vendor: 'mesa', architecture: '', device: '', description: 'lavapipe' }).software).toBe(true);
    expect(describeAdapter({ vendor: 'nvidia', architecture: 'ampere', device: '', description: 'NVIDIA GeForce RTX 3080' }).software).toBe(false);
    expect(describeAdapter({ vendor: 'nvidia', architecture: 'ampere' }, true).software).toBe(true); // isFallbackAdapter
    const evil = describeAdapter({ vendor: 'x\u001b[2J', architecture: 'y\u202e', description: 'z\nw' });
    expect(evil.software).toBe(false);
    expect(backendLabel({ requested: 'webgpu', name: 'webgpu', adapter: evil })).toBe('webgpu (x\\x1b[2J y\\u202e z\\nw)');
  });
});

describe('webgpu: one-line errors (exit 2)', () => {
  const withEnv = async <T>(value: string, f: () => Promise<T>): Promise<T> => {
    process.env.CNNF_WEBGPU_DISABLE = value;
    try {
      return await f();
    } finally {
      delete process.env.CNNF_WEBGPU_DISABLE;
    }
  };

  it('names the missing packages and how to install them (the CLI: one line, exit 2)', async () => {
    const r = await cnnf([...ATTACK, '--model', referenceModel('cnn-adv')], { env: { CNNF_WEBGPU_DISABLE: 'package' } });
    expect(r.code).toBe(2);
    expect(oneLineError(r)).toBe(
      'cnnf: backend webgpu is not available: webgpu and @tensorflow/tfjs-backend-webgpu are not installed (npm install webgpu@0.6.2 @tensorflow/tfjs-backend-webgpu@4.22.0)',
    );
  });

  it('says when no adapter exists and how to get one; the backend list says so too', async () => {
    const err = await withEnv('adapter', () => useBackend('webgpu', { quiet: true }).then(() => null, (e: unknown) => e));
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(2);
    expect((err as UsageError).message).toMatch(
      /^backend webgpu is not available: no WebGPU adapter found \(on Debian bookworm: apt-get install -t bookworm-backports libvulkan1 mesa-vulkan-drivers .*vendor's Vulkan driver\)$/,
    );
    const list = await withEnv('adapter', () => listBackends());
    expect(list.backends.map((x) => x.name)).toEqual(['tensorflow-gpu', 'tensorflow', 'webgpu', 'wasm', 'cpu']);
    expect(list.backends.find((x) => x.name === 'webgpu')).toMatchObject({ available: false, detail: expect.stringMatching(/^no WebGPU adapter found/) });
    expect(list.auto).not.toBe('webgpu');
    expect(list.backends.find((x) => x.name === 'wasm')!.available).toBe(true);
  });
});

describe.skipIf(!probe.available)('webgpu against wasm', () => {
  // images without a near-tie in any max-pool or ReLU decision (README "Backends": a near-tie, two
  // values of a pool window within float32 rounding, may be decided differently by each backend)
  const N = 2;
  let images: Float32Array;
  let labels: Int32Array;
  const files: Record<string, CheckpointFile> = {};

  beforeAll(() => {
    const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: 'stride:1250' });
    images = ds.test.images.slice(0, N * 784);
    labels = ds.test.labels.slice(0, N);
    for (const m of ['cnn-adv', 'cnnf-adv']) files[m] = readCheckpointFile(referenceModel(m));
  });
  afterAll(async () => {
    releaseBackend();
    await useBackend('wasm', { quiet: true });
  });

  /** Logits and the input gradient of the true-class logits, read asynchronously. */
  async function pass(file: CheckpointFile, cycles: number, model?: CNNF): Promise<{ logits: Float32Array; grad: Float32Array }> {
    const m = model ?? CNNF.fromArrays(file.info.config, file.arrays);
    const x = tf.tensor4d(images, [N, 28, 28, 1]);
    const onehot = tf.tidy(() => tf.oneHot(tf.tensor1d(labels, 'int32'), 10));
    const logits = tf.tidy(() => m.logits(x, 'last', cycles));
    const g = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(m.logits(xx, 'last', cycles), onehot)))(x);
    const out = { logits: (await logits.data()) as Float32Array, grad: (await g.data()) as Float32Array };
    tf.dispose([x, onehot, logits, g]);
    if (!model) m.dispose();
    return out;
  }

  /** Cross-entropy gradients of every weight (the training path: filter gradients, tied weights), 1 cycle. */
  async function weightGrads(file: CheckpointFile): Promise<Map<string, Float32Array>> {
    const m = CNNF.fromArrays(file.info.config, file.arrays);
    const x = tf.tensor4d(images, [N, 28, 28, 1]);
    const onehot = tf.tidy(() => tf.oneHot(tf.tensor1d(labels, 'int32'), 10));
    const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(onehot, m.logits(x, 'last', 1)) as tf.Scalar, m.variables());
    const out = new Map<string, Float32Array>();
    for (const [name, v] of m.params) out.set(name, (await grads[(v as tf.Variable).name].data()) as Float32Array);
    tf.dispose([x, onehot, value, ...Object.values(grads)]);
    m.dispose();
    return out;
  }

  const cases: Array<[string, number]> = [['cnn-adv', 0], ['cnnf-adv', 0], ['cnnf-adv', 1], ['cnnf-adv', 2]];

  it('logits, input gradients (plain CNN; CNN-F with 0, 1, 2 cycles) and weight gradients agree within 1e-5 relative; tensors do not leak', async () => {
    await useBackend('wasm', { quiet: true });
    const ref = [];
    for (const [m, c] of cases) ref.push(await pass(files[m], c));
    const refWeights = await weightGrads(files['cnnf-adv']);
    const info = await useBackend('webgpu', { quiet: true });
    expect(info.name).toBe('webgpu');
    expect(tf.getBackend()).toBe('webgpu');
    const onDevice = tf.add(tf.ones([2000]), 1);
    expect(() => onDevice.dataSync()).toThrow('a synchronous read (dataSync/arraySync/bufferSync) of a webgpu tensor: impossible in Node.js (no OffscreenCanvas); read it with await t.data()');
    expect(Array.from((await onDevice.data()).slice(0, 2))).toEqual([2, 2]);
    onDevice.dispose();
    for (let i = 0; i < cases.length; i++) {
      const got = await pass(files[cases[i][0]], cases[i][1]);
      expect(relErr(got.logits, ref[i].logits), `${cases[i].join(' cycles ')} logits`).toBeLessThan(1e-5);
      expect(relErr(got.grad, ref[i].grad), `${cases[i].join(' cycles ')} input gradient`).toBeLessThan(1e-5);
      expect(got.grad.some((v) => v !== 0)).toBe(true);
    }
    const weights = await weightGrads(files['cnnf-adv']);
    expect([...weights.keys()]).toEqual([...refWeights.keys()]);
    for (const [name, g] of weights) expect(relErr(g, refWeights.get(name)!), `${name} gradient`).toBeLessThan(1e-5);
    const model = CNNF.fromArrays(files['cnnf-adv'].info.config, files['cnnf-adv'].arrays);
    await pass(files['cnnf-adv'], 1, model);
    const before = tf.memory().numTensors;
    await pass(files['cnnf-adv'], 1, model);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it('cnnf backends shows the adapter (and auto takes webgpu only on a hardware adapter)', async () => {
    const list = await listBackends();
    const w = list.backends.find((x) => x.name === 'webgpu')!;
    expect(w.available).toBe(true);
    expect(w.detail).toMatch(/\S/);
    if (w.adapter!.software) expect(list.auto).not.toBe('webgpu');
    const table = await cnnf(['backends']);
    expect(table.code).toBe(0);
    const desc = w.adapter!.description;
    if (desc !== '') expect(table.stdout.replace(/\s+/g, ' ')).toContain(desc.slice(0, 20));
    expect(table.stdout).toMatch(/│ webgpu\s+│ yes\s+│/);
    expect(table.stdout).toMatch(/--backend auto picks: (tensorflow-gpu|tensorflow|webgpu|wasm|cpu)\n$/);
    expect(table.stderr).toBe('');
  });
});

describe.skipIf(!probe.available)('webgpu: the reference fixture and a seeded evaluation', () => {
  afterAll(async () => {
    releaseBackend();
    await useBackend('wasm', { quiet: true });
  });

  it('cnnf conformance of fixtures/cnnf-ind2-c2 on webgpu: every forward, input-gradient and FGSM row within 1e-5; the rows a float32 near-tie forks are pinned (llvmpipe)', async () => {
    const info = await useBackend('webgpu', { quiet: true });
    const report = await runConformance('fixtures/cnnf-ind2-c2.safetensors');
    expect(report.rows).toHaveLength(38);
    const failed = report.rows.filter((r) => !r.pass).map((r) => r.name);
    // on any adapter: the forward rows of the clean images, both input gradients, FGSM and the training loss
    const always = report.rows.filter((r) => /^eval\./.test(r.name) && r.name !== 'eval.last.logits_noisy' || /^grad\.input\./.test(r.name) || r.name === 'attack.fgsm.first' || r.name === 'train.loss' || r.name === 'attack.pgd_targeted.first');
    expect(always.length).toBe(21);
    for (const r of always) expect(r.relError, r.name).toBeLessThanOrEqual(1e-5);
    if (/llvmpipe/i.test(`${info.adapter?.description ?? ''} ${info.adapter?.device ?? ''}`)) {
      // measured on Mesa 25.0 llvmpipe (README "Backends"): the noisy images' first pass has a 2x2 pool window
      // whose two largest values lie within float32 rounding; webgpu takes the other one, the feedback unpools
      // there, and logits_noisy and every train.grad row (the loss pairs clean and noisy images) fork; the
      // two untargeted PGD rows fork too (there is no tie search on webgpu: it needs synchronous reads)
      expect(failed).toEqual(['eval.last.logits_noisy', 'attack.pgd.first', 'attack.pgd.e2e', ...report.rows.filter((r) => r.name.startsWith('train.grad.')).map((r) => r.name)]);
      expect(report.rows.find((r) => r.name === 'eval.last.logits_noisy')!.relError).toBeLessThan(1e-4);
    }
  });

  it('a seeded evaluation of the quick suite gives the same per-example outcomes on webgpu and wasm', async () => {
    // the library's evaluate (what `cnnf eval --suite quick --seed 3` runs), without the trust checks' probes
    const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: 'first:4' });
    const d: EvalData = { name: ds.name, classNames: ds.classNames, numClasses: ds.numClasses, split: ds.test, testSubset: 'first:4' };
    const suite = loadSuite(join(process.cwd(), 'attacks', 'quick.json'));
    const outcomes = async (backend: string): Promise<unknown> => {
      await useBackend(backend, { quiet: true });
      const model = await loadCheckpoint(referenceModel('cnnf-adv'));
      try {
        const m = (await evaluate([model], d, suite, { seed: 3, checks: false })).models[0];
        return { clean: m.clean.outcomes, attacks: m.attacks.map((a) => [a.name, a.mode, a.points.map((p) => [p.eps, p.outcomes])]) };
      } finally {
        model.model.dispose();
      }
    };
    const gpu = await outcomes('webgpu');
    expect(gpu).toEqual(await outcomes('wasm'));
    expect((gpu as { attacks: unknown[] }).attacks).toHaveLength(6);
  });
});
