import { describe, it, expect } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cellDirName, checkGrid, gridChanceWarnings, gridCsv, type GridResult, type TrainOptions } from '../src/train/index.js';
import { gridTable } from '../src/cli/commands/grid.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'bin', 'cnnf');

const run = (...args: string[]) =>
  new Promise<{ status: number; stdout: string; stderr: string }>((res) => {
    execFile(process.execPath, [BIN, 'grid', ...args], { cwd: ROOT, env: { ...process.env, CNNF_BACKEND: 'wasm' } }, (err, stdout, stderr) => {
      res({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });

const base: TrainOptions = {
  model: 'cnnf', arch: 'small', fc: [16], epochs: 1, batchSize: 32, lr: 0.05, momentum: 0.9, weightDecay: 5e-4,
  schedule: 'poly', power: 0.9, clip: 0.5, cleanWeight: 0.1, reconWeight: 0.1, seed: 0, perturb: null,
  dataset: { dataset: 'fashion-mnist', trainSize: 64, testSize: 40 },
};

describe('cnnf grid', () => {
  it('validates the grid before training', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'cnnf-grid-v-')), 'g');
    expect(() => checkGrid(base, { cycles: [0, 1], resParams: [0.1] }, { out })).toThrow(/>= 1/);
    expect(() => checkGrid(base, { cycles: [1, 1], resParams: [0.1] }, { out })).toThrow(/twice/);
    expect(() => checkGrid(base, { cycles: [1], resParams: [0.1, 2] }, { out })).toThrow(/res_param/);
    expect(checkGrid(base, { cycles: [1, 2], resParams: [0, 0.1] }, { out })).toBe(out);
  });

  it('tables rows res_param x columns cycles', () => {
    const g: GridResult = {
      format: 'cnnf-grid/1', cycles: [1, 2], resParams: [0.1], evalSigma: 0.3, options: base, wallSeconds: 1,
      cells: [1, 2].map((c) => ({
        resParam: 0.1, cycles: c, dir: cellDirName(0.1, c), epochs: 1, testAccuracy: 0.5 + c / 10, testAccuracyFirst: 0.5,
        noisyAccuracy: 0.4, noisyAccuracyFirst: 0.3, bestAccuracy: 0.6, wallSeconds: 1,
      })),
    };
    const t = gridTable(g, 'testAccuracy');
    expect(t).toMatch(/res_param \\ cycles/);
    expect(t).toMatch(/0\.1.*60\.0%.*70\.0%/); // the one percent format (src/format.ts percent)
    expect(gridCsv(g).split('\n')[0]).toBe('res_param,cycles,test_accuracy,test_accuracy_first,noisy_accuracy,noisy_accuracy_first,best_accuracy,epochs,wall_seconds,dir');
  });

  it('warns about cells that end no better than chance', () => {
    const cell = (cycles: number, testAccuracy: number) => ({
      resParam: 0.1, cycles, dir: cellDirName(0.1, cycles), epochs: 1, testAccuracy, testAccuracyFirst: testAccuracy,
      noisyAccuracy: 0.1, noisyAccuracyFirst: 0.1, bestAccuracy: null, wallSeconds: 1,
    });
    const g: GridResult = { format: 'cnnf-grid/1', cycles: [1, 2, 3], resParams: [0.1], evalSigma: 0.3, options: base, wallSeconds: 1, cells: [cell(1, 0.075), cell(2, 0.15), cell(3, 0.6)] };
    // 10 classes, 100 test images: chance 10%, two standard errors 6%
    const w = gridChanceWarnings(g, 10, 100);
    expect(w).toHaveLength(2);
    expect(w[0]).toMatch(/^grid cell res_param 0\.1, cycles 1 ends at 7\.5% clean test accuracy, below chance \(10\.0% for 10 classes, 100 test images\)/);
    expect(w[1]).toMatch(/cycles 2 ends at 15\.0% clean test accuracy, no better than chance/);
    // on 10,000 images 15% is beyond the noise of chance
    expect(gridChanceWarnings(g, 10, 10000)).toHaveLength(1);
    expect(gridChanceWarnings({ ...g, cells: [cell(3, 0.6)] }, 10, 100)).toEqual([]);
  });

  it('trains a 2x1 grid and writes grid.json and grid.csv', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'cnnf-grid-')), 'g');
    const r = await run('--cycles', '1,2', '--res-param', '0.1', '--arch', 'small', '--fc', '16', '--train-size', '64', '--test-size', '40',
      '--batch-size', '32', '--epochs', '1', '--out', out);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/clean test accuracy/);
    expect(r.stdout).toMatch(/Gaussian-noisy test accuracy, sigma 0.3/);
    const g = JSON.parse(readFileSync(join(out, 'grid.json'), 'utf8')) as GridResult;
    expect(g.cells.map((c) => [c.resParam, c.cycles])).toEqual([[0.1, 1], [0.1, 2]]);
    for (const c of g.cells) {
      expect(c.testAccuracy).toBeGreaterThanOrEqual(0);
      expect(c.testAccuracy).toBeLessThanOrEqual(1);
      expect(existsSync(join(out, c.dir, 'last.safetensors'))).toBe(true);
      const summary = JSON.parse(readFileSync(join(out, c.dir, 'summary.json'), 'utf8'));
      expect(summary.config.cycles).toBe(c.cycles);
    }
    // one warning line per cell that ended near chance (64 training images, one epoch: some may)
    const warned = r.stderr.split('\n').filter((l) => l.startsWith('cnnf: warning: grid cell'));
    expect(warned.map((l) => l.replace('cnnf: warning: ', ''))).toEqual(gridChanceWarnings(g, 10, 40));
    const csv = readFileSync(join(out, 'grid.csv'), 'utf8').trim().split('\n');
    expect(csv.length).toBe(3);
    expect(csv[1]).toMatch(/^0\.1,1,/);
    const again = await run('--cycles', '1', '--res-param', '0.1', '--out', out);
    expect(again.status).toBe(2);
    expect(again.stderr.trim().split('\n').length).toBe(1);
  });
});
