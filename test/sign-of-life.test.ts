/**
 * A sign of life from inside long attacks: every iterative attack reports its steps through the
 * context's onStep (APGD per iteration and target, FAB per iteration and target, Square per query,
 * SPSA and PGD per step, AutoAttack's stages as a prefix), and reporting changes nothing it computes.
 * Line progress also writes a heartbeat while a stage runs with no update.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { APGD, AutoAttack, FAB, PGD, SPSA, SquareAttack, type AttackContext, type AttackStep, type Victim } from '../src/attacks/index.js';
import { IMAGE_PIXELS, loadDataset } from '../src/data/index.js';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint.js';
import { createProgress } from '../src/cli/progress.js';
import { cnnf, referenceModel } from './helpers/cli.js';

let ck: LoadedCheckpoint;
let x: tf.Tensor4D;
let y: tf.Tensor1D;
const N = 4;

beforeAll(async () => {
  await useBackend('wasm', { quiet: true });
  ck = await loadCheckpoint(referenceModel('cnn-adv'));
  const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: 'stride:500' });
  x = tf.tensor4d(ds.test.images.subarray(0, N * IMAGE_PIXELS), [N, 28, 28, 1]);
  y = tf.tensor1d(ds.test.labels.subarray(0, N), 'int32');
});

afterAll(() => {
  tf.dispose([x, y]);
  ck.model.dispose();
});

function ctxWith(steps: AttackStep[], seed = 7): AttackContext {
  let s = seed;
  return { nextSeed: () => s++, onStep: (st) => steps.push(st) };
}

function pixels(t: tf.Tensor): Float32Array {
  const d = t.dataSync() as Float32Array;
  t.dispose();
  return d;
}

describe('attacks report their steps', () => {
  const v = (): Victim => ({ model: ck.model, mode: 'first', cycles: 0, readout: 'last' });

  it('PGD: one step report per iteration, and the perturbation is the one computed without reporting', async () => {
    const steps: AttackStep[] = [];
    const pgd = new PGD({ steps: 5, randomStart: true });
    const a = pixels(await pgd.perturb(v(), x, y, 0.1, ctxWith(steps)));
    const b = pixels(await pgd.perturb(v(), x, y, 0.1, { nextSeed: ((s) => () => s++)(7) }));
    expect(steps.map((s) => s.done)).toEqual([1, 2, 3, 4, 5]);
    expect(steps.every((s) => s.total === 5 && s.unit === 'steps')).toBe(true);
    expect(Array.from(a)).toEqual(Array.from(b));
  });

  it('APGD-T: per target class and iteration, with the examples still attacked', async () => {
    const steps: AttackStep[] = [];
    (await new APGD({ loss: 'dlr-targeted', iterations: 3, nTargetClasses: 2 }).perturb(v(), x, y, 0.3, ctxWith(steps))).dispose();
    expect(steps.length).toBeGreaterThan(0);
    expect(steps[0]).toMatchObject({ phase: 'target 1/2', done: 1, total: 3, unit: 'iterations' });
    expect(steps[0].active).toBeGreaterThan(0);
    expect(steps[0].active).toBeLessThanOrEqual(N);
    // a target's run reports every iteration
    expect(steps.filter((s) => s.phase === 'target 1/2').map((s) => s.done)).toEqual([1, 2, 3]);
  });

  it('FAB-T, Square and SPSA report iterations, queries and steps', async () => {
    const fab: AttackStep[] = [];
    (await new FAB({ iterations: 2, nTargetClasses: 1 }).perturb(v(), x, y, 0.3, ctxWith(fab))).dispose();
    expect(fab.map((s) => `${s.phase} ${s.done}/${s.total} ${s.unit}`)).toEqual(['target 1/1 1/2 iterations', 'target 1/1 2/2 iterations']);
    const sq: AttackStep[] = [];
    (await new SquareAttack({ queries: 6 }).perturb(v(), x, y, 0.05, ctxWith(sq))).dispose();
    // the first query is the initial stripes; then one report per query while any example is attacked
    expect(sq.length).toBeGreaterThan(0);
    expect(sq[0]).toMatchObject({ done: 2, total: 6, unit: 'queries' });
    expect(sq.map((s) => s.done)).toEqual(sq.map((_, i) => i + 2));
    const sp: AttackStep[] = [];
    (await new SPSA({ steps: 2, samples: 4, earlyStop: false }).perturb(v(), x, y, 0.05, ctxWith(sp))).dispose();
    expect(sp.map((s) => s.done)).toEqual([1, 2]);
  });

  it('AutoAttack: each stage announced with its robust count, inner steps prefixed with the stage', async () => {
    const steps: AttackStep[] = [];
    const aa = new AutoAttack({ stages: ['apgd-ce', 'square'], iterations: 2, queries: 3, paths: ['first'] });
    (await aa.perturb(v(), x, y, 0.02, ctxWith(steps))).dispose();
    const stageLines = steps.filter((s) => s.unit === 'stages');
    expect(stageLines[0]).toMatchObject({ phase: 'apgd-ce:first', done: 0, total: 2 });
    const inner = steps.filter((s) => s.unit === 'iterations');
    expect(inner.map((s) => s.done)).toEqual([1, 2]);
    expect(inner[0].phase).toMatch(/^apgd-ce:first \(stage 1\/2, \d robust\)$/);
  });
});

describe('line progress heartbeat', () => {
  it('writes a line while a stage runs with no update, at most once per heartbeat, none after stop', () => {
    vi.useFakeTimers();
    try {
      const lines: string[] = [];
      let t = 0;
      const p = createProgress({ label: 'eval', stream: { write: (s: string) => lines.push(s) }, mode: 'lines', now: () => t, intervalMs: 15_000, heartbeatMs: 60_000 });
      p.update('CNN', 1, 4, 'autoattack');
      expect(lines).toHaveLength(1);
      t = 59_000;
      vi.advanceTimersByTime(59_000);
      expect(lines).toHaveLength(1);
      t = 61_000;
      vi.advanceTimersByTime(5_000);
      expect(lines).toHaveLength(2);
      expect(lines[1]).toBe('cnnf: eval CNN: 1/4 (25%), 1 min 01 s elapsed, ETA ?, autoattack\n');
      t = 70_000;
      vi.advanceTimersByTime(10_000);
      expect(lines).toHaveLength(2);
      p.stop();
      t = 500_000;
      vi.advanceTimersByTime(500_000);
      expect(lines).toHaveLength(2);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('cnnf attack --quiet', () => {
  it('prints no progress lines, only the results', async () => {
    const args = ['attack', '--model', referenceModel('cnn-adv'), '--method', 'fgsm', '--eps', '0.1', '--test-subset', 'first:8', '--workers', '1'];
    const env = { CNNF_PROGRESS: 'lines' };
    const loud = await cnnf(args, { env });
    const quiet = await cnnf([...args, '--quiet'], { env });
    expect(loud.code).toBe(0);
    expect(quiet.code).toBe(0);
    expect(loud.stderr).toMatch(/cnnf: attack reference-cnn-adv: \d+\/\d+/);
    expect(quiet.stderr).not.toMatch(/cnnf: attack reference-cnn-adv: /);
    expect(quiet.stdout).toBe(loud.stdout);
  });
});
