/**
 * ONNX models: no golden fixture is needed for the forward pass, since onnxruntime (onnxruntime-web,
 * a dev dependency, on its wasm CPU backend) runs the same file: cnnf's tfjs execution of the graph
 * must match it within 1e-5 relative on operator-coverage models with seeded random weights (two
 * opsets, where operators changed between them), and cnnf's own plain CNN exported with
 * `cnnf export --to onnx` must give the checkpoint's logits and the same PGD accuracy as the native model.
 * Input gradients (what white-box attacks use) are checked against central finite differences of
 * onnxruntime's forward pass on a smooth model. Hostile files: one line, exit 2, the node named.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-web';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { PGD, predictLogits, type Victim } from '../src/attacks/index.js';
import { IMAGE_PIXELS, loadDataset, mulberry32 } from '../src/data/index.js';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint.js';
import { UsageError } from '../src/errors.js';
import { buildOnnxModel, encodeOnnxModel, readOnnxModelFile, type OnnxModelSpec, type OnnxNodeSpec } from '../src/io/onnx.js';
import { exportOnnx } from '../src/io/export-onnx.js';
import protobuf from 'protobufjs';
import { ONNX_PROTO } from '../src/io/onnx-schema.js';
import { cnnf, oneLineError, referenceModel } from './helpers/cli.js';
import { relErr } from './helpers/tf.js';

/** Decodes ONNX bytes to a plain object, lets `edit` change it, and encodes it again (for files cnnf's encoder would not write). */
function reencode(bytes: Uint8Array, edit: (m: any) => void): Uint8Array {
  const T = protobuf.parse(ONNX_PROTO, { keepCase: true }).root.lookupType('onnx.ModelProto');
  const obj = T.toObject(T.decode(bytes), { bytes: Uint8Array, arrays: true });
  edit(obj);
  return T.encode(T.fromObject(obj)).finish();
}

const dir = mkdtempSync(join(tmpdir(), 'cnnf-onnx-'));
let ck: LoadedCheckpoint;

beforeAll(async () => {
  await useBackend('wasm', { quiet: true });
  ort.env.wasm.numThreads = 1;
  ck = await loadCheckpoint(referenceModel('cnn-adv'));
});

afterAll(() => ck.model.dispose());

function randn(rng: () => number, n: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rng() * 2 - 1) * scale;
  return out;
}

async function ortRun(bytes: Uint8Array, x: Float32Array, dims: number[]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(bytes);
  try {
    const out = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', x, dims) });
    return out[s.outputNames[0]].data as Float32Array;
  } finally {
    await s.release();
  }
}

