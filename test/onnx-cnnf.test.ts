/**
 * `cnnf export --to onnx` of a CNN-F: the feedback cycles unrolled into one static graph. onnxruntime-web
 * (a dev dependency, wasm CPU) runs the exported shipped models and must give cnnf's own
 * `model.run(x, { cycles })` readout within 1e-5 relative on 64 test images, for 0, 1 and 2 cycles; cnnf's
 * ONNX executor must read the file back with the same logits, and FGSM through the ONNX graph (tfjs
 * autodiff through every unrolled cycle) must match FGSM on the checkpoint in mode e2e. Ties: inputs
 * whose pooling windows tie (constant images, ReLU zeros) give cnnf's logits, and a graph that sends
 * ties to the LAST maximal position instead gives other logits (so the tie rule is what is tested).
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-web';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { FGSM, predictLogits, type Victim } from '../src/attacks/index.js';
import { IMAGE_PIXELS, loadDataset } from '../src/data/index.js';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint.js';
import { exportOnnx, OnnxGraphBuilder, onnxSpecOfCnnf, ONNX_MODEL_KEY } from '../src/io/export-onnx.js';
import { buildOnnxModel, encodeOnnxModel, readOnnxModelFile, type OnnxModelSpec } from '../src/io/onnx.js';
import { ONNX_PROTO } from '../src/io/onnx-schema.js';
import { firstMaxMask } from '../src/nn/maxpool.js';
import { CNNF, readoutOf } from '../src/models/cnnf.js';
import { cnnf, inParallel, oneLine, ROOT } from './helpers/cli.js';
import { relErr } from './helpers/tf.js';

const dir = mkdtempSync(join(tmpdir(), 'cnnf-onnx-cnnf-'));
const CNNF_PATH = join(ROOT, 'models', 'cnnf-fmnist.safetensors');
const CNN = join(ROOT, 'models', 'cnn-fmnist.safetensors');
const N = 64;
let ck: LoadedCheckpoint;
let arrays: Map<string, { shape: number[]; data: Float32Array }>;
let x: tf.Tensor4D;
let y: tf.Tensor1D;
let nchw: Float32Array;
/** cnnf's logits of the first pass and after cycles 1 and 2 (one model.run with 2 cycles), and the 2-cycle average. */
let want: Float32Array[];
let wantAverage: Float32Array;

beforeAll(async () => {
  await useBackend('wasm', { quiet: true });
  ort.env.wasm.numThreads = 1;
  ck = await loadCheckpoint(CNNF_PATH);
  arrays = await ck.model.toArrays();
  const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: 'stride:100' });
  x = tf.tensor4d(ds.test.images.subarray(0, N * IMAGE_PIXELS), [N, 28, 28, 1]);
  y = tf.tensor1d(ds.test.labels.subarray(0, N), 'int32');
  nchw = tf.tidy(() => tf.transpose(x, [0, 3, 1, 2]).dataSync() as Float32Array);
  [want, wantAverage] = tf.tidy(() => {
    const res = ck.model.run(x, { cycles: 2 });
    return [res.logits.map((l) => l.dataSync() as Float32Array), readoutOf(res, 'average').dataSync() as Float32Array] as const;
  });
});

afterAll(() => {
  ck.model.dispose();
  tf.dispose([x, y]);
});

async function ortRun(bytes: Uint8Array, input: Float32Array, n: number): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(bytes);
  try {
    return (await s.run({ image: new ort.Tensor('float32', input, [n, 1, 28, 28]) })).logits.data as Float32Array;
  } finally {
    await s.release();
  }
}

function metadata(bytes: Uint8Array): Record<string, string> {
  const T = protobuf.parse(ONNX_PROTO, { keepCase: true }).root.lookupType('onnx.ModelProto');
  const m = T.toObject(T.decode(bytes)) as { metadata_props?: Array<{ key: string; value: string }> };
  return Object.fromEntries((m.metadata_props ?? []).map((p) => [p.key, p.value]));
}

