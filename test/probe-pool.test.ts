/**
 * Probe checks (1, 6, 7) in a pool worker (issue 13: they must not grow the main thread's wasm heap):
 * the pooled probe gives exactly the checks of the in-process one, on the masked-gradient model and
 * on a CNN-F (both gradient paths), with a probe that is not a whole number of chunks; the chunked
 * zero-gradient count equals the count over the whole probe at once; and evaluate() gives the same
 * checks with a worker pool as without.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { lossGradient } from '../src/attacks/index.js';
import { loadDataset, type Split } from '../src/data/index.js';
import { evaluate, makePlan, parseSuite, planUnits, runUnits, type EvalData } from '../src/eval/index.js';
import { PROBE_CHUNK, probeChecks, type ProbeTask } from '../src/eval/checks.js';
import { EVAL_PROBE, runEvalProbe } from '../src/eval/worker-tasks.js';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint.js';
import { WorkerPool } from '../src/parallel/pool.js';
import { ROOT, referenceModel } from './helpers/cli.js';
import { writeScaledLogitsModel } from './helpers/masked.js';
import { wasm } from './helpers/tf.js';

let tmp: string;
let masked: LoadedCheckpoint;
let maskedF: LoadedCheckpoint;
let split: Split;
let pool: WorkerPool;

function task(ck: LoadedCheckpoint, name: string, n: number, seed: number): ProbeTask {
  return {
    name, cycles: ck.info.config.cycles, readout: ck.info.readout, numClasses: 10, seed, shape: [28, 28, 1],
    images: split.images.slice(0, n * 784), labels: Int32Array.from(split.labels.subarray(0, n)),
  };
}

beforeAll(async () => {
  await wasm();
  tmp = mkdtempSync(join(tmpdir(), 'cnnf-probe-pool-'));
  const path = join(tmp, 'masked.safetensors');
  await writeScaledLogitsModel(referenceModel('cnn-adv'), path, 1e4);
  masked = await loadCheckpoint(path);
  const pathF = join(tmp, 'masked-cnnf.safetensors');
  await writeScaledLogitsModel(join(ROOT, 'models', 'cnnf-fmnist.safetensors'), pathF, 1e4);
  maskedF = await loadCheckpoint(pathF);
  split = loadDataset({ dataset: 'fashion-mnist', testSubset: 'stride:100' }).test;
  pool = await WorkerPool.start(2, 'wasm');
});

afterAll(async () => {
  await pool?.close();
  masked?.model.dispose();
  maskedF?.model.dispose();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('probe checks in a pool worker', () => {
  it('masked model: the pooled checks are the in-process ones; the chunked zero-gradient count is the whole probe\'s', async () => {
    const n = 2 * PROBE_CHUNK + 8; // three chunks, the last one partial
    const t = task(masked, 'masked', n, 3);
    const here = await probeChecks({ ...t, model: masked.model });
    const pooled = await runEvalProbe(pool, masked.model, t);
    expect(pooled).toEqual(here);
    const zero = here.find((c) => c.id === 'zero-gradient');
    expect(zero).toBeDefined();
    // the same count computed on all n examples at once (a plain CNN: the first path only)
    const whole = tf.tidy(() => {
      const x = tf.tensor4d(t.images, [n, 28, 28, 1]);
      const g = lossGradient({ model: masked.model, mode: 'first', cycles: 0, readout: t.readout }, x, 'ce', tf.tensor1d(t.labels, 'int32'));
      return tf.sum(tf.cast(tf.equal(tf.max(tf.abs(g), [1, 2, 3]), 0), 'int32'));
    });
    const count = (await whole.data())[0];
    whole.dispose();
    expect(count).toBeGreaterThan(0);
    expect(zero!.evidence).toEqual({ mode: 'first', zeroGradientExamples: count, probeExamples: n });
    // its predictions are deterministic: no check 6
    expect(here.map((c) => c.id)).not.toContain('nondeterministic');
    expect(here.every((c) => c.model === 'masked')).toBe(true);
  }, 120_000);

  it('masked CNN-F (first and e2e paths): pooled and in-process agree on every check, the sanity attack\'s accuracy included', async () => {
    const t = task(maskedF, 'masked-cnnf', PROBE_CHUNK + 4, 11);
    expect(t.cycles).toBeGreaterThan(0);
    const here = await probeChecks({ ...t, model: maskedF.model });
    const pooled = await runEvalProbe(pool, maskedF.model, t);
    expect(pooled).toEqual(here);
    expect(here.map((c) => [c.id, c.evidence.mode])).toEqual([['zero-gradient', 'first'], ['zero-gradient', 'e2e'], ['unbounded-attack-fails', 'first']]);
    for (const c of here.slice(0, 2)) expect(c.evidence.zeroGradientExamples).toBeGreaterThan(PROBE_CHUNK / 2);
    // PGD-20 over the whole box leaves about half of the masked model's 20 probe examples correct (measured 0.5)
    expect(here[2].evidence.accuracy).toBeGreaterThan(0.3);
    expect(here[2].evidence.probeExamples).toBe(PROBE_CHUNK + 4);
  }, 300_000);
});

describe('evaluate() with and without a pool', () => {
  it('gives the same checks; with a pool the probe unit runs in a worker, also when it is the only unit left (a resumed run or a shard)', async () => {
    const suite = parseSuite({ name: 'probe-pool', attacks: [{ name: 'gaussian', method: 'gaussian', eps: [0.2] }] }, 'probe-pool');
    const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: 'first:40' });
    const data: EvalData = { name: ds.name, classNames: ds.classNames, numClasses: ds.numClasses, split: ds.test, testSubset: 'first:40' };
    // a 20-example probe (two chunks; the first test runs three): the probe is most of each run's time
    const opts = { seed: 2, batchSize: 20, names: ['masked'], probeSize: 20 };
    const alone = await evaluate([masked], data, suite, opts);
    const spy = vi.spyOn(pool, 'run');
    try {
      const pooled = await evaluate([masked], data, suite, { ...opts, pool });
      const checks = alone.checks ?? [];
      expect(checks.map((c) => c.id)).toContain('zero-gradient');
      expect(pooled.checks).toEqual(checks);
      expect(pooled.models[0].metrics).toEqual(alone.models[0].metrics);
      // 2 batches x (clean + gaussian) + the probe
      expect(spy.mock.calls.map((c) => c[0].name).sort()).toEqual(['evalBatch', 'evalBatch', 'evalBatch', 'evalBatch', 'evalProbe']);
      spy.mockClear();
      const plan = makePlan([masked], data, suite, opts);
      const probe = planUnits(plan).filter((u) => u.kind === 'probe');
      expect(probe.length).toBe(1);
      const rec = (await runUnits(plan, probe, { models: [masked], split: ds.test, pool })).get(probe[0].id);
      expect(spy.mock.calls.map((c) => c[0])).toEqual([EVAL_PROBE]);
      expect(rec).toEqual({ id: probe[0].id, kind: 'probe', checks: checks.filter((c) => [1, 6, 7].includes(c.number)) });
    } finally {
      spy.mockRestore();
    }
  }, 120_000);
});
