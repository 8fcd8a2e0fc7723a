/**
 * Attack sanity on a trained model (the reference plain CNNs, Fashion-MNIST), `cnnf attack` on the
 * command line (bad input, dumps). Small strided subsets keep CI time modest.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { FGSM, GaussianNoise, PGD, type Victim } from '../src/attacks/index.js';
import { loadDataset, IMAGE_PIXELS } from '../src/data/index.js';
import { evaluate, parseSuite } from '../src/eval/index.js';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint.js';
import { rowSize } from '../src/io/images.js';
import { validateResults } from '../src/report/index.js';
import { cnnf as cli, cnnfInProcess, inParallel, oneLine, referenceModel } from './helpers/cli.js';

const FASHION = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
let tmp: string;


let cnn: LoadedCheckpoint;
let x: tf.Tensor4D;
let y: tf.Tensor1D;
const N = 16;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'cnnf-attack-'));
  await useBackend('wasm', { quiet: true });
  cnn = await loadCheckpoint(referenceModel('cnn-standard'));
  const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: 'stride:625' });
  x = tf.tensor4d(ds.test.images.subarray(0, N * IMAGE_PIXELS), [N, 28, 28, 1]);
  y = tf.tensor1d(ds.test.labels.subarray(0, N), 'int32');
});

afterAll(() => {
  x?.dispose();
  y?.dispose();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('attack outputs', () => {
  const ctx = { nextSeed: (() => { let s = 1; return () => s++; })() };
  const victim = (): Victim => ({ model: cnn.model, mode: 'first', cycles: 0, readout: 'last' });

  it('eps 0 returns the input unchanged', async () => {
    for (const a of [new GaussianNoise(), new FGSM(), new PGD({ steps: 2 })]) {
      const out = await a.perturb(victim(), x, y, 0, ctx);
      expect(Array.from(await out.data())).toEqual(Array.from(await x.data()));
      out.dispose();
    }
  });

  it('stays inside [-1, 1] and within eps of x', async () => {
    const before = tf.memory().numTensors;
    const xs = await x.data();
    for (const a of [new FGSM(), new PGD({ steps: 3, randomStart: true }), new PGD({ steps: 2, targeted: true })]) {
      const out = await a.perturb(victim(), x, y, 0.2, ctx);
      const v = await out.data();
      out.dispose();
      let maxDelta = 0;
      for (let i = 0; i < v.length; i++) {
        expect(v[i]).toBeGreaterThanOrEqual(-1);
        expect(v[i]).toBeLessThanOrEqual(1);
        maxDelta = Math.max(maxDelta, Math.abs(v[i] - xs[i]));
      }
      expect(maxDelta).toBeLessThanOrEqual(0.2 + 1e-6);
      expect(maxDelta).toBeGreaterThan(0.1);
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('robustness curves on a trained CNN (cnn-standard, 50 images)', () => {
  it('accuracy falls with eps, PGD is no weaker than FGSM, targeted success rises with eps', async () => {
    const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: 'stride:200' });
    const suite = parseSuite({
      name: 'sanity',
      attacks: [
        { name: 'fgsm', method: 'fgsm', eps: [0, 0.05, 0.1, 0.2], modes: ['first', 'e2e'] },
        { name: 'pgd5', method: 'pgd', eps: [0.05, 0.1, 0.2], steps: 5, relStepSize: 0.5, modes: ['first'] },
        { name: 'tpgd', method: 'pgd', eps: [0.05, 0.3], steps: 5, relStepSize: 0.5, randomStart: false, targeted: true, target: 'next', modes: ['first'] },
        { name: 'gaussian', method: 'gaussian', eps: [0.1, 0.5] },
      ],
      confusionAt: 0.1,
    }, 'sanity');
    const before = tf.memory().numTensors;
    const progress: number[] = [];
    // an 8-example trust-check probe (the default, 50 here, would be a third of this test's time; the checks have their own tests)
    const r = await evaluate([cnn], { name: 'fashion-mnist', classNames: FASHION, numClasses: 10, split: ds.test, testSubset: 'stride:200' }, suite, {
      seed: 7, batchSize: 20, onProgress: (p) => progress.push(p.done / p.total), probeSize: 8,
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(progress.at(-1)).toBe(1);
    validateResults(JSON.parse(JSON.stringify(r)), 'sanity');
    const m = r.models[0];
    // plain CNN: e2e is the same as first and reported once
    expect(m.attacks.map((a) => `${a.name}:${a.mode}`)).toEqual(['fgsm:first', 'pgd5:first', 'tpgd:first', 'gaussian:null']);
    const one = 1 / ds.test.count;
    const acc = (key: string): number => m.metrics[key];
    expect(acc('fgsm@0:first')).toBe(acc('clean'));
    const seq = [acc('clean'), acc('fgsm@0.05:first'), acc('fgsm@0.1:first'), acc('fgsm@0.2:first')];
    for (let i = 1; i < seq.length; i++) expect(seq[i]).toBeLessThanOrEqual(seq[i - 1] + one);
    expect(acc('fgsm@0.2:first')).toBeLessThan(acc('clean') - 0.3);
    for (const e of [0.05, 0.1, 0.2]) expect(acc(`pgd5@${e}:first`)).toBeLessThanOrEqual(acc(`fgsm@${e}:first`) + one);
    expect(acc('pgd5@0.2:first')).toBeLessThan(acc('pgd5@0.05:first'));
    expect(acc('tpgd@0.3:first:success')).toBeGreaterThan(acc('tpgd@0.05:first:success'));
    expect(acc('tpgd@0.3:first:success')).toBeGreaterThan(0.5);
    expect(acc('gaussian@0.5')).toBeLessThanOrEqual(acc('gaussian@0.1') + one);
    // worst case: no better than any gradient attack at that eps, no worse than... zero
    for (const e of [0.05, 0.1, 0.2]) {
      expect(acc(`worst@${e}`)).toBeLessThanOrEqual(Math.min(acc(`fgsm@${e}:first`), acc(`pgd5@${e}:first`)));
    }
    expect(m.worstCase.map((w) => w.eps)).toEqual([0, 0.05, 0.1, 0.2, 0.3]);
    expect(acc('worst@0')).toBe(acc('clean'));
    // confusion matrices at confusionAt only, their trace matches the accuracy
    for (const a of m.attacks) {
      for (const p of a.points) {
        expect(p.confusion !== undefined).toBe(p.eps === 0.1);
        if (p.confusion) expect(p.confusion.reduce((s, row, i) => s + row[i], 0)).toBe(Math.round(p.accuracy * ds.test.count));
      }
    }
    // the same seed gives the same numbers; results do not depend on which models run together
    const again = await evaluate([cnn], { name: 'fashion-mnist', classNames: FASHION, numClasses: 10, split: ds.test, testSubset: 'stride:200' },
      parseSuite({ name: 'g', attacks: [{ name: 'gaussian', method: 'gaussian', eps: [0.1, 0.5] }] }, 'g'), { seed: 7, batchSize: 20, checks: false });
    expect(again.models[0].metrics['gaussian@0.5']).toBe(acc('gaussian@0.5'));
  });
});

describe('cnnf attack', () => {
  it('prints accuracy and targeted success per eps, and dumps PNG rows with reconstructions', async () => {
    const dump = join(tmp, 'dump');
    const r = await cli(['attack', '--model', referenceModel('cnnf-adv'), '--method', 'pgd', '--eps', '0.1,0.2', '--steps', '2',
      '--target', 'next', '--mode', 'e2e', '--test-subset', 'stride:2500', '--dump', dump, '--dump-count', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('success rate');
    // accuracy with its 95% Wilson interval, then the success rate
    expect(r.stdout).toMatch(/0\.2\s*│\s*[\d.]+% \[[\d.]+-[\d.]+\]\s*│\s*[\d.]+%/);
    // several epsilons: one dump set per epsilon, and the output says where
    expect(r.stdout).toContain(`one set per eps, to ${join(dump, 'eps0.1')}, ${join(dump, 'eps0.2')}`);
    const want = rowSize(4); // clean, perturbed, perturbation, 1 reconstruction
    for (const eps of ['0.1', '0.2']) {
      const index = JSON.parse(readFileSync(join(dump, `eps${eps}`, 'index.json'), 'utf8')) as { eps: number; examples: Array<{ file: string; columns: string[]; label: number }> };
      expect(index.eps).toBe(Number(eps));
      expect(index.examples).toHaveLength(2);
      // examples from two different classes (one per class where possible)
      expect(new Set(index.examples.map((e) => e.label)).size).toBe(2);
      for (const e of index.examples) {
        expect(e.columns).toHaveLength(4);
        const meta = await sharp(join(dump, `eps${eps}`, e.file)).metadata();
        expect(meta.format).toBe('png');
        expect([meta.width, meta.height]).toEqual([want.width, want.height]);
      }
    }
    expect(want).toEqual({ width: 4 * 112 + 3 * 4, height: 16 + 112 + 22 }); // column labels, tiles, class labels
  });

  it('--json prints a valid results object', async () => {
    const r = await cli(['attack', '--model', referenceModel('cnn-adv'), '--method', 'gaussian', '--eps', '0,0.3', '--test-subset', 'stride:1000', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const res = validateResults(JSON.parse(r.stdout), 'stdout');
    expect(res.models[0].attacks[0].points.map((p) => p.eps)).toEqual([0, 0.3]);
    expect(res.models[0].metrics['gaussian@0']).toBe(res.models[0].metrics.clean);
  });

  it('bad input exits 2 with one stderr line', async () => {
    const cases: Array<[string[], string]> = [
      [['--method', 'pgd', '--eps', '-0.1'], '--eps'],
      [['--method', 'pgd', '--eps', '0.1', '--target', 'sideways'], '--target'],
      [['--method', 'pgd', '--eps', '0.1', '--target', '12', '--test-subset', 'stride:5000'], 'target class 12'],
      [['--method', 'gaussian', '--eps', '0.1', '--target', 'next'], '--target'],
      [['--method', 'pgd', '--eps', 'abc'], '--eps'],
      [['--method', 'pgd', '--eps', '0.1', '--steps', '0'], '--steps'],
      [['--method', 'pgd', '--eps', '0.1', '--mode', 'sideways'], 'sideways'],
      [['--method', 'cw', '--eps', '0.1'], 'cw'],
      [['--method', 'fgsm', '--eps', '0.1', '--bogus'], '--bogus'],
      [['--method', 'fgsm', '--eps', '0.1', '--test-subset', 'every:3'], '--test-subset'],
    ];
    // the commander error through the real launcher (as the missing model below), the rest through the CLI's
    // main in this process (the same code path without ~2 s of start-up each)
    const results = await inParallel(cases.map(([args], i) => () => (i === 8 ? cli : cnnfInProcess)(['attack', '--model', referenceModel('cnn-adv'), ...args])));
    results.forEach((r, i) => expect(oneLine(r), cases[i][0].join(' ')).toContain(cases[i][1]));
  });

  it('a missing model file exits 2 with one line', async () => {
    const r = await cli(['attack', '--model', join(tmp, 'nope.safetensors'), '--method', 'fgsm', '--eps', '0.1']);
    expect(oneLine(r)).toContain('nope.safetensors');
  });
});
