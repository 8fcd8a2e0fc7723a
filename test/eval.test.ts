/**
 * evaluate() and `cnnf eval`: the reference models' clean accuracies on a strided subset (fixed
 * numbers measured on the full split), suites, results the report/gate validator accepts, bad input.
 * Set CNNF_FULL_EVAL=1 to also check the full 10,000-image clean accuracies (several minutes on wasm).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { loadDataset } from '../src/data/index.js';
import { evaluate, loadSuite, parseSuite, RESULTS_FORMAT, type EvalData, type Suite } from '../src/eval/index.js';
import { loadCheckpoint, saveArrays } from '../src/io/checkpoint.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { paramSpecs } from '../src/models/arch.js';
import { readResultsFile, validateResults } from '../src/report/index.js';
import { UsageError } from '../src/errors.js';
import { cnnf as cli, cnnfInProcess, inParallel, oneLine, referenceModel } from './helpers/cli.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
let tmp: string;


function data(subset?: string): EvalData {
  const ds = loadDataset({ dataset: 'fashion-mnist', ...(subset ? { testSubset: subset } : {}) });
  return { name: ds.name, classNames: ds.classNames, numClasses: ds.numClasses, split: ds.test, testSubset: subset ?? 'full' };
}

/** A suite that only measures clean accuracy (Gaussian noise of sigma 0 is the identity). */
const CLEAN_ONLY: Suite = parseSuite({ name: 'clean', attacks: [{ name: 'gaussian', method: 'gaussian', eps: [0] }] }, 'clean');

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'cnnf-eval-'));
  await useBackend('wasm', { quiet: true });
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/**
 * Correct predictions on stride:50 (200 images: 0, 50, ..., 9950), counted from the per-example
 * results of a full-split run (cnn-standard 0.9237, cnn-adv 0.8484, cnnf-adv first 0.8532 /
 * last 0.8556 / average 0.8545 on all 10,000).
 */
const STRIDE50 = { 'cnn-standard': 185, 'cnn-adv': 171, 'cnnf-adv/first': 170, 'cnnf-adv/last': 174, 'cnnf-adv/average': 171 };
const FULL = { 'cnn-standard': 0.9237, 'cnn-adv': 0.8484, 'cnnf-adv/first': 0.8532, 'cnnf-adv/last': 0.8555, 'cnnf-adv/average': 0.8545 };

/** Clean accuracies only: the trust checks (a probe batch under attack, most of the time otherwise) are off. */
async function cleanAccuracies(d: EvalData): Promise<Record<keyof typeof STRIDE50, number>> {
  const cnnStd = await loadCheckpoint(referenceModel('cnn-standard'));
  const cnnAdv = await loadCheckpoint(referenceModel('cnn-adv'));
  const cnnf = await loadCheckpoint(referenceModel('cnnf-adv'));
  const before = tf.memory().numTensors;
  const plain = await evaluate([cnnStd, cnnAdv], d, CLEAN_ONLY, { seed: 0, batchSize: 100, checks: false, names: ['cnn-standard', 'cnn-adv'] });
  const first = await evaluate([cnnf], d, CLEAN_ONLY, { seed: 0, batchSize: 100, checks: false, cycles: 0 });
  const last = await evaluate([cnnf], d, CLEAN_ONLY, { seed: 0, batchSize: 100, checks: false, readout: 'last' });
  const average = await evaluate([cnnf], d, CLEAN_ONLY, { seed: 0, batchSize: 100, checks: false, readout: 'average' });
  expect(tf.memory().numTensors).toBe(before);
  expect(first.models[0].cycles).toBe(0);
  expect(last.models[0].cycles).toBe(1);
  return {
    'cnn-standard': plain.models[0].clean.accuracy,
    'cnn-adv': plain.models[1].clean.accuracy,
    'cnnf-adv/first': first.models[0].clean.accuracy,
    'cnnf-adv/last': last.models[0].clean.accuracy,
    'cnnf-adv/average': average.models[0].clean.accuracy,
  };
}

describe('reference models, clean accuracy', () => {
  it('reproduces the stride:50 subset counts measured on the full split (within 1 example)', async () => {
    const acc = await cleanAccuracies(data('stride:50'));
    for (const [k, want] of Object.entries(STRIDE50)) expect(Math.abs(acc[k as keyof typeof STRIDE50] * 200 - want), k).toBeLessThanOrEqual(1);
  });

  it.runIf(process.env.CNNF_FULL_EVAL === '1')('reproduces the full-split clean accuracies within 0.1%', async () => {
    const acc = await cleanAccuracies(data());
    for (const [k, want] of Object.entries(FULL)) expect(Math.abs(acc[k as keyof typeof FULL] - want), k).toBeLessThanOrEqual(0.001);
  });
});

