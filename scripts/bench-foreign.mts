// Run: node_modules/.bin/tsx scripts/bench-foreign.mts (from the repository root; wasm backend, one thread).
// Speed of a foreign (TF.js LayersModel) vs a cnnf model of the same layers, same run, side by side.
import * as tfl from '@tensorflow/tfjs';
import { useBackend } from '../src/backend/index.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { loadDataset } from '../src/data/index.js';
import { evalBatch, type BatchTask } from '../src/eval/batch.js';
import { parseSuite } from '../src/eval/suite.js';
import { TfjsLayersClassifier } from '../src/models/foreign.js';
import { execSync } from 'node:child_process';

await useBackend('wasm', { quiet: true });
const ck = await loadCheckpoint('models/reference-cnn-standard.safetensors');
const conv = (filters: number, first = false) => tfl.layers.conv2d({ ...(first ? { inputShape: [28, 28, 1] } : {}), filters, kernelSize: 3, padding: 'same', activation: 'relu' });
const net = tfl.sequential({ layers: [
  conv(16, true), conv(32), conv(32), tfl.layers.maxPooling2d({ poolSize: 2 }), conv(64), tfl.layers.maxPooling2d({ poolSize: 2 }),
  tfl.layers.flatten(), tfl.layers.dense({ units: 1000, activation: 'relu' }), tfl.layers.dense({ units: 128, activation: 'relu' }), tfl.layers.dense({ units: 10 }),
] });
const foreign = await TfjsLayersClassifier.create(net, { range: '-1,1', layout: 'NHWC', output: 'logits' }, 'TF.js LayersModel bench');
const cnnfParams = [...ck.model.params.values()].reduce((a, p) => a + p.size, 0);
console.log(`tfjs params ${net.countParams()}; cnnf arch ${ck.info.config.arch} fc ${ck.info.config.fc} cycles ${ck.info.config.cycles} (${cnnfParams})`);
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
  await time('tfjs clean', () => evalBatch(foreign, clean));
  await time('cnnf pgd10', () => evalBatch(ck.model, pgd));
  await time('tfjs pgd10', () => evalBatch(foreign, pgd));
}
const med = (a: number[]) => { const s = [...a.slice(1)].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
for (const [k, v] of Object.entries(t)) console.log(`${k}: median ${med(v).toFixed(0)} ms per batch of ${n} (runs ${v.map((x) => x.toFixed(0)).join(', ')}; first is warm-up)`);
console.log(execSync('uptime').toString().trim());
