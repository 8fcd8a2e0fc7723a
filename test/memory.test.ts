/**
 * Batch size from a memory budget (issue 21 item 6): the chooser's arithmetic on the measured cost
 * table (src/eval/memory.ts), and the CLI: the chosen size is recorded in provenance, a resumed
 * --state run keeps the size it started with whatever the budget now says, and shards of one run
 * with different sizes are refused at merge naming both.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  activationsPerImage, chooseBatchSize, DEFAULT_MEMORY_BUDGET, estimatedPeak, MB, MEASURED, parseMemorySize, parseSuite, perImageMB, SIZED_FOR_WORKERS,
  type EvalResults, type MemoryModel,
} from '../src/eval/index.js';
import { getArch } from '../src/models/arch.js';
import { UsageError } from '../src/errors.js';
import { cnnf as cli, oneLineError, ROOT } from './helpers/cli.js';

const CNNF: MemoryModel = { arch: 'fmnist', cycles: 1, pixels: 784, foreign: false };
const CNN: MemoryModel = { arch: 'fmnist', cycles: 0, pixels: 784, foreign: false };
const paper = parseSuite({ name: 'p', attacks: [{ name: 'pgd', method: 'pgd', eps: [0.1], modes: ['first', 'e2e'] }, { name: 'g', method: 'gaussian', eps: [0.1] }] }, 't');
const noise = parseSuite({ name: 'n', attacks: [{ name: 'g', method: 'gaussian', eps: [0.1] }] }, 't');
const firstOnly = parseSuite({ name: 'f', attacks: [{ name: 'pgd', method: 'pgd', eps: [0.1], modes: ['first'] }] }, 't');

describe('the cost table', () => {
  it('scales with the architecture and the gradient path', () => {
    // fmnist: conv 16, 32, 32 at 28x28, a pool to 14x14, conv 64, a pool to 7x7, fc 1000 + 128
    expect(activationsPerImage(getArch('fmnist'))).toBe(28 * 28 * (16 + 32 + 32) + 14 * 14 * 32 + 14 * 14 * 64 + 7 * 7 * 64 + 1128);
    expect(perImageMB(CNNF, paper)).toBeCloseTo(MEASURED.gradient + MEASURED.gradientPerCycle, 10);
    expect(perImageMB(CNNF, firstOnly)).toBeCloseTo(MEASURED.gradient + MEASURED.forwardPerCycle, 10);
    expect(perImageMB(CNN, paper)).toBeCloseTo(MEASURED.gradient, 10);
    expect(perImageMB(CNN, noise)).toBeCloseTo(MEASURED.forward, 10);
    expect(perImageMB({ arch: 'small', cycles: 0, pixels: 784, foreign: false }, paper)).toBeLessThan(perImageMB(CNN, paper));
    expect(perImageMB({ cycles: 0, pixels: 32 * 32 * 3, foreign: true }, paper)).toBeCloseTo(MEASURED.gradient * (3072 / 784), 10);
  });
});

describe('chooseBatchSize', () => {
  it('the largest batch two threads can run at once within the budget, at most the suite\'s or 100; never dependent on the workers', () => {
    for (const budget of [800 * MB, DEFAULT_MEMORY_BUDGET, 2048 * MB]) {
      const sizes = new Set<number>();
      for (const workers of [1, 2, 3, 16]) {
        const c = chooseBatchSize([CNN, CNNF], paper, { examples: 10_000, workers, budget, workersAuto: true });
        sizes.add(c.batchSize);
        // auto workers: as many as fit (at least the two it was sized for, where asked)
        expect(c.workers).toBeGreaterThanOrEqual(Math.min(workers, SIZED_FOR_WORKERS));
        expect(c.workers).toBeLessThanOrEqual(workers);
        if (c.workers > 1) expect(estimatedPeak([CNN, CNNF], paper, c.batchSize, c.workers)).toBeLessThanOrEqual(budget);
        if (c.workers < workers) expect(estimatedPeak([CNN, CNNF], paper, c.batchSize, c.workers + 1)).toBeGreaterThan(budget);
      }
      expect(sizes.size).toBe(1);
      const [b] = [...sizes];
      if (b < 100) {
        expect(estimatedPeak([CNN, CNNF], paper, b, SIZED_FOR_WORKERS)).toBeLessThanOrEqual(budget);
        expect(estimatedPeak([CNN, CNNF], paper, b + 1, SIZED_FOR_WORKERS)).toBeGreaterThan(budget);
        const c = chooseBatchSize([CNN, CNNF], paper, { examples: 10_000, workers: 2, budget });
        expect(c.from).toBe('budget');
        expect(c.note).toMatch(new RegExp(`^batches of ${b} \\(not 100\\) to stay within the memory budget`));
      }
    }
    expect(chooseBatchSize([CNNF], paper, { examples: 10_000, workers: 2 }).batchSize).toBeLessThan(chooseBatchSize([CNNF], paper, { examples: 10_000, workers: 2, budget: 2048 * MB }).batchSize);
    expect(chooseBatchSize([CNNF], paper, { examples: 10_000, workers: 2, budget: 8192 * MB }).batchSize).toBe(100);
    // never more than the examples, nor than the suite's own batchSize
    expect(chooseBatchSize([CNN], noise, { examples: 7, workers: 1 }).batchSize).toBe(7);
    const suite10 = parseSuite({ name: 's', batchSize: 10, attacks: [{ name: 'g', method: 'gaussian', eps: [0.1] }] }, 't');
    expect(chooseBatchSize([CNN], suite10, { examples: 500, workers: 2 })).toMatchObject({ batchSize: 10, from: 'suite' });
    // foreign models run in the main thread only: sized for one
    const onnx: MemoryModel = { cycles: 0, pixels: 784, foreign: true };
    const f = chooseBatchSize([onnx], paper, { examples: 10_000, workers: 2, budget: 400 * MB });
    expect(estimatedPeak([onnx], paper, f.batchSize, 1)).toBeLessThanOrEqual(400 * MB);
    expect(estimatedPeak([onnx], paper, f.batchSize + 1, 1)).toBeGreaterThan(400 * MB);
  });

  it('--batch-size and a resumed state win; with a fixed size the budget lowers auto workers only', () => {
    expect(chooseBatchSize([CNNF], paper, { examples: 1000, workers: 2, batchSize: 7, recorded: 9 })).toMatchObject({ batchSize: 7, from: 'flag', workers: 2 });
    expect(chooseBatchSize([CNNF], paper, { examples: 1000, workers: 2, recorded: 9 })).toMatchObject({ batchSize: 9, from: 'state' });
    const auto = chooseBatchSize([CNNF], paper, { examples: 1000, workers: 2, batchSize: 100, workersAuto: true });
    expect(auto.workers).toBe(1);
    expect(auto.note).toMatch(/^1 of 2 workers \(batches of 100 need about [\d.]+ GB with 2; memory budget 1\.00 GB/);
    const asked = chooseBatchSize([CNNF], paper, { examples: 1000, workers: 2, batchSize: 100, workersAuto: false });
    expect(asked.workers).toBe(2);
    expect(asked.note).toMatch(/^batches of 100 with 2 workers need about [\d.]+ GB, more than the memory budget of 1\.00 GB$/);
  });

  it('parseMemorySize: binary units, a bare number is MB; nonsense and extremes refused', () => {
    expect(parseMemorySize('1G')).toBe(1024 * MB);
    expect(parseMemorySize('1.5GiB')).toBe(1536 * MB);
    expect(parseMemorySize('800M')).toBe(800 * MB);
    expect(parseMemorySize('800mb')).toBe(800 * MB);
    expect(parseMemorySize('1536')).toBe(1536 * MB);
    for (const bad of ['', 'lots', '-1G', '1e3', '10M', '2000T', 'NaN']) expect(() => parseMemorySize(bad), bad).toThrow(UsageError);
    expect(() => chooseBatchSize([CNN], noise, { examples: 5, workers: 1, budget: 0 })).toThrow(UsageError);
  });
});

describe('cnnf eval: the batch size is a recorded part of the run', () => {
  let tmp: string;
  const MODEL = join(ROOT, 'models', 'cnnf-fmnist.safetensors');
  const base = (...more: string[]): string[] => [
    'eval', '--model', MODEL, '--attacks', 'fgsm', '--eps', '0.1', '--modes', 'e2e', '--test-subset', 'first:12', '--workers', '1', '--quiet', ...more,
  ];
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'cnnf-mem-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const prov = (f: string): EvalResults['provenance'] => (JSON.parse(readFileSync(f, 'utf8')) as EvalResults).provenance;

  it('provenance says the size and where it came from; a resumed run keeps its size under another budget', async () => {
    const state = join(tmp, 'state');
    const a = await cli(base('--batch-size', '5', '--state', state, '--json', join(tmp, 'a.json')));
    expect(a.code, a.stderr).toBe(0);
    expect(prov(join(tmp, 'a.json'))).toMatchObject({ batchSize: 5, batchSizeFrom: 'flag' });
    // the same run again without --batch-size and a budget that alone would choose 1: it continues with 5
    const b = await cli(base('--memory-budget', '340M', '--state', state, '--json', join(tmp, 'b.json')));
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toMatch(/resuming from .*: 6 of 6 units already done/);
    expect(prov(join(tmp, 'b.json'))).toMatchObject({ batchSize: 5, batchSizeFrom: 'state' });
    // a fresh run under that budget: the size the budget gives, said on stderr
    const c = await cli(base('--memory-budget', '340M', '--json', join(tmp, 'c.json')));
    expect(c.code, c.stderr).toBe(0);
    const pc = prov(join(tmp, 'c.json'));
    expect(pc).toMatchObject({ batchSizeFrom: 'budget', memoryBudget: 340 * MB });
    expect(pc.batchSize).toBeLessThan(12);
    expect(c.stderr).toMatch(new RegExp(`batches of ${pc.batchSize} \\(not 12\\) to stay within the memory budget of 0\\.33 GB`));
    // the results do not depend on it
    const ra = JSON.parse(readFileSync(join(tmp, 'a.json'), 'utf8')) as EvalResults;
    const rc = JSON.parse(readFileSync(join(tmp, 'c.json'), 'utf8')) as EvalResults;
    expect(rc.models[0].metrics).toEqual(ra.models[0].metrics);
    const bad = await cli(base('--memory-budget', 'lots'));
    expect(bad.code).toBe(2);
    expect(oneLineError(bad)).toMatch(/--memory-budget must be a size such as 1G/);
  }, 300_000);

  it('shards run with different batch sizes are refused at merge, naming both', async () => {
    const s1 = await cli(base('--batch-size', '6', '--shard', '1/2', '--json', join(tmp, 's1.json')));
    const s2 = await cli(base('--batch-size', '4', '--shard', '2/2', '--json', join(tmp, 's2.json')));
    expect(s1.code, s1.stderr).toBe(0);
    expect(s2.code, s2.stderr).toBe(0);
    const m = await cli(['merge', join(tmp, 's1.json'), join(tmp, 's2.json'), '-o', join(tmp, 'm.json')]);
    expect(m.code).toBe(2);
    expect(oneLineError(m)).toMatch(/s2\.json ran batches of 4, .*s1\.json batches of 6: shards of one run need the same batch size/);
  }, 300_000);
});