function write(name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

/** cnnf's logits for NCHW inputs in [0, 1] (the default adapter: canonical [-1, 1] NHWC in). */
async function cnnfLogits(path: string, x: Float32Array, dims: [number, number, number, number]): Promise<Float32Array> {
  const m = (await buildOnnxModel(readOnnxModelFile(path))).model;
  try {
    return tf.tidy(() => {
      const nchw = tf.tensor4d(x, dims);
      const canon = tf.sub(tf.mul(tf.transpose(nchw, [0, 2, 3, 1]), 2), 1) as tf.Tensor4D;
      return m.logits(canon).dataSync() as Float32Array;
    });
  } finally {
    m.dispose();
  }
}

/** A conv net over [N, 3, 12, 12] exercising the convolution, pooling and normalisation operators. */
function convNet(seed: number, smooth: boolean, opset: number): OnnxModelSpec {
  const rng = mulberry32(seed);
  const act = smooth ? 'Tanh' : 'Relu';
  const init = (name: string, dims: number[], scale = 0.4) => ({ name, dims, data: randn(rng, dims.reduce((a, b) => a * b, 1), scale) });
  const i64 = (name: string, vals: number[]) => ({ name, dims: [vals.length], data: Int32Array.from(vals), int64: true });
  const f = (name: string, vals: number[], dims = [vals.length]) => ({ name, dims, data: Float32Array.from(vals) });
  const initializers: OnnxModelSpec['initializers'] = [
    init('w1', [4, 3, 3, 3]), init('b1', [4], 0.1),
    init('wd', [8, 1, 3, 3]), f('bn_s', [1.1, 0.9, 1.2, 0.8, 1, 1.3, 0.7, 1.05]), init('bn_b', [8], 0.1), init('bn_m', [8], 0.1), f('bn_v', [0.5, 1, 1.5, 2, 0.7, 0.9, 1.1, 1.3]),
    init('wg', [4, 4, 3, 3], 0.3), f('in_s', [1, 0.5, 1.5, 1]), init('in_b', [4], 0.1),
    init('wt', [4, 3, 3, 3], 0.3), init('bt', [3], 0.1),
    f('clip_lo', [0.1], []), f('clip_hi', [0.85], []),
    i64('pads', [0, 0, 1, 2, 0, 0, 2, 1]), f('pad_v', [0.25], []),
    i64('sl_start', [1, -12]), i64('sl_end', [100, 1000]), i64('sl_axes', [2, 3]), i64('sl_step', [1, 2]),
    i64('gidx', [0]), i64('minus1', [-1]),
    init('fcw', [5, 3], 0.5), init('fcb', [5], 0.1),
  ];
  const nodes: OnnxNodeSpec[] = [
    { op: 'Conv', inputs: ['x', 'w1', 'b1'], outputs: ['c1'], attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1] } },
    { op: act, inputs: ['c1'], outputs: ['a1'] },
    smooth
      ? { op: 'AveragePool', inputs: ['a1'], outputs: ['p1'], attrs: { kernel_shape: [2, 2], strides: [2, 2], pads: [0, 0, 1, 1] } }
      : { op: 'MaxPool', inputs: ['a1'], outputs: ['p1'], attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 0, 1, 1], ...(opset >= 10 ? { ceil_mode: 1 } : {}) } },
    { op: 'Conv', inputs: ['p1', 'wd'], outputs: ['d1'], attrs: { group: 4, pads: [1, 1, 1, 1] } },
    { op: 'BatchNormalization', inputs: ['d1', 'bn_s', 'bn_b', 'bn_m', 'bn_v'], outputs: ['n1'], attrs: { epsilon: { float: 1e-3 } } },
    smooth ? { op: 'Tanh', inputs: ['n1'], outputs: ['l1'] } : { op: 'LeakyRelu', inputs: ['n1'], outputs: ['l1'], attrs: { alpha: { float: 0.1 } } },
    { op: 'Conv', inputs: ['l1', 'wg'], outputs: ['g1'], attrs: { group: 2, strides: [2, 2], auto_pad: 'SAME_UPPER' } },
    { op: 'InstanceNormalization', inputs: ['g1', 'in_s', 'in_b'], outputs: ['i1'] },
    smooth ? { op: 'Tanh', inputs: ['i1'], outputs: ['h1'] } : opset >= 14 ? { op: 'HardSwish', inputs: ['i1'], outputs: ['h1'] } : { op: 'HardSigmoid', inputs: ['i1'], outputs: ['h1'] },
    { op: 'ConvTranspose', inputs: ['h1', 'wt', 'bt'], outputs: ['t1'], attrs: { strides: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 1] } },
    { op: 'Sigmoid', inputs: ['t1'], outputs: ['s1'] },
    opset >= 11 ? { op: 'Clip', inputs: ['s1', 'clip_lo', 'clip_hi'], outputs: ['k1'] } : { op: 'Clip', inputs: ['s1'], outputs: ['k1'], attrs: { min: { float: 0.1 }, max: { float: 0.85 } } },
    { op: 'AveragePool', inputs: ['k1'], outputs: ['v1'], attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1] } },
    opset >= 11 ? { op: 'Pad', inputs: ['v1', 'pads', 'pad_v'], outputs: ['q1'] } : { op: 'Pad', inputs: ['v1'], outputs: ['q1'], attrs: { pads: [0, 0, 1, 2, 0, 0, 2, 1], value: { float: 0.25 } } },
    opset >= 10 ? { op: 'Slice', inputs: ['q1', 'sl_start', 'sl_end', 'sl_axes', 'sl_step'], outputs: ['r1'] } : { op: 'Slice', inputs: ['q1'], outputs: ['r1'], attrs: { starts: [1, 0], ends: [100, 1000], axes: [2, 3] } },
    { op: 'Transpose', inputs: ['r1'], outputs: ['tr'], attrs: { perm: [0, 2, 3, 1] } },
    { op: 'Transpose', inputs: ['tr'], outputs: ['tb'], attrs: { perm: [0, 3, 1, 2] } },
    { op: 'GlobalAveragePool', inputs: ['tb'], outputs: ['gap'] },
    // PyTorch's x.view(x.size(0), -1)
    { op: 'Shape', inputs: ['gap'], outputs: ['shp'] },
    { op: 'Gather', inputs: ['shp', 'gidx'], outputs: ['nb'], attrs: { axis: 0 } },
    { op: 'Concat', inputs: ['nb', 'minus1'], outputs: ['newshape'], attrs: { axis: 0 } },
    { op: 'Reshape', inputs: ['gap', 'newshape'], outputs: ['flat'] },
    { op: 'Dropout', inputs: ['flat'], outputs: ['dr'] },
    { op: 'Gemm', inputs: ['dr', 'fcw', 'fcb'], outputs: ['logits'], attrs: { transB: 1, alpha: { float: 1.5 } } },
  ];
  return { opset, input: { name: 'x', dims: ['N', 3, 12, 12] }, output: { name: 'logits', dims: ['N', 5] }, initializers, nodes };
}

