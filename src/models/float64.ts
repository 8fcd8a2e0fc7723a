/**
 * A float64 reference evaluator of CNN-F: the inference of cnnf's tfjs model (models/cnnf.ts with the
 * layers of src/nn/, training off, default ReLU mask rule), in plain TypeScript over Float64Array, plus
 * the gradient of a scalar head of the logits with respect to the input.
 *
 * What it is for: running an attack controller (APGD) on a model evaluated in float64, as AutoAttack's
 * golden tensors were made, so that trajectories that are ill-conditioned in float32 (DLR) can be
 * compared with the reference step by step. It is a reference, not a fast path.
 *
 * What it mirrors, layer by layer (see docs/cnnf-semantics.md): conv 3x3 'same' without bias and its
 * feedback, the transposed conv with the same weights; InsNorm x / sqrt(mean_HW x^2 + 1e-8), also in
 * feedback; Bias (identity in feedback); resReLU (mask x > 0, or with a hidden h from the last feedback
 * x' = x + r (h - x), mask x' h > 0; feedback stores its input as hidden and applies the mask); 2x2
 * max pool with the FIRST maximal (minimal) position of each window in row-major order, max/min chosen
 * by the sign of the pool's hidden once a feedback ran (0 where the hidden is 0), unpooling to the same
 * positions; flatten in cnnf's NHWC (H, W, C) order; Linear x W and its feedback y W^T.
 * Inference: first pass, then `cycles` rounds of feedback, ff = ff + r (recon - ff), forward from `ind`.
 *
 * Gradient semantics are those of tfjs autodiff through `model.run` (tf.grad): ReLU masks and pooling
 * selections are constants; the hidden h in resReLU's x' IS differentiated (it is a feedback signal);
 * InsNorm is differentiated fully; feedback weights are constants. Mode 'first' (attacks/base.ts
 * attackLogits) differentiates the first forward pass only; 'e2e' the readout through every cycle.
 *
 * Examples are independent (every layer works per sample), so each one runs alone with its own small
 * tape (a forward that records closures for the reverse pass).
 *
 *   const m64 = (await CNNF64.fromModel(model)).withConfig({ cycles: victim.cycles });
 *   const { logits, lossLogits, grad } = m64.evaluate(x, n, victim.mode, victim.readout, crossEntropyHead(labels, 10));
 *
 * A tfjs model's `withMaskRule` (conformance tie search) is not carried over: masks here are pre > 0.
 */
import { getArch, makeConfig, paramSpecs, type ArchSpec, type ModelConfig } from './arch.js';
import type { CNNF, Readout } from './cnnf.js';

export interface Float64Evaluation {
  /** Readout logits [n*k] (what the model predicts with: 'last' = after the final cycle, 'average' = mean of passes). */
  logits: Float64Array;
  /** Logits the loss was taken on: the readout for mode 'e2e' (and for 0 cycles); the first pass for mode 'first'. */
  lossLogits: Float64Array;
  /** d(sum_i head_i)/dx, NHWC like x, float64 (empty from `predict`). */
  grad: Float64Array;
  numClasses: number;
  /** Logits [n*k] of every pass: the first, then after each cycle (cycles + 1 arrays). */
  passes: Float64Array[];
}

export type Float64GradientMode = 'e2e' | 'first';

/** A value on the tape, its gradient (allocated on first use) and how to pass that gradient on. */
interface Node {
  v: Float64Array;
  g: Float64Array | null;
  back: ((g: Float64Array) => void) | null;
}

function grad(node: Node): Float64Array {
  if (!node.g) node.g = new Float64Array(node.v.length);
  return node.g;
}

/** Records nodes in creation order; the reverse pass walks them backwards. */
class Tape {
  readonly nodes: Node[] = [];

  node(v: Float64Array, back: ((g: Float64Array) => void) | null): Node {
    const n: Node = { v, g: null, back };
    this.nodes.push(n);
    return n;
  }

