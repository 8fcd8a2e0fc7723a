/**
 * Speed benchmark of the CNN-F engine on the paper's full-width Fashion-MNIST architecture
 * (fc 1000,128, ind 2, res 0.1), side by side with a PyTorch implementation of the same
 * computations (bench/torch_reference_bench.py, run under Debian's /usr/bin/python3).
 *
 *   npm run bench [-- --json] [-- --batch 64 --cycles 2 --reps 5 --warmup 1 --backend wasm --no-torch]
 *   npm run bench -- --startup-only      (just the CLI start-up row: `node bin/cnnf --help`)
 *   npm run bench -- --memory-only       (just the peak-RSS rows: `cnnf eval`, `cnnf train`, the paper suite; 2 workers)
 *   npm run bench -- --float64-only      (just the float64 row: CNNF64.evaluate, one example, ind 2, 2 cycles, e2e)
 *   npm run bench -- --autoattack        (cnnf's AutoAttack vs AutoAttack's own PyTorch code: bench/autoattack.ts)
 *   npm run bench -- --onnx-only         (just the ONNX rows: exported models vs their checkpoints, bench/onnx.ts)
 *   npm run bench -- --profile           (tfjs kernel times of the reference models' forward pass and input gradients, bench/profile.ts)
 *
 * Tasks (ms per batch = median of `reps` runs after `warmup` runs):
 *   infer     model.logits(x) with cycles, in tf.tidy, + data()
 *   train     the gradient of pairLoss(...) on [x; x_noisy] + SGD momentum/weight-decay update, as `cnnf
 *             train` computes it: summed over micro-batches of DEFAULT_MICRO_BATCH pairs (--micro-batch 0:
 *             one tf.variableGrads over the whole batch, as the PyTorch baseline does)
 *   pgd7_e2e  7-step Linf PGD (eps 0.2, step 0.071, no random start) through every cycle
 * FLOP counts are analytic (see flopModel and bench/README.md). Exit 1 when tf.memory().numTensors
 * grows across the benchmark (a leak) or on bad arguments.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os, { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { APGD, predictLogits, SquareAttack, type Victim } from '../src/attacks/index.js';
import { PGD } from '../src/attacks/pgd.js';
import { loadDataset } from '../src/data/index.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { useBackend } from '../src/backend/index.js';
import { getArch } from '../src/models/arch.js';
import { CNNF } from '../src/models/cnnf.js';
import { CNNF64, crossEntropyHead } from '../src/models/float64.js';
import { fromPyTorch, inferPyTorchWidths, nchwToNhwc } from '../src/io/pytorch.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { makeConfig } from '../src/models/arch.js';
import { pairLoss } from '../src/models/loss.js';
import { WorkerPool } from '../src/parallel/pool.js';
import { pooledGradients } from '../src/train/worker-tasks.js';
import { DEFAULT_MICRO_BATCH } from '../src/train/options.js';
import { batchGradients } from '../src/train/step.js';
import { runEvalBatch } from '../src/eval/worker-tasks.js';
import type { BatchTask } from '../src/eval/batch.js';
import { parseSuite } from '../src/eval/suite.js';
import { onnxBench, onnxLines, type OnnxBenchRow } from './onnx.js';
import { profileKernels, profileLines } from './profile.js';
import { median, time } from './timing.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');
const TORCH_SCRIPT = join(HERE, 'torch_reference_bench.py');
const PYTHON = '/usr/bin/python3';

interface Options {
  json: boolean;
  batch: number;
  cycles: number;
  reps: number;
  warmup: number;
  backend: string;
  torch: boolean;
  torchThreads: number;
  /** Worker threads of the parallel measurements (1: none). */
  workers: number;
  tasks: TaskName[];
  /** Measure only the CLI start-up (`node bin/cnnf --help`, compiled dist/) and exit. */
  startupOnly: boolean;
  attackRows: boolean;
  /** Measure the peak RSS of `cnnf eval` and `cnnf train` child processes (--no-memory: skip). */
  memory: boolean;
  /** Only the memory rows, then exit. */
  memoryOnly: boolean;
  /** Images per micro-batch of the train task (default: cnnf train's; 0: the whole batch in one variableGrads, or one part per worker). */
  microBatch: number;
  /** Only the one-wasm-thread peak GFLOP/s probe, then exit. */
  peakOnly: boolean;
  /** Only the float64 row (CNNF64 on the reference fixture's model), then exit. */
  float64Only: boolean;
  /** The ONNX rows (bench/onnx.ts; --no-onnx: skip). */
  onnx: boolean;
  /** Only the ONNX rows, then exit. */
  onnxOnly: boolean;
  /** Only the kernel profile (bench/profile.ts), then exit. */
  profile: boolean;
  /** Whether --batch was given (the profile's default batch is 10, not 64). */
  batchGiven: boolean;
}

const TASKS = ['infer', 'train', 'pgd7_e2e'] as const;
type TaskName = (typeof TASKS)[number];

