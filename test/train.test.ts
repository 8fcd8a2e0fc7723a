import { describe, it, expect, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/backend/index.js';
import { main } from '../src/cli/main.js';
import { loadDataset, type Dataset } from '../src/data/index.js';
import { UsageError } from '../src/errors.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { CNNF } from '../src/models/cnnf.js';
import { parseTrainingLog, writeLossPng } from '../src/report/trainlog.js';
import {
  clipGradNorm,
  DEFAULT_MICRO_BATCH,
  learningRate,
  parsePerturbation,
  perturbationForms,
  perturbationSyntax,
  preflightTraining,
  attackPerturb,
  SGD,
  TRAIN_DEFAULTS,
  trainModel,
  type TrainOptions,
} from '../src/train/index.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'bin', 'cnnf');
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `cnnf-train-${name}-`));

let ds: Dataset;
beforeAll(async () => {
  await useBackend('wasm', { quiet: true });
  ds = loadDataset({ dataset: 'fashion-mnist', trainSize: 256, testSize: 100 });
});

function opts(change: Partial<TrainOptions> = {}): TrainOptions {
  return {
    model: 'cnn', arch: 'small', fc: [32], epochs: 1, batchSize: 32, lr: 0.05, momentum: 0.9, weightDecay: 5e-4,
    schedule: 'poly', power: 0.9, clip: 0.5, cleanWeight: 0.1, reconWeight: 0.1, seed: 7, perturb: null,
    dataset: { dataset: 'fashion-mnist', trainSize: 256, testSize: 100 },
    ...change,
  };
}

describe('SGD (PyTorch semantics)', () => {
  it('matches hand-computed momentum, weight decay and gradient clipping', () => {
    const w1 = tf.variable(tf.tensor1d([1, -2]), true);
    const w2 = tf.variable(tf.tensor1d([0.5]), true);
    const sgd = new SGD(new Map([['a', w1], ['b', w2]]), { momentum: 0.9, weightDecay: 0.1, clipNorm: 1 });
    // float64 reference
    let a = [1, -2];
    let b = [0.5];
    let ba: number[] = [];
    let bb: number[] = [];
    const gradsSeq = [[[3, 4], [0]], [[0.1, 0.2], [0.2]], [[-6, 0], [8]]];
    const lrs = [0.1, 0.05, 0.02];
    gradsSeq.forEach(([ga, gb], k) => {
      const norm = Math.hypot(...ga, ...gb);
      const coef = Math.min(1, 1 / (norm + 1e-6));
      const da = ga.map((g, i) => g * coef + 0.1 * a[i]);
      const db = gb.map((g, i) => g * coef + 0.1 * b[i]);
      ba = k === 0 ? da : ba.map((v, i) => 0.9 * v + da[i]);
      bb = k === 0 ? db : bb.map((v, i) => 0.9 * v + db[i]);
      a = a.map((v, i) => v - lrs[k] * ba[i]);
      b = b.map((v, i) => v - lrs[k] * bb[i]);
      const grads = new Map([['a', tf.tensor1d(ga)], ['b', tf.tensor1d(gb)]]);
      const { gradNorm } = sgd.step(grads, lrs[k]);
      expect(gradNorm.dataSync()[0]).toBeCloseTo(norm, 5);
      gradNorm.dispose();
      for (const g of grads.values()) g.dispose();
      const got = [...w1.dataSync(), ...w2.dataSync()];
      [...a, ...b].forEach((v, i) => expect(got[i]).toBeCloseTo(v, 6));
    });
    // step 1 by hand: norm 5, coef 0.2/(1+2e-7)... a = [1,-2] - 0.1*([0.6,0.8] + [0.1,-0.2]) = [0.93, -2.06]
    expect(sgd.stepCount).toBe(3);
    sgd.dispose();
    w1.dispose();
    w2.dispose();
  });

  it('restores its state exactly', async () => {
    const w = tf.variable(tf.tensor1d([1, 2, 3]), true);
    const sgd = new SGD(new Map([['w', w]]), { momentum: 0.9, weightDecay: 5e-4 });
    const g = tf.tensor1d([0.3, -0.1, 0.7]);
    sgd.step(new Map([['w', g]]), 0.1).gradNorm.dispose();
    const st = await sgd.getState();
    const w2 = tf.variable(tf.tensor1d(w.dataSync()), true);
    const sgd2 = new SGD(new Map([['w', w2]]), { momentum: 0.9, weightDecay: 5e-4 });
    sgd2.setState(st);
    sgd.step(new Map([['w', g]]), 0.05).gradNorm.dispose();
    sgd2.step(new Map([['w', g]]), 0.05).gradNorm.dispose();
    expect([...w2.dataSync()]).toEqual([...w.dataSync()]);
    for (const t of [w, w2, g]) t.dispose();
    sgd.dispose();
    sgd2.dispose();
  });

  it('clips like clip_grad_norm_ and leaves small gradients alone', () => {
    tf.tidy(() => {
      const { grads, norm } = clipGradNorm([tf.tensor1d([3]), tf.tensor1d([4])], 0.5);
      expect(norm.dataSync()[0]).toBeCloseTo(5, 6);
      expect(grads[0].dataSync()[0]).toBeCloseTo((3 * 0.5) / (5 + 1e-6), 6);
      const small = clipGradNorm([tf.tensor1d([0.1, 0.2])], 0.5);
      expect([...small.grads[0].dataSync()]).toEqual([...tf.tensor1d([0.1, 0.2]).dataSync()]);
    });
  });

  it('poly and constant schedules', () => {
    expect(learningRate({ name: 'poly', base: 0.05, power: 0.9, total: 100 }, 0)).toBe(0.05);
    expect(learningRate({ name: 'poly', base: 0.05, power: 0.9, total: 100 }, 50)).toBeCloseTo(0.05 * 0.5 ** 0.9, 12);
    expect(learningRate({ name: 'constant', base: 0.05, power: 0.9, total: 100 }, 99)).toBe(0.05);
  });
});