  /** Seeds `out` with `seed` and propagates to every earlier node; returns the gradient of `input`. */
  backward(out: Node, seed: ArrayLike<number>, input: Node): Float64Array {
    const g = grad(out);
    for (let i = 0; i < g.length; i++) g[i] += seed[i];
    const end = this.nodes.indexOf(out);
    for (let i = end; i >= 0; i--) {
      const n = this.nodes[i];
      if (n.g && n.back) n.back(n.g);
    }
    return input.g ?? new Float64Array(input.v.length);
  }
}

interface Dims {
  h: number;
  w: number;
  c: number;
}

interface ConvWeights {
  /** [3,3,cin,cout] as in cnnf. */
  w: Float64Array;
  /** The flipped filter [3,3,cout,cin] of the transposed conv. */
  flip: Float64Array;
  bias: Float64Array;
  cin: number;
  cout: number;
  pool: boolean;
}

interface FcWeights {
  /** [in,out] as in cnnf. */
  w: Float64Array;
  bias: Float64Array;
  nin: number;
  nout: number;
  relu: boolean;
}

interface ReluState {
  mask: Uint8Array | null;
  hidden: Node | null;
}

interface PoolState {
  /** Per pooled output position: the input position it reads from / writes to, -1 for none. */
  idx: Int32Array | null;
  /** The pool's last feedback input (its sign picks max or min). */
  hidden: Float64Array | null;
}

/** One example's run: its tape, the input node and the logits of every pass. */
interface ExampleRun {
  tape: Tape;
  input: Node;
  passes: Node[];
  readout: Node;
  loss: Node;
}

const INSNORM_EPS = 1e-8;

// ---- ops: each computes its value and records how its gradient flows to its inputs ----

/** 3x3 'same' convolution of x [h,w,cin] with W [3,3,cin,cout] (zero padding 1); W is constant here. */
function conv3(x: Float64Array, d: Dims, W: Float64Array, cout: number): Float64Array {
  const { h, w, c: cin } = d;
  const out = new Float64Array(h * w * cout);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const o0 = (i * w + j) * cout;
      for (let a = 0; a < 3; a++) {
        const ii = i + a - 1;
        if (ii < 0 || ii >= h) continue;
        for (let b = 0; b < 3; b++) {
          const jj = j + b - 1;
          if (jj < 0 || jj >= w) continue;
          const x0 = (ii * w + jj) * cin;
          const w0 = (a * 3 + b) * cin * cout;
          for (let ci = 0; ci < cin; ci++) {
            const xv = x[x0 + ci];
            if (xv === 0) continue;
            const wr = w0 + ci * cout;
            let co = 0;
            for (; co + 3 < cout; co += 4) {
              out[o0 + co] += xv * W[wr + co];
              out[o0 + co + 1] += xv * W[wr + co + 1];
              out[o0 + co + 2] += xv * W[wr + co + 2];
              out[o0 + co + 3] += xv * W[wr + co + 3];
            }
            for (; co < cout; co++) out[o0 + co] += xv * W[wr + co];
          }
        }
      }
    }
  }
  return out;
}

/**
 * [3,3,cin,cout] -> [3,3,cout,cin] spatially flipped: F[a,b,o,i] = W[2-a,2-b,i,o], so that the adjoint of
 * conv3 (the transposed conv, y [h,w,cout] -> [h,w,cin], out[p,q,i] = sum_{a,b,o} y[p-a+1,q-b+1,o] W[a,b,i,o])
 * is conv3 with F. Both then skip zero inputs (masked activations and gradients are sparse).
 */
function flipFilter(W: Float64Array, cin: number, cout: number): Float64Array {
  const F = new Float64Array(W.length);
  for (let a = 0; a < 3; a++) {
    for (let b = 0; b < 3; b++) {
      for (let i = 0; i < cin; i++) {
        for (let o = 0; o < cout; o++) F[(((2 - a) * 3 + (2 - b)) * cout + o) * cin + i] = W[((a * 3 + b) * cin + i) * cout + o];
      }
    }
  }
  return F;
}

function addInto(dst: Float64Array, src: Float64Array): void {
  for (let i = 0; i < dst.length; i++) dst[i] += src[i];
}