describe('evaluate()', () => {
  it('runs a suite on a CNN and a CNN-F: modes, metrics keys, worst case, provenance, validateResults accepts it', async () => {
    const suite = loadSuite(join(ROOT, 'attacks', 'quick.json'));
    const models = [await loadCheckpoint(referenceModel('cnn-adv')), await loadCheckpoint(referenceModel('cnnf-adv'))];
    const before = tf.memory().numTensors;
    const d = data('stride:500');
    // a 4-example probe: the trust checks run and are recorded (their own tests are checks.test.ts and probe-pool.test.ts)
    const r = await evaluate(models, d, suite, { seed: 3, batchSize: 8, command: 'test', probeSize: 4 });
    expect(tf.memory().numTensors).toBe(before);
    expect(validateResults(JSON.parse(JSON.stringify(r)), 'quick')).toBeTruthy();
    expect(r.format).toBe(RESULTS_FORMAT);
    expect(r.provenance).toMatchObject({ command: 'test', seed: 3, dataset: 'fashion-mnist', testSubset: 'stride:500', examples: 20, suite: 'quick', backend: 'wasm' });
    const [cnn, cnnf] = r.models;
    expect(cnn.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(cnn.attacks.map((a) => `${a.name}:${a.mode}`)).toEqual(['gaussian:null', 'fgsm:first', 'pgd3:first', 'pgd3-targeted:first']);
    expect(cnnf.attacks.map((a) => `${a.name}:${a.mode}`)).toEqual(['gaussian:null', 'fgsm:first', 'fgsm:e2e', 'pgd3:first', 'pgd3:e2e', 'pgd3-targeted:first']);
    expect(Object.keys(cnnf.metrics).sort()).toEqual([
      'clean', 'fgsm@0.1:e2e', 'fgsm@0.1:first', 'fgsm@0.2:e2e', 'fgsm@0.2:first', 'gaussian@0.2',
      'pgd3-targeted@0.2:first', 'pgd3-targeted@0.2:first:success', 'pgd3@0.1:e2e', 'pgd3@0.1:first', 'pgd3@0.2:e2e', 'pgd3@0.2:first',
      'warnings', 'worst@0.1', 'worst@0.2',
    ]);
    for (const m of r.models) {
      for (const w of m.worstCase) {
        const at = m.attacks.filter((a) => a.method !== 'gaussian').flatMap((a) => a.points.filter((p) => p.eps === w.eps).map((p) => p.accuracy));
        expect(w.accuracy).toBeLessThanOrEqual(Math.min(m.clean.accuracy, ...at));
      }
    }
    // results do not depend on the batch size for deterministic attacks, nor on the other models evaluated
    // (without the trust checks: their probe is most of a run's time, and no metric compared here depends on it)
    const alone = await evaluate([models[1]], d, parseSuite({ name: 'f', attacks: [{ name: 'fgsm', method: 'fgsm', eps: [0.1, 0.2] }] }, 'f'), { seed: 3, batchSize: 20, checks: false });
    expect(alone.models[0].metrics['fgsm@0.2:e2e']).toBe(cnnf.metrics['fgsm@0.2:e2e']);
    expect(alone.models[0].metrics['fgsm@0.1:first']).toBe(cnnf.metrics['fgsm@0.1:first']);
  });

  it('gives the same results when worker threads run the batches (random starts, noise, targets, dumps)', async () => {
    const suite = loadSuite(join(ROOT, 'attacks', 'quick.json'));
    const models = [await loadCheckpoint(referenceModel('cnnf-adv'))];
    const d = data('stride:500');
    const before = tf.memory().numTensors;
    // an 8-example probe (one chunk; probe-pool.test.ts covers several): it is most of a run's time
    const opts = { seed: 5, batchSize: 8, command: 'test', dumpCount: 2, names: ['CNN-F (adv.)'], probeSize: 8 };
    const one = await evaluate(models, d, suite, { ...opts, dumpDir: join(tmp, 'w1'), dumpBase: join(tmp, 'w1') });
    const two = await evaluate(models, d, suite, { ...opts, dumpDir: join(tmp, 'w2'), dumpBase: join(tmp, 'w2'), workers: 2 });
    expect(tf.memory().numTensors).toBe(before);
    expect(two.models).toEqual(one.models);
    // the probe checks run in a worker with the pool, here without: the same checks
    expect(two.checks).toEqual(one.checks);
    expect(one.checks).toBeDefined();
    expect(one.models[0].dumps!.length).toBe(2 * 10); // 2 examples x 10 attack points (every epsilon of every attack and mode)
    // each attack point's dump shows two different classes
    const labelsOf = (dir: string): number[] =>
      (JSON.parse(readFileSync(join(tmp, 'w1', dir, 'index.json'), 'utf8')) as { examples: Array<{ label: number }> }).examples.map((e) => e.label);
    const dirs = [...new Set(one.models[0].dumps!.map((f) => f.slice(0, f.lastIndexOf('/'))))];
    expect(dirs).toHaveLength(10);
    // readable folder names: the model name as a lowercase slug, then attack, gradient path and epsilon
    expect(dirs.sort()).toEqual(['fgsm-e2e-eps0.1', 'fgsm-e2e-eps0.2', 'fgsm-first-eps0.1', 'fgsm-first-eps0.2', 'gaussian-eps0.2', 'pgd3-e2e-eps0.1',
      'pgd3-e2e-eps0.2', 'pgd3-first-eps0.1', 'pgd3-first-eps0.2', 'pgd3-targeted-first-eps0.2'].map((d) => `cnn-f-adv/${d}`));
    for (const dir of dirs) expect(new Set(labelsOf(dir)).size, dir).toBe(2);
    for (const f of one.models[0].dumps!) expect(readFileSync(join(tmp, 'w2', f))).toEqual(readFileSync(join(tmp, 'w1', f)));
  });

  it('rejects a model whose class count differs from the dataset', async () => {
    const d = data('stride:1000');
    const m = await loadCheckpoint(referenceModel('cnn-adv'));
    await expect(evaluate([m], { ...d, numClasses: 26, classNames: Array.from({ length: 26 }, (_, i) => String(i)) }, CLEAN_ONLY, { seed: 0 }))
      .rejects.toThrow(UsageError);
  });

  it('validates suites with one-line errors naming the file and field', () => {
    const bad: Array<[unknown, string]> = [
      [{ attacks: [] }, 'attacks must not be empty'],
      [{ attacks: [{ method: 'cw', eps: [0.1] }] }, 'attacks[0].method'],
      [{ attacks: [{ method: 'fgsm', eps: [-0.1] }] }, 'attacks[0].eps[0]'],
      [{ attacks: [{ method: 'pgd', eps: [0.1], steps: 0 }] }, 'attacks[0].steps'],
      [{ attacks: [{ method: 'pgd', eps: [0.1], modes: ['middle'] }] }, 'attacks[0].modes[0]'],
      [{ attacks: [{ method: 'gaussian', eps: [0.1], modes: ['first'] }] }, 'attacks[0].modes'],
      [{ attacks: [{ method: 'fgsm', eps: [0.1], stepz: 1 }] }, 'attacks[0].stepz'],
      [{ attacks: [{ method: 'fgsm', eps: [0.1] }, { method: 'fgsm', eps: [0.2] }] }, 'attacks[1].name'],
      [{ attacks: [{ method: 'pgd', eps: [0.1], target: 'left' }] }, 'attacks[0].target'],
      [{ attacks: [{ method: 'fgsm', eps: [0.1] }], testSubset: 'half' }, 'testSubset'],
    ];
    for (const [json, fragment] of bad) {
      let msg = '';
      try {
        parseSuite(json, 'attacks/x.json');
      } catch (e) {
        expect(e).toBeInstanceOf(UsageError);
        msg = (e as Error).message;
      }
      expect(msg).toContain('attacks/x.json');
      expect(msg).toContain(fragment);
      expect(msg).not.toContain('\n');
    }
    for (const f of ['quick', 'main', 'paper-fmnist']) expect(loadSuite(join(ROOT, 'attacks', `${f}.json`)).attacks.length).toBeGreaterThan(0);
  });
});

describe('cnnf eval', () => {
  it('prints accuracy-vs-eps tables and writes a results file report/gate accept', async () => {
    const out = join(tmp, 'res', 'results.json');
    const dump = join(tmp, 'res', 'dumps');
    const r = await cli(['eval', '--model', referenceModel('cnn-adv'), '--model', referenceModel('cnnf-adv'), '--name', 'reference-cnnf-adv=cnnf',
      '--attacks', 'fgsm,gaussian', '--eps', '0.1', '--test-subset', 'stride:1000', '--seed', '5', '--dump', dump, '--dump-count', '1', '--json', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('worst@0.1');
    expect(r.stdout).toMatch(/fgsm \(fgsm\)/);
    expect(r.stdout).toContain('cnnf/e2e');
    expect(r.stdout).toContain('reference-cnn-adv/first');
    expect(r.stdout).not.toContain('reference-cnn-adv/e2e');
    const res = readResultsFile(out);
    expect(res.models.map((m) => m.name)).toEqual(['reference-cnn-adv', 'cnnf']);
    expect(res.provenance.seed).toBe(5);
    expect(res.provenance.command).toContain('--attacks fgsm,gaussian');
    for (const m of res.models) {
      expect(m.dumps!.length).toBeGreaterThan(0);
      for (const p of m.dumps!) expect(existsSync(join(dirname(out), p)), p).toBe(true);
    }
    const gate = await cli(['gate', out, '--require', 'clean >= 0.5']);
    expect(gate.code, gate.stderr + gate.stdout).toBe(0);
  });

  it('bad input exits 2 with one stderr line', async () => {
    const suiteBad = join(tmp, 'bad.json');
    writeFileSync(suiteBad, '{"attacks": [');
    const suiteUnknown = join(tmp, 'unknown.json');
    writeFileSync(suiteUnknown, JSON.stringify({ attacks: [{ method: 'deepfool', eps: [0.1] }] }));
    const lettersModel = join(tmp, 'letters.safetensors');
    {
      // the cnn-adv checkpoint cut down to 5 classes (the first 5 outputs of the last layer)
      const ck = await loadCheckpoint(referenceModel('cnn-adv'));
      const arrays = readSafetensors(referenceModel('cnn-adv')).tensors;
      const cfg5 = { ...ck.info.config, numClasses: 5 };
      saveArrays(lettersModel, cfg5, new Map(paramSpecs(cfg5).map((p) => {
        const full = arrays.get(p.name)!.data;
        const size = p.shape.reduce((x, y) => x * y, 1);
        if (size === full.length) return [p.name, { shape: p.shape, data: full }];
        const cols = p.shape[p.shape.length - 1];
        const out = new Float32Array(size);
        for (let i = 0; i < size / cols; i++) for (let j = 0; j < cols; j++) out[i * cols + j] = full[i * 10 + j];
        return [p.name, { shape: p.shape, data: out }];
      })));
      ck.model.dispose();
    }
    const model = referenceModel('cnn-adv');
    const cases: Array<[string[], string]> = [
      [['--model', join(tmp, 'missing.safetensors'), '--suite', 'quick'], 'missing.safetensors'],
      [['--model', model, '--suite', suiteBad], 'bad.json'],
      [['--model', model, '--suite', suiteUnknown], 'attacks[0].method'],
      [['--model', model, '--suite', join(tmp, 'nope.json')], 'nope.json'],
      [['--model', model, '--attacks', 'fgsm,deepfool', '--eps', '0.1'], 'deepfool'],
      [['--model', model, '--attacks', 'fgsm', '--eps', '0.1,-0.2'], '--eps'],
      [['--model', model, '--attacks', 'fgsm'], '--eps'],
      [['--model', lettersModel, '--attacks', 'fgsm', '--eps', '0.1', '--test-subset', 'stride:1000'], 'classes'],
      [['--model', model, '--suite', 'quick', '--frobnicate'], '--frobnicate'],
      [['--model', model], '--suite'],
      [['--suite', 'quick'], '--model'],
      [['--model', model, '--suite', 'quick', '--readout', 'median'], 'median'],
      [['--model', model, '--suite', 'quick', '--cycles', '-1'], '--cycles'],
      [['--model', model, '--suite', 'quick', '--name', 'other=x'], '--name'],
      [['--model', model, '--suite', 'quick', '--workers', '0'], '--workers'],
      [['--model', model, '--suite', 'quick', '--workers', 'many'], '--workers'],
    ];
    // the real launcher for two of them (a file error and a commander error: exit 2, one line, no stack
    // trace), the CLI's main in this process for the rest (the same code path without ~2 s of start-up each)
    const launcher = [0, 8];
    const results = await inParallel(cases.map(([args], i) => () => (launcher.includes(i) ? cli : cnnfInProcess)(['eval', ...args])));
    results.forEach((r, i) => expect(oneLine(r), cases[i][0].join(' ')).toContain(cases[i][1]));
  });
});
