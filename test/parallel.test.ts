/** Worker threads: --workers parsing, and a failing batch rejects alone without breaking the pool. */
import { beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../src/errors.js';
import { CNNF } from '../src/models/cnnf.js';
import { AUTO_MAX_WORKERS, resolveWorkers, WorkerPool } from '../src/parallel/pool.js';
import type { BatchTask } from '../src/eval/batch.js';
import { wasm } from './helpers/tf.js';

beforeAll(wasm);

describe('resolveWorkers', () => {
  it('parses numbers and auto, and refuses workers on the native backends', () => {
    expect(resolveWorkers('3', 'wasm')).toBe(3);
    expect(resolveWorkers('1', 'tensorflow')).toBe(1);
    expect(resolveWorkers('auto', 'tensorflow-gpu')).toBe(1);
    const auto = resolveWorkers('auto', 'wasm');
    expect(auto).toBeGreaterThanOrEqual(1);
    expect(auto).toBeLessThanOrEqual(AUTO_MAX_WORKERS);
    for (const bad of ['0', '-1', '1.5', 'many', '', '1000']) expect(() => resolveWorkers(bad, 'wasm'), bad).toThrow(UsageError);
    expect(() => resolveWorkers('2', 'tensorflow')).toThrow(/wasm or cpu/);
  });
});

describe('WorkerPool', () => {
  it('runs batches like this thread does; a failing batch rejects alone and the pool keeps working', async () => {
    const model = CNNF.init({ arch: 'small', cycles: 1, ind: 1, resParam: 0.1 }, 7);
    const images = new Float32Array(3 * 784).map((_, i) => Math.sin(i));
    const task: BatchTask = { start: 0, images, labels: Int32Array.from([1, 2, 3]), cycles: 1, readout: 'last', numClasses: 10, seed: 0, jobs: [], keep: [] };
    const { evalBatch } = await import('../src/eval/batch.js');
    const here = await evalBatch(model, task);
    const pool = await WorkerPool.start(2, 'wasm');
    try {
      const bad = pool.evalBatch(model, { ...task, images: images.slice(0, 100) }); // not 3 x 28 x 28
      await expect(bad).rejects.toThrow(/worker \d: .*size|shape/i);
      const good = await pool.evalBatch(model, task);
      expect(Array.from(good.clean)).toEqual(Array.from(here.clean));
      expect(Array.from(good.cleanFirst)).toEqual(Array.from(here.cleanFirst));
    } finally {
      await pool.close();
      model.dispose();
    }
    await expect(pool.evalBatch(model, task)).rejects.toThrow(/closed/);
  });
});