/** conv3 with W [3,3,cin,cout]; F its flip (the gradient is the transposed conv). */
function convOp(t: Tape, x: Node, d: Dims, W: Float64Array, F: Float64Array, cout: number): Node {
  return t.node(conv3(x.v, d, W, cout), (g) => addInto(grad(x), conv3(g, { h: d.h, w: d.w, c: cout }, F, d.c)));
}

/** Feedback of a conv: y [h,w,cout] -> [h,w,cin], the transposed conv with the same W (= conv3 with F). */
function convTOp(t: Tape, y: Node, d: Dims, W: Float64Array, F: Float64Array, cin: number): Node {
  return t.node(conv3(y.v, d, F, cin), (g) => addInto(grad(y), conv3(g, { h: d.h, w: d.w, c: cin }, W, d.c)));
}

/** InsNorm per channel over H,W: y = x / s, s = sqrt(mean x^2 + 1e-8). dx = dy / s - x mean(dy x) / s^3. */
function insNormOp(t: Tape, x: Node, d: Dims): Node {
  const { c } = d;
  const hw = d.h * d.w;
  const s = new Float64Array(c);
  const xv = x.v;
  for (let p = 0; p < hw; p++) for (let ch = 0; ch < c; ch++) s[ch] += xv[p * c + ch] * xv[p * c + ch];
  for (let ch = 0; ch < c; ch++) s[ch] = Math.sqrt(s[ch] / hw + INSNORM_EPS);
  const out = new Float64Array(xv.length);
  for (let p = 0; p < hw; p++) for (let ch = 0; ch < c; ch++) out[p * c + ch] = xv[p * c + ch] / s[ch];
  return t.node(out, (g) => {
    const m = new Float64Array(c);
    for (let p = 0; p < hw; p++) for (let ch = 0; ch < c; ch++) m[ch] += g[p * c + ch] * xv[p * c + ch];
    for (let ch = 0; ch < c; ch++) m[ch] = m[ch] / hw / (s[ch] * s[ch] * s[ch]);
    const gx = grad(x);
    for (let p = 0; p < hw; p++) for (let ch = 0; ch < c; ch++) gx[p * c + ch] += g[p * c + ch] / s[ch] - xv[p * c + ch] * m[ch];
  });
}

/** x + b, b per channel (the last axis). */
function biasOp(t: Tape, x: Node, b: Float64Array): Node {
  const c = b.length;
  const out = new Float64Array(x.v.length);
  for (let i = 0; i < out.length; i++) out[i] = x.v[i] + b[i % c];
  return t.node(out, (g) => addInto(grad(x), g));
}

/** x * m with a constant 0/1 mask. */
function maskOp(t: Tape, x: Node, m: Uint8Array): Node {
  const out = new Float64Array(x.v.length);
  for (let i = 0; i < out.length; i++) if (m[i]) out[i] = x.v[i];
  return t.node(out, (g) => {
    const gx = grad(x);
    for (let i = 0; i < gx.length; i++) if (m[i]) gx[i] += g[i];
  });
}

/** resReLU forward: mask = x > 0; with a hidden h: x' = x + r (h - x), mask = x' h > 0; out = x' mask. */
function resReluForward(t: Tape, x: Node, s: ReluState, r: number): Node {
  const h = s.hidden;
  const n = x.v.length;
  const mask = new Uint8Array(n);
  s.mask = mask;
  if (!h) {
    for (let i = 0; i < n; i++) mask[i] = x.v[i] > 0 ? 1 : 0;
    return maskOp(t, x, mask);
  }
  if (h.v.length !== n) throw new Error(`resReLU: hidden of ${h.v.length} values for an input of ${n}`);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const xr = r === 0 ? x.v[i] : x.v[i] + (h.v[i] - x.v[i]) * r;
    if (xr * h.v[i] > 0) {
      mask[i] = 1;
      out[i] = xr;
    }
  }
  return t.node(out, (g) => {
    const gx = grad(x);
    const gh = r === 0 ? null : grad(h);
    for (let i = 0; i < n; i++) {
      if (!mask[i]) continue;
      gx[i] += (1 - r) * g[i];
      if (gh) gh[i] += r * g[i];
    }
  });
}

