/**
 * The ONNX rows of `npm run bench` (issue 23): a shipped network exported with `cnnf export --to onnx`
 * (its cycles unrolled) and run through cnnf's ONNX executor, beside the same network as a cnnf
 * checkpoint, in the same process on the same backend (one thread), per batch of `batch` Fashion-MNIST
 * test images:
 *   clean   evalBatch with no jobs: the clean prediction, as `cnnf eval` runs a batch
 *   pgd10   evalBatch with one PGD job (10 steps, eps 0.1, step 2.5 eps / steps, no random start: the
 *           random start's seed follows the gradient path's name, which differs between the two sides):
 *           the first pass of the plain CNN, end to end through every cycle of the CNN-F (on the ONNX
 *           graph: tfjs autodiff through the unrolled cycles, the only path a foreign model has)
 * plus onnxruntime-web's clean forward pass of the same file (wasm, one thread) when the package is
 * installed (a devDependency). Each row: median of `reps` after `warmup` untimed runs, and the
 * accuracies both sides reached (the same up to float32 rounding, measured: identical adversarial
 * images; a sanity check beside the timing).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IMAGE_PIXELS, loadDataset } from '../src/data/index.js';
import { evalBatch, type BatchTask } from '../src/eval/batch.js';
import { parseSuite } from '../src/eval/suite.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { exportOnnx } from '../src/io/export-onnx.js';
import { buildOnnxModel, readOnnxModelFile } from '../src/io/onnx.js';
import { median, time } from './timing.js';

export interface OnnxBenchRow {
  model: string;
  cycles: number;
  /** PGD's gradient path on the checkpoint ('first' for a plain CNN, 'e2e' for a CNN-F). */
  mode: 'first' | 'e2e';
  nodes: number;
  bytes: number;
  batch: number;
  checkpoint: { cleanMs: number; pgd10Ms: number; clean: number; robust: number };
  onnx: { cleanMs: number; pgd10Ms: number; clean: number; robust: number };
  /** onnxruntime-web's clean forward pass of the same file, or why not. */
  onnxruntime: { cleanMs: number } | { skipped: string };
}

const MODELS = ['reference-cnn-adv', 'reference-cnnf-adv'] as const;

/** Median wall ms of `reps` runs after `warmup` untimed ones, rounded. */
async function timed(warmup: number, reps: number, fn: () => Promise<unknown>): Promise<number> {
  return +median(await time(fn, warmup, reps)).toFixed(0);
}

const fraction = (pred: Int32Array, labels: Int32Array): number => {
  let k = 0;
  for (let i = 0; i < labels.length; i++) if (pred[i] === labels[i]) k++;
  return +(k / labels.length).toFixed(4);
};