/** An MLP over [N, 1, 4, 4] exercising the elementwise, matrix, shape and reduction operators. */
function mlpNet(seed: number, opset: number): OnnxModelSpec {
  const rng = mulberry32(seed);
  const init = (name: string, dims: number[], scale = 0.5) => ({ name, dims, data: randn(rng, dims.reduce((a, b) => a * b, 1), scale) });
  const i64 = (name: string, vals: number[]) => ({ name, dims: [vals.length], data: Int32Array.from(vals), int64: true });
  const initializers: OnnxModelSpec['initializers'] = [
    i64('shape2', [0, 16]), init('w1', [16, 12]), init('b1', [12], 0.1), init('w2', [12, 6]), init('c', [6], 0.2),
    { name: 'two', dims: [], data: Float32Array.of(2) }, { name: 'half', dims: [], data: Float32Array.of(0.5) },
    i64('ax1', [1]), i64('ax2', [2]),
  ];
  const nodes: OnnxNodeSpec[] = [
    { op: 'Reshape', inputs: ['x', 'shape2'], outputs: ['flat'] },
    { op: 'MatMul', inputs: ['flat', 'w1'], outputs: ['m1'] },
    { op: 'Add', inputs: ['m1', 'b1'], outputs: ['h1'] },
    opset >= 20 ? { op: 'Gelu', inputs: ['h1'], outputs: ['g1'] } : { op: 'Tanh', inputs: ['h1'], outputs: ['g1'] },
    { op: 'Div', inputs: ['g1', 'two'], outputs: ['d1'] },
    { op: 'Erf', inputs: ['d1'], outputs: ['e1'] },
    { op: 'Mul', inputs: ['e1', 'g1'], outputs: ['p1'] },
    { op: 'Sub', inputs: ['p1', 'half'], outputs: ['s1'] },
    { op: 'MatMul', inputs: ['s1', 'w2'], outputs: ['m2'] },
    { op: 'Add', inputs: ['m2', 'c'], outputs: ['h2'] },
    opset >= 13 ? { op: 'Unsqueeze', inputs: ['h2', 'ax2'], outputs: ['u1'] } : { op: 'Unsqueeze', inputs: ['h2'], outputs: ['u1'], attrs: { axes: [2] } },
    opset >= 13 ? { op: 'Squeeze', inputs: ['u1', 'ax2'], outputs: ['q1'] } : { op: 'Squeeze', inputs: ['u1'], outputs: ['q1'], attrs: { axes: [2] } },
    { op: 'Softmax', inputs: ['q1'], outputs: ['sm'], attrs: { axis: 1 } },
    opset >= 18 ? { op: 'ReduceMean', inputs: ['sm', 'ax1'], outputs: ['rm'], attrs: { keepdims: 1 } } : { op: 'ReduceMean', inputs: ['sm'], outputs: ['rm'], attrs: { axes: [1], keepdims: 1 } },
    { op: 'Sub', inputs: ['sm', 'rm'], outputs: ['cen'] },
    { op: 'Max', inputs: ['cen', 'q1'], outputs: ['mx'] },
    { op: 'Identity', inputs: ['mx'], outputs: ['logits'] },
  ];
  return { opset, input: { name: 'x', dims: ['N', 1, 4, 4] }, output: { name: 'logits', dims: ['N', 6] }, initializers, nodes };
}