/** resReLU feedback: hidden = y, out = y mask (the mask of the latest forward). */
function resReluFeedback(t: Tape, y: Node, s: ReluState): Node {
  if (!s.mask) throw new Error('resReLU: feedback before forward');
  s.hidden = y;
  return maskOp(t, y, s.mask);
}

/**
 * 2x2 max pool, x [h,w,c] -> [h/2,w/2,c]: the first maximal position (row-major) of each window, or,
 * once a feedback set the hidden g, the first maximal where g > 0, the first minimal where g < 0 and
 * nothing (0) where g = 0. The selection is constant for the gradient.
 */
function poolForward(t: Tape, x: Node, d: Dims, s: PoolState): Node {
  const { h, w, c } = d;
  if (h % 2 !== 0 || w % 2 !== 0) throw new Error(`maxpool: input ${h}x${w} is not divisible by 2`);
  const ho = h / 2;
  const wo = w / 2;
  const idx = new Int32Array(ho * wo * c);
  const out = new Float64Array(idx.length);
  const g = s.hidden;
  const xv = x.v;
  for (let i = 0; i < ho; i++) {
    for (let j = 0; j < wo; j++) {
      for (let ch = 0; ch < c; ch++) {
        const o = (i * wo + j) * c + ch;
        const sign = g ? (g[o] > 0 ? 1 : g[o] < 0 ? -1 : 0) : 1;
        if (sign === 0) {
          idx[o] = -1;
          continue;
        }
        let best = -1;
        for (let a = 0; a < 2; a++) {
          for (let b = 0; b < 2; b++) {
            const p = ((2 * i + a) * w + (2 * j + b)) * c + ch;
            if (best < 0 || (sign > 0 ? xv[p] > xv[best] : xv[p] < xv[best])) best = p;
          }
        }
        idx[o] = best;
        out[o] = xv[best];
      }
    }
  }
  s.idx = idx;
  return t.node(out, (gr) => {
    const gx = grad(x);
    for (let o = 0; o < idx.length; o++) if (idx[o] >= 0) gx[idx[o]] += gr[o];
  });
}

/** Pool feedback: hidden = y; y [h/2,w/2,c] unpooled to the selected positions of the latest forward. */
function poolFeedback(t: Tape, y: Node, d: Dims, s: PoolState): Node {
  const idx = s.idx;
  if (!idx) throw new Error('maxpool: feedback before forward');
  s.hidden = y.v;
  const out = new Float64Array(d.h * d.w * d.c);
  for (let o = 0; o < idx.length; o++) if (idx[o] >= 0) out[idx[o]] = y.v[o];
  return t.node(out, (g) => {
    const gy = grad(y);
    for (let o = 0; o < idx.length; o++) if (idx[o] >= 0) gy[o] += g[idx[o]];
  });
}

/** x [nin] W [nin,nout] -> [nout]. */
function linearOp(t: Tape, x: Node, W: Float64Array, nin: number, nout: number): Node {
  const out = new Float64Array(nout);
  for (let i = 0; i < nin; i++) {
    const xv = x.v[i];
    if (xv === 0) continue;
    const r = i * nout;
    for (let o = 0; o < nout; o++) out[o] += xv * W[r + o];
  }
  return t.node(out, (g) => {
    const gx = grad(x);
    for (let i = 0; i < nin; i++) {
      const r = i * nout;
      let s = 0;
      for (let o = 0; o < nout; o++) s += W[r + o] * g[o];
      gx[i] += s;
    }
  });
}

/** Linear feedback y [nout] -> y W^T [nin], W constant. */
function linearFbOp(t: Tape, y: Node, W: Float64Array, nin: number, nout: number): Node {
  const out = new Float64Array(nin);
  for (let i = 0; i < nin; i++) {
    const r = i * nout;
    let s = 0;
    for (let o = 0; o < nout; o++) s += W[r + o] * y.v[o];
    out[i] = s;
  }
  return t.node(out, (g) => {
    const gy = grad(y);
    for (let i = 0; i < nin; i++) {
      const gi = g[i];
      if (gi === 0) continue;
      const r = i * nout;
      for (let o = 0; o < nout; o++) gy[o] += gi * W[r + o];
    }
  });
}

