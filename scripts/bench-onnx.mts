// Run: node_modules/.bin/tsx scripts/bench-onnx.mts (from the repository root; wasm backend, one thread).
// Speed of the shipped plain CNN exported to ONNX (`cnnf export --to onnx`) and run through cnnf's ONNX
// executor vs the same network as a cnnf checkpoint: clean pass and PGD-10 per batch of 100, same run.
import { mkdtempSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { execSync } from 'node:child_process';
import { useBackend } from '../src/backend/index.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { exportOnnx } from '../src/io/export-onnx.js';
import { buildOnnxModel, readOnnxModelFile } from '../src/io/onnx.js';
import { loadDataset } from '../src/data/index.js';
import { evalBatch, type BatchTask } from '../src/eval/batch.js';
import { parseSuite } from '../src/eval/suite.js';

await useBackend('wasm', { quiet: true });
const path = 'models/reference-cnn-adv.safetensors';
const ck = await loadCheckpoint(path);
const onnxPath = join(mkdtempSync(join(tmpdir(), 'cnnf-bench-onnx-')), 'cnn.onnx');
await exportOnnx(path, onnxPath);
const onnx = (await buildOnnxModel(readOnnxModelFile(onnxPath))).model;
const ds = loadDataset({ testSize: 100, testOnly: true }).test;
const n = 100;
const suite = parseSuite({ name: 'b', attacks: [{ method: 'pgd', eps: [0.1], modes: ['first'], steps: 10 }] }, 'b');
const base = { start: 0, images: ds.images.slice(0, n * 784), labels: Int32Array.from(ds.labels.subarray(0, n)), cycles: 0, readout: 'last' as const, numClasses: 10, seed: 1, shape: [28, 28, 1] as [number, number, number] };
const clean: BatchTask = { ...base, jobs: [], keep: [] };
const pgd: BatchTask = { ...base, jobs: [{ spec: suite.attacks[0], mode: 'first' }], keep: [[0]], clean: false };
const t: Record<string, number[]> = {};
const time = async (k: string, f: () => Promise<unknown>) => { const t0 = performance.now(); await f(); (t[k] ??= []).push(performance.now() - t0); };
for (let r = 0; r < 4; r++) {
  await time('cnnf clean', () => evalBatch(ck.model, clean));
  await time('onnx clean', () => evalBatch(onnx, clean));
  await time('cnnf pgd10', () => evalBatch(ck.model, pgd));
  await time('onnx pgd10', () => evalBatch(onnx, pgd));
}
const med = (a: number[]) => { const s = [...a.slice(1)].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
console.log(`CPU: ${cpus()[0]?.model ?? '?'}`);
for (const [k, v] of Object.entries(t)) console.log(`${k}: median ${med(v).toFixed(0)} ms per batch of ${n} (runs ${v.map((x) => x.toFixed(0)).join(', ')}; first is warm-up)`);
console.log(execSync('uptime').toString().trim());