describe('ONNX forward pass vs onnxruntime', () => {
  for (const [opset, label] of [[9, 'opset 9'], [13, 'opset 13'], [20, 'opset 20']] as const) {
    it(`the conv net and the MLP (${label}) match onnxruntime within 1e-5 relative`, async () => {
      const rng = mulberry32(100 + opset);
      const xs = Float32Array.from({ length: 4 * 3 * 12 * 12 }, () => rng());
      const conv = encodeOnnxModel(convNet(opset, false, opset));
      const ref = await ortRun(conv, xs, [4, 3, 12, 12]);
      const got = await cnnfLogits(write(`conv${opset}.onnx`, conv), xs, [4, 3, 12, 12]);
      expect(got.length).toBe(20);
      expect(relErr(got, ref)).toBeLessThan(1e-5);
      const xm = Float32Array.from({ length: 3 * 16 }, () => rng());
      const mlp = encodeOnnxModel(mlpNet(opset, opset));
      const refM = await ortRun(mlp, xm, [3, 1, 4, 4]);
      const gotM = await cnnfLogits(write(`mlp${opset}.onnx`, mlp), xm, [3, 1, 4, 4]);
      expect(gotM.length).toBe(18);
      expect(relErr(gotM, refM)).toBeLessThan(1e-5);
    });
  }

  it('input gradients agree with central finite differences of onnxruntime\'s forward pass (smooth conv net)', async () => {
    const spec = convNet(7, true, 13);
    const bytes = encodeOnnxModel(spec);
    const m = (await buildOnnxModel(readOnnxModelFile(write('smooth.onnx', bytes)))).model;
    expect(m.differentiable).toBe(true);
    const rng = mulberry32(9);
    const x01 = Float32Array.from({ length: 3 * 12 * 12 }, () => 0.2 + 0.6 * rng());
    // d(logit 2)/d(x) in NCHW [0, 1] units, from cnnf's canonical-space gradient (x_canon = 2 x01 - 1)
    const g = tf.tidy(() => {
      const canon = tf.sub(tf.mul(tf.transpose(tf.tensor4d(x01, [1, 3, 12, 12]), [0, 2, 3, 1]), 2), 1) as tf.Tensor4D;
      const gc = tf.grad((v: tf.Tensor) => tf.sum(tf.slice(m.logits(v as tf.Tensor4D), [0, 2], [1, 1])))(canon);
      return tf.mul(tf.transpose(gc, [0, 3, 1, 2]), 2).dataSync() as Float32Array;
    });
    m.dispose();
    const h = 1e-2;
    // the six coordinates with the largest gradients (a smooth net squashes most of them)
    const probe = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a])).slice(0, 6);
    const plus = new Float32Array(probe.length * x01.length);
    const minus = new Float32Array(probe.length * x01.length);
    probe.forEach((q, k) => {
      plus.set(x01, k * x01.length);
      minus.set(x01, k * x01.length);
      plus[k * x01.length + q] += h;
      minus[k * x01.length + q] -= h;
    });
    const lp = await ortRun(bytes, plus, [probe.length, 3, 12, 12]);
    const lm = await ortRun(bytes, minus, [probe.length, 3, 12, 12]);
    const fd = probe.map((_, k) => (lp[k * 5 + 2] - lm[k * 5 + 2]) / (2 * h));
    const an = probe.map((q) => g[q]);
    // float32 central differences at h = 1e-2: rounding ~1e-7 / h = 1e-5, truncation ~h^2 of a smooth net
    expect(Math.min(...an.map(Math.abs))).toBeGreaterThan(1e-4);
    an.forEach((v, k) => expect(Math.abs(v - fd[k])).toBeLessThan(2e-5 + 0.05 * Math.abs(fd[k])));
  });
});