/** ff + r (recon - ff). */
function residualOp(t: Tape, ff: Node, recon: Node, r: number): Node {
  const n = ff.v.length;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = ff.v[i] + (recon.v[i] - ff.v[i]) * r;
  return t.node(out, (g) => {
    const gf = grad(ff);
    const gr = grad(recon);
    for (let i = 0; i < n; i++) {
      gf[i] += (1 - r) * g[i];
      gr[i] += r * g[i];
    }
  });
}

/** Mean of equally long nodes. */
function meanOp(t: Tape, xs: Node[]): Node {
  const n = xs[0].v.length;
  const out = new Float64Array(n);
  for (const x of xs) addInto(out, x.v);
  for (let i = 0; i < n; i++) out[i] /= xs.length;
  return t.node(out, (g) => {
    for (const x of xs) {
      const gx = grad(x);
      for (let i = 0; i < n; i++) gx[i] += g[i] / xs.length;
    }
  });
}

/** CNN-F in float64: same configuration and weights as a tfjs CNNF, inference and input gradients. */
export class CNNF64 {
  readonly spec: ArchSpec;
  private readonly convs: ConvWeights[];
  private readonly fcs: FcWeights[];
  /** Spatial dims at the input of conv block k (k = 0..convs), the last one being the flatten input. */
  private readonly levels: Dims[];

  constructor(readonly config: ModelConfig, private readonly weights: Map<string, Float64Array>) {
    this.spec = getArch(config.arch);
    for (const p of paramSpecs(config)) {
      const a = weights.get(p.name);
      const size = p.shape.reduce((x, y) => x * y, 1);
      if (!a) throw new Error(`CNNF64: missing parameter ${p.name}`);
      if (a.length !== size) throw new Error(`CNNF64: parameter ${p.name} has ${a.length} values, expected ${size} ([${p.shape.join(', ')}])`);
    }
    this.levels = [{ h: this.spec.height, w: this.spec.width, c: this.spec.inChannels }];
    this.convs = this.spec.convs.map((b, i) => {
      const prev = this.levels[i];
      this.levels.push(b.pool ? { h: prev.h / 2, w: prev.w / 2, c: b.channels } : { h: prev.h, w: prev.w, c: b.channels });
      const w = weights.get(`conv${i + 1}.conv.weight`)!;
      return { w, flip: flipFilter(w, prev.c, b.channels), bias: weights.get(`ins${i + 1}_bias.bias`)!, cin: prev.c, cout: b.channels, pool: b.pool };
    });
    const last = this.levels[this.levels.length - 1];
    const widths = [last.h * last.w * last.c, ...config.fc, config.numClasses];
    this.fcs = widths.slice(1).map((nout, i) => ({
      w: weights.get(`fc${i + 1}.weight`)!,
      bias: weights.get(`fc${i + 1}_bias.bias`)!,
      nin: widths[i],
      nout,
      relu: i < widths.length - 2,
    }));
  }

  /** From named arrays in cnnf layout (paramSpecs: conv [kh,kw,in,out], linear [in,out], biases [n]). */
  static fromArrays(config: ModelConfig, arrays: Map<string, ArrayLike<number>>): CNNF64 {
    const w = new Map<string, Float64Array>();
    for (const p of paramSpecs(config)) {
      const a = arrays.get(p.name);
      if (!a) throw new Error(`CNNF64: missing parameter ${p.name}`);
      w.set(p.name, Float64Array.from(a));
    }
    return new CNNF64(config, w);
  }

