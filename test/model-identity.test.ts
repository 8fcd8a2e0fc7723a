/**
 * What a model is: the dataset its checkpoint records (refused on another one unless
 * --allow-dataset-mismatch, then a check says so), a cnnf checkpoint given to `import --from pytorch`,
 * and the display name of a generic file name (runs/cnn/best.safetensors is "cnn").
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { loadDataset } from '../src/data/index.js';
import { UsageError } from '../src/errors.js';
import { defaultModelName, defaultModelNames, evaluate, makePlan, parseSuite, type EvalData } from '../src/eval/index.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { validateResults } from '../src/report/index.js';
import { cnnf, oneLineError, referenceModel } from './helpers/cli.js';

let tmp = '';
beforeAll(async () => {
  await useBackend('wasm', { quiet: true });
  tmp = mkdtempSync(join(tmpdir(), 'cnnf-identity-'));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const suite = parseSuite({ name: 's', attacks: [{ method: 'fgsm', eps: [0.1], modes: ['first'] }] }, 'test');

function fashionAs(name: string): EvalData {
  const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: 'first:8', testOnly: true });
  return { name, classNames: ds.classNames, numClasses: ds.numClasses, split: ds.test, testSubset: 'first:8' };
}

describe('the dataset a checkpoint records', () => {
  it('evaluate refuses another named dataset with one UsageError; idx and folder data are never refused', async () => {
    const ck = await loadCheckpoint(referenceModel('cnn-adv'));
    expect(ck.info.dataset).toBe('fashion-mnist');
    let err: unknown;
    try {
      makePlan([ck], fashionAs('mnist'), suite, { seed: 0 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(/reference-cnn-adv\.safetensors was trained on fashion-mnist \(its metadata\), not mnist: .*--allow-dataset-mismatch/);
    expect((err as Error).message).not.toContain('\n');
    // the same images from a folder (or IDX files) may well be Fashion-MNIST: no refusal, no trainedOn
    for (const name of ['folder', 'idx', 'fashion-mnist']) {
      expect(makePlan([ck], fashionAs(name), suite, { seed: 0 }).models[0].trainedOn, name).toBeUndefined();
    }
    expect(makePlan([ck], fashionAs('mnist'), suite, { seed: 0, allowDatasetMismatch: true }).models[0].trainedOn).toBe('fashion-mnist');
    ck.model.dispose();
  });

  it('allowed, the results carry a dataset-mismatch warning (check 9), counted in metrics.warnings', async () => {
    const ck = await loadCheckpoint(referenceModel('cnn-adv'));
    const res = await evaluate([ck], fashionAs('mnist'), suite, { seed: 0, allowDatasetMismatch: true, probeSize: 4 });
    ck.model.dispose();
    validateResults(JSON.parse(JSON.stringify(res)), 'results');
    const mism = res.checks!.filter((c) => c.id === 'dataset-mismatch');
    expect(mism).toHaveLength(1);
    expect(mism[0].number).toBe(9);
    expect(mism[0].severity).toBe('warning');
    expect(mism[0].message).toMatch(/^trained on fashion-mnist \(its checkpoint metadata\) but evaluated on mnist \(--allow-dataset-mismatch\)/);
    expect(mism[0].evidence).toEqual({ trainedOn: 'fashion-mnist', dataset: 'mnist' });
    expect(res.models[0].metrics.warnings).toBe(res.checks!.filter((c) => c.severity === 'warning').length);
    // on its own dataset: no such check
    const ck2 = await loadCheckpoint(referenceModel('cnn-adv'));
    const ok = await evaluate([ck2], fashionAs('fashion-mnist'), suite, { seed: 0, probeSize: 4 });
    ck2.model.dispose();
    expect(ok.checks!.some((c) => c.id === 'dataset-mismatch')).toBe(false);
  });

  it('cnnf attack: --dataset mnist on a fashion-mnist checkpoint exits 2 with one line; --allow-dataset-mismatch runs it, names it by its folder, and warns', async () => {
    const run = join(tmp, 'cnn');
    mkdirSync(run);
    const best = join(run, 'best.safetensors');
    copyFileSync(referenceModel('cnn-adv'), best);
    const common = ['attack', '--model', best, '--dataset', 'mnist', '--method', 'fgsm', '--eps', '0.1', '--test-subset', 'first:20', '--workers', '1'];
    const refused = await cnnf(common);
    expect(refused.code).toBe(2);
    expect(oneLineError(refused)).toMatch(/^cnnf: .*best\.safetensors was trained on fashion-mnist \(its metadata\), not mnist: .* pass --allow-dataset-mismatch/);
    expect(refused.stdout).toBe('');
    const allowed = await cnnf([...common, '--allow-dataset-mismatch', '--json']);
    expect(allowed.code, allowed.stderr).toBe(0);
    const res = JSON.parse(allowed.stdout) as { models: Array<{ name: string; clean: { accuracy: number } }>; checks: Array<{ id: string; model: string }> };
    expect(res.models[0].name).toBe('cnn');
    expect(res.checks.filter((c) => c.id === 'dataset-mismatch').map((c) => c.model)).toEqual(['cnn']);
    // the measurement the refusal prevents: Fashion-MNIST weights on MNIST digits, far from their ~87%
    expect(res.models[0].clean.accuracy).toBeLessThan(0.5);
  });
});

describe('cnnf import --from pytorch given a cnnf checkpoint', () => {
  it('says it is already a cnnf checkpoint (one line, exit 2), not a shape mismatch, and writes nothing', async () => {
    const out = join(tmp, 'imported.safetensors');
    const r = await cnnf(['import', '--from', 'pytorch', referenceModel('cnn-adv'), '--arch', 'fmnist', '-o', out]);
    expect(r.code).toBe(2);
    expect(oneLineError(r)).toMatch(/^cnnf: .*reference-cnn-adv\.safetensors is already a cnnf checkpoint \(cnnf-checkpoint\/1: arch fmnist, cycles 0, dataset fashion-mnist\): nothing to import; .*cnnf export --to pytorch/);
    expect(r.stderr).not.toMatch(/expected \[/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('model names', () => {
  it('a generic file name gives the folder name; others keep the file name', () => {
    expect(defaultModelName('runs/cnn/best.safetensors')).toBe('cnn');
    expect(defaultModelName('/abs/runs/cnnf-pgd/last.safetensors')).toBe('cnnf-pgd');
    for (const g of ['final', 'latest', 'model', 'checkpoint', 'ckpt', 'weights', 'state', 'Best']) expect(defaultModelName(`runs/x/${g}.safetensors`), g).toBe('x');
    expect(defaultModelName('exported/model.json')).toBe('exported');
    expect(defaultModelName('models/reference-cnn-adv.safetensors')).toBe('reference-cnn-adv');
    expect(defaultModelName('runs/cnn/best-epoch3.safetensors')).toBe('best-epoch3');
    // two generic files of one folder stay distinct; different folders need nothing more
    expect(defaultModelNames(['runs/cnn/best.safetensors', 'runs/cnn/last.safetensors', 'runs/cnnf/best.safetensors'])).toEqual(['cnn-best', 'cnn-last', 'cnnf']);
    expect(defaultModelNames(['runs/a/best.safetensors', 'runs/b/best.safetensors'])).toEqual(['a', 'b']);
  });

  it('tables and results name runs/cnn/best.safetensors "cnn" unless --name is given', async () => {
    const dirA = join(tmp, 'names', 'cnn');
    const dirB = join(tmp, 'names', 'cnnf');
    mkdirSync(dirA, { recursive: true });
    mkdirSync(dirB, { recursive: true });
    copyFileSync(referenceModel('cnn-adv'), join(dirA, 'best.safetensors'));
    copyFileSync(referenceModel('cnnf-adv'), join(dirB, 'best.safetensors'));
    const a = await loadCheckpoint(join(dirA, 'best.safetensors'));
    const b = await loadCheckpoint(join(dirB, 'best.safetensors'));
    const data = fashionAs('fashion-mnist');
    expect(makePlan([a, b], data, suite, { seed: 0 }).models.map((m) => m.name)).toEqual(['cnn', 'cnnf']);
    expect(makePlan([a, b], data, suite, { seed: 0, names: ['baseline', 'feedback'] }).models.map((m) => m.name)).toEqual(['baseline', 'feedback']);
    a.model.dispose();
    b.model.dispose();
  });
});
