/**
 * An ONNX graph run as tfjs ops, so that tfjs's autodiff differentiates it: every attack, white-box
 * included, works on an ONNX model on every backend. Tensors keep ONNX's layout (NCHW); a
 * convolution or pooling transposes to tfjs's NHWC and back. Integer tensors (shapes, axes,
 * indices) are int32 (io/onnx.ts saturates int64 values, which only matters for Slice's "to the
 * end" 2^63-1, where clamping is the ONNX semantics anyway).
 *
 * The operators are those image classifiers exported from PyTorch and Keras use (ONNX_OPS); each
 * implements ONNX's semantics for the opsets ONNX_MIN_OPSET..ONNX_MAX_OPSET of io/onnx.ts where
 * they differ (Softmax's axis before 13, Clip's bounds as inputs from 11, axes as inputs from 13 or
 * 18). Anything outside that (a 1-D or 3-D convolution, ceil_mode average pooling, dilated pooling,
 * grouped ConvTranspose) is one line naming the node at load, when the model is probed.
 */
import * as tf from '@tensorflow/tfjs-core';
import { UsageError } from '../errors.js';
import { untaped } from '../backend/engine.js';
import { conv2dSame, convTransposeSame, linear } from '../nn/ops.js';
import { readAndDispose } from '../nn/read.js';
import { adaptInput, checkAdapter, type ForeignClassifier, type InputAdapter } from './foreign.js';

export interface OnnxInit {
  name: string;
  dims: number[];
  dtype: 'float32' | 'int32';
  data: Float32Array | Int32Array;
}

export interface OnnxAttr {
  f?: number;
  i?: number;
  s?: string;
  t?: OnnxInit;
  floats?: number[];
  ints?: number[];
  strings?: string[];
}

export interface OnnxNode {
  name: string;
  op: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, OnnxAttr>;
}

export interface OnnxGraph {
  opset: number;
  /** The image input; dims[0] is the batch (null when symbolic). */
  input: { name: string; dims: Array<number | null> };
  output: string;
  initializers: Map<string, OnnxInit>;
  nodes: OnnxNode[];
  producer: string;
}

/** Elements any one intermediate tensor may hold, per example of the batch. */
export const MAX_ONNX_TENSOR_ELEMENTS_PER_EXAMPLE = 2 ** 25;

type Env = Map<string, tf.Tensor>;

interface Ctx {
  node: OnnxNode;
  opset: number;
  env: Env;
  batch: number;
}

const fail = (ctx: Ctx, what: string): never => {
  throw new UsageError(`node ${JSON.stringify(ctx.node.name)} (${ctx.node.op}): ${what}`);
};

function input(ctx: Ctx, i: number): tf.Tensor {
  const name = ctx.node.inputs[i];
  if (name === undefined || name === '') return fail(ctx, `input ${i + 1} is missing`);
  const t = ctx.env.get(name);
  if (!t) return fail(ctx, `input ${JSON.stringify(name)} has no value`);
  return t;
}

function optInput(ctx: Ctx, i: number): tf.Tensor | undefined {
  const name = ctx.node.inputs[i];
  return name === undefined || name === '' ? undefined : input(ctx, i);
}

/** Values a tensor of at most this many elements may carry on the host (shapes, axes, pads, bounds). */
const HOST_MAX = 4096;

/**
 * Host copies of the small tensors a graph's shape arithmetic runs on: initializers, Constant, Shape and
 * Size outputs, and what the shape-plumbing ops (hostFold) make of them. So `values` needs no read of the
 * device (webgpu has no synchronous one), and a shape never waits for the device.
 */
const HOST = new WeakMap<tf.Tensor, number[]>();

function withHost<T extends tf.Tensor>(t: T, v: ArrayLike<number>): T {
  if (t.size <= HOST_MAX && v.length === t.size) HOST.set(t, Array.from(v));
  return t;
}

/** Host values as the tensor of `dtype` holds them (float32 rounding, int32 truncation and wrap-around, bool 0/1). */
function asDtype(v: number[], dtype: tf.DataType): number[] | undefined {
  if (dtype === 'float32') return v.map(Math.fround);
  if (dtype === 'int32') return Array.from(Int32Array.from(v));
  if (dtype === 'bool') return v.map((x) => (x !== 0 ? 1 : 0));
  return undefined;
}

/** The output's values computed on the host from host-known inputs, for the ops shapes are computed with (else undefined). */
function hostFold(ctx: Ctx, out: tf.Tensor): number[] | undefined {
  if (out.size > HOST_MAX) return undefined;
  const ins = ctx.node.inputs.map((name) => (name === '' ? undefined : ctx.env.get(name)));
  const vals = ins.map((t) => (t ? HOST.get(t) : undefined));
  const [a, b] = vals;
  const same = (v: number[] | undefined) => (v && v.length === out.size ? asDtype(v, out.dtype) : undefined);
  switch (ctx.node.op) {
    case 'Identity':
    case 'Reshape':
    case 'Flatten':
    case 'Squeeze':
    case 'Unsqueeze':
    case 'Cast':
    case 'Dropout':
      return same(a);
    case 'Concat': {
      if (attrI(ctx, 'axis', 0) !== 0 && !(ins[0]?.rank === 1 && attrI(ctx, 'axis', 0) === -1)) return undefined;
      if (vals.some((v) => v === undefined)) return undefined;
      return same(vals.flatMap((v) => v!));
    }
    case 'Gather': {
      const x = ins[0];
      if (!a || !b || !x || x.rank !== 1 || attrI(ctx, 'axis', 0) !== 0) return undefined;
      return same(b.map((i) => a[i < 0 ? i + a.length : i]));
    }
    case 'Add':
    case 'Sub':
    case 'Mul':
    case 'Div':
    case 'Equal':
    case 'Greater':
    case 'Less': {
      if (!a || !b || !(a.length === b.length || a.length === 1 || b.length === 1)) return undefined;
      const intDiv = ctx.node.op === 'Div' && ins[0]?.dtype === 'int32' && ins[1]?.dtype === 'int32';
      const f32 = out.dtype === 'float32' || intDiv;
      const n = Math.max(a.length, b.length);
      const r: number[] = [];
      for (let i = 0; i < n; i++) {
        const x = a[a.length === 1 ? 0 : i];
        const y = b[b.length === 1 ? 0 : i];
        const v = ((): number => {
          switch (ctx.node.op) {
            case 'Add': return x + y;
            case 'Sub': return x - y;
            case 'Mul': return f32 ? x * y : Math.imul(x, y);
            case 'Div': return x / y;
            case 'Equal': return x === y ? 1 : 0;
            case 'Greater': return x > y ? 1 : 0;
            default: return x < y ? 1 : 0;
          }
        })();
        r.push(f32 ? Math.fround(v) : v);
      }
      return same(r);
    }
    default:
      return undefined;
  }
}