  /** Copies the weights (every tensor read at once, without blocking) and the configuration of a tfjs CNNF. */
  static async fromModel(model: CNNF): Promise<CNNF64> {
    const specs = paramSpecs(model.config);
    const tensors = specs.map((p) => {
      const t = model.params.get(p.name);
      if (!t) throw new Error(`CNNF64: model has no parameter ${p.name}`);
      if (t.dtype !== 'float32') throw new Error(`CNNF64: parameter ${p.name} is ${t.dtype}, expected float32`);
      return t;
    });
    const data = await Promise.all(tensors.map((t) => t.data()));
    const arrays = new Map<string, ArrayLike<number>>(specs.map((p, i) => [p.name, data[i]]));
    return CNNF64.fromArrays(model.config, arrays);
  }

  /** Same weights, another inference configuration (as CNNF.withConfig). */
  withConfig(change: Partial<Pick<ModelConfig, 'cycles' | 'resParam' | 'ind'>>): CNNF64 {
    return new CNNF64(makeConfig({ ...this.config, ...change }), this.weights);
  }

  get numClasses(): number {
    return this.config.numClasses;
  }

  /** Values per example: H*W*C. */
  get inputSize(): number {
    const d = this.levels[0];
    return d.h * d.w * d.c;
  }

  /**
   * Logits and input gradient of n examples. x: NHWC [n,H,W,C] float64 in [-1,1]. `head(lossLogits)`
   * returns dHead/dLossLogits [n*k]; `grad` is d(sum_i head_i)/dx. Mode 'first' takes the loss on the
   * first pass (gradient through it only), 'e2e' on the readout (through every cycle). Every example
   * keeps its tape until the head has been called (a few MB each for the Fashion-MNIST arch).
   */
  evaluate(x: Float64Array, n: number, mode: Float64GradientMode, readout: Readout, head: (lossLogits: Float64Array) => Float64Array): Float64Evaluation {
    return this.run(x, n, mode, readout, head);
  }

  /** Inference only (no gradient, no head): the evaluation with `grad` empty. */
  predict(x: Float64Array, n: number, readout: Readout = 'last'): Float64Evaluation {
    return this.run(x, n, 'e2e', readout, null);
  }

  private run(x: Float64Array, n: number, mode: Float64GradientMode, readout: Readout, head: ((lossLogits: Float64Array) => Float64Array) | null): Float64Evaluation {
    const per = this.inputSize;
    const k = this.config.numClasses;
    if (!Number.isInteger(n) || n < 0 || x.length !== n * per) throw new Error(`CNNF64.evaluate: x has ${x.length} values, expected n * ${per} with n = ${n}`);
    if (mode !== 'e2e' && mode !== 'first') throw new Error(`CNNF64.evaluate: unknown mode ${String(mode)}`);
    if (readout !== 'last' && readout !== 'average') throw new Error(`CNNF64.evaluate: unknown readout ${String(readout)}`);
    const logits = new Float64Array(n * k);
    const lossLogits = new Float64Array(n * k);
    const passes = Array.from({ length: this.config.cycles + 1 }, () => new Float64Array(n * k));
    const runs: Array<ExampleRun | null> = [];
    for (let e = 0; e < n; e++) {
      const run = this.runExample(x.subarray(e * per, (e + 1) * per), mode, readout);
      logits.set(run.readout.v, e * k);
      lossLogits.set(run.loss.v, e * k);
      run.passes.forEach((p, c) => passes[c].set(p.v, e * k));
      runs.push(head ? run : null);
    }
    if (!head) return { logits, lossLogits, grad: new Float64Array(0), numClasses: k, passes };
    const dHead = head(lossLogits);
    if (dHead.length !== n * k) throw new Error(`CNNF64.evaluate: head returned ${dHead.length} values, expected ${n * k}`);
    const g = new Float64Array(n * per);
    for (let e = 0; e < n; e++) {
      const run = runs[e]!;
      g.set(run.tape.backward(run.loss, dHead.subarray(e * k, (e + 1) * k), run.input), e * per);
      runs[e] = null; // frees the tape
    }
    return { logits, lossLogits, grad: g, numClasses: k, passes };
  }

