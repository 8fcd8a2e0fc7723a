/**
 * Worker threads: --workers parsing, a failing batch rejects alone without breaking the pool, and the
 * layering (parallel/ is generic: it imports no upper layer; train/ does not import report/ or cli/).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../src/errors.js';
import { CNNF } from '../src/models/cnnf.js';
import { AUTO_MAX_WORKERS, maxWorkers, resolveWorkers, WORKER_MEMORY, WorkerPool } from '../src/parallel/pool.js';
import { availableParallelism, totalmem } from 'node:os';
import type { BatchTask } from '../src/eval/batch.js';
import { runEvalBatch } from '../src/eval/worker-tasks.js';
import { PARAM_COUNT, USAGE_FAIL } from './helpers/pool-tasks.js';
import { wasm } from './helpers/tf.js';

beforeAll(wasm);

describe('resolveWorkers', () => {
  it('parses numbers and auto, and refuses workers on the native backends', () => {
    expect(resolveWorkers('3', 'wasm')).toBe(Math.min(3, maxWorkers()));
    expect(resolveWorkers('1', 'tensorflow')).toBe(1);
    expect(resolveWorkers('auto', 'tensorflow-gpu')).toBe(1);
    const auto = resolveWorkers('auto', 'wasm');
    expect(auto).toBeGreaterThanOrEqual(1);
    expect(auto).toBeLessThanOrEqual(AUTO_MAX_WORKERS);
    for (const bad of ['0', '-1', '1.5', 'many', '', '1000']) expect(() => resolveWorkers(bad, 'wasm'), bad).toThrow(UsageError);
    expect(() => resolveWorkers('2', 'tensorflow')).toThrow(/wasm or cpu/);
    // webgpu: one process on one device, never wasm workers
    expect(resolveWorkers('auto', 'webgpu')).toBe(1);
    expect(resolveWorkers('1', 'webgpu')).toBe(1);
    expect(() => resolveWorkers('2', 'webgpu')).toThrow('--workers 2 needs the wasm or cpu backend (webgpu computes on its device from one process); use --workers 1');
  });

  it('bounds an explicit count by the cores and the memory, and says so', () => {
    const notes: string[] = [];
    const n = resolveWorkers('256', 'wasm', (m) => notes.push(m));
    expect(n).toBe(maxWorkers());
    expect(n).toBeLessThanOrEqual(2 * availableParallelism());
    expect(n).toBeLessThanOrEqual(Math.floor(totalmem() / WORKER_MEMORY));
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(new RegExp(`^--workers 256 reduced to ${n} \\(at most 2 per core on \\d+ cores`));
    notes.length = 0;
    expect(resolveWorkers('1', 'wasm', (m) => notes.push(m))).toBe(1);
    expect(notes).toEqual([]);
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
      const bad = runEvalBatch(pool, model, { ...task, images: images.slice(0, 100) }); // not 3 x 28 x 28
      await expect(bad).rejects.toThrow(/worker \d: .*size|shape/i);
      const good = await runEvalBatch(pool, model, task);
      expect(Array.from(good.clean)).toEqual(Array.from(here.clean));
      expect(Array.from(good.cleanFirst)).toEqual(Array.from(here.cleanFirst));
    } finally {
      await pool.close();
      model.dispose();
    }
    await expect(runEvalBatch(pool, model, task)).rejects.toThrow(/closed/);
  });

  it('runs tasks of any module: progress, and a UsageError keeps its class and exit code across the thread', async () => {
    const model = CNNF.init({ arch: 'small', cycles: 1, ind: 1, resParam: 0.1 }, 7);
    const params = [...model.params.values()].reduce((a, v) => a + v.size, 0);
    const pool = await WorkerPool.start(2, 'wasm', { tasks: [PARAM_COUNT] });
    try {
      const progress: number[] = [];
      expect(await pool.run(PARAM_COUNT, model, { add: 5 }, (p) => progress.push(p))).toBe(params + 5);
      expect(progress).toEqual([1, 2]);
      const err = await pool.run(USAGE_FAIL, model, { message: 'bad input here', exitCode: 3 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UsageError);
      expect((err as UsageError).message).toBe('bad input here');
      expect((err as UsageError).exitCode).toBe(3);
      // the pool still works after a failed task
      expect(await pool.run(PARAM_COUNT, model, { add: 0 })).toBe(params);
    } finally {
      await pool.close();
      model.dispose();
    }
  });
});

const SRC = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');

/** Every module specifier a source file imports (static, side-effect, re-export and dynamic imports). */
function importsOf(source: string): string[] {
  const specs: string[] = [];
  for (const re of [/\bfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*['"]([^'"]+)['"]/g, /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g]) {
    for (const m of source.matchAll(re)) specs.push(m[1]!);
  }
  return specs;
}

/** `dir`'s source files that import one of the `forbidden` folders (as `file: specifier`). */
function forbiddenImports(dir: string, forbidden: string[]): string[] {
  const bad: string[] = [];
  const files = readdirSync(dir).filter((f) => /\.(ts|mts|mjs|js)$/.test(f));
  expect(files.length).toBeGreaterThan(0);
  for (const f of files) {
    for (const spec of importsOf(readFileSync(join(dir, f), 'utf8'))) {
      if (forbidden.some((d) => spec === `../${d}` || spec.startsWith(`../${d}/`))) bad.push(`${f}: ${spec}`);
    }
  }
  return bad;
}

describe('layering', () => {
  it('finds imports of every form', () => {
    const src = "import a from '../eval/a.js';\nimport type { B } from \"../train/b.js\";\nexport * from '../report/c.js';\nimport '../cli/d.js';\nawait import('../eval/e.ts');";
    expect(importsOf(src)).toEqual(['../eval/a.js', '../train/b.js', '../report/c.js', '../cli/d.js', '../eval/e.ts']);
  });

  it('src/parallel imports no upper layer (eval, train, report, gate, cli)', () => {
    expect(forbiddenImports(join(SRC, 'parallel'), ['eval', 'train', 'report', 'gate', 'cli'])).toEqual([]);
  });

  it('src/train imports neither report nor cli', () => {
    expect(forbiddenImports(join(SRC, 'train'), ['report', 'gate', 'cli'])).toEqual([]);
  });
});