/** The values of a small integer (or float) tensor: shapes, axes, pads, bounds. */
function values(ctx: Ctx, t: tf.Tensor, what: string): number[] {
  if (t.size > HOST_MAX) fail(ctx, `${what} has ${t.size} values`);
  const known = HOST.get(t);
  if (known) return known;
  // A shape computed from the data itself (no constant, Shape or Size behind it): tfjs runs the graph
  // in one synchronous call (inside tf.grad for attacks), so this value has to be read synchronously;
  // such a graph runs only on backends that have synchronous reads (cpu, wasm).
  // eslint-disable-next-line no-restricted-properties
  return Array.from(t.dataSync());
}

const attrI = (ctx: Ctx, name: string, dflt: number): number => ctx.node.attrs[name]?.i ?? dflt;
const attrF = (ctx: Ctx, name: string, dflt: number): number => ctx.node.attrs[name]?.f ?? dflt;
const attrInts = (ctx: Ctx, name: string): number[] | undefined => ctx.node.attrs[name]?.ints;
const attrS = (ctx: Ctx, name: string, dflt: string): string => ctx.node.attrs[name]?.s ?? dflt;

function axis(ctx: Ctx, a: number, rank: number): number {
  const r = a < 0 ? a + rank : a;
  if (!(r >= 0 && r < rank)) fail(ctx, `axis ${a} is outside a rank-${rank} tensor`);
  return r;
}

function initTensor(t: OnnxInit): tf.Tensor {
  return withHost(t.dtype === 'float32' ? tf.tensor(t.data as Float32Array, t.dims, 'float32') : tf.tensor(t.data as Int32Array, t.dims, 'int32'), t.data);
}

/** Spatial padding of a 2-D conv/pool in NHWC terms: explicit [[0,0],[t,b],[l,r],[0,0]], or 'valid' / 'same'. */
function pad2d(ctx: Ctx, inHW: [number, number], kernel: [number, number], strides: [number, number], dilations: [number, number]): 'valid' | 'same' | [[number, number], [number, number], [number, number], [number, number]] {
  const auto = attrS(ctx, 'auto_pad', 'NOTSET');
  if (auto === 'VALID') return 'valid';
  if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') {
    const out: Array<[number, number]> = [0, 1].map((d) => {
      const o = Math.ceil(inHW[d] / strides[d]);
      const total = Math.max(0, (o - 1) * strides[d] + (kernel[d] - 1) * dilations[d] + 1 - inHW[d]);
      const small = Math.floor(total / 2);
      return auto === 'SAME_UPPER' ? [small, total - small] : [total - small, small];
    });
    return [[0, 0], out[0], out[1], [0, 0]];
  }
  if (auto !== 'NOTSET') fail(ctx, `auto_pad ${JSON.stringify(auto)} is not an ONNX value`);
  const p = attrInts(ctx, 'pads') ?? [0, 0, 0, 0];
  if (p.length !== 4) fail(ctx, `pads lists ${p.length} values; cnnf runs 2-D convolutions and pools (4 pads)`);
  if (p.some((v) => v < 0 || v > 1024)) fail(ctx, `pads [${p.join(', ')}] are negative or too large`);
  return [[0, 0], [p[0], p[2]], [p[1], p[3]], [0, 0]];
}

function pair(ctx: Ctx, name: string, dflt: number): [number, number] {
  const v = attrInts(ctx, name);
  if (v === undefined) return [dflt, dflt];
  if (v.length !== 2) fail(ctx, `${name} lists ${v.length} values; cnnf runs 2-D convolutions and pools`);
  if (v.some((x) => !(x >= 1 && x <= 1024))) fail(ctx, `${name} [${v.join(', ')}] must be 1..1024`);
  return [v[0], v[1]];
}

const toNHWC = (x: tf.Tensor): tf.Tensor4D => tf.transpose(x, [0, 2, 3, 1]) as tf.Tensor4D;
const toNCHW = (x: tf.Tensor): tf.Tensor4D => tf.transpose(x, [0, 3, 1, 2]) as tf.Tensor4D;

function need4d(ctx: Ctx, x: tf.Tensor, what = 'input'): tf.Tensor4D {
  if (x.rank !== 4) fail(ctx, `${what} has shape [${x.shape.join(', ')}]; cnnf runs 2-D convolutions and pools on [N, C, H, W]`);
  return x as tf.Tensor4D;
}

function conv(ctx: Ctx): tf.Tensor {
  const x = need4d(ctx, input(ctx, 0));
  const w = need4d(ctx, input(ctx, 1), 'weight');
  const b = optInput(ctx, 2);
  const group = attrI(ctx, 'group', 1);
  const [m, cg, kh, kw] = w.shape;
  const c = x.shape[1];
  if (!(group >= 1) || c % group !== 0 || m % group !== 0 || cg !== c / group) fail(ctx, `weight [${w.shape.join(', ')}] and group ${group} do not fit an input of ${c} channels`);
  const ks = attrInts(ctx, 'kernel_shape');
  if (ks && (ks[0] !== kh || ks[1] !== kw)) fail(ctx, `kernel_shape [${ks.join(', ')}] differs from the weight's [${kh}, ${kw}]`);
  const strides = pair(ctx, 'strides', 1);
  const dil = pair(ctx, 'dilations', 1);
  if ((strides[0] > 1 || strides[1] > 1) && (dil[0] > 1 || dil[1] > 1)) fail(ctx, 'strides and dilations both above 1 are not supported by tfjs');
  const xh = toNHWC(x);
  const pad = pad2d(ctx, [x.shape[2], x.shape[3]], [kh, kw], strides, dil);
  let y: tf.Tensor4D;
  const same = Array.isArray(pad) && kh % 2 === 1 && kw % 2 === 1 && pad[1][0] === (kh - 1) / 2 && pad[1][1] === (kh - 1) / 2 && pad[2][0] === (kw - 1) / 2 && pad[2][1] === (kw - 1) / 2;
  if (group === 1 && same && strides[0] === 1 && strides[1] === 1 && dil[0] === 1 && dil[1] === 1) {
    // cnnf's own stride-1 'same' convolution: its input gradient is a convolution with the flipped
    // filter (XNNPACK on wasm), several times faster than tfjs-wasm's Conv2DBackpropInput
    y = conv2dSame(xh, tf.transpose(w, [2, 3, 1, 0]) as tf.Tensor4D);
  } else if (group === 1) {
    y = tf.conv2d(xh, tf.transpose(w, [2, 3, 1, 0]) as tf.Tensor4D, strides, pad, 'NHWC', dil);
  } else if (group === c && cg === 1 && tf.getKernel('DepthwiseConv2dNativeBackpropInput', tf.getBackend())) {
    // depthwise: output channel m = ci * k + q reads input channel ci
    const k = m / c;
    const f = tf.transpose(tf.reshape(w, [c, k, kh, kw]), [2, 3, 0, 1]) as tf.Tensor4D;
    y = tf.depthwiseConv2d(xh, f, strides, pad, 'NHWC', dil);
  } else if (group === c && cg === 1 && c * m <= 2 ** 18) {
    // depthwise where the backend has no depthwise input gradient (tfjs-wasm): one conv2d with a
    // block-diagonal filter, F[i, j, ci, m] = W[m, 0, i, j] where m reads ci, else 0 (exact: the zeros add nothing)
    const k = m / c;
    const mask = tf.tensor2d(Float32Array.from({ length: c * m }, (_, q) => (Math.floor((q % m) / k) === Math.floor(q / m) ? 1 : 0)), [c, m]);
    const wt = tf.transpose(tf.reshape(w, [m, kh, kw]), [1, 2, 0]); // [kh, kw, m]
    const f = tf.mul(tf.reshape(wt, [kh, kw, 1, m]), tf.reshape(mask, [1, 1, c, m])) as tf.Tensor4D;
    y = tf.conv2d(xh, f, strides, pad, 'NHWC', dil);
  } else {
    const xs = tf.split(xh, group, 3);
    const ws = tf.split(w, group, 0);
    y = tf.concat(xs.map((xi, g) => tf.conv2d(xi as tf.Tensor4D, tf.transpose(ws[g], [2, 3, 1, 0]) as tf.Tensor4D, strides, pad, 'NHWC', dil) as tf.Tensor4D), 3);
  }
  if (b) {
    if (b.size !== m) fail(ctx, `bias has ${b.size} values for ${m} output channels`);
    y = tf.add(y, tf.reshape(b, [m]));
  }
  return toNCHW(y);
}

