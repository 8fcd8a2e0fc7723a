/**
 * Measures peak resident memory per batch size for src/eval/memory.ts's cost table:
 *
 *   node --import tsx scripts/measure-batch-memory.mts [--sizes 1,20,60] [--json out.json]
 *
 * Each row is a fresh child process (this script with --child) that runs evaluate() in its own thread
 * (wasm, no workers) on `first:B` Fashion-MNIST test images with batches of B: one PGD step (gradient
 * rows, the given path) or one Gaussian draw (forward rows), trust checks off, and prints its peak RSS
 * (process.resourceUsage().maxRSS). The per-image cost is the slope between the two largest sizes
 * (the wasm heap grows in steps, so small batches stay inside the heap a process starts with). The
 * probe rows run the trust checks alone on 64 images (what one probe unit of an evaluation holds),
 * and a worker row runs two workers with a batch each, for a worker thread's own cost.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const arg = (k: string, d: string): string => {
  const i = args.indexOf(k);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : d;
};

if (args[0] === '--child') {
  const [model, cyclesS, job, batchS, workersS, checksS] = args.slice(1);
  const { useBackend } = await import('../dist/backend/index.js');
  const { loadDatasetAsync } = await import('../dist/data/index.js');
  const { evaluate, parseSuite } = await import('../dist/eval/index.js');
  const { loadCheckpoint } = await import('../dist/io/checkpoint.js');
  await useBackend('wasm', { quiet: true });
  const b = Number(batchS);
  const workers = Number(workersS);
  const checks = checksS === 'checks';
  const subset = `first:${checks ? 64 : b * workers}`;
  const ds = await loadDatasetAsync({ dataset: 'fashion-mnist', testSubset: subset });
  const ck = await loadCheckpoint(model);
  const attacks = checks
    ? [{ name: 'g', method: 'gaussian', eps: [0.1] }]
    : job === 'forward'
      ? [{ name: 'g', method: 'gaussian', eps: [0.1] }]
      : [{ name: 'p', method: 'pgd', eps: [0.1], steps: 1, modes: [job] }];
  const suite = parseSuite({ name: 'mem', attacks }, 'measure');
  const before = process.resourceUsage().maxRSS;
  await evaluate([ck], { name: ds.name, classNames: ds.classNames, numClasses: ds.numClasses, split: ds.test, testSubset: subset }, suite, {
    seed: 0, batchSize: checks ? 1 : b, cycles: Number(cyclesS), workers, checks, probeSize: 64,
  });
  process.stdout.write(`${JSON.stringify({ loadedKB: before, peakKB: process.resourceUsage().maxRSS })}\n`);
  process.exit(0);
}

const sizes = arg('--sizes', '1,20,60').split(',').map(Number);
const jsonOut = args.includes('--json') ? arg('--json', '') : undefined;
const self = fileURLToPath(import.meta.url);

interface Row { model: string; cycles: number; job: string; workers: number; batch: number; checks: boolean; loadedMB: number; peakMB: number; seconds: number }

function run(model: string, cycles: number, job: string, batch: number, workers: number, checks: boolean): Row {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--child', model, String(cycles), job, String(batch), String(workers), checks ? 'checks' : 'nochecks'], { encoding: 'utf8' });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`child ${model} ${job} ${batch} failed: ${r.stderr.slice(-600)}`);
  const v = JSON.parse(line) as { loadedKB: number; peakKB: number };
  return { model, cycles, job, workers, batch, checks, loadedMB: v.loadedKB / 1024, peakMB: v.peakKB / 1024, seconds: (performance.now() - t0) / 1000 };
}

const name = (m: string): string => m.replace(/^models\/|\.safetensors$/g, '');
const CNN = 'models/reference-cnn-adv.safetensors';
const CNNF = 'models/reference-cnnf-adv.safetensors';
const cases: Array<{ model: string; cycles: number; job: string }> = [
  { model: CNN, cycles: 0, job: 'forward' },
  { model: CNN, cycles: 0, job: 'first' },
  { model: CNNF, cycles: 1, job: 'forward' },
  { model: CNNF, cycles: 1, job: 'first' },
  { model: CNNF, cycles: 1, job: 'e2e' },
  { model: CNNF, cycles: 2, job: 'forward' },
  { model: CNNF, cycles: 2, job: 'e2e' },
];
const rows: Row[] = [];
const say = (s: string): void => {
  process.stdout.write(`${s}\n`);
};
for (const c of cases) {
  const mine: Row[] = [];
  for (const b of sizes) {
    const r = run(c.model, c.cycles, c.job, b, 1, false);
    mine.push(r);
    say(`${name(c.model)} cycles ${c.cycles} ${c.job.padEnd(7)} batch ${String(b).padStart(3)}: peak ${r.peakMB.toFixed(0)} MB (loaded ${r.loadedMB.toFixed(0)} MB, ${r.seconds.toFixed(1)} s)`);
  }
  rows.push(...mine);
  const [lo, hi] = mine.slice(-2);
  say(`  -> ${((hi.peakMB - lo.peakMB) / (hi.batch - lo.batch)).toFixed(2)} MB per image`);
}
for (const c of [cases[1], cases[4], cases[6]]) {
  const r = run(c.model, c.cycles, c.job, 1, 1, true);
  rows.push(r);
  say(`${name(c.model)} cycles ${c.cycles}: trust-check probe on 64 images: peak ${r.peakMB.toFixed(0)} MB (loaded ${r.loadedMB.toFixed(0)} MB)`);
}
for (const c of [cases[1], cases[4]]) {
  const b = sizes[sizes.length - 1];
  const one = rows.find((r) => r.model === c.model && r.job === c.job && r.cycles === c.cycles && r.batch === b && !r.checks)!;
  const two = run(c.model, c.cycles, c.job, b, 2, false);
  rows.push(two);
  say(`${name(c.model)} ${c.job} batch ${b}: one thread ${one.peakMB.toFixed(0)} MB; 2 workers, a batch each: ${two.peakMB.toFixed(0)} MB`);
}
if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify(rows, null, 2)}\n`);