function usage(msg: string): never {
  process.stderr.write(`bench: ${msg}\nusage: npm run bench -- [--json] [--batch N] [--cycles N] [--reps N] [--warmup N] [--backend wasm|cpu|...] [--no-torch] [--torch-threads N] [--workers N] [--tasks infer,train,pgd7_e2e] [--startup-only] [--no-attack-rows] [--no-memory] [--memory-only] [--peak-only] [--float64-only] [--no-onnx] [--onnx-only] [--profile] [--micro-batch N|0]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { json: false, batch: 64, cycles: 2, reps: 5, warmup: 1, backend: 'wasm', torch: true, torchThreads: 2, workers: availableParallelism(), tasks: [...TASKS], startupOnly: false, attackRows: true, memory: true, memoryOnly: false, peakOnly: false, float64Only: false, microBatch: DEFAULT_MICRO_BATCH, onnx: true, onnxOnly: false, profile: false, batchGiven: false };
  const int = (flag: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < min) usage(`${flag} needs an integer >= ${min}, got ${JSON.stringify(v)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') o.json = true;
    else if (a === '--startup-only') o.startupOnly = true;
    else if (a === '--no-attack-rows') o.attackRows = false;
    else if (a === '--no-memory') o.memory = false;
    else if (a === '--memory-only') o.memoryOnly = true;
    else if (a === '--no-onnx') o.onnx = false;
    else if (a === '--onnx-only') o.onnxOnly = true;
    else if (a === '--profile') o.profile = true;
    else if (a === '--peak-only') o.peakOnly = true;
    else if (a === '--float64-only') o.float64Only = true;
    else if (a === '--no-torch') o.torch = false;
    else if (a === '--batch') {
      o.batch = int(a, argv[++i], 1);
      o.batchGiven = true;
    }
    else if (a === '--cycles') o.cycles = int(a, argv[++i], 0);
    else if (a === '--reps') o.reps = int(a, argv[++i], 1);
    else if (a === '--warmup') o.warmup = int(a, argv[++i], 0);
    else if (a === '--torch-threads') o.torchThreads = int(a, argv[++i], 1);
    else if (a === '--workers') o.workers = int(a, argv[++i], 1);
    else if (a === '--micro-batch') o.microBatch = int(a, argv[++i], 0);
    else if (a === '--backend') o.backend = argv[++i] ?? usage('--backend needs a value');
    else if (a === '--tasks') {
      const names = (argv[++i] ?? '').split(',').filter(Boolean);
      if (names.length === 0 || !names.every((n) => (TASKS as readonly string[]).includes(n))) usage(`--tasks takes a comma list of ${TASKS.join(',')}`);
      o.tasks = names as TaskName[];
    } else if (a === '--help' || a === '-h') usage('help');
    else usage(`unknown argument ${JSON.stringify(a)}`);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Analytic FLOP model (multiply-adds x 2; elementwise ops, norms and pooling are not counted).
// ---------------------------------------------------------------------------------------------

interface FlopModel {
  /** Per-sample multiply-adds of each conv (forward) and linear layer. */
  convMacs: number[];
  fcMacs: number[];
  /** Per-sample MACs of: the first forward pass, a forward pass from level ind, a feedback pass to ind. */
  fullForward: number;
  partialForward: number;
  feedback: number;
  /** FLOPs per batch of each task. */
  tasks: Record<TaskName, number>;
}

export function flopModel(batch: number, cycles: number, ind: number, fc: number[]): FlopModel {
  const spec = getArch('fmnist');
  let h = spec.height;
  let w = spec.width;
  let cin = spec.inChannels;
  const convMacs: number[] = [];
  for (const b of spec.convs) {
    convMacs.push(h * w * cin * b.channels * 9);
    cin = b.channels;
    if (b.pool) {
      h /= 2;
      w /= 2;
    }
  }
  const widths = [h * w * cin, ...fc, 10];
  const fcMacs = widths.slice(1).map((o, i) => widths[i] * o);
  const sum = (a: number[]) => a.reduce((s, v) => s + v, 0);
  const convFrom = sum(convMacs.slice(ind));
  const fcAll = sum(fcMacs);
  const fullForward = sum(convMacs) + fcAll;
  const partialForward = convFrom + fcAll;
  const feedback = fcAll + convFrom; // fc^T (all linear layers) and conv^T of the blocks at/above ind
  // forward graph of one evaluation with cycles
  const graph = fullForward + cycles * (feedback + partialForward);
  // training backward: dX and dW (2x) for every conv and forward linear, dX only (1x) for the tied
  // linear feedback (its weight is a constant), and no dX for conv1 of the first pass (input is data)
  const trainBackward = 2 * (fullForward + cycles * partialForward) + cycles * (2 * convFrom + fcAll) - convMacs[0];
  // attack backward: dX only, through every op of the graph
  const attackBackward = graph;
  return {
    convMacs,
    fcMacs,
    fullForward,
    partialForward,
    feedback,
    tasks: {
      infer: 2 * batch * graph,
      train: 2 * (2 * batch) * (graph + trainBackward),
      pgd7_e2e: 2 * batch * 7 * (graph + attackBackward),
    },
  };
}

// ---------------------------------------------------------------------------------------------

interface TaskResult {
  ms: number;
  allMs: number[];
  gflops: number;
  flops: number;
}

interface TorchResult {
  available: boolean;
  reason?: string;
  version?: string;
  threads?: number;
  ms: Partial<Record<TaskName, number>>;
}


function runTorch(o: Options): TorchResult {
  if (!o.torch) return { available: false, reason: 'skipped (--no-torch)', ms: {} };
  if (!existsSync(PYTHON)) return { available: false, reason: `${PYTHON} not found (run .ci/install-torch.sh)`, ms: {} };
  const probe = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  if (probe.status !== 0) return { available: false, reason: 'python3 cannot import torch (run .ci/install-torch.sh)', ms: {} };
  const args = [TORCH_SCRIPT, '--batch', String(o.batch), '--cycles', String(o.cycles), '--reps', String(o.reps), '--threads', String(o.torchThreads)];
  const r = spawnSync(PYTHON, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) return { available: false, reason: `torch bench failed: ${(r.stderr || r.stdout).trim().split('\n').pop()}`, ms: {} };
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    const j = JSON.parse(line) as Record<string, number | string>;
    const ms: Partial<Record<TaskName, number>> = {};
    for (const t of TASKS) if (typeof j[`${t}_ms`] === 'number') ms[t] = j[`${t}_ms`] as number;
    return { available: true, version: String(j.torch), threads: Number(j.threads), ms };
  } catch {
    return { available: false, reason: `torch bench printed no JSON: ${line.slice(0, 200)}`, ms: {} };
  }
}

/**
 * Wall-clock start-up of the compiled CLI, `node bin/cnnf --help` (median of `reps` after one warm-up),
 * next to `node -e 0` alone. Needs dist/ (npm run build); CNNF_FROM_SOURCE is cleared so the launcher runs dist.
 */
function cliStartup(reps: number): { helpMs: number; nodeMs: number; allHelpMs: number[] } | { error: string } {
  const bin = join(HERE, '..', 'bin', 'cnnf');
  if (!existsSync(join(HERE, '..', 'dist', 'cli', 'main.js'))) return { error: 'dist/ is missing (npm run build)' };
  const env = { ...process.env };
  delete env.CNNF_FROM_SOURCE;
  const once = (args: string[]): number => {
    const t = performance.now();
    const r = spawnSync(process.execPath, args, { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
    return performance.now() - t;
  };
  once([bin, '--help']);
  const help = Array.from({ length: reps }, () => once([bin, '--help']));
  const node = Array.from({ length: reps }, () => once(['-e', '0']));
  return { helpMs: median(help), nodeMs: median(node), allHelpMs: help.map((v) => +v.toFixed(1)) };
}

function startupLine(s: ReturnType<typeof cliStartup>): string {
  return 'error' in s
    ? `cli start-up: n/a - ${s.error}`
    : `cli start-up: cnnf --help ${s.helpMs.toFixed(0)} ms (node -e 0 alone: ${s.nodeMs.toFixed(0)} ms), median of ${s.allHelpMs.length}`;
}

// ---------------------------------------------------------------------------------------------
// Memory: peak RSS of whole `cnnf` processes (main thread and worker threads are one process).
// ---------------------------------------------------------------------------------------------

const GNU_TIME = '/usr/bin/time';

interface PeakRss {
  /** Peak resident set size of the child process in MB, or null when it could not be measured. */
  mb: number | null;
  /** How: "getrusage (GNU time -f %M)" or "VmHWM sampled from /proc every 50 ms". */
  method: string;
  ms: number;
  command: string;
  error?: string;
}

/**
 * Runs `node bin/cnnf ARGS` (the compiled dist/ when built, else the TypeScript sources through tsx,
 * which costs more memory: `source` says which) and measures its peak RSS: exactly with GNU time
 * (getrusage of the child) when /usr/bin/time exists, else the VmHWM high-water mark of
 * /proc/PID/status, sampled until the child exits.
 */
async function peakRss(args: string[], cwd: string): Promise<PeakRss> {
  const bin = join(ROOT, 'bin', 'cnnf');
  const env: NodeJS.ProcessEnv = { ...process.env, CNNF_QUIET_BACKEND: '1' };
  const fromSource = !existsSync(join(ROOT, 'dist', 'cli', 'main.js'));
  if (fromSource) env.CNNF_FROM_SOURCE = '1';
  else delete env.CNNF_FROM_SOURCE;
  const command = `cnnf ${args.join(' ')}${fromSource ? ' (from source: dist/ is missing)' : ''}`;
  const gnu = existsSync(GNU_TIME) && spawnSync(GNU_TIME, ['-f', '%M', 'true'], { encoding: 'utf8' }).status === 0;
  const out = join(cwd, 'time.txt');
  const argv = gnu ? [GNU_TIME, '-f', '%M', '-o', out, process.execPath, bin, ...args] : [process.execPath, bin, ...args];
  const t0 = performance.now();
  const child = spawn(argv[0], argv.slice(1), { cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  let hwmKB = 0;
  const sample = (): void => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) hwmKB = Math.max(hwmKB, Number(m[1]));
    } catch {
      // the child is gone, or no /proc
    }
  };
  const timer = gnu ? null : setInterval(sample, 50);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (timer) clearInterval(timer);
  const ms = performance.now() - t0;
  if (code !== 0) return { mb: null, method: '', ms, command, error: `exit ${code}: ${stderr.trim().split('\n').pop() ?? ''}` };
  if (gnu) {
    const kb = Number(readFileSync(out, 'utf8').trim().split('\n').pop());
    return { mb: Number.isFinite(kb) ? +(kb / 1024).toFixed(0) : null, method: 'getrusage (GNU time -f %M)', ms, command };
  }
  return { mb: hwmKB > 0 ? +(hwmKB / 1024).toFixed(0) : null, method: 'VmHWM sampled from /proc every 50 ms', ms, command };
}

/** Targets of issue 13 (eval, train) and issue 21 (the paper suite) on a 2-core machine. */
const MEMORY_TARGETS = { evalPeakRssMB: 1000, trainPeakRssMB: 1500, paperPeakRssMB: 1000 };

interface MemoryBench {
  evalPeakRssMB: number | null;
  trainPeakRssMB: number | null;
  paperPeakRssMB: number | null;
  targets: typeof MEMORY_TARGETS;
  eval: PeakRss;
  train: PeakRss;
  paper: PeakRss;
}

/**
 * (a) `cnnf eval` of the two shipped models (cnn-fmnist, cnnf-fmnist) with the quick suite (100 test
 * images, batch 50) and 2 workers; (b) `cnnf train --model cnnf` on 256 images, one epoch, batch 128,
 * 2 workers; (c) `cnnf eval` of reference-cnnf-adv and reference-cnn-adv with the paper suite on the first
 * 100 test images, 2 workers, the default memory budget (which picks the batch size). All on --backend
 * (wasm by default), each in a fresh process.
 */
async function memoryBench(o: Options): Promise<MemoryBench> {
  const dir = mkdtempSync(join(tmpdir(), 'cnnf-bench-mem-'));
  try {
    const models = ['cnn-fmnist', 'cnnf-fmnist'].flatMap((m) => ['--model', join(ROOT, 'models', `${m}.safetensors`)]);
    const ev = await peakRss(['eval', ...models, '--suite', 'quick', '--workers', '2', '--backend', o.backend, '--json', join(dir, 'eval.json')], dir);
    if (!o.json) process.stderr.write(`bench: memory: eval ${ev.mb ?? 'n/a'} MB\n`);
    const tr = await peakRss(['train', '--model', 'cnnf', '--train-size', '256', '--test-size', '100', '--epochs', '1', '--workers', '2', '--backend', o.backend, '--seed', '1', '--out', join(dir, 'train')], dir);
    if (!o.json) process.stderr.write(`bench: memory: train ${tr.mb ?? 'n/a'} MB\n`);
    const refs = ['reference-cnnf-adv', 'reference-cnn-adv'].flatMap((m) => ['--model', join(ROOT, 'models', `${m}.safetensors`)]);
    const pa = await peakRss(['eval', ...refs, '--suite', 'paper-fmnist', '--test-subset', 'first:100', '--workers', '2', '--backend', o.backend, '--json', join(dir, 'paper.json')], dir);
    if (!o.json) process.stderr.write(`bench: memory: paper suite ${pa.mb ?? 'n/a'} MB\n`);
    return { evalPeakRssMB: ev.mb, trainPeakRssMB: tr.mb, paperPeakRssMB: pa.mb, targets: MEMORY_TARGETS, eval: ev, train: tr, paper: pa };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The machine's measured peak for one wasm thread: the best GFLOP/s of a large plain matMul
 * (1024x1024 @ 1024x1024) and of a 3x3 conv as the model's (batch 64, 28x28, 32 -> 32 channels),
 * each the best of `reps` runs after a warm-up, on this thread's backend instance.
 */
async function measurePeak(reps: number): Promise<{ gflops: number; matMulGflops: number; convGflops: number; backend: string }> {
  const best = async (flops: number, f: () => tf.Tensor): Promise<number> => {
    let min = Infinity;
    for (let i = 0; i <= reps; i++) {
      const t0 = performance.now();
      const r = f();
      await r.data();
      const ms = performance.now() - t0;
      r.dispose();
      if (i > 0) min = Math.min(min, ms);
    }
    return flops / (min / 1000) / 1e9;
  };
  const n = 1024;
  const a = tf.randomUniform([n, n], -1, 1, 'float32', 7) as tf.Tensor2D;
  const b = tf.randomUniform([n, n], -1, 1, 'float32', 8) as tf.Tensor2D;
  const x = tf.randomUniform([64, 28, 28, 32], -1, 1, 'float32', 9) as tf.Tensor4D;
  const w = tf.randomUniform([3, 3, 32, 32], -1, 1, 'float32', 10) as tf.Tensor4D;
  try {
    const matMulGflops = await best(2 * n * n * n, () => tf.matMul(a, b));
    const convGflops = await best(2 * 64 * 28 * 28 * 32 * 32 * 9, () => tf.conv2d(x, w, 1, 'same'));
    return { gflops: +Math.max(matMulGflops, convGflops).toFixed(2), matMulGflops: +matMulGflops.toFixed(2), convGflops: +convGflops.toFixed(2), backend: tf.getBackend() };
  } finally {
    tf.dispose([a, b, x, w]);
  }
}

/**
 * The float64 engine (CNNF64, plain JS; the `float64:` rows of `cnnf conformance` and the APGD/FAB
 * conformance tests run on it): ms for one evaluation with its input gradient of one 28x28 example,
 * the reference fixture's model (fixtures/cnnf-ind2-c2.safetensors: fc 64,32, ind 2, 2 cycles), end to
 * end, readout last; median of `reps` after one warm-up. The target is well under 500 ms per example.
 */
function float64Bench(reps: number): { msPerExample: number; allMs: number[]; targetMs: number; model: string } {
  const path = join(ROOT, 'fixtures', 'cnnf-ind2-c2.safetensors');
  const T = readSafetensors(path).tensors;
  const widths = inferPyTorchWidths(T, 'fmnist', 'param.', path);
  const cfg = makeConfig({ arch: 'fmnist', fc: widths.fc, numClasses: widths.numClasses, ind: 2, cycles: 2, resParam: 0.1 });
  const model = CNNF64.fromArrays(cfg, fromPyTorch(T, cfg, path, 'param.'));
  const xt = T.get('input.x');
  const yt = T.get('input.y');
  if (!xt || !yt) throw new Error(`${path}: missing input.x or input.y`);
  const one = Float64Array.from(nchwToNhwc({ shape: xt.shape, data: xt.data }).data).subarray(0, 784);
  const head = crossEntropyHead([yt.data[0]], cfg.numClasses);
  model.evaluate(one, 1, 'e2e', 'last', head); // warm-up
  const all: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    model.evaluate(one, 1, 'e2e', 'last', head);
    all.push(performance.now() - t0);
  }
  return { msPerExample: +median(all).toFixed(1), allMs: all.map((v) => +v.toFixed(1)), targetMs: 500, model: `fixtures/cnnf-ind2-c2 (fc ${cfg.fc.join(',')}, ind 2, 2 cycles, e2e)` };
}

function float64Line(f: ReturnType<typeof float64Bench>): string {
  return `float64 (CNNF64) evaluate + input gradient, one example, ${f.model}: ${f.msPerExample} ms (target < ${f.targetMs} ms${f.msPerExample < f.targetMs ? ', met' : ', MISSED'}), median of ${f.allMs.length}`;
}

function memoryLines(m: Awaited<ReturnType<typeof memoryBench>>): string[] {
  const row = (what: string, r: PeakRss, target: number) =>
    r.mb === null
      ? `peak RSS ${what}: n/a - ${r.error ?? 'not measurable here'}`
      : `peak RSS ${what}: ${r.mb} MB (target <= ${target} MB${r.mb <= target ? ', met' : ', MISSED'}; ${(r.ms / 1000).toFixed(0)} s; ${r.method})`;
  return [
    row('cnnf eval, 2 models, quick suite, 2 workers', m.eval, m.targets.evalPeakRssMB),
    row('cnnf train cnnf, 256 images, 1 epoch, 2 workers', m.train, m.targets.trainPeakRssMB),
    row('cnnf eval, reference-cnnf-adv + reference-cnn-adv, paper-fmnist suite, first:100, 2 workers, default budget', m.paper, m.targets.paperPeakRssMB),
  ];
}

async function main(): Promise<void> {
  if (process.argv.includes('--autoattack')) {
    const { mainAutoAttack } = await import('./autoattack.js');
    await mainAutoAttack(process.argv.slice(2));
    return;
  }
  const o = parseArgs(process.argv.slice(2));
  if (o.startupOnly) {
    const s = cliStartup(Math.max(o.reps, 5));
    process.stdout.write(o.json ? `${JSON.stringify({ startup: s }, null, 2)}\n` : `${startupLine(s)}\n`);
    return;
  }
  if (o.float64Only) {
    const f = float64Bench(Math.max(o.reps, 5));
    process.stdout.write(o.json ? `${JSON.stringify({ float64: f }, null, 2)}\n` : `${float64Line(f)}\n`);
    return;
  }
  if (o.memoryOnly) {
    const m = await memoryBench(o);
    process.stdout.write(o.json ? `${JSON.stringify({ memory: m }, null, 2)}\n` : `${memoryLines(m).join('\n')}\n`);
    return;
  }
  const info = await useBackend(o.backend, { quiet: true });
  // the ONNX rows: fewer repetitions (a CNN-F's PGD-10 takes seconds per batch)
  const onnxOpts = { batch: o.batch, reps: Math.min(o.reps, 3), warmup: Math.min(o.warmup, 1), log: (s: string) => { if (!o.json) process.stderr.write(`${s}\n`); } };
  if (o.profile) {
    const rows = await profileKernels(ROOT, { batch: o.batchGiven ? o.batch : 10, reps: o.reps, log: onnxOpts.log });
    process.stdout.write(o.json ? `${JSON.stringify({ backend: info.name, cpu: os.cpus()[0]?.model ?? 'unknown', profile: rows }, null, 2)}\n` : `${[`backend ${info.name}, ${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length}, one thread`, ...profileLines(rows)].join('\n')}\n`);
    return;
  }
  if (o.onnxOnly) {
    const before = tf.memory().numTensors;
    const rows = await onnxBench(ROOT, onnxOpts);
    const after = tf.memory().numTensors;
    if (after > before) {
      process.stderr.write(`bench: tf.memory().numTensors grew from ${before} to ${after} over the ONNX rows\n`);
      process.exitCode = 1;
    }
    process.stdout.write(o.json ? `${JSON.stringify({ backend: info.name, cpu: os.cpus()[0]?.model ?? 'unknown', onnx: rows }, null, 2)}\n` : `${[`backend ${info.name}, ${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length}`, ...onnxLines(rows)].join('\n')}\n`);
    return;
  }
  if (o.peakOnly) {
    const p = await measurePeak(o.reps);
    process.stdout.write(o.json ? `${JSON.stringify({ peak: p }, null, 2)}\n` : `one-thread peak on ${p.backend}: ${p.gflops} GFLOP/s (matMul 1024^3 ${p.matMulGflops}, conv 3x3 64x28x28x32->32 ${p.convGflops})\n`);
    return;
  }
  const fc = [1000, 128];
  const ind = 2;
  const model = CNNF.init({ arch: 'fmnist', fc, ind, cycles: o.cycles, resParam: 0.1 }, 1234);
  const B = o.batch;
  const x = tf.tidy(() => tf.randomUniform([B, 28, 28, 1], -1, 1, 'float32', 1)) as tf.Tensor4D;
  const xNoisy = tf.tidy(() => tf.clipByValue(tf.add(x, tf.randomNormal(x.shape, 0, 0.3, 'float32', 2)), -1, 1)) as tf.Tensor4D;
  const y = tf.tidy(() => tf.cast(tf.floor(tf.randomUniform([B], 0, 10, 'float32', 3)), 'int32')) as tf.Tensor1D;

  // SGD with momentum and weight decay, as torch.optim.SGD(lr 0.01, momentum 0.9, weight_decay 5e-4)
  const vars = model.variables();
  const momentum = new Map(vars.map((v) => [v.name, tf.variable(tf.zerosLike(v), false)]));
  const lr = 0.01;
  const sgdStep = (grads: tf.NamedTensorMap) => {
    tf.tidy(() => {
      for (const v of vars) {
        const g = grads[v.name];
        if (!g) continue;
        const buf = momentum.get(v.name)!;
        const d = tf.add(g, tf.mul(v, 5e-4));
        buf.assign(tf.add(tf.mul(buf, 0.9), d));
        v.assign(tf.sub(v, tf.mul(buf, lr)));
      }
    });
  };

  const mbOne = o.microBatch === 0 ? B : o.microBatch;
  const pgd = new PGD({ steps: 7, stepSize: 0.071, randomStart: false });
  let seed = 1;
  const victim = { model, mode: 'e2e' as const, cycles: o.cycles, readout: 'last' as const };
  const tasks: Record<TaskName, () => Promise<void>> = {
    infer: async () => {
      const lg = tf.tidy(() => model.logits(x));
      await lg.data();
      lg.dispose();
    },
    // as `cnnf train` runs a step: the batch's gradient summed over micro-batches (the same update as
    // one variableGrads over the batch up to float rounding), then the SGD update
    train: async () => {
      if (mbOne >= B) {
        const { value, grads } = tf.variableGrads(() => pairLoss(model, x, xNoisy, y, { cleanWeight: 0.1, reconWeight: 0.1 }));
        sgdStep(grads);
        await value.data();
        value.dispose();
        tf.dispose(grads);
        return;
      }
      const g = await batchGradients(model, x, y, mbOne, { cleanWeight: 0.1, reconWeight: 0.1 }, (c, m) => tf.slice(xNoisy, c, m), true);
      const grads: tf.NamedTensorMap = {};
      for (const [name, t] of g.grads) grads[(model.params.get(name) as tf.Variable).name] = t;
      sgdStep(grads);
      await g.value.data();
      tf.dispose([g.value, g.hits, ...g.grads.values()]);
    },
    pgd7_e2e: async () => {
      const adv = await pgd.perturb(victim, x, y, 0.2, { nextSeed: () => seed++ });
      await adv.data();
      adv.dispose();
    },
  };

  if (!o.json) process.stderr.write('bench: measuring the one-thread peak (matMul, conv) ...\n');
  const peak = await measurePeak(o.reps);
  const tensorsBefore = tf.memory().numTensors;
  const flops = flopModel(B, o.cycles, ind, fc);
  const results: Partial<Record<TaskName, TaskResult>> = {};
  for (const t of o.tasks) {
    const all = await time(tasks[t], o.warmup, o.reps);
    const ms = median(all);
    results[t] = { ms, allMs: all.map((v) => +v.toFixed(1)), flops: flops.tasks[t], gflops: flops.tasks[t] / (ms / 1000) / 1e9 };
    if (!o.json) process.stderr.write(`bench: ${t} ${ms.toFixed(1)} ms\n`);
  }
  const tensorsAfter = tf.memory().numTensors;

  // Attack rows (issue 9): APGD-CE (100 iterations, end to end) and Square (1000 queries) on the
  // shipped reference-cnnf-adv and the first B test images, one run each, one thread. No PyTorch
  // baseline exists for them here (bench/torch_reference_bench.py has none).
  const attackRows: Record<string, { ms: number; msPerImage: number; robustAccuracy: number; clean: number }> = {};
  if (o.attackRows) {
    const ck = await loadCheckpoint(join(ROOT, 'models', 'reference-cnnf-adv.safetensors'));
    const test = loadDataset({ dataset: 'fashion-mnist', testSubset: `first:${B}` }).test;
    const xs = tf.tensor4d(test.images, [test.count, 28, 28, 1]);
    const ys = tf.tensor1d(test.labels, 'int32');
    const v: Victim = { model: ck.model, mode: 'e2e', cycles: ck.model.config.cycles, readout: ck.info.readout };
    const acc = async (t: tf.Tensor4D): Promise<number> => {
      const a = tf.tidy(() => tf.mean(tf.cast(tf.equal(tf.argMax(predictLogits(v, t), 1), ys), 'float32')));
      const value = (await a.data())[0];
      a.dispose();
      return value;
    };
    const clean = await acc(xs);
    for (const [name, attack] of [['apgd-ce100_e2e', new APGD({ loss: 'ce', iterations: 100 })], ['square1000', new SquareAttack({ queries: 1000 })]] as const) {
      const t0 = performance.now();
      const adv = await attack.perturb(v, xs, ys, 0.2, 1);
      const ms = performance.now() - t0;
      attackRows[name] = { ms: +ms.toFixed(0), msPerImage: +(ms / test.count).toFixed(1), robustAccuracy: await acc(adv), clean };
      adv.dispose();
      if (!o.json) process.stderr.write(`bench: ${name} ${ms.toFixed(0)} ms\n`);
    }
    tf.dispose([xs, ys]);
    ck.model.dispose();
  }

  const onnxTensorsBefore = tf.memory().numTensors;
  const onnxRows: OnnxBenchRow[] = o.onnx ? await onnxBench(ROOT, onnxOpts) : [];
  const onnxTensorsAfter = tf.memory().numTensors;

  if (!o.json) process.stderr.write('bench: float64 engine, one example ...\n');
  const float64 = float64Bench(Math.max(o.reps, 5));

  // The same work spread over worker threads, as `cnnf eval/attack/train --workers N` run it:
  // infer and pgd7_e2e are evaluation units (throughput: N batches at once, one per worker; the
  // pgd unit also predicts the attacked batch, 1 extra inference), train is one
  // data-parallel step (micro-batches of DEFAULT_MICRO_BATCH spread over the workers, gradients added here in order, SGD, weights sent back).
  const parallel: Partial<Record<TaskName, TaskResult>> = {};
  if (o.workers > 1) {
    if (!o.json) process.stderr.write(`bench: starting ${o.workers} worker threads ...\n`);
    const pool = await WorkerPool.start(o.workers, info.name);
    try {
      const images = (await x.data()) as Float32Array;
      const pert = (await xNoisy.data()) as Float32Array;
      const labels = (await y.data()) as Int32Array;
      const pgdSuite = parseSuite({ name: 'bench', attacks: [{ name: 'pgd7', method: 'pgd', eps: [0.2], steps: 7, stepSize: 0.071, randomStart: false, modes: ['e2e'] }] }, 'bench');
      const batch = (jobs: BatchTask['jobs']): BatchTask => ({ start: 0, images, labels, cycles: o.cycles, readout: 'last', numClasses: 10, seed: 1, jobs, keep: jobs.map(() => [0]), clean: jobs.length === 0 });
      const throughput = (task: BatchTask) => async () => {
        await Promise.all(Array.from({ length: o.workers }, () => runEvalBatch(pool, model, task)));
      };
      const mb = o.microBatch === 0 ? Math.ceil(B / o.workers) : o.microBatch;
      const ptasks: Record<TaskName, () => Promise<void>> = {
        infer: throughput(batch([])),
        pgd7_e2e: throughput(batch([{ spec: pgdSuite.attacks[0], mode: 'e2e' }])),
        train: async () => {
          const g = await pooledGradients(pool, model, { images, perturbed: pert, labels }, mb, { cleanWeight: 0.1, reconWeight: 0.1 });
          const grads: tf.NamedTensorMap = {};
          for (const [name, t] of g.grads) grads[(model.params.get(name) as tf.Variable).name] = t;
          tf.dispose([g.value, g.hits]);
          sgdStep(grads);
          tf.dispose(Object.values(grads));
          await pool.syncWeights(model);
        },
      };
      for (const t of o.tasks) {
        const per = t === 'train' ? 1 : o.workers; // batches per timed run
        const all = (await time(ptasks[t], o.warmup, o.reps)).map((v) => v / per);
        const ms = median(all);
        parallel[t] = { ms, allMs: all.map((v) => +v.toFixed(1)), flops: flops.tasks[t], gflops: flops.tasks[t] / (ms / 1000) / 1e9 };
        if (!o.json) process.stderr.write(`bench: ${t} with ${o.workers} workers ${ms.toFixed(1)} ms per batch\n`);
      }
    } finally {
      await pool.close();
    }
  }
  const maxRssMB = process.resourceUsage().maxRSS / 1024;

  model.dispose();
  tf.dispose([x, xNoisy, y, ...momentum.values()]);

  if (!o.json && o.torch) process.stderr.write('bench: running the PyTorch baseline ...\n');
  const torch = runTorch(o);
  let wasmThreads: number | undefined;
  if (info.name === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    wasmThreads = wasm.getThreadsCount();
  }
  const leaked = tensorsAfter > tensorsBefore || onnxTensorsAfter > onnxTensorsBefore;
  if (!o.json && o.memory) process.stderr.write('bench: measuring peak RSS of cnnf eval and cnnf train (2 workers) ...\n');
  const mem = o.memory ? await memoryBench(o) : null;
  const report = {
    backend: info.name,
    wasmThreads,
    wasmSimd: info.name === 'wasm' ? await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT') : undefined,
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    workers: o.workers,
    batch: B,
    cycles: o.cycles,
    reps: o.reps,
    warmup: o.warmup,
    architecture: { arch: 'fmnist', fc, ind, resParam: 0.1 },
    tasks: Object.fromEntries(
      o.tasks.map((t) => {
        const r = results[t]!;
        const tm = torch.ms[t];
        const p = parallel[t];
        return [t, {
          cnnfMs: +r.ms.toFixed(1), allMs: r.allMs, torchMs: tm ?? null, speedup: tm ? +(tm / r.ms).toFixed(3) : null, gflop: +(r.flops / 1e9).toFixed(3), gflops: +r.gflops.toFixed(2),
          ofPeak: +(r.gflops / peak.gflops).toFixed(3),
          workersMs: p ? +p.ms.toFixed(1) : null, workersAllMs: p?.allMs ?? null, workersSpeedup: p && tm ? +(tm / p.ms).toFixed(3) : null, workersGflops: p ? +p.gflops.toFixed(2) : null,
          workersOfPeak: p ? +(p.gflops / peak.gflops).toFixed(3) : null,
        }];
      }),
    ),
    peak,
    torch: { available: torch.available, version: torch.version ?? null, threads: torch.threads ?? null, reason: torch.reason ?? null },
    flopModel: { convMacsPerSample: flops.convMacs, fcMacsPerSample: flops.fcMacs, fullForward: flops.fullForward, partialForward: flops.partialForward, feedback: flops.feedback },
    memory: {
      tensorsBefore, tensorsAfter, leaked, peakRssMB: +maxRssMB.toFixed(1),
      evalPeakRssMB: mem?.evalPeakRssMB ?? null, trainPeakRssMB: mem?.trainPeakRssMB ?? null, paperPeakRssMB: mem?.paperPeakRssMB ?? null, targets: MEMORY_TARGETS,
      eval: mem?.eval ?? null, train: mem?.train ?? null, paper: mem?.paper ?? null,
    },
    startup: cliStartup(o.reps),
    attacks: attackRows,
    onnx: onnxRows,
    float64,
  };

  if (o.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    const lines: string[] = [];
    lines.push(`cnnf bench: backend ${report.backend}${wasmThreads !== undefined ? ` (threads ${wasmThreads}, simd ${report.wasmSimd})` : ''}, node ${report.node}, ${report.cpu} x${report.cores}`);
    lines.push(`fmnist fc ${fc.join(',')} ind ${ind} res 0.1, batch ${B}, cycles ${o.cycles}, median of ${o.reps} after ${o.warmup} warm-up`);
    lines.push(
      torch.available
        ? `torch ${torch.version} (${torch.threads} threads, ${PYTHON} bench/torch_reference_bench.py)`
        : `torch: n/a - ${torch.reason}`,
    );
    const W = o.workers;
    const head = ['task', 'torch ms', 'cnnf ms, 1 thread', 'speed-up', `cnnf ms, ${W} workers`, 'speed-up', 'GFLOP', 'GFLOP/s 1 / W', '1 thread / peak'];
    const na = (v: number | null, f: (v: number) => string) => (v === null ? 'n/a' : f(v));
    const rows = o.tasks.map((t) => {
      const r = report.tasks[t] as { cnnfMs: number; torchMs: number | null; speedup: number | null; gflop: number; gflops: number; ofPeak: number; workersMs: number | null; workersSpeedup: number | null; workersGflops: number | null };
      return [t, na(r.torchMs, (v) => v.toFixed(1)), r.cnnfMs.toFixed(1), na(r.speedup, (v) => `${v.toFixed(2)}x`), na(r.workersMs, (v) => v.toFixed(1)), na(r.workersSpeedup, (v) => `${v.toFixed(2)}x`), r.gflop.toFixed(2), `${r.gflops.toFixed(1)} / ${na(r.workersGflops, (v) => v.toFixed(1))}`, `${(r.ofPeak * 100).toFixed(0)} %`];
    });
    const wid = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const fmt = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(wid[i]) : c.padStart(wid[i]))).join('  ');
    lines.push(fmt(head), wid.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt));
    lines.push(`one-thread peak on ${peak.backend}: ${peak.gflops} GFLOP/s (best of matMul 1024^3 ${peak.matMulGflops} and conv 3x3 64x28x28x32->32 ${peak.convGflops}); "/ peak" = 1-thread GFLOP/s / that`);
    for (const [name, r] of Object.entries(attackRows)) {
      lines.push(`${name}: ${r.ms} ms for ${B} images (${r.msPerImage} ms/image, 1 thread, reference-cnnf-adv, eps 0.2 Linf): accuracy ${(r.clean * 100).toFixed(1)}% -> ${(r.robustAccuracy * 100).toFixed(1)}%; no PyTorch baseline`);
    }
    lines.push(...onnxLines(onnxRows));
    lines.push(float64Line(float64));
    lines.push(`tensors before ${tensorsBefore}, after ${tensorsAfter}${leaked ? '  LEAK' : ''}; peak RSS of this bench ${maxRssMB.toFixed(0)} MB`);
    if (mem) lines.push(...memoryLines(mem));
    lines.push('speed-up = torch ms / cnnf ms (torch uses its --torch-threads threads for one batch)');
    if (W > 1) lines.push(`${W} workers: infer and pgd7_e2e are throughput (${W} batches at once, ms per batch; the pgd unit also predicts the attacked batch), train is one data-parallel step`);
    lines.push(startupLine(report.startup));
    lines.push('timings are wall-clock: other load on the machine moves them (torch more than cnnf)');
    process.stdout.write(lines.join('\n') + '\n');
  }
  if (leaked) {
    process.stderr.write(`bench: tf.memory().numTensors grew from ${tensorsBefore} to ${tensorsAfter} over the tasks, ${onnxTensorsBefore} to ${onnxTensorsAfter} over the ONNX rows\n`);
    process.exitCode = 1;
  }
}

await main();