describe('perturbation specs', () => {
  it('parses and rejects', () => {
    expect(parsePerturbation('gaussian:0.3')).toEqual({ kind: 'gaussian', sigma: 0.3 });
    expect(parsePerturbation('pgd:0.2,0.071,7')).toEqual({ kind: 'pgd', eps: 0.2, step: 0.071, iters: 7 });
    expect(() => parsePerturbation('pgd:0.2,0.07')).toThrow(UsageError);
    expect(() => parsePerturbation('fgsm:-1')).toThrow(UsageError);
    expect(() => parsePerturbation('noise')).toThrow(UsageError);
    expect(parsePerturbation('fgsm:0.1')).toEqual({ kind: 'fgsm', eps: 0.1 });
    // the forms and PGD's STEP / ITERS bounds come from the attack registry
    expect(perturbationSyntax()).toBe('gaussian:SIGMA | fgsm:EPS | pgd:EPS,STEP,ITERS');
    expect(perturbationForms().map((f) => f.label)).toEqual(['Gaussian noise', 'FGSM', 'PGD']);
    expect(() => parsePerturbation('pgd:0.2,0,7')).toThrow('--perturb: STEP (pgd stepSize) must be > 0, got 0');
    expect(() => parsePerturbation('pgd:0.2,0.1,20000')).toThrow('--perturb: ITERS (pgd steps) must be <= 10000, got 20000');
    expect(() => parsePerturbation('pgd:0.2,0.1,1.5')).toThrow('--perturb: ITERS (pgd steps) must be an integer, got 1.5');
    expect(() => parsePerturbation('apgd:0.2')).toThrow('--perturb must be gaussian:SIGMA | fgsm:EPS | pgd:EPS,STEP,ITERS, got "apgd:0.2"');
  });
});

const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;