function convTranspose(ctx: Ctx): tf.Tensor {
  const x = need4d(ctx, input(ctx, 0));
  const w = need4d(ctx, input(ctx, 1), 'weight');
  const b = optInput(ctx, 2);
  if (attrI(ctx, 'group', 1) !== 1) fail(ctx, 'grouped ConvTranspose is not supported');
  if (ctx.node.attrs.output_shape) fail(ctx, 'output_shape is not supported (give pads and output_padding)');
  const dil = pair(ctx, 'dilations', 1);
  if (dil[0] !== 1 || dil[1] !== 1) fail(ctx, 'dilated ConvTranspose is not supported');
  const auto = attrS(ctx, 'auto_pad', 'NOTSET');
  if (auto !== 'NOTSET' && auto !== 'VALID') fail(ctx, `auto_pad ${auto} is not supported for ConvTranspose`);
  const [c, m, kh, kw] = w.shape;
  if (x.shape[1] !== c) fail(ctx, `weight [${w.shape.join(', ')}] does not fit an input of ${x.shape[1]} channels`);
  const s = pair(ctx, 'strides', 1);
  const p = auto === 'VALID' ? [0, 0, 0, 0] : (attrInts(ctx, 'pads') ?? [0, 0, 0, 0]);
  const op = attrInts(ctx, 'output_padding') ?? [0, 0];
  if (p.length !== 4 || op.length !== 2 || p.some((v) => v < 0) || op.some((v, i) => v < 0 || v >= s[i])) fail(ctx, `pads [${p.join(', ')}] / output_padding [${op.join(', ')}] are not valid`);
  const [n, , h, wd] = x.shape;
  if (s[0] === 1 && s[1] === 1 && kh % 2 === 1 && kw % 2 === 1 && op[0] === 0 && op[1] === 0 && p[0] === (kh - 1) / 2 && p[2] === (kh - 1) / 2 && p[1] === (kw - 1) / 2 && p[3] === (kw - 1) / 2) {
    // stride 1, 'same' pads: cnnf's transposed convolution (a convolution with the flipped filter, XNNPACK on wasm, and its gradients)
    let y = convTransposeSame(toNHWC(x), tf.transpose(w, [2, 3, 1, 0]) as tf.Tensor4D);
    if (b) y = tf.add(y, tf.reshape(b, [m]));
    return toNCHW(y);
  }
  const fh = (h - 1) * s[0] + kh;
  const fw = (wd - 1) * s[1] + kw;
  let y = tf.conv2dTranspose(toNHWC(x), tf.transpose(w, [2, 3, 1, 0]) as tf.Tensor4D, [n, fh, fw, m], s, 'valid');
  if (op[0] > 0 || op[1] > 0) y = tf.pad(y, [[0, 0], [0, op[0]], [0, op[1]], [0, 0]]);
  const oh = fh + op[0] - p[0] - p[2];
  const ow = fw + op[1] - p[1] - p[3];
  if (oh <= 0 || ow <= 0) fail(ctx, 'the pads leave no output');
  y = tf.slice(y, [0, p[0], p[1], 0], [n, oh, ow, m]);
  if (b) y = tf.add(y, tf.reshape(b, [m]));
  return toNCHW(y);
}