export async function onnxBench(root: string, o: { batch: number; reps: number; warmup: number; log: (s: string) => void }): Promise<OnnxBenchRow[]> {
  const test = loadDataset({ testSize: o.batch, testOnly: true }).test;
  const n = Math.min(o.batch, test.count);
  const images = test.images.slice(0, n * IMAGE_PIXELS);
  const labels = Int32Array.from(test.labels.subarray(0, n));
  let ort: typeof import('onnxruntime-web') | null = null;
  let ortWhy = '';
  try {
    ort = await import('onnxruntime-web');
    ort.env.wasm.numThreads = 1;
  } catch (e) {
    ortWhy = `onnxruntime-web not installed (${(e as Error).message.split('\n')[0]})`;
  }
  const dir = mkdtempSync(join(tmpdir(), 'cnnf-bench-onnx-'));
  const rows: OnnxBenchRow[] = [];
  try {
    for (const name of MODELS) {
      const path = join(root, 'models', `${name}.safetensors`);
      const file = join(dir, `${name}.onnx`);
      const exported = await exportOnnx(path, file);
      const ck = await loadCheckpoint(path);
      const onnx = (await buildOnnxModel(readOnnxModelFile(file))).model;
      try {
        const cycles = ck.model.config.cycles;
        const mode = cycles > 0 ? 'e2e' : 'first';
        const suite = parseSuite({ name: 'bench-onnx', attacks: [{ method: 'pgd', eps: [0.1], modes: [mode], steps: 10, randomStart: false }] }, 'bench-onnx');
        const base = { start: 0, images, labels, readout: ck.info.readout, numClasses: 10, seed: 1 };
        const side = async (model: typeof ck.model | typeof onnx, c: number, m: 'first' | 'e2e', what: string) => {
          const clean: BatchTask = { ...base, cycles: c, jobs: [], keep: [] };
          const pgd: BatchTask = { ...base, cycles: c, jobs: [{ spec: suite.attacks[0], mode: m }], keep: [[0]] };
          const cleanMs = await timed(o.warmup, o.reps, () => evalBatch(model, clean));
          o.log(`bench: onnx: ${name} ${what} clean ${cleanMs} ms`);
          let out = await evalBatch(model, pgd);
          const pgd10Ms = await timed(0, o.reps, async () => (out = await evalBatch(model, pgd)));
          o.log(`bench: onnx: ${name} ${what} pgd10 ${pgd10Ms} ms`);
          return { cleanMs, pgd10Ms, clean: fraction(out.clean, labels), robust: fraction(out.preds[0][0], labels) };
        };
        const checkpoint = await side(ck.model, cycles, mode, 'checkpoint');
        // the ONNX graph is one function (cycles unrolled inside): a foreign model's only gradient path
        const viaOnnx = await side(onnx, 0, 'first', 'onnx');
        let onnxruntime: OnnxBenchRow['onnxruntime'] = { skipped: ortWhy };
        if (ort) {
          const session = await ort.InferenceSession.create(readFileSync(file));
          const nchw = new Float32Array(n * IMAGE_PIXELS);
          for (let i = 0; i < n; i++) nchw.set(images.subarray(i * IMAGE_PIXELS, (i + 1) * IMAGE_PIXELS), i * IMAGE_PIXELS); // 1 channel: NHWC = NCHW
          const feed = { [session.inputNames[0]]: new ort.Tensor('float32', nchw, [n, 1, 28, 28]) };
          onnxruntime = { cleanMs: await timed(o.warmup, o.reps, () => session.run(feed)) };
          await session.release();
        }
        rows.push({ model: name, cycles, mode, nodes: exported.nodes, bytes: exported.bytes, batch: n, checkpoint, onnx: viaOnnx, onnxruntime });
      } finally {
        ck.model.dispose();
        onnx.dispose();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

export function onnxLines(rows: OnnxBenchRow[]): string[] {
  return rows.flatMap((r) => {
    const ort = 'cleanMs' in r.onnxruntime ? `onnxruntime-web ${r.onnxruntime.cleanMs} ms` : `onnxruntime-web n/a (${r.onnxruntime.skipped})`;
    const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
    return [
      `onnx ${r.model} (${r.cycles} cycles, exported: ${r.nodes} nodes, ${(r.bytes / 1e6).toFixed(1)} MB), per batch of ${r.batch}, 1 thread:`,
      `  clean: checkpoint ${r.checkpoint.cleanMs} ms, ONNX through cnnf ${r.onnx.cleanMs} ms (${ratio(r.onnx.cleanMs, r.checkpoint.cleanMs)}), ${ort}; accuracy ${(r.checkpoint.clean * 100).toFixed(1)}% / ${(r.onnx.clean * 100).toFixed(1)}%`,
      `  PGD-10 eps 0.1 (${r.mode} on the checkpoint, the graph's one path on ONNX): checkpoint ${r.checkpoint.pgd10Ms} ms, ONNX ${r.onnx.pgd10Ms} ms (${ratio(r.onnx.pgd10Ms, r.checkpoint.pgd10Ms)}); robust ${(r.checkpoint.robust * 100).toFixed(1)}% / ${(r.onnx.robust * 100).toFixed(1)}%`,
    ];
  });
}