  private runExample(x: Float64Array, mode: Float64GradientMode, readout: Readout): ExampleRun {
    const t = new Tape();
    const input = t.node(Float64Array.from(x), null);
    const relus: ReluState[] = Array.from({ length: this.convs.length + this.fcs.length }, () => ({ mask: null, hidden: null }));
    const pools: PoolState[] = this.convs.map(() => ({ idx: null, hidden: null }));
    const { ind, cycles, resParam: r } = this.config;
    const first = this.forward(t, input, 0, relus, pools);
    const passes = [first.logits];
    let ff = first.orig!;
    let logits = first.logits;
    for (let c = 0; c < cycles; c++) {
      const recon = this.feedback(t, logits, relus, pools);
      ff = residualOp(t, ff, recon, r);
      logits = this.forward(t, ff, ind, relus, pools).logits;
      passes.push(logits);
    }
    const out = readout === 'last' || passes.length === 1 ? passes[passes.length - 1] : meanOp(t, passes);
    const loss = mode === 'first' || cycles === 0 ? passes[0] : out;
    return { tape: t, input, passes, readout: out, loss };
  }

  /** Forward from level `start` (0: the image, the first pass; `ind` in the cycles). */
  private forward(t: Tape, x: Node, start: number, relus: ReluState[], pools: PoolState[]): { logits: Node; orig?: Node } {
    const { ind, resParam: r } = this.config;
    let v = x;
    let orig: Node | undefined;
    for (let k = start; k < this.convs.length; k++) {
      if (start === 0 && k === ind) orig = v;
      const cw = this.convs[k];
      const d = this.levels[k];
      const full: Dims = { h: d.h, w: d.w, c: cw.cout };
      v = convOp(t, v, d, cw.w, cw.flip, cw.cout);
      v = insNormOp(t, v, full);
      v = biasOp(t, v, cw.bias);
      v = resReluForward(t, v, relus[k], r);
      if (cw.pool) v = poolForward(t, v, full, pools[k]);
    }
    if (start === 0 && ind === this.convs.length) orig = v;
    // flatten: NHWC per example is already H,W,C order
    for (let i = 0; i < this.fcs.length; i++) {
      const f = this.fcs[i];
      v = linearOp(t, v, f.w, f.nin, f.nout);
      v = biasOp(t, v, f.bias);
      if (f.relu) v = resReluForward(t, v, relus[this.convs.length + i], r);
    }
    return { logits: v, orig };
  }

  /** Feedback from the logits down to level `ind`: the reconstruction there. */
  private feedback(t: Tape, logits: Node, relus: ReluState[], pools: PoolState[]): Node {
    const { ind } = this.config;
    let v = logits;
    for (let i = this.fcs.length - 1; i >= 0; i--) {
      const f = this.fcs[i];
      if (f.relu) v = resReluFeedback(t, v, relus[this.convs.length + i]);
      v = linearFbOp(t, v, f.w, f.nin, f.nout);
    }
    for (let k = this.convs.length - 1; k >= ind; k--) {
      const cw = this.convs[k];
      const d = this.levels[k];
      const full: Dims = { h: d.h, w: d.w, c: cw.cout };
      v = insNormOp(t, v, this.levels[k + 1]);
      if (cw.pool) v = poolFeedback(t, v, full, pools[k]);
      v = resReluFeedback(t, v, relus[k]);
      v = convTOp(t, v, full, cw.w, cw.flip, cw.cin);
    }
    return v;
  }
}

/** dHead/dz of the summed cross-entropy -sum_i log softmax(z_i)[y_i]: softmax(z_i) - onehot(y_i), in float64. */
export function crossEntropyHead(labels: ArrayLike<number>, numClasses: number): (z: Float64Array) => Float64Array {
  return (z) => {
    const k = numClasses;
    const n = z.length / k;
    const out = new Float64Array(z.length);
    for (let e = 0; e < n; e++) {
      let m = -Infinity;
      for (let j = 0; j < k; j++) m = Math.max(m, z[e * k + j]);
      let s = 0;
      for (let j = 0; j < k; j++) s += Math.exp(z[e * k + j] - m);
      for (let j = 0; j < k; j++) out[e * k + j] = Math.exp(z[e * k + j] - m) / s - (j === labels[e] ? 1 : 0);
    }
    return out;
  };
}