function pool(ctx: Ctx, kind: 'max' | 'avg'): tf.Tensor {
  const x = need4d(ctx, input(ctx, 0));
  if (ctx.node.outputs.length > 1 && ctx.node.outputs[1] !== '') fail(ctx, 'the Indices output is not supported');
  const k = pair(ctx, 'kernel_shape', 1);
  if (!attrInts(ctx, 'kernel_shape')) fail(ctx, 'kernel_shape is required');
  const s = pair(ctx, 'strides', 1);
  const dil = pair(ctx, 'dilations', 1);
  if (dil[0] !== 1 || dil[1] !== 1) fail(ctx, 'dilated pooling is not supported');
  const hw: [number, number] = [x.shape[2], x.shape[3]];
  let pad = pad2d(ctx, hw, k, s, [1, 1]);
  const ceil = attrI(ctx, 'ceil_mode', 0) === 1;
  if (ceil && ctx.opset < 10) fail(ctx, 'ceil_mode needs opset 10 or later');
  const explicit = pad === 'valid' ? ([[0, 0], [0, 0], [0, 0], [0, 0]] as [[number, number], [number, number], [number, number], [number, number]]) : pad === 'same' ? null : pad;
  if (ceil && explicit) {
    // ceil_mode: extra rows/columns at the end so that the floor formula gives the ceil size (a window must start inside the input or its left padding)
    const extra = [0, 1].map((d) => {
      const span = hw[d] + explicit[d + 1][0] + explicit[d + 1][1] - k[d];
      let o = Math.ceil(span / s[d]) + 1;
      if ((o - 1) * s[d] >= hw[d] + explicit[d + 1][0]) o -= 1;
      return Math.max(0, (o - 1) * s[d] + k[d] - (hw[d] + explicit[d + 1][0] + explicit[d + 1][1]));
    });
    if (extra.some((e) => e > 0)) {
      if (kind === 'avg') fail(ctx, 'ceil_mode average pooling is not supported');
      pad = [[0, 0], [explicit[1][0], explicit[1][1] + extra[0]], [explicit[2][0], explicit[2][1] + extra[1]], [0, 0]];
    }
  }
  let xh = toNHWC(x);
  if (kind === 'avg' && attrI(ctx, 'count_include_pad', 0) === 1 && Array.isArray(pad)) {
    xh = tf.pad(xh, pad);
    pad = 'valid';
  }
  if (kind === 'max') {
    // explicit padding (padded cells never win a max), then PyTorch's tie rule for the gradient
    let padded = xh;
    if (Array.isArray(pad) && pad.some(([a, b]) => a !== 0 || b !== 0)) padded = tf.pad(xh, pad, -3.4e38);
    return toNCHW(maxPoolFirst(padded, k, s));
  }
  const padArg = pad as 'valid' | 'same' | number;
  if (Array.isArray(pad) && pad.every(([a, b]) => a === 0 && b === 0)) return toNCHW(tf.avgPool(xh, k, s, 'valid'));
  if (Array.isArray(pad)) {
    // average excluding the padding: sum of values / count of real cells
    const ones = tf.onesLike(xh);
    const sum = tf.avgPool(tf.pad(xh, pad), k, s, 'valid');
    const cnt = tf.avgPool(tf.pad(ones, pad), k, s, 'valid');
    return toNCHW(tf.div(sum, cnt) as tf.Tensor4D);
  }
  return toNCHW(tf.avgPool(xh, k, s, padArg));
}

/**
 * Max pooling ('valid', NHWC) whose gradient goes to the FIRST maximal position of each window in
 * row-major order, as PyTorch's (and so torch.autograd.grad on the exported model): tfjs's own
 * MaxPoolGrad may pick another of tied positions, and ties are common (a constant background gives
 * equal activations across a window). Built from stock ops, so it runs on every backend.
 */
