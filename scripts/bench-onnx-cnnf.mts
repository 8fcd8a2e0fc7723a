// Run: node_modules/.bin/tsx scripts/bench-onnx-cnnf.mts (from the repository root; wasm backend, one thread).
// The shipped CNN-F exported to ONNX with its cycles unrolled (`cnnf export --to onnx --cycles N`):
// file size and nodes, and per batch of 100 test images the clean pass through onnxruntime-web (wasm,
// one thread), through cnnf's ONNX executor and through the cnnf checkpoint itself, plus one FGSM
// (an input gradient through every cycle: e2e on the checkpoint, tfjs autodiff on the ONNX graph); same run.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { execSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-web';
import { useBackend } from '../src/backend/index.js';
import { FGSM, type Victim } from '../src/attacks/index.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { exportOnnx } from '../src/io/export-onnx.js';
import { buildOnnxModel, readOnnxModelFile } from '../src/io/onnx.js';
import { IMAGE_PIXELS, loadDataset } from '../src/data/index.js';

await useBackend('wasm', { quiet: true });
ort.env.wasm.numThreads = 1;
const path = 'models/cnnf-fmnist.safetensors';
const ck = await loadCheckpoint(path);
const ds = loadDataset({ testSize: 100, testOnly: true }).test;
const n = 100;
const x = tf.tensor4d(ds.images.slice(0, n * IMAGE_PIXELS), [n, 28, 28, 1]);
const y = tf.tensor1d(Int32Array.from(ds.labels.subarray(0, n)), 'int32');
const nchw = tf.tidy(() => tf.transpose(x, [0, 3, 1, 2]).dataSync() as Float32Array);
const rounds = Number(process.env.ROUNDS ?? 3);
const best = (a: number[]) => Math.min(...a);
console.log(`CPU: ${cpus()[0]?.model ?? '?'}`);
for (const cycles of [1, 2]) {
  const file = join(mkdtempSync(join(tmpdir(), 'cnnf-bench-onnx-')), `cnnf-${cycles}.onnx`);
  const r = await exportOnnx(path, file, { cycles });
  const session = await ort.InferenceSession.create(readFileSync(file));
  const onnx = (await buildOnnxModel(readOnnxModelFile(file))).model;
  const t: Record<string, number[]> = {};
  const time = async (k: string, f: () => Promise<unknown> | unknown) => { const t0 = performance.now(); await f(); (t[k] ??= []).push(performance.now() - t0); };
  const native: Victim = { model: ck.model, mode: 'e2e', cycles, readout: 'last' };
  const foreign: Victim = { model: onnx, mode: 'first', cycles: 0, readout: 'last' };
  const fgsm = new FGSM();
  for (let k = 0; k < rounds; k++) {
    await time('onnxruntime clean', () => session.run({ image: new ort.Tensor('float32', nchw, [n, 1, 28, 28]) }));
    await time('cnnf executor clean', () => tf.tidy(() => onnx.logits(x).dataSync()));
    await time('cnnf checkpoint clean', () => tf.tidy(() => ck.model.run(x, { cycles }).logits[cycles].dataSync()));
    await time('cnnf executor fgsm', async () => (await fgsm.perturb(foreign, x, y, 0.1, 1)).dispose());
    await time('cnnf checkpoint fgsm e2e', async () => (await fgsm.perturb(native, x, y, 0.1, 1)).dispose());
  }
  console.log(`${cycles} cycle(s): ${r.nodes} nodes, ${r.bytes} bytes`);
  for (const [k, v] of Object.entries(t)) console.log(`  ${k}: best ${best(v).toFixed(0)} ms per batch of ${n} (runs ${v.map((q) => q.toFixed(0)).join(', ')})`);
  await session.release();
  onnx.dispose();
}
console.log(execSync('uptime').toString().trim());