describe('cnnf export --to onnx (plain CNN)', () => {
  it('reads back with the checkpoint\'s logits (cnnf and onnxruntime), records its input space, and attacks identically', async () => {
    const path = join(dir, 'cnn.onnx');
    const r = await exportOnnx(referenceModel('cnn-adv'), path);
    expect(r.nodes).toBeGreaterThan(30);
    const file = readOnnxModelFile(path);
    expect(file.recorded).toMatchObject({ range: '-1,1', layout: 'NCHW', output: 'logits' });
    const onnx = (await buildOnnxModel(file)).model;
    const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: 'stride:1000' });
    const n = 8;
    const x = tf.tensor4d(ds.test.images.subarray(0, n * IMAGE_PIXELS), [n, 28, 28, 1]);
    const y = tf.tensor1d(ds.test.labels.subarray(0, n), 'int32');
    try {
      const native: Victim = { model: ck.model, mode: 'first', cycles: 0, readout: 'last' };
      const foreign: Victim = { model: onnx, mode: 'first', cycles: 0, readout: 'last' };
      const a = tf.tidy(() => predictLogits(native, x).dataSync() as Float32Array);
      const b = tf.tidy(() => predictLogits(foreign, x).dataSync() as Float32Array);
      expect(relErr(b, a)).toBeLessThan(1e-5);
      const nchw = tf.tidy(() => tf.transpose(x, [0, 3, 1, 2]).dataSync() as Float32Array);
      const o = await ortRun(readFileSync(path), nchw, [n, 1, 28, 28]);
      expect(relErr(o, a)).toBeLessThan(1e-5);
      // PGD through the ONNX graph's tfjs gradient: the same predictions as through cnnf's own model
      const pgd = new PGD({ steps: 5 });
      const advA = await pgd.perturb(native, x, y, 0.15, 3);
      const advB = await pgd.perturb(foreign, x, y, 0.15, 3);
      const pa = tf.tidy(() => tf.argMax(predictLogits(native, advA), 1).dataSync());
      const pb = tf.tidy(() => tf.argMax(predictLogits(foreign, advB), 1).dataSync());
      tf.dispose([advA, advB]);
      expect(Array.from(pb)).toEqual(Array.from(pa));
    } finally {
      tf.dispose([x, y]);
      onnx.dispose();
    }
  });

  // a CNN-F (its feedback cycles unrolled): test/onnx-cnnf.test.ts
});