function maxPoolFirst(xp: tf.Tensor4D, k: [number, number], s: [number, number]): tf.Tensor4D {
  const f = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
    const y = tf.maxPool(x as tf.Tensor4D, k, s, 'valid');
    save([x, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ys] = saved as [tf.Tensor4D, tf.Tensor4D];
        const [n, H, W, c] = xs.shape;
        const [, oh, ow] = ys.shape;
        let taken: tf.Tensor = tf.zerosLike(ys);
        let dx: tf.Tensor = tf.zeros(xs.shape);
        for (let di = 0; di < k[0]; di++) {
          for (let dj = 0; dj < k[1]; dj++) {
            const win = tf.stridedSlice(xs, [0, di, dj, 0], [n, di + (oh - 1) * s[0] + 1, dj + (ow - 1) * s[1] + 1, c], [1, s[0], s[1], 1]);
            const first = tf.mul(tf.cast(tf.equal(win, ys), 'float32'), tf.sub(1, taken));
            taken = tf.add(taken, first);
            // dy at the window's first maximum, spread back onto the stride grid at offset (di, dj)
            let g: tf.Tensor = tf.mul(dy, first);
            g = tf.reshape(tf.pad(tf.reshape(g, [n, oh, 1, ow * c]), [[0, 0], [0, 0], [0, s[0] - 1], [0, 0]]), [n, oh * s[0], ow, c]);
            g = tf.reshape(tf.pad(tf.reshape(g, [n * oh * s[0], ow, 1, c]), [[0, 0], [0, 0], [0, s[1] - 1], [0, 0]]), [n, oh * s[0], ow * s[1], c]);
            const rows = Math.min(oh * s[0], H - di);
            const cols = Math.min(ow * s[1], W - dj);
            g = tf.slice(g, [0, 0, 0, 0], [n, rows, cols, c]);
            dx = tf.add(dx, tf.pad(g, [[0, 0], [di, H - di - rows], [dj, W - dj - cols], [0, 0]]));
          }
        }
        return dx;
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(xp) as tf.Tensor4D;
}

function axesOf(ctx: Ctx, attrName: string, inputIndex: number, fromOpset: number): number[] | undefined {
  if (ctx.opset >= fromOpset) {
    const t = optInput(ctx, inputIndex);
    return t ? values(ctx, t, attrName) : undefined;
  }
  return attrInts(ctx, attrName);
}

function reduce(ctx: Ctx, f: (x: tf.Tensor, axes: number[], keep: boolean) => tf.Tensor, axesFrom: number): tf.Tensor {
  const x = input(ctx, 0);
  const keep = attrI(ctx, 'keepdims', 1) === 1;
  let axes = axesOf(ctx, 'axes', 1, axesFrom);
  if (!axes || axes.length === 0) {
    if (attrI(ctx, 'noop_with_empty_axes', 0) === 1) return tf.clone(x);
    axes = x.shape.map((_, i) => i);
  }
  return f(x, axes.map((a) => axis(ctx, a, x.rank)), keep);
}

function softmaxLike(ctx: Ctx, log: boolean): tf.Tensor {
  const x = input(ctx, 0);
  const f = (t: tf.Tensor): tf.Tensor => (log ? tf.logSoftmax(t) : tf.softmax(t));
  if (ctx.opset >= 13) {
    const a = axis(ctx, attrI(ctx, 'axis', -1), x.rank);
    if (a === x.rank - 1) return f(x);
    const perm = x.shape.map((_, i) => i);
    perm[a] = x.rank - 1;
    perm[x.rank - 1] = a;
    return tf.transpose(f(tf.transpose(x, perm)), perm);
  }
  // before opset 13: the input is coerced to 2-D at `axis` (default 1)
  const a = axis(ctx, attrI(ctx, 'axis', 1), x.rank);
  const rows = x.shape.slice(0, a).reduce((p, q) => p * q, 1);
  return tf.reshape(f(tf.reshape(x, [rows, x.size / Math.max(1, rows)])), x.shape);
}

function reshape(ctx: Ctx): tf.Tensor {
  const x = input(ctx, 0);
  const shape = values(ctx, input(ctx, 1), 'shape');
  const allowZero = attrI(ctx, 'allowzero', 0) === 1;
  const dims = shape.map((d, i) => (d === 0 && !allowZero ? (x.shape[i] ?? fail(ctx, 'shape copies a dimension the input does not have')) : d));
  if (dims.filter((d) => d === -1).length > 1 || dims.some((d) => d < -1)) fail(ctx, `shape [${shape.join(', ')}] is not valid`);
  const known = dims.filter((d) => d !== -1).reduce((p, q) => p * q, 1);
  if (dims.includes(-1) ? known === 0 || x.size % known !== 0 : known !== x.size) fail(ctx, `cannot reshape [${x.shape.join(', ')}] to [${shape.join(', ')}] (a Reshape fixed to one batch size? export with a dynamic batch axis)`);
  return tf.reshape(x, dims);
}

function slice(ctx: Ctx): tf.Tensor {
  const x = input(ctx, 0);
  let starts: number[];
  let ends: number[];
  let axes: number[] | undefined;
  let steps: number[] | undefined;
  if (ctx.opset >= 10) {
    starts = values(ctx, input(ctx, 1), 'starts');
    ends = values(ctx, input(ctx, 2), 'ends');
    const a = optInput(ctx, 3);
    const s = optInput(ctx, 4);
    axes = a ? values(ctx, a, 'axes') : undefined;
    steps = s ? values(ctx, s, 'steps') : undefined;
  } else {
    starts = attrInts(ctx, 'starts') ?? fail(ctx, 'starts is required');
    ends = attrInts(ctx, 'ends') ?? fail(ctx, 'ends is required');
    axes = attrInts(ctx, 'axes');
  }
  if (starts.length !== ends.length) fail(ctx, 'starts and ends differ in length');
  const begin = x.shape.map(() => 0);
  const end = [...x.shape];
  const stride = x.shape.map(() => 1);
  starts.forEach((s0, i) => {
    const a = axis(ctx, axes ? axes[i] : i, x.rank);
    const dim = x.shape[a];
    const st = steps ? steps[i] : 1;
    if (st === 0 || st === undefined) fail(ctx, 'a step of 0');
    const clampIdx = (v: number, lo: number, hi: number): number => Math.min(Math.max(v < 0 ? v + dim : v, lo), hi);
    if (st > 0) {
      begin[a] = clampIdx(s0, 0, dim);
      end[a] = clampIdx(ends[i], 0, dim);
    } else {
      begin[a] = clampIdx(s0, -1, dim - 1);
      end[a] = clampIdx(ends[i], -1, dim - 1);
    }
    stride[a] = st;
  });
  let y = x;
  for (let a = 0; a < x.rank; a++) y = stepSlice(y, a, begin[a], end[a], stride[a]);
  return y;
}

/**
 * Elements begin, begin + step, ... (before end) of one axis, by differentiable ops only (tfjs has no
 * StridedSlice gradient): a negative step reverses the axis first; a step s > 1 pads the range to a
 * multiple of s, splits the axis into [count, s] and keeps index 0.
 */
function stepSlice(x: tf.Tensor, axis: number, begin: number, end: number, step: number): tf.Tensor {
  const dim = x.shape[axis];
  if (step < 0) return stepSlice(tf.reverse(x, axis), axis, dim - 1 - begin, dim - 1 - end, -step);
  const count = Math.max(0, Math.ceil((end - begin) / step));
  if (step === 1 || count === 0) {
    if (begin === 0 && end >= dim) return x;
    const b = x.shape.map((_, i) => (i === axis ? begin : 0));
    const sz = x.shape.map((d, i) => (i === axis ? Math.max(0, Math.min(end, dim) - begin) : d));
    return tf.slice(x, b, sz);
  }
  const avail = Math.min(count * step, dim - begin);
  let part = tf.slice(x, x.shape.map((_, i) => (i === axis ? begin : 0)), x.shape.map((d, i) => (i === axis ? avail : d)));
  if (avail < count * step) part = tf.pad(part, x.shape.map((_, i) => (i === axis ? [0, count * step - avail] : [0, 0])) as Array<[number, number]>);
  const split = [...x.shape.slice(0, axis), count, step, ...x.shape.slice(axis + 1)];
  const first = tf.slice(tf.reshape(part, split), split.map(() => 0), split.map((d, i) => (i === axis + 1 ? 1 : d)));
  return tf.reshape(first, [...x.shape.slice(0, axis), count, ...x.shape.slice(axis + 1)]);
}

function pad(ctx: Ctx): tf.Tensor {
  const x = input(ctx, 0);
  const mode = attrS(ctx, 'mode', 'constant');
  let pads: number[];
  let value = 0;
  if (ctx.opset >= 11) {
    pads = values(ctx, input(ctx, 1), 'pads');
    const v = optInput(ctx, 2);
    if (v) value = values(ctx, v, 'constant_value')[0] ?? 0;
    if (optInput(ctx, 3)) fail(ctx, 'the axes input is not supported');
  } else {
    pads = attrInts(ctx, 'pads') ?? fail(ctx, 'pads is required');
    value = attrF(ctx, 'value', 0);
  }
  if (pads.length !== 2 * x.rank || pads.some((p) => p < 0 || p > 4096)) fail(ctx, `pads [${pads.join(', ')}] do not fit a rank-${x.rank} input (negative pads are not supported)`);
  const pp = x.shape.map((_, i) => [pads[i], pads[i + x.rank]] as [number, number]);
  if (mode === 'constant') return tf.pad(x, pp, value);
  if (mode === 'reflect' || mode === 'edge') {
    if (mode === 'reflect') return tf.mirrorPad(x, pp, 'reflect');
    fail(ctx, 'edge padding is not supported');
  }
  return fail(ctx, `mode ${JSON.stringify(mode)} is not supported`);
}

function checkedShape(ctx: Ctx, dims: number[]): number[] {
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) fail(ctx, `shape [${dims.join(', ')}] is not valid`);
  const size = dims.reduce((p, q) => p * q, 1);
  if (size > MAX_ONNX_TENSOR_ELEMENTS_PER_EXAMPLE * Math.max(1, ctx.batch)) fail(ctx, `a tensor of shape [${dims.join(', ')}] is larger than cnnf allows`);
  return dims;
}

function constantValue(ctx: Ctx): tf.Tensor {
  const a = ctx.node.attrs;
  if (a.value?.t) return initTensor(a.value.t);
  if (a.value_float?.f !== undefined) return withHost(tf.scalar(a.value_float.f, 'float32'), [Math.fround(a.value_float.f)]);
  if (a.value_floats?.floats) return withHost(tf.tensor1d(a.value_floats.floats, 'float32'), Float32Array.from(a.value_floats.floats));
  if (a.value_int?.i !== undefined) return withHost(tf.scalar(a.value_int.i, 'int32'), Int32Array.of(a.value_int.i));
  if (a.value_ints?.ints) return withHost(tf.tensor1d(a.value_ints.ints, 'int32'), Int32Array.from(a.value_ints.ints));
  return fail(ctx, 'no supported value attribute (value, value_float(s), value_int(s))');
}