describe('cnnf export --to onnx of a CNN-F (cycles unrolled) vs cnnf', () => {
  it('the shipped CNN (0 cycles) gives its logits through onnxruntime within 1e-5', async () => {
    const path = join(dir, 'cnn.onnx');
    const r = await exportOnnx(CNN, path);
    expect([r.cycles, r.readout]).toEqual([0, 'last']);
    const cnn = await loadCheckpoint(CNN);
    try {
      const logits = tf.tidy(() => cnn.model.run(x, { cycles: 0 }).logits[0].dataSync() as Float32Array);
      expect(relErr(await ortRun(readFileSync(path), nchw, N), logits)).toBeLessThan(1e-5);
    } finally {
      cnn.model.dispose();
    }
  });

  for (const cycles of [0, 1, 2]) {
    it(`the shipped CNN-F unrolled for ${cycles} cycles: onnxruntime gives model.run's logits within 1e-5 (64 images)`, async () => {
      const bytes = encodeOnnxModel(onnxSpecOfCnnf(ck.info.config, arrays, cycles, 'last'));
      expect(relErr(await ortRun(bytes, nchw, N), want[cycles])).toBeLessThan(1e-5);
    });
  }

  it('readout "average" is the mean of the cycles + 1 passes (onnxruntime, 2 cycles)', async () => {
    expect(relErr(want[2], wantAverage)).toBeGreaterThan(1e-3); // the two readouts differ here
    const bytes = encodeOnnxModel(onnxSpecOfCnnf(ck.info.config, arrays, 2, 'average'));
    expect(relErr(await ortRun(bytes, nchw, N), wantAverage)).toBeLessThan(1e-5);
  });

  it('exportOnnx writes the metadata; cnnf\'s ONNX executor reads the 2-cycle file back with model.run\'s logits (16 images)', async () => {
    const path = join(dir, 'cnnf-2.onnx');
    const r = await exportOnnx(CNNF_PATH, path, { cycles: 2 });
    expect([r.cycles, r.readout]).toEqual([2, 'last']);
    const meta = JSON.parse(metadata(readFileSync(path))[ONNX_MODEL_KEY]) as Record<string, unknown>;
    expect(meta).toMatchObject({ arch: 'fmnist', ind: 2, resParam: 0.1, checkpointCycles: 1, cycles: 2, readout: 'last' });
    const file = readOnnxModelFile(path);
    expect(file.recorded).toMatchObject({ range: '-1,1', layout: 'NCHW', output: 'logits' });
    const onnx = (await buildOnnxModel(file)).model;
    try {
      const n = 16;
      const logits = tf.tidy(() => onnx.logits(tf.slice(x, [0, 0, 0, 0], [n, 28, 28, 1])).dataSync() as Float32Array);
      expect(relErr(logits, want[2].subarray(0, n * 10))).toBeLessThan(1e-5);
    } finally {
      onnx.dispose();
    }
  });

  it('FGSM through the ONNX graph (tfjs autodiff through the unrolled cycle) matches FGSM e2e on the checkpoint', async () => {
    const path = join(dir, 'cnnf-1.onnx');
    writeFileSync(path, encodeOnnxModel(onnxSpecOfCnnf(ck.info.config, arrays, 1, 'last')));
    const onnx = (await buildOnnxModel(readOnnxModelFile(path), { range: '-1,1' })).model;
    const n = 16;
    const xs = tf.slice(x, [0, 0, 0, 0], [n, 28, 28, 1]);
    const ys = tf.slice(y, [0], [n]);
    try {
      expect(relErr(tf.tidy(() => onnx.logits(xs).dataSync() as Float32Array), want[1].subarray(0, n * 10))).toBeLessThan(1e-5);
      const native: Victim = { model: ck.model, mode: 'e2e', cycles: 1, readout: 'last' };
      const foreign: Victim = { model: onnx, mode: 'first', cycles: 0, readout: 'last' };
      const fgsm = new FGSM();
      const a = await fgsm.perturb(native, xs, ys, 0.1, 1);
      const b = await fgsm.perturb(foreign, xs, ys, 0.1, 1);
      const [da, db] = [a.dataSync(), b.dataSync()];
      let same = 0;
      for (let i = 0; i < da.length; i++) if (da[i] === db[i]) same++;
      // a gradient component that is float32 noise around 0 may take the other sign in another summation order
      expect(same / da.length).toBeGreaterThan(0.999);
      const pa = tf.tidy(() => Array.from(tf.argMax(predictLogits(native, a), 1).dataSync()));
      const pb = tf.tidy(() => Array.from(tf.argMax(predictLogits(foreign, b), 1).dataSync()));
      expect(pb).toEqual(pa);
      const clean = tf.tidy(() => Array.from(tf.argMax(predictLogits(native, xs), 1).dataSync()));
      expect(pa).not.toEqual(clean); // the attack did something
      tf.dispose([a, b]);
    } finally {
      tf.dispose([xs, ys]);
      onnx.dispose();
    }
  });
});

describe('other feedback levels and architectures (seeded random weights, 8 test images, 2 cycles)', () => {
  // ind 0 feeds back to the image, ind 1 to conv block 1 (through blocks without a pool); "small" pools after both its blocks
  for (const [arch, ind, resParam] of [['small', 0, 0.1], ['small', 1, 0.3], ['fmnist', 0, 0.1], ['fmnist', 1, 0]] as const) {
    it(`${arch}, ind ${ind}, res_param ${resParam}: onnxruntime gives model.run's logits within 1e-5`, async () => {
      const m = CNNF.init({ arch, ind, cycles: 2, resParam, fc: arch === 'fmnist' ? [64, 32] : [32] }, 11);
      try {
        const n = 8;
        const xs = tf.slice(x, [0, 0, 0, 0], [n, 28, 28, 1]);
        const logits = tf.tidy(() => m.run(xs, { cycles: 2 }).logits[2].dataSync() as Float32Array);
        xs.dispose();
        const bytes = encodeOnnxModel(onnxSpecOfCnnf(m.config, await m.toArrays(), 2, 'last'));
        expect(relErr(await ortRun(bytes, nchw.subarray(0, n * 784), n), logits)).toBeLessThan(1e-5);
      } finally {
        m.dispose();
      }
    });
  }
});