describe('hostile ONNX files: one line, exit 2, nothing run', () => {
  const base = (): OnnxModelSpec => mlpNet(1, 13);
  const cases: Array<[string, () => Uint8Array, RegExp]> = [
    ['not a protobuf', () => Uint8Array.from({ length: 300 }, (_, i) => (i * 37 + 11) % 256), /not an ONNX model/],
    ['an unknown operator, named with its node', () => {
      const s = base();
      s.nodes[3] = { op: 'NonMaxSuppression', name: 'nms\u001b]0;pwn\u0007', inputs: ['h1'], outputs: ['g1'] };
      return encodeOnnxModel(s);
    }, /node "nms\\x1b\]0;pwn\\x07" \(NonMaxSuppression\): operator NonMaxSuppression is not one cnnf runs/],
    ['a cycle (an input used before it is defined)', () => {
      const s = base();
      s.nodes[1] = { op: 'MatMul', inputs: ['s1', 'w1'], outputs: ['m1'] };
      return encodeOnnxModel(s);
    }, /input "s1" is not defined before the node/],
    ['a name defined twice', () => {
      const s = base();
      s.nodes[2] = { op: 'Add', inputs: ['m1', 'b1'], outputs: ['m1'] };
      return encodeOnnxModel(s);
    }, /output "m1" is defined twice/],
    ['a Reshape fixed to batch 1', () => {
      const s = base();
      s.initializers[0] = { name: 'shape2', dims: [2], data: Int32Array.of(1, 16), int64: true };
      return encodeOnnxModel(s);
    }, /cannot reshape \[2, 1, 4, 4\] to \[1, 16\].*dynamic batch axis/],
    ['a huge declared input', () => {
      const s = base();
      s.input.dims = ['N', 3, 40000, 40000];
      return encodeOnnxModel(s);
    }, /larger than cnnf evaluates/],
    ['NaN weights', () => {
      const s = base();
      (s.initializers[3].data as Float32Array)[0] = Number.NaN;
      return encodeOnnxModel(s);
    }, /not finite/],
    ['float64 weights', () => reencode(encodeOnnxModel(base()), (m) => {
      const t = m.graph.initializer[3];
      t.data_type = 11;
      t.raw_data = new Uint8Array(t.raw_data.length * 2);
    }), /tensor "w2" is float64; cnnf reads float32 weights/],
    ['weights in an external file', () => reencode(encodeOnnxModel(base()), (m) => {
      const t = m.graph.initializer[3];
      delete t.raw_data;
      t.data_location = 1;
      t.external_data = [{ key: 'location', value: '../../../etc/passwd' }];
    }), /keeps its data in an external file/],
    ['a subgraph attribute', () => reencode(encodeOnnxModel(base()), (m) => {
      m.graph.node[5].attribute = [{ name: 'then_branch', type: 5, g: { name: 'sub' } }];
    }), /holds a subgraph/],
    ['a tensor shorter than its dimensions', () => reencode(encodeOnnxModel(base()), (m) => {
      m.graph.initializer[3].dims = [12, 600];
    }), /tensor "w2" \[12, 600\] holds 72 values, not 7200/],
    ['an operator from another domain', () => reencode(encodeOnnxModel(base()), (m) => {
      m.graph.node[5].domain = 'com.microsoft';
    }), /operator domain "com.microsoft"/],
    ['a ConstantOfShape that would allocate terabytes', () => {
      const s = base();
      s.initializers.push({ name: 'big', dims: [3], data: Int32Array.of(100000, 100000, 100000), int64: true });
      s.nodes.splice(0, 0, { op: 'ConstantOfShape', inputs: ['big'], outputs: ['huge'] });
      return encodeOnnxModel(s);
    }, /ConstantOfShape.*larger than cnnf allows/],
    ['an opset from the future', () => {
      const s = base();
      s.opset = 99;
      return encodeOnnxModel(s);
    }, /opset 99 is outside/],
  ];
  // in-process (readOnnxModelFile + buildOnnxModel, what every command calls), and two through the CLI
  for (const [what, make, re] of cases) {
    it(what, async () => {
      const p = write(`hostile-${what.replace(/\W+/g, '-')}.onnx`, make());
      let err: unknown;
      try {
        (await buildOnnxModel(readOnnxModelFile(p))).model.dispose();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UsageError);
      const msg = (err as Error).message;
      expect(msg).toMatch(re);
      expect(msg.startsWith(p)).toBe(true);
      expect(msg).not.toContain('\n');
      // eslint-disable-next-line no-control-regex
      expect(msg).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202e]/);
    });
  }

  for (const which of [0, 1]) {
    it(`through the CLI: ${cases[which][0]}: exit 2, one stderr line, nothing on stdout`, async () => {
      const p = write(`cli-${which}.onnx`, cases[which][1]());
      const r = await cnnf(['attack', '--model', p, '--method', 'fgsm', '--eps', '0.1', '--test-subset', 'first:4'], { timeoutMs: 120_000 });
      expect(r.code).toBe(2);
      expect(oneLineError(r)).toMatch(cases[which][2]);
      // eslint-disable-next-line no-control-regex
      expect(r.stderr).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
      expect(r.stdout).toBe('');
    });
  }

  it('a million nodes are refused before the protobuf is decoded', () => {
    // GraphProto.node (field 1) x 1M, each a NodeProto with op_type (field 4) "Relu": 10 MB
    const node = Buffer.from([0x0a, 0x06, 0x22, 0x04, ...Buffer.from('Relu')]);
    const graph = Buffer.concat(Array.from({ length: 1_000_000 }, () => node));
    const len: number[] = [];
    for (let n = graph.length; ; n = Math.floor(n / 128)) {
      len.push((n & 0x7f) | (n >= 128 ? 0x80 : 0));
      if (n < 128) break;
    }
    const p = write('million.onnx', Buffer.concat([Buffer.from([0x08, 0x08, 0x3a, ...len]), graph]));
    const before = process.memoryUsage().heapUsed;
    expect(() => readOnnxModelFile(p)).toThrow(/has 1000000 nodes \(at most 20000\)/);
    // refused from the wire format: no million node objects were built
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(200 * 1024 * 1024);
  });

  it('a protobuf nested far too deep is refused without a stack overflow reaching the user', () => {
    // Graph.node (field 1) -> Node.attribute (field 5) -> Attribute.g (field 6) -> Graph ..., 400 rounds deep (protobufjs stops at 100 levels; a recursive decoder without a limit would overflow the stack much deeper)
    const varint = (n: number): number[] => {
      const v: number[] = [];
      do {
        v.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
        n = Math.floor(n / 128);
      } while (n > 0);
      return v;
    };
    let cur: Buffer = Buffer.alloc(0);
    const wrap = (tag: number, inner: Buffer): Buffer => Buffer.concat([Buffer.from([tag, ...varint(inner.length)]), inner]);
    for (let i = 0; i < 400; i++) cur = wrap(0x0a, wrap(0x2a, wrap(0x32, cur)));
    const p = write('deep.onnx', Buffer.concat([Buffer.from([0x08, 0x08]), wrap(0x3a, cur)]));
    expect(() => readOnnxModelFile(p)).toThrow(/not an ONNX model .*(nesting depth|nested too deep)/);
  });
});