function cast(ctx: Ctx): tf.Tensor {
  const x = input(ctx, 0);
  const to = attrI(ctx, 'to', 1);
  if (to === 1) return tf.cast(x, 'float32');
  if (to === 6 || to === 7) return tf.cast(x, 'int32');
  if (to === 9) return tf.cast(x, 'bool');
  return fail(ctx, `cast to ONNX data type ${to} is not supported`);
}

const elementwise: Record<string, (x: tf.Tensor) => tf.Tensor> = {
  Relu: (x) => tf.relu(x),
  Sigmoid: (x) => tf.sigmoid(x),
  Tanh: (x) => tf.tanh(x),
  Exp: (x) => tf.exp(x),
  Log: (x) => tf.log(x),
  Sqrt: (x) => tf.sqrt(x),
  Neg: (x) => tf.neg(x),
  Abs: (x) => tf.abs(x),
  Erf: (x) => tf.erf(x),
  Reciprocal: (x) => tf.reciprocal(x),
  Floor: (x) => tf.floor(x),
  Ceil: (x) => tf.ceil(x),
  Softplus: (x) => tf.softplus(x),
  Identity: (x) => tf.clone(x),
  HardSwish: (x) => tf.mul(x, tf.div(tf.relu6(tf.add(x, 3)), 6)),
};

const binary: Record<string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor> = {
  Add: (a, b) => tf.add(a, b),
  Sub: (a, b) => tf.sub(a, b),
  Mul: (a, b) => tf.mul(a, b),
  Div: (a, b) => (a.dtype === 'int32' && b.dtype === 'int32' ? tf.cast(tf.div(tf.cast(a, 'float32'), tf.cast(b, 'float32')), 'int32') : tf.div(a, b)),
  Pow: (a, b) => tf.pow(a, tf.cast(b, a.dtype)),
  // comparisons are piecewise constant: their (bool) results are constants for backprop, untaped, so
  // that a mask built from them (Cast, Mul) does not ask tfjs for a gradient of Equal, which it has none of
  Equal: (a, b) => untaped(() => tf.equal(a, b)),
  Greater: (a, b) => untaped(() => tf.greater(a, b)),
  Less: (a, b) => untaped(() => tf.less(a, b)),
};

type OpFn = (ctx: Ctx) => tf.Tensor | tf.Tensor[];