describe('pooling ties follow cnnf\'s rule (the FIRST maximal / minimal position of each window)', () => {
  it('the graph\'s selection mask equals src/nn\'s firstMaxMask on windows full of ties (onnxruntime)', async () => {
    const g = new OnnxGraphBuilder();
    g.op('Identity', [g.firstMaxMask('image', 1, 28, 28, 'sel')], 'logits');
    // values in {-1, 0, 1}: most 2x2 windows hold their maximum more than once
    const v = Float32Array.from({ length: 2 * 28 * 28 }, (_, i) => ((i * 7919) % 5 === 0 ? 1 : (i * 104729) % 3 === 0 ? -1 : 0));
    const spec: OnnxModelSpec = { opset: 17, input: { name: 'image', dims: ['N', 1, 28, 28] }, output: { name: 'logits', dims: ['N', 1, 28, 28] }, initializers: g.inits, nodes: g.nodes };
    const got = await ortRun(encodeOnnxModel(spec), v, 2);
    const want = tf.tidy(() => firstMaxMask(tf.tensor4d(v, [2, 28, 28, 1])).dataSync() as Float32Array);
    expect(Array.from(got)).toEqual(Array.from(want));
    let tiedWindows = 0;
    for (let w = 0; w < 2 * 14 * 14; w++) {
      const [n, i, j] = [Math.floor(w / 196), Math.floor((w % 196) / 14), w % 14];
      const cell = [0, 1, 28, 29].map((d) => v[n * 784 + 2 * i * 28 + 2 * j + d]);
      if (cell.filter((c) => c === Math.max(...cell)).length > 1) tiedWindows++;
    }
    expect(tiedWindows).toBeGreaterThan(50);
  });

  it('images whose windows tie give cnnf\'s logits at 2 cycles; ties sent to the last maximum would not', async () => {
    // blank, white, half-and-half and striped images, and 4 test images (black backgrounds)
    const flat = (f: (i: number, j: number) => number) => Float32Array.from({ length: 784 }, (_, k) => f(Math.floor(k / 28), k % 28));
    const n = 8;
    const input = new Float32Array(n * 784);
    input.set(flat(() => -1), 0);
    input.set(flat(() => 1), 784);
    input.set(flat((_i, j) => (j < 14 ? -1 : 1)), 2 * 784);
    input.set(flat((i) => (i % 4 < 2 ? 0.5 : -1)), 3 * 784);
    input.set(nchw.subarray(0, 4 * 784), 4 * 784);
    const xt = tf.tensor4d(input, [n, 28, 28, 1]);
    const want = tf.tidy(() => ck.model.run(xt, { cycles: 2 }).logits[2].dataSync() as Float32Array);
    xt.dispose();
    const spec = onnxSpecOfCnnf(ck.info.config, arrays, 2, 'last');
    expect(relErr(await ortRun(encodeOnnxModel(spec), input, n), want)).toBeLessThan(1e-5);
    // the same graph with the window priority reversed (ties to the LAST maximal / minimal position)
    for (const init of spec.initializers) if (init.name.startsWith('window_priority_')) init.data = (init.data as Float32Array).map((p) => 5 - p);
    expect(relErr(await ortRun(encodeOnnxModel(spec), input, n), want)).toBeGreaterThan(1e-3); // measured 2-5%
  });
});

describe('cnnf export --to onnx (CLI)', () => {
  it('exports the shipped CNN-F with its cycles; bad --cycles / --readout: one line, exit 2', async () => {
    const out = join(dir, 'cli.onnx');
    const [ok, big, bad] = await inParallel([
      () => cnnf(['export', CNNF_PATH, '--to', 'onnx', '-o', out]),
      () => cnnf(['export', CNNF_PATH, '--to', 'onnx', '--cycles', '11', '-o', join(dir, 'x.onnx')]),
      () => cnnf(['export', CNNF_PATH, '--to', 'onnx', '--readout', 'first', '-o', join(dir, 'x.onnx')]),
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/1 feedback cycle unrolled \(ind 2, res_param 0\.1\), readout last/);
    expect(JSON.parse(metadata(readFileSync(out))[ONNX_MODEL_KEY])).toMatchObject({ cycles: 1, readout: 'last' });
    expect(oneLine(big)).toMatch(/--cycles must be <= 10/);
    expect(oneLine(bad)).toMatch(/--readout must be one of last, average/);
    // the library refuses the same (and --cycles on a plain CNN) before reading the checkpoint or writing
    await expect(exportOnnx(CNNF_PATH, join(dir, 'y.onnx'), { cycles: -1 })).rejects.toThrow(/--cycles must be an integer 0\.\.10/);
    await expect(exportOnnx(CNNF_PATH, join(dir, 'y.onnx'), { readout: 'first' as never })).rejects.toThrow(/--readout must be one of last, average/);
    await expect(exportOnnx(CNN, join(dir, 'y.onnx'), { cycles: 2 })).rejects.toThrow(/plain CNN .*--cycles 2 applies to CNN-F/);
    expect(existsSync(join(dir, 'y.onnx')) || existsSync(join(dir, 'x.onnx'))).toBe(false);
  });
});