describe('trainModel', () => {
  for (const model of ['cnn', 'cnnf'] as const) {
    it(`${model}: loss decreases and the tensor count does not grow`, async () => {
      const out = tmp(model);
      const losses: number[] = [];
      const counts: number[] = [];
      const before = tf.memory().numTensors;
      const res = await trainModel(opts({ model, epochs: 2 }), { out, force: true }, {
        dataset: ds,
        // the report layer draws the loss curve (the CLI passes this hook); cnnf runs without it
        ...(model === 'cnn' ? { onOutputs: writeLossPng } : {}),
        onBatch: (b) => {
          losses.push(b.loss);
          counts.push(tf.memory().numTensors);
        },
      });
      expect(losses.length).toBe(16);
      expect(mean(losses.slice(-4))).toBeLessThan(mean(losses.slice(0, 4)));
      // momentum buffers appear at step 1; nothing grows afterwards
      expect(new Set(counts.slice(1)).size).toBe(1);
      res.model.dispose();
      expect(tf.memory().numTensors).toBe(before);
      // outputs
      for (const f of ['last.safetensors', 'best.safetensors', 'state.safetensors', 'state.json', 'train-log.csv', 'summary.json']) {
        expect(existsSync(join(out, f)), f).toBe(true);
      }
      if (model === 'cnn') expect(readFileSync(join(out, 'loss.png')).subarray(1, 4).toString('latin1')).toBe('PNG');
      else expect(existsSync(join(out, 'loss.png'))).toBe(false);
      const log = readFileSync(join(out, 'train-log.csv'), 'utf8');
      expect(log.split('\n')[0]).toBe('epoch,batch,step,loss,accuracy,lr');
      expect(parseTrainingLog(log, 'log').rows.length).toBe(16);
      const ck = await loadCheckpoint(join(out, 'last.safetensors'));
      expect(ck.info.config.cycles).toBe(model === 'cnn' ? 0 : 1);
      expect(ck.info.config.ind).toBe(model === 'cnn' ? 0 : 1);
      ck.model.dispose();
      const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
      expect(summary.epochs.length).toBe(2);
      expect(summary.perturb).toBe(model === 'cnn' ? 'none' : 'gaussian:0.3');
      expect(summary.perturbDefaulted).toBe(model === 'cnnf');
      expect(summary.imagesPerSec).toBeGreaterThan(0);
      // no temp files left behind
      expect(readdirSync(out).filter((f) => f.includes('.tmp-'))).toEqual([]);
    });
  }

  it('resume reproduces an uninterrupted run bit for bit', async () => {
    const small = loadDataset({ dataset: 'fashion-mnist', trainSize: 96, testSize: 50 });
    const o = opts({ model: 'cnnf', epochs: 2, perturb: { kind: 'gaussian', sigma: 0.2 }, dataset: { dataset: 'fashion-mnist', trainSize: 96, testSize: 50 } });
    const a = tmp('straight');
    const b = tmp('resumed');
    (await trainModel(o, { out: a, force: true }, { dataset: small })).model.dispose();
    const first = await trainModel(o, { out: b, force: true, stopAfterEpochs: 1 }, { dataset: small });
    first.model.dispose();
    expect(first.finished).toBe(false);
    const bState = JSON.parse(readFileSync(join(b, 'state.json'), 'utf8'));
    expect(bState.completedEpochs).toBe(1);
    (await trainModel(o, { out: b, resume: true }, { dataset: small })).model.dispose();
    const sa = readSafetensors(join(a, 'state.safetensors'));
    const sb = readSafetensors(join(b, 'state.safetensors'));
    expect([...sb.tensors.keys()]).toEqual([...sa.tensors.keys()]);
    expect([...sa.tensors.keys()].some((k) => k.startsWith('momentum/'))).toBe(true);
    for (const [k, t] of sa.tensors) expect(Buffer.from(sb.tensors.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(true);
    expect(readFileSync(join(b, 'last.safetensors')).subarray(-1000)).toEqual(readFileSync(join(a, 'last.safetensors')).subarray(-1000));
    const la = parseTrainingLog(readFileSync(join(a, 'train-log.csv'), 'utf8'), 'a').rows;
    const lb = parseTrainingLog(readFileSync(join(b, 'train-log.csv'), 'utf8'), 'b').rows;
    expect(lb).toEqual(la);
    // a finished run cannot be resumed without more epochs
    expect(() => preflightTraining(o, { out: b, resume: true }, small)).toThrow(/already completed 2 of 2/);
    // nor with another --epochs unless extend (the poly schedule is planned over the epochs)
    expect(() => preflightTraining({ ...o, epochs: 3 }, { out: b, resume: true }, small)).toThrow(/--epochs 3 differs from the saved run's 2 .*--extend/);
    expect(() => preflightTraining({ ...o, epochs: 3 }, { out: b, resume: true, extend: true }, small)).not.toThrow();
  });

  it('a state of the previous version (split per worker, microBatchParts) resumes with that split, and says so', async () => {
    const small = loadDataset({ dataset: 'fashion-mnist', trainSize: 64, testSize: 20 });
    const o = opts({ model: 'cnnf', epochs: 2, dataset: { dataset: 'fashion-mnist', trainSize: 64, testSize: 20 } });
    // the old default with 2 workers: batch 32 in 2 parts of 16
    const a = tmp('legacy-straight');
    (await trainModel({ ...o, microBatch: 16 }, { out: a, force: true }, { dataset: small })).model.dispose();
    const b = tmp('legacy-resumed');
    (await trainModel({ ...o, microBatch: 16 }, { out: b, force: true, stopAfterEpochs: 1 }, { dataset: small })).model.dispose();
    // rewrite b's state as the previous version wrote it: no --micro-batch, microBatchParts 2
    const file = readSafetensors(join(b, 'state.safetensors'));
    const st = JSON.parse(file.metadata.state);
    expect(st.microBatchSize).toBe(16);
    delete st.options.microBatch;
    delete st.microBatchSize;
    st.microBatchParts = 2;
    writeSafetensors(join(b, 'state.safetensors'), new Map([...file.tensors].map(([k, t]) => [k, { shape: t.shape, data: t.data }])), { ...file.metadata, state: JSON.stringify(st) });
    const notices: string[] = [];
    const r = await trainModel(o, { out: b, resume: true }, { dataset: small, onNotice: (m) => notices.push(m) });
    r.model.dispose();
    expect(notices.some((m) => /split each batch into 2 micro-batch/.test(m)), notices.join('\n')).toBe(true);
    expect(r.summary.microBatchParts).toBe(2);
    const sa = readSafetensors(join(a, 'state.safetensors'));
    const sb = readSafetensors(join(b, 'state.safetensors'));
    for (const [k, t] of sa.tensors) expect(Buffer.from(sb.tensors.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(true);
    // and the default split would have ended elsewhere
    const c = tmp('default-split');
    (await trainModel(o, { out: c, force: true }, { dataset: small })).model.dispose();
    const sc = readSafetensors(join(c, 'state.safetensors'));
    expect([...sa.tensors].some(([k, t]) => !Buffer.from(sc.tensors.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer)))).toBe(true);
  });

  it('micro-batches accumulate to the same update as the whole batch', async () => {
    const small = loadDataset({ dataset: 'fashion-mnist', trainSize: 64, testSize: 20 });
    const o = opts({ model: 'cnnf', microBatch: 32, dataset: { dataset: 'fashion-mnist', trainSize: 64, testSize: 20 } });
    const whole = await trainModel(o, { out: tmp('whole'), force: true }, { dataset: small });
    const micro = await trainModel({ ...o, microBatch: 12 }, { out: tmp('micro'), force: true }, { dataset: small });
    const a = await whole.model.toArrays();
    const b = await micro.model.toArrays();
    for (const [k, t] of a) {
      const u = b.get(k)!.data;
      let maxDiff = 0;
      t.data.forEach((v, i) => { maxDiff = Math.max(maxDiff, Math.abs(v - u[i])); });
      expect(maxDiff, k).toBeLessThan(1e-4);
    }
    expect(micro.history[0].trainLoss).toBeCloseTo(whole.history[0].trainLoss, 4);
    expect(micro.history[0].trainAccuracy).toBe(whole.history[0].trainAccuracy);
    whole.model.dispose();
    micro.model.dispose();
  });

  it('worker threads give bit-identical weights to the in-process run by default (a fixed micro-batch, not one per worker)', async () => {
    const small = loadDataset({ dataset: 'fashion-mnist', trainSize: 64, testSize: 20 });
    // no --micro-batch: both runs use DEFAULT_MICRO_BATCH (earlier versions split by the worker count)
    const o = opts({ model: 'cnnf', dataset: { dataset: 'fashion-mnist', trainSize: 64, testSize: 20 } });
    const here = await trainModel(o, { out: tmp('here'), force: true }, { dataset: small });
    const before = tf.memory().numTensors;
    const par = await trainModel(o, { out: tmp('workers'), force: true, workers: 2 }, { dataset: small });
    expect(tf.memory().numTensors - before).toBe(here.model.variables().length); // only the returned model's weights
    const a = await here.model.toArrays();
    const b = await par.model.toArrays();
    for (const [k, t] of a) expect(Buffer.from(b.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(true);
    expect(par.history[0].trainLoss).toBe(here.history[0].trainLoss);
    expect(par.history[0].testAccuracy).toBe(here.history[0].testAccuracy);
    expect(par.summary.workers).toBe(2);
    expect(DEFAULT_MICRO_BATCH).toBe(8);
    expect(here.summary.microBatch).toBe(DEFAULT_MICRO_BATCH);
    expect(par.summary.microBatch).toBe(DEFAULT_MICRO_BATCH);
    here.model.dispose();
    par.model.dispose();
  });

  it('adversarial training (pgd) computes its attack in the workers: --workers 1 and 2 give bit-identical weights', async () => {
    const small = loadDataset({ dataset: 'fashion-mnist', trainSize: 48, testSize: 20 });
    const o = opts({ model: 'cnnf', microBatch: 8, perturb: { kind: 'pgd', eps: 0.2, step: 0.1, iters: 2 }, dataset: { dataset: 'fashion-mnist', trainSize: 48, testSize: 20 } });
    const one = await trainModel(o, { out: tmp('pgd1'), force: true, workers: 1 }, { dataset: small });
    const two = await trainModel(o, { out: tmp('pgd2'), force: true, workers: 2 }, { dataset: small });
    const a = await one.model.toArrays();
    const b = await two.model.toArrays();
    for (const [k, t] of a) expect(Buffer.from(b.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(true);
    expect(two.history[0].trainLoss).toBe(one.history[0].trainLoss);
    // the attack did something: the loss differs from training on clean pairs
    const clean = await trainModel({ ...o, perturb: { kind: 'fgsm', eps: 0 } }, { out: tmp('pgd0'), force: true }, { dataset: small });
    expect(clean.history[0].trainLoss).not.toBe(one.history[0].trainLoss);
    for (const r of [one, two, clean]) r.model.dispose();
  });

  it('a training attack perturbs each example alike in any micro-batch (per-example random starts)', async () => {
    const model = CNNF.init({ arch: 'small', cycles: 1, ind: 1, resParam: 0.1, fc: [16] }, 3);
    const x = tf.tensor4d(ds.train.images.slice(0, 6 * 784), [6, 28, 28, 1]);
    const y = tf.tensor1d(ds.train.labels.slice(0, 6), 'int32');
    const indices = Int32Array.from([40, 3, 17, 8, 0, 25]);
    const draw = { perturb: { kind: 'pgd' as const, eps: 0.3, step: 0.1, iters: 3 }, seed: 9, epoch: 2, indices };
    const whole = await attackPerturb(model, x, y, draw);
    const parts: tf.Tensor4D[] = [];
    for (const c of [0, 3]) {
      const [xc, yc] = [tf.slice(x, c, 3), tf.slice(y, c, 3)];
      parts.push(await attackPerturb(model, xc, yc, { ...draw, indices: indices.slice(c, c + 3) }));
      tf.dispose([xc, yc]);
    }
    const halves = tf.concat(parts, 0);
    tf.dispose(parts);
    const a = whole.dataSync();
    const b = halves.dataSync();
    expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength))).toBe(true);
    // within the eps-ball, not the clean images, and another epoch draws other starts
    const xs = x.dataSync();
    let maxD = 0;
    for (let i = 0; i < a.length; i++) maxD = Math.max(maxD, Math.abs(a[i] - xs[i]));
    expect(maxD).toBeGreaterThan(0.05);
    expect(maxD).toBeLessThanOrEqual(0.3 + 1e-6);
    const other = await attackPerturb(model, x, y, { ...draw, epoch: 3 });
    expect(Array.from(other.dataSync())).not.toEqual(Array.from(a));
    tf.dispose([x, y, whole, halves, other]);
    model.dispose();
  });

  it('refuses to resume on a dataset with another class count, and a non-empty OUT without --force', async () => {
    const small = loadDataset({ dataset: 'fashion-mnist', trainSize: 32, testSize: 20 });
    const o = opts({ epochs: 2, dataset: { dataset: 'fashion-mnist', trainSize: 32, testSize: 20 } });
    const out = tmp('classes');
    (await trainModel(o, { out, force: true, stopAfterEpochs: 1 }, { dataset: small })).model.dispose();
    const five: Dataset = { ...small, name: 'five', numClasses: 5, classNames: ['a', 'b', 'c', 'd', 'e'] };
    expect(() => preflightTraining(o, { out, resume: true }, five)).toThrow(/trained on 10 classes .* has 5/);
    expect(() => preflightTraining(o, { out }, small)).toThrow(/not empty/);
    expect(() => preflightTraining({ ...o, lr: 0.1 }, { out, resume: true }, small)).toThrow(/lr differs/);
  });
});

describe('cnnf train CLI', () => {
  const run = (...args: string[]) =>
    new Promise<{ status: number; stdout: string; stderr: string }>((res) => {
      execFile(process.execPath, [BIN, 'train', ...args], { cwd: ROOT, env: { ...process.env, CNNF_BACKEND: 'wasm' } }, (err, stdout, stderr) => {
        res({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      });
    });
  /** In-process run of the CLI (fast): exit code and everything written to stderr. */
  async function inProcess(...args: string[]): Promise<{ status: number; stderr: string }> {
    let stderr = '';
    const orig = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array) => {
      stderr += String(chunk);
      return true;
    }) as typeof process.stderr.write;
    try {
      const status = await main(['node', 'cnnf', 'train', ...args]);
      return { status, stderr };
    } finally {
      process.stderr.write = orig;
    }
  }

  it('bad flags exit 2 with one stderr line and write nothing', async () => {
    const out = join(tmp('bad'), 'out');
    const cases: string[][] = [
      ['--model', 'cnn'],
      ['--model', 'rnn', '--out', out],
      ['--model', 'cnn', '--out', out, '--epochs', '-1'],
      ['--model', 'cnn', '--out', out, '--epochs', 'two'],
      ['--model', 'cnn', '--out', out, '--lr', '0'],
      ['--model', 'cnn', '--out', out, '--batch-size', '1.5'],
      ['--model', 'cnn', '--out', out, '--momentum', '1.2'],
      ['--model', 'cnn', '--out', out, '--clip', '-3'],
      ['--model', 'cnn', '--out', out, '--perturb', 'pgd:0.2'],
      ['--model', 'cnn', '--out', out, '--cycles', '2'],
      ['--model', 'cnnf', '--out', out, '--res-param', '1.5'],
      ['--model', 'cnnf', '--out', out, '--arch', 'small', '--ind', '2'],
      ['--model', 'cnnf', '--out', out, '--fc', '10,abc'],
      ['--model', 'cnn', '--out', out, '--train-size', '-5'],
      ['--model', 'cnn', '--out', out, '--seed', 'x'],
      ['--model', 'cnn', '--out', out, '--workers', '0'],
      ['--resume', join(out, 'nothing')],
    ];
    for (const args of cases) {
      const r = await inProcess(...args);
      expect(r.status, args.join(' ')).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines.length, `${args.join(' ')}: ${r.stderr}`).toBe(1);
      expect(lines[0]).toMatch(/^cnnf: /);
    }
    // the real binary: exit code 2, one line, no stack trace
    for (const args of [['--model', 'cnn', '--out', out, '--epochs', '-1'], ['--model', 'cnnf', '--out', out, '--perturb', 'fgsm:x']]) {
      const r = await run(...args);
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n').length, r.stderr).toBe(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(existsSync(out)).toBe(false);
  });

  it('trains, prints JSON lines, resumes, and refuses a non-empty --out', async () => {
    const out = join(tmp('cli'), 'run');
    const common = ['--arch', 'small', '--fc', '16', '--train-size', '64', '--test-size', '40', '--batch-size', '32'];
    const r = await run('--model', 'cnn', ...common, '--epochs', '2', '--stop-after-epochs', '1', '--out', out, '--json');
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines[0].type).toBe('epoch');
    expect(lines[0].epoch).toBe(1);
    expect(lines[lines.length - 1].type).toBe('summary');
    expect(r.stderr).toMatch(/epoch 1\/2: loss/);
    const again = await inProcess('--model', 'cnn', ...common, '--out', out);
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(/not empty/);
    const resumed = await run('--resume', out, '--json');
    expect(resumed.status, resumed.stderr).toBe(0);
    const st = JSON.parse(readFileSync(join(out, 'state.json'), 'utf8'));
    expect(st.completedEpochs).toBe(2);
    expect(st.options.dataset.trainSize).toBe(64);
    expect(TRAIN_DEFAULTS.lr).toBe(st.options.lr);
  });

  it('resume refuses a changed --epochs (exit 2, one line) unless --extend; extended, the lr follows the new plan from the current step, recorded', async () => {
    const out = join(tmp('extend'), 'run');
    const common = ['--arch', 'small', '--fc', '16', '--train-size', '64', '--test-size', '20', '--batch-size', '32', '--lr', '0.04'];
    expect((await run('--model', 'cnn', ...common, '--epochs', '1', '--out', out)).status).toBe(0);
    const before = readFileSync(join(out, 'state.safetensors'));
    // the refusals through the CLI's main in this process (the same code path without ~2 s of launcher start-up)
    const refused = await inProcess('--resume', out, '--epochs', '2');
    expect(refused.status).toBe(2);
    expect(refused.stderr.trim().split('\n'), refused.stderr).toHaveLength(1);
    expect(refused.stderr).toMatch(/^cnnf: cannot resume: --epochs 2 differs from the saved run's 1 .*add --extend/);
    expect(readFileSync(join(out, 'state.safetensors')).equals(before)).toBe(true);
    const noResume = await inProcess('--model', 'cnn', ...common, '--out', join(out, '..', 'other'), '--extend');
    expect(noResume.status).toBe(2);
    expect(noResume.stderr).toMatch(/--extend .*needs --resume/);

    const extended = await run('--resume', out, '--epochs', '2', '--extend');
    expect(extended.status, extended.stderr).toBe(0);
    expect(extended.stderr).toMatch(/--extend: 1 -> 2 epochs after epoch 1; .* 2-epoch plan \(poly 0\.0214 at the next step/);
    const st = JSON.parse(readFileSync(join(out, 'state.json'), 'utf8'));
    expect(st.completedEpochs).toBe(2);
    expect(st.options.epochs).toBe(2);
    expect(st.extensions).toEqual([{ atEpoch: 1, atStep: 2, fromEpochs: 1, toEpochs: 2 }]);
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')).extensions).toEqual(st.extensions);
    // epoch 1 kept its 1-epoch plan (2 steps), epoch 2 follows a 2-epoch plan (4 steps) from step 2: 0.04 * (1 - 2/4)^0.9 = 0.0214
    const rows = parseTrainingLog(readFileSync(join(out, 'train-log.csv'), 'utf8'), 'log').rows;
    expect(rows.map((r) => [r.epoch, r.step])).toEqual([[1, 1], [1, 2], [2, 3], [2, 4]]);
    const plan = (epochs: number) => ({ name: 'poly' as const, base: 0.04, power: 0.9, total: epochs * 2 });
    rows.forEach((r) => expect(r.lr, `step ${r.step}`).toBeCloseTo(learningRate(plan(r.epoch === 1 ? 1 : 2), r.step - 1), 12));
    expect(rows[2].lr).toBeCloseTo(0.04 * 0.5 ** 0.9, 12);
    // resuming the extended run again with its (new) epochs is an ordinary resume: nothing left to train
    const done = await inProcess('--resume', out);
    expect(done.status).toBe(2);
    expect(done.stderr).toMatch(/already completed 2 of 2 epochs \(add --extend --epochs N/);
  });
});