const OPS: Record<string, OpFn> = {
  ...Object.fromEntries(Object.entries(elementwise).map(([k, f]) => [k, (ctx: Ctx) => f(input(ctx, 0))])),
  ...Object.fromEntries(Object.entries(binary).map(([k, f]) => [k, (ctx: Ctx) => {
    const a = input(ctx, 0);
    const b = input(ctx, 1);
    return f(a, a.dtype === b.dtype || k === 'Pow' ? b : tf.cast(b, a.dtype));
  }])),
  Max: (ctx) => ctx.node.inputs.map((_, i) => input(ctx, i)).reduce((a, b) => tf.maximum(a, b)),
  Min: (ctx) => ctx.node.inputs.map((_, i) => input(ctx, i)).reduce((a, b) => tf.minimum(a, b)),
  Sum: (ctx) => ctx.node.inputs.map((_, i) => input(ctx, i)).reduce((a, b) => tf.add(a, b)),
  LeakyRelu: (ctx) => tf.leakyRelu(input(ctx, 0), attrF(ctx, 'alpha', 0.01)),
  Elu: (ctx) => {
    const x = input(ctx, 0);
    const alpha = attrF(ctx, 'alpha', 1);
    return alpha === 1 ? tf.elu(x) : tf.where(tf.greater(x, 0), x, tf.mul(alpha, tf.sub(tf.exp(x), 1)));
  },
  HardSigmoid: (ctx) => tf.clipByValue(tf.add(tf.mul(input(ctx, 0), attrF(ctx, 'alpha', 0.2)), attrF(ctx, 'beta', 0.5)), 0, 1),
  Gelu: (ctx) => {
    const x = input(ctx, 0);
    if (attrS(ctx, 'approximate', 'none') === 'tanh') {
      return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3)))))));
    }
    return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.div(x, Math.SQRT2))));
  },
  Clip: (ctx) => {
    const x = input(ctx, 0);
    let lo = -3.4028234663852886e38;
    let hi = 3.4028234663852886e38;
    if (ctx.opset >= 11) {
      const a = optInput(ctx, 1);
      const b = optInput(ctx, 2);
      if (a) lo = values(ctx, a, 'min')[0];
      if (b) hi = values(ctx, b, 'max')[0];
    } else {
      lo = attrF(ctx, 'min', lo);
      hi = attrF(ctx, 'max', hi);
    }
    if (!(lo <= hi)) fail(ctx, `min ${lo} > max ${hi}`);
    return tf.clipByValue(x, lo, hi);
  },
  Softmax: (ctx) => softmaxLike(ctx, false),
  LogSoftmax: (ctx) => softmaxLike(ctx, true),
  Conv: conv,
  ConvTranspose: convTranspose,
  MaxPool: (ctx) => pool(ctx, 'max'),
  AveragePool: (ctx) => pool(ctx, 'avg'),
  GlobalAveragePool: (ctx) => tf.mean(need4d(ctx, input(ctx, 0)), [2, 3], true),
  GlobalMaxPool: (ctx) => tf.max(need4d(ctx, input(ctx, 0)), [2, 3], true),
  BatchNormalization: (ctx) => {
    if (attrI(ctx, 'training_mode', 0) === 1) fail(ctx, 'training_mode is not supported (export the model in eval mode)');
    const x = input(ctx, 0);
    const c = x.shape[1] ?? 1;
    const shape = x.shape.map((_, i) => (i === 1 ? c : 1));
    const [scale, bias, mean, variance] = [1, 2, 3, 4].map((i) => {
      const t = input(ctx, i);
      if (t.size !== c) fail(ctx, `input ${i + 1} has ${t.size} values for ${c} channels`);
      return tf.reshape(t, shape);
    });
    const inv = tf.div(scale, tf.sqrt(tf.add(variance, attrF(ctx, 'epsilon', 1e-5))));
    return tf.add(tf.mul(tf.sub(x, mean), inv), bias);
  },
  InstanceNormalization: (ctx) => {
    const x = need4d(ctx, input(ctx, 0));
    const c = x.shape[1];
    const scale = tf.reshape(input(ctx, 1), [1, c, 1, 1]);
    const bias = tf.reshape(input(ctx, 2), [1, c, 1, 1]);
    const { mean, variance } = tf.moments(x, [2, 3], true);
    return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, attrF(ctx, 'epsilon', 1e-5)))), scale), bias);
  },
  Gemm: (ctx) => {
    const a = input(ctx, 0);
    const b = input(ctx, 1);
    if (a.rank !== 2 || b.rank !== 2) fail(ctx, `inputs [${a.shape.join(', ')}] and [${b.shape.join(', ')}] are not matrices`);
    const ta = attrI(ctx, 'transA', 0) === 1;
    const tb = attrI(ctx, 'transB', 0) === 1;
    // cnnf's linear (gradients as untransposed matMuls, fast on wasm) for the usual x @ W / x @ W^T
    let y: tf.Tensor = ta ? tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, true, tb) : linear(a as tf.Tensor2D, (tb ? tf.transpose(b) : b) as tf.Tensor2D);
    const alpha = attrF(ctx, 'alpha', 1);
    if (alpha !== 1) y = tf.mul(y, alpha);
    const c = optInput(ctx, 2);
    if (c) {
      const beta = attrF(ctx, 'beta', 1);
      y = tf.add(y, beta === 1 ? c : tf.mul(c, beta));
    }
    return y;
  },
  MatMul: (ctx) => {
    const a = input(ctx, 0);
    const b = input(ctx, 1);
    if (a.rank < 2 || b.rank < 2) fail(ctx, 'vector operands are not supported');
    return tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D);
  },
  Flatten: (ctx) => {
    const x = input(ctx, 0);
    const a = attrI(ctx, 'axis', 1);
    const ax = a < 0 ? a + x.rank : a;
    if (!(ax >= 0 && ax <= x.rank)) fail(ctx, `axis ${a} is outside a rank-${x.rank} tensor`);
    const rows = x.shape.slice(0, ax).reduce((p, q) => p * q, 1);
    return tf.reshape(x, [rows, rows === 0 ? 0 : x.size / rows]);
  },
  Reshape: reshape,
  Transpose: (ctx) => {
    const x = input(ctx, 0);
    const perm = attrInts(ctx, 'perm') ?? x.shape.map((_, i) => x.rank - 1 - i);
    if (perm.length !== x.rank || new Set(perm).size !== x.rank || perm.some((p) => p < 0 || p >= x.rank)) fail(ctx, `perm [${perm.join(', ')}] is not a permutation of ${x.rank} axes`);
    return tf.transpose(x, perm);
  },
  Squeeze: (ctx) => {
    const x = input(ctx, 0);
    const axes = axesOf(ctx, 'axes', 1, 13);
    if (!axes) return tf.reshape(x, x.shape.filter((d) => d !== 1));
    const ax = axes.map((a) => axis(ctx, a, x.rank));
    if (ax.some((a) => x.shape[a] !== 1)) fail(ctx, `axes [${axes.join(', ')}] are not all of size 1 in [${x.shape.join(', ')}]`);
    return tf.reshape(x, x.shape.filter((_, i) => !ax.includes(i)));
  },
  Unsqueeze: (ctx) => {
    const x = input(ctx, 0);
    const axes = axesOf(ctx, 'axes', 1, 13) ?? fail(ctx, 'axes are required');
    const rank = x.rank + axes.length;
    const ax = axes.map((a) => axis(ctx, a, rank));
    if (new Set(ax).size !== ax.length) fail(ctx, 'axes repeat');
    const shape: number[] = [];
    let k = 0;
    for (let i = 0; i < rank; i++) shape.push(ax.includes(i) ? 1 : x.shape[k++]);
    return tf.reshape(x, shape);
  },
  Concat: (ctx) => {
    const xs = ctx.node.inputs.map((_, i) => input(ctx, i));
    const a = axis(ctx, attrI(ctx, 'axis', 0), xs[0].rank);
    const dtype = xs.some((t) => t.dtype === 'float32') ? 'float32' : xs[0].dtype;
    return tf.concat(xs.map((t) => (t.dtype === dtype ? t : tf.cast(t, dtype))), a);
  },
  Slice: slice,
  Gather: (ctx) => {
    const x = input(ctx, 0);
    const idx = input(ctx, 1);
    const a = axis(ctx, attrI(ctx, 'axis', 0), x.rank);
    const dim = x.shape[a];
    const iv = values(ctx, idx, 'indices');
    if (iv.some((i) => i < -dim || i >= dim)) fail(ctx, `indices [${iv.slice(0, 8).join(', ')}] are outside an axis of ${dim}`);
    const pos = iv.map((i) => (i < 0 ? i + dim : i));
    const shape = [...x.shape.slice(0, a), ...idx.shape, ...x.shape.slice(a + 1)];
    if (x.dtype !== 'float32') return tf.reshape(tf.gather(x, tf.tensor1d(pos, 'int32'), a), shape);
    // float data: slices, so that the gradient needs no UnsortedSegmentSum (tfjs-wasm has none)
    const parts = pos.map((p) => tf.slice(x, x.shape.map((_, i) => (i === a ? p : 0)), x.shape.map((d, i) => (i === a ? 1 : d))));
    return tf.reshape(parts.length === 1 ? parts[0] : tf.concat(parts, a), shape);
  },
  Pad: pad,
  Shape: (ctx) => {
    const x = input(ctx, 0);
    const r = x.rank;
    const norm = (v: number): number => Math.min(Math.max(v < 0 ? v + r : v, 0), r);
    const start = norm(attrI(ctx, 'start', 0));
    const end = norm(attrI(ctx, 'end', r));
    const dims = x.shape.slice(start, Math.max(start, end));
    return withHost(tf.tensor1d(dims, 'int32'), dims);
  },
  Size: (ctx) => withHost(tf.scalar(input(ctx, 0).size, 'int32'), [input(ctx, 0).size]),
  Constant: constantValue,
  ConstantOfShape: (ctx) => {
    const dims = checkedShape(ctx, values(ctx, input(ctx, 0), 'shape'));
    const v = ctx.node.attrs.value?.t;
    if (v && v.data.length !== 1) fail(ctx, 'value must hold one element');
    return tf.fill(dims, v ? v.data[0] : 0, v?.dtype ?? 'float32');
  },
  Expand: (ctx) => {
    const x = input(ctx, 0);
    const shape = values(ctx, input(ctx, 1), 'shape');
    const rank = Math.max(x.rank, shape.length);
    const xs = [...new Array<number>(rank - x.rank).fill(1), ...x.shape];
    const ss = [...new Array<number>(rank - shape.length).fill(1), ...shape];
    const out = xs.map((d, i) => (d === 1 ? ss[i] : ss[i] === 1 || ss[i] === d ? d : fail(ctx, `cannot expand [${x.shape.join(', ')}] to [${shape.join(', ')}]`)));
    return tf.broadcastTo(tf.reshape(x, xs), checkedShape(ctx, out));
  },
  Where: (ctx) => tf.where(tf.cast(input(ctx, 0), 'bool'), input(ctx, 1), input(ctx, 2)),
  Dropout: (ctx) => {
    if (ctx.node.outputs.length > 1 && ctx.node.outputs[1] !== '') fail(ctx, 'the mask output is not supported');
    return tf.clone(input(ctx, 0));
  },
  ReduceMean: (ctx) => reduce(ctx, (x, a, k) => tf.mean(x, a, k), 18),
  ReduceSum: (ctx) => reduce(ctx, (x, a, k) => tf.sum(x, a, k), 13),
  ReduceMax: (ctx) => reduce(ctx, (x, a, k) => tf.max(x, a, k), 18),
  Cast: cast,
};

/** The operators cnnf runs (io/onnx.ts refuses any other at read time, naming it and the node). */
export const ONNX_OPS: ReadonlySet<string> = new Set(Object.keys(OPS));

/** The first opset defining an operator, where that is above ONNX_MIN_OPSET (7): a model importing less is refused. */
export const ONNX_OP_SINCE: Readonly<Record<string, number>> = { Erf: 9, ConstantOfShape: 9, Where: 9, Expand: 8, HardSwish: 14, Gelu: 20 };

/** Runs the graph on x (the model's own input layout and range); returns its output. Call inside tf.tidy. */
export function runOnnxGraph(g: OnnxGraph, weights: Map<string, tf.Tensor>, x: tf.Tensor): tf.Tensor {
  const env: Env = new Map(weights);
  env.set(g.input.name, x);
  const batch = x.shape[0] ?? 1;
  for (const node of g.nodes) {
    const ctx: Ctx = { node, opset: g.opset, env, batch };
    const fn = OPS[node.op];
    if (!fn) fail(ctx, 'operator is not supported');
    let out: tf.Tensor | tf.Tensor[];
    try {
      out = fn(ctx);
    } catch (e) {
      if (e instanceof UsageError) throw e;
      return fail(ctx, String((e as Error)?.message ?? e).split('\n')[0].slice(0, 200));
    }
    const outs = Array.isArray(out) ? out : [out];
    for (const t of outs) {
      if (t.size > MAX_ONNX_TENSOR_ELEMENTS_PER_EXAMPLE * Math.max(1, batch)) fail(ctx, `its output [${t.shape.join(', ')}] is larger than cnnf allows`);
    }
    if (outs.length === 1 && !HOST.has(outs[0])) {
      const folded = hostFold(ctx, outs[0]);
      if (folded) HOST.set(outs[0], folded);
    }
    node.outputs.forEach((name, i) => {
      if (name !== '' && outs[i]) env.set(name, outs[i]);
    });
  }
  const y = env.get(g.output);
  if (!y) throw new UsageError(`output ${JSON.stringify(g.output)} has no value`);
  return y;
}

/**
 * An ONNX model behind the input adapter (NCHW, [0, 1] by default: PyTorch's ToTensor). Probed at
 * creation on a batch of 2 (a graph fixed to batch 1 is refused), for [N, classes] finite logits
 * and for an input gradient (white-box attacks need one; every operator here has one in tfjs).
 */
export class OnnxClassifier implements ForeignClassifier {
  readonly foreign = true as const;

  private constructor(
    readonly graph: OnnxGraph, private readonly weights: Map<string, tf.Tensor>, readonly adapter: InputAdapter, readonly source: string,
    readonly inputShape: [number, number, number], readonly numClasses: number, readonly differentiable: boolean,
  ) {}

  static async create(graph: OnnxGraph, adapter: InputAdapter, source: string, path: string): Promise<OnnxClassifier> {
    checkAdapter(adapter);
    const [n0, a, b, c] = graph.input.dims as [number | null, number, number, number];
    if (n0 !== null && n0 !== 1) throw new UsageError(`${path}: the input's batch dimension is fixed to ${n0}; export with a dynamic batch axis`);
    const inputShape: [number, number, number] = adapter.layout === 'NCHW' ? [b, c, a] : [a, b, c];
    const weights = new Map<string, tf.Tensor>();
    for (const [name, init] of graph.initializers) weights.set(name, initTensor(init));
    const drop = (): void => {
      for (const t of weights.values()) t.dispose();
    };
    try {
      const probe = tf.tidy(() => {
        const x = tf.randomUniform([2, ...inputShape], -1, 1, 'float32', 1) as tf.Tensor4D;
        const y = runOnnxGraph(graph, weights, adaptInput(x, adapter));
        return { shape: y.shape.slice(), dtype: y.dtype, finite: tf.all(tf.isFinite(tf.cast(y, 'float32'))) };
      });
      const { shape, dtype } = probe;
      const finite = (await readAndDispose(probe.finite))[0];
      if (shape.length !== 2 || shape[0] !== 2 || shape[1] < 2 || dtype !== 'float32') {
        throw new UsageError(`${path}: the output for 2 images has shape [${shape.join(', ')}] (${dtype}), not [2, classes] float32 with at least 2 classes (a graph fixed to batch 1? export with a dynamic batch axis)`);
      }
      if (!finite) throw new UsageError(`${path}: the model's outputs are not finite (NaN or Inf) on a probe batch`);
      let differentiable = true;
      try {
        const g = tf.tidy(() => {
          const x = tf.zeros([1, ...inputShape]) as tf.Tensor4D;
          const grad = tf.grad((v: tf.Tensor) => tf.sum(runOnnxGraph(graph, weights, adaptInput(v as tf.Tensor4D, adapter))))(x);
          return grad.shape.join('x') === x.shape.join('x');
        });
        differentiable = g;
      } catch {
        differentiable = false;
      }
      return new OnnxClassifier(graph, weights, adapter, source, inputShape, shape[1], differentiable);
    } catch (e) {
      drop();
      if (e instanceof UsageError) throw new UsageError(e.message.startsWith(path) ? e.message : `${path}: ${e.message}`);
      throw new UsageError(`${path}: tfjs cannot run this ONNX model: ${String((e as Error)?.message ?? e).split('\n')[0].slice(0, 200)}`);
    }
  }

  logits(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      const y = runOnnxGraph(this.graph, this.weights, adaptInput(x, this.adapter)) as tf.Tensor2D;
      return this.adapter.output === 'probabilities' ? (tf.log(tf.maximum(y, 1e-30)) as tf.Tensor2D) : y;
    });
  }

  dispose(): void {
    for (const t of this.weights.values()) t.dispose();
  }
}
