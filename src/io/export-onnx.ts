/**
 * `cnnf export --to onnx`: a cnnf checkpoint as one static ONNX graph (opset 17, NCHW input
 * [N, C, H, W] in cnnf's [-1, 1] units, dynamic batch, logits out), for onnxruntime, PyTorch
 * (onnx2torch) or any ONNX consumer.
 *
 * With 0 cycles (a plain CNN, or a CNN-F's first pass): per conv block Conv 3x3 pads 1 (no bias;
 * cnnf's [kh, kw, in, out] kernel as ONNX's [out, in, kh, kw]) -> cnnf's InsNorm as
 * x / sqrt(ReduceMean(x * x over H, W) + 1e-8) -> Add per-channel bias -> Relu (-> MaxPool 2x2 stride
 * 2); then Transpose to NHWC and Flatten (cnnf flattens H, W, C), and Gemm + Relu per fc layer, the
 * last without Relu.
 *
 * With N > 0 cycles (a CNN-F): the feedback cycles of CNNF.run unrolled, node for node as src/nn
 * computes them, every layer state (resReLU masks and hidden values, pooling selections) a tensor of
 * the graph: first pass; then N times feedback (Gemm with transB for the tied linear feedback,
 * Reshape + Transpose for unflatten, InsNorm as-is, unpooling, resReLU masks, ConvTranspose with the
 * forward Conv's own weight), ff += r (recon - ff), forward from level `ind`; readout "last" or
 * "average" (Sum / (N + 1)). resReLU: mask = Cast(Greater(x, 0)) (with a hidden h:
 * x' = x + r (h - x), mask = Cast(Greater(x' h, 0))), out = x' * mask. Max/min-pool selections as
 * cnnf's one-hot masks (src/nn/maxpool.ts firstMaxMask): Equal(upsample(MaxPool(v)), v), times a
 * per-window priority 4 3 / 2 1, and Equal(upsample(MaxPool(score)), score): exactly one position per
 * window, the FIRST maximal one in row-major order, so ties (all-zero windows after a ReLU) go where
 * cnnf sends them; the min selection is the same on Neg(x); with a hidden g the mask is
 * [g > 0] max + [g < 0] min. Pooling is 4 AveragePool(x * mask), unpooling upsample(y) * mask
 * (exact: one non-zero per window). upsample is nearest-neighbour 2x from rank-4 Reshape and Mul by
 * ones (no Resize: its coordinate modes differ between runtimes).
 */
import { basename } from 'node:path';
import { UsageError } from '../errors.js';
import { getArch, type ArchSpec, type ModelConfig } from '../models/arch.js';
import type { Readout } from '../models/cnnf.js';
import { writeFileAtomic } from './atomic.js';
import { loadCheckpoint } from './checkpoint.js';
import { checkOutputFile } from './files.js';
import { encodeOnnxModel, ONNX_ADAPTER_KEY, type OnnxModelSpec, type OnnxNodeSpec } from './onnx.js';

/** cnnf's InsNorm epsilon (src/nn/ops.ts insNorm). */
const INS_EPS = 1e-8;
export const ONNX_EXPORT_OPSET = 17;
/** Most feedback cycles `--to onnx` unrolls (each adds ~190 nodes and a feedback + forward pass per image). */
export const ONNX_MAX_CYCLES = 10;
/** The metadata key of what an exported graph computes (arch, cycles unrolled, readout, ...): informational. */
export const ONNX_MODEL_KEY = 'cnnf.model';

type Arrays = Map<string, { shape: number[]; data: Float32Array }>;
type Inits = OnnxModelSpec['initializers'];

/** [kh, kw, in, out] -> [out, in, kh, kw]. */
function convKernel(a: { shape: number[]; data: Float32Array }): { dims: number[]; data: Float32Array } {
  const [kh, kw, cin, cout] = a.shape;
  const out = new Float32Array(a.data.length);
  for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) for (let c = 0; c < cin; c++) for (let o = 0; o < cout; o++) {
    out[((o * cin + c) * kh + i) * kw + j] = a.data[((i * kw + j) * cin + c) * cout + o];
  }
  return { dims: [cout, cin, kh, kw], data: out };
}

function getter(arrays: Arrays): (name: string) => { shape: number[]; data: Float32Array } {
  return (name) => {
    const a = arrays.get(name);
    if (!a) throw new Error(`missing parameter ${name}`);
    return a;
  };
}

/** The weights as initializers (conv in ONNX layout, fc as cnnf's [in, out], biases [1, C, 1, 1] / [n]). */
function weightInits(config: ModelConfig, spec: ArchSpec, arrays: Arrays): Inits {
  const get = getter(arrays);
  const inits: Inits = [];
  spec.convs.forEach((b, i) => {
    const k = i + 1;
    inits.push({ name: `conv${k}.weight`, ...convKernel(get(`conv${k}.conv.weight`)) });
    inits.push({ name: `ins${k}.bias`, dims: [1, b.channels, 1, 1], data: Float32Array.from(get(`ins${k}_bias.bias`).data) });
  });
  [...config.fc, config.numClasses].forEach((units, i) => {
    const k = i + 1;
    const w = get(`fc${k}.weight`);
    inits.push({ name: `fc${k}.weight`, dims: w.shape, data: Float32Array.from(w.data) }, { name: `fc${k}.bias`, dims: [units], data: Float32Array.from(get(`fc${k}_bias.bias`).data) });
  });
  return inits;
}

function modelSpec(config: ModelConfig, spec: ArchSpec, inits: Inits, nodes: OnnxNodeSpec[], doc: string): OnnxModelSpec {
  return {
    opset: ONNX_EXPORT_OPSET,
    producer: 'cnnf',
    docString: doc,
    input: { name: 'image', dims: ['N', spec.inChannels, spec.height, spec.width] },
    output: { name: 'logits', dims: ['N', config.numClasses] },
    initializers: inits,
    nodes,
  };
}

/** The ONNX graph of a plain cnnf CNN (or a CNN-F's first pass) with the given weights (cnnf layout, see paramSpecs). */
export function onnxSpecOfCnn(config: ModelConfig, arrays: Arrays, doc = ''): OnnxModelSpec {
  const spec = getArch(config.arch);
  const inits: Inits = [{ name: 'ins_eps', dims: [], data: Float32Array.of(INS_EPS) }, ...weightInits(config, spec, arrays)];
  const nodes: OnnxNodeSpec[] = [];
  let v = 'image';
  spec.convs.forEach((b, i) => {
    const k = i + 1;
    nodes.push(
      { op: 'Conv', name: `conv${k}`, inputs: [v, `conv${k}.weight`], outputs: [`conv${k}`], attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [1, 1] } },
      { op: 'Mul', name: `ins${k}_square`, inputs: [`conv${k}`, `conv${k}`], outputs: [`ins${k}_sq`] },
      { op: 'ReduceMean', name: `ins${k}_mean`, inputs: [`ins${k}_sq`], outputs: [`ins${k}_ms`], attrs: { axes: [2, 3], keepdims: 1 } },
      { op: 'Add', name: `ins${k}_eps`, inputs: [`ins${k}_ms`, 'ins_eps'], outputs: [`ins${k}_mse`] },
      { op: 'Sqrt', name: `ins${k}_rms`, inputs: [`ins${k}_mse`], outputs: [`ins${k}_rms`] },
      { op: 'Div', name: `ins${k}`, inputs: [`conv${k}`, `ins${k}_rms`], outputs: [`ins${k}`] },
      { op: 'Add', name: `ins${k}_bias`, inputs: [`ins${k}`, `ins${k}.bias`], outputs: [`ins${k}_b`] },
      { op: 'Relu', name: `relu${k}`, inputs: [`ins${k}_b`], outputs: [`relu${k}`] },
    );
    v = `relu${k}`;
    if (b.pool) {
      nodes.push({ op: 'MaxPool', name: `maxpool${k}`, inputs: [v], outputs: [`maxpool${k}`], attrs: { kernel_shape: [2, 2], strides: [2, 2] } });
      v = `maxpool${k}`;
    }
  });
  nodes.push(
    { op: 'Transpose', name: 'to_nhwc', inputs: [v], outputs: ['nhwc'], attrs: { perm: [0, 2, 3, 1] } },
    { op: 'Flatten', name: 'flatten', inputs: ['nhwc'], outputs: ['flat'], attrs: { axis: 1 } },
  );
  v = 'flat';
  const widths = [...config.fc, config.numClasses];
  widths.forEach((_units, i) => {
    const k = i + 1;
    const last = i === widths.length - 1;
    const out = last ? 'logits' : `fc${k}`;
    nodes.push({ op: 'Gemm', name: `fc${k}`, inputs: [v, `fc${k}.weight`, `fc${k}.bias`], outputs: [out] });
    v = out;
    if (!last) {
      nodes.push({ op: 'Relu', name: `fc${k}_relu`, inputs: [v], outputs: [`fc${k}_relu`] });
      v = `fc${k}_relu`;
    }
  });
  return modelSpec(config, spec, inits, nodes, doc);
}

/** Appends nodes with unique output names (`scope` + base) and registers constants once. */
export class OnnxGraphBuilder {
  readonly nodes: OnnxNodeSpec[] = [];
  readonly inits: Inits = [];
  scope = '';
  private readonly names = new Set<string>();

  op(op: string, inputs: string[], base: string, attrs?: OnnxNodeSpec['attrs']): string {
    let out = `${this.scope}${base}`;
    if (this.names.has(out)) {
      let k = 2;
      while (this.names.has(`${out}_${k}`)) k++;
      out = `${out}_${k}`;
    }
    this.names.add(out);
    this.nodes.push({ op, name: out, inputs, outputs: [out], ...(attrs ? { attrs } : {}) });
    return out;
  }

  /** A float constant (scalar when dims is []), named `name`, added once. */
  float(name: string, dims: number[], data: Float32Array | (() => Float32Array)): string {
    if (!this.names.has(name)) {
      this.names.add(name);
      this.inits.push({ name, dims, data: typeof data === 'function' ? data() : data });
    }
    return name;
  }

  /** An int64 shape constant. */
  shape(dims: number[]): string {
    const name = `shape_${dims.map((d) => (d < 0 ? `m${-d}` : String(d))).join('_')}`;
    if (!this.names.has(name)) {
      this.names.add(name);
      this.inits.push({ name, dims: [dims.length], data: Int32Array.from(dims), int64: true });
    }
    return name;
  }

  cast(x: string, base: string): string {
    return this.op('Cast', [x], base, { to: 1 });
  }

  /** Nearest-neighbour 2x upsampling of [N, c, h, w] -> [N, c, 2h, 2w] (rank-4 Reshapes and Mul by ones: exact). */
  upsample2(x: string, c: number, h: number, w: number, base: string): string {
    const onesW = this.float('ones_1x1x1x2', [1, 1, 1, 2], Float32Array.of(1, 1));
    const onesH = this.float('ones_1x1x2x1', [1, 1, 2, 1], Float32Array.of(1, 1));
    const a = this.op('Reshape', [x, this.shape([0, c * h, w, 1])], `${base}_up_a`);
    const b = this.op('Mul', [a, onesW], `${base}_up_b`);
    const d = this.op('Reshape', [b, this.shape([0, c * h, 1, 2 * w])], `${base}_up_c`);
    const e = this.op('Mul', [d, onesH], `${base}_up_d`);
    return this.op('Reshape', [e, this.shape([0, c, 2 * h, 2 * w])], `${base}_up`);
  }

  /**
   * cnnf's firstMaxMask: a float one-hot [N, c, h, w] of the FIRST position (row-major) holding each
   * 2x2 window's maximum of v (h, w even).
   */
  firstMaxMask(v: string, c: number, h: number, w: number, base: string): string {
    const prio = this.float(`window_priority_${h}x${w}`, [1, 1, h, w], () => {
      const p = new Float32Array(h * w);
      for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) p[i * w + j] = 4 - 2 * (i % 2) - (j % 2);
      return p;
    });
    const pool = { kernel_shape: [2, 2], strides: [2, 2] };
    const m = this.upsample2(this.op('MaxPool', [v], `${base}_max`, pool), c, h / 2, w / 2, `${base}_max`);
    const isMax = this.cast(this.op('Equal', [m, v], `${base}_ismax`), `${base}_ismax_f`);
    const score = this.op('Mul', [isMax, prio], `${base}_score`);
    const best = this.upsample2(this.op('MaxPool', [score], `${base}_best`, pool), c, h / 2, w / 2, `${base}_best`);
    return this.cast(this.op('Equal', [best, score], `${base}_first`), `${base}_sel`);
  }

  /** cnnf's InsNorm x / sqrt(mean_{H,W}(x^2) + 1e-8). */
  insNorm(x: string, base: string): string {
    const eps = this.float('ins_eps', [], Float32Array.of(INS_EPS));
    const sq = this.op('Mul', [x, x], `${base}_sq`);
    const ms = this.op('ReduceMean', [sq], `${base}_ms`, { axes: [2, 3], keepdims: 1 });
    const rms = this.op('Sqrt', [this.op('Add', [ms, eps], `${base}_mse`)], `${base}_rms`);
    return this.op('Div', [x, rms], base);
  }
}

interface LayerState {
  /** resReLU mask / pooling selection of the latest forward. */
  mask?: string;
  /** Input of the latest feedback. */
  hidden?: string;
}

interface Level {
  c: number;
  h: number;
  w: number;
}

/** The layers of src/models/cnnf.ts over an OnnxGraphBuilder: forward and feedback side by side, state as tensor names. */
class CnnfOnnx {
  private readonly state = new Map<string, LayerState>();
  private readonly spec: ArchSpec;
  /** Shape of each conv block's activation (before its pool). */
  private readonly act: Level[] = [];
  private readonly flat: Level;
  private readonly zero: string;
  private readonly r: string;

  constructor(private readonly g: OnnxGraphBuilder, private readonly config: ModelConfig) {
    this.spec = getArch(config.arch);
    let h = this.spec.height;
    let w = this.spec.width;
    for (const b of this.spec.convs) {
      this.act.push({ c: b.channels, h, w });
      if (b.pool) {
        h /= 2;
        w /= 2;
      }
    }
    this.flat = { c: this.spec.convs[this.spec.convs.length - 1].channels, h, w };
    this.zero = g.float('zero', [], Float32Array.of(0));
    this.r = g.float('res_param', [], Float32Array.of(config.resParam));
  }

  private slot(name: string): LayerState {
    let s = this.state.get(name);
    if (!s) this.state.set(name, (s = {}));
    return s;
  }

  private reluForward(name: string, x: string): string {
    const g = this.g;
    const s = this.slot(name);
    if (s.hidden) {
      const h = s.hidden;
      const xr = this.config.resParam === 0 ? x : g.op('Add', [x, g.op('Mul', [g.op('Sub', [h, x], `${name}_hx`), this.r], `${name}_rhx`)], `${name}_xr`);
      s.mask = g.cast(g.op('Greater', [g.op('Mul', [xr, h], `${name}_xrh`), this.zero], `${name}_pos`), `${name}_mask`);
      return g.op('Mul', [xr, s.mask], name);
    }
    s.mask = g.cast(g.op('Greater', [x, this.zero], `${name}_pos`), `${name}_mask`);
    return g.op('Mul', [x, s.mask], name);
  }

  private reluFeedback(name: string, y: string): string {
    const s = this.slot(name);
    if (!s.mask) throw new Error(`${name}: feedback before forward`);
    s.hidden = y;
    return this.g.op('Mul', [y, s.mask], `${name}_fb`);
  }

  private poolForward(name: string, x: string, l: Level): string {
    const g = this.g;
    const s = this.slot(name);
    const maxSel = g.firstMaxMask(x, l.c, l.h, l.w, `${name}_maxsel`);
    if (s.hidden) {
      const minSel = g.firstMaxMask(g.op('Neg', [x], `${name}_neg`), l.c, l.h, l.w, `${name}_minsel`);
      const pos = g.upsample2(g.cast(g.op('Greater', [s.hidden, this.zero], `${name}_gpos`), `${name}_gpos_f`), l.c, l.h / 2, l.w / 2, `${name}_gpos`);
      const neg = g.upsample2(g.cast(g.op('Less', [s.hidden, this.zero], `${name}_gneg`), `${name}_gneg_f`), l.c, l.h / 2, l.w / 2, `${name}_gneg`);
      s.mask = g.op('Add', [g.op('Mul', [pos, maxSel], `${name}_maxpart`), g.op('Mul', [neg, minSel], `${name}_minpart`)], `${name}_sel`);
    } else {
      s.mask = maxSel;
    }
    const four = g.float('four', [], Float32Array.of(4));
    const avg = g.op('AveragePool', [g.op('Mul', [x, s.mask], `${name}_picked`)], `${name}_avg`, { kernel_shape: [2, 2], strides: [2, 2] });
    return g.op('Mul', [avg, four], name);
  }

  private poolFeedback(name: string, y: string, l: Level): string {
    const s = this.slot(name);
    if (!s.mask) throw new Error(`${name}: feedback before forward`);
    s.hidden = y;
    return this.g.op('Mul', [this.g.upsample2(y, l.c, l.h / 2, l.w / 2, `${name}_fb`), s.mask], `${name}_unpool`);
  }

  /** CNNF.forward: first = from the image (returns the activation at level ind as orig), else from level ind. */
  forward(x: string, first: boolean): { logits: string; orig?: string } {
    const g = this.g;
    const ind = this.config.ind;
    let v = x;
    let orig: string | undefined;
    for (let i = first ? 0 : ind; i < this.spec.convs.length; i++) {
      if (first && i === ind) orig = v;
      const k = i + 1;
      const conv = g.op('Conv', [v, `conv${k}.weight`], `conv${k}`, { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [1, 1] });
      const b = g.op('Add', [g.insNorm(conv, `ins${k}`), `ins${k}.bias`], `ins${k}_bias`);
      v = this.reluForward(`relu${k}`, b);
      if (this.spec.convs[i].pool) v = this.poolForward(`maxpool${k}`, v, this.act[i]);
    }
    if (first && ind === this.spec.convs.length) orig = v;
    v = g.op('Flatten', [g.op('Transpose', [v], 'to_nhwc', { perm: [0, 2, 3, 1] })], 'flatten', { axis: 1 });
    const nfc = this.config.fc.length + 1;
    let relu = this.spec.convs.length;
    for (let i = 0; i < nfc; i++) {
      const k = i + 1;
      v = g.op('Gemm', [v, `fc${k}.weight`, `fc${k}.bias`], `fc${k}`);
      if (i < nfc - 1) v = this.reluForward(`relu${++relu}`, v);
    }
    return { logits: v, orig };
  }

  /** CNNF.feedback: logits down to the reconstruction at level ind. */
  feedback(logits: string): string {
    const g = this.g;
    const ind = this.config.ind;
    const nfc = this.config.fc.length + 1;
    let v = logits;
    for (let i = nfc - 1; i >= 0; i--) {
      const k = i + 1;
      if (i < nfc - 1) v = this.reluFeedback(`relu${this.spec.convs.length + k}`, v);
      v = g.op('Gemm', [v, `fc${k}.weight`], `fc${k}_fb`, { transB: 1 });
    }
    const f = this.flat;
    v = g.op('Transpose', [g.op('Reshape', [v, g.shape([0, f.h, f.w, f.c])], 'unflatten')], 'to_nchw', { perm: [0, 3, 1, 2] });
    for (let i = this.spec.convs.length - 1; i >= ind; i--) {
      const k = i + 1;
      v = g.insNorm(v, `ins${k}_fb`);
      if (this.spec.convs[i].pool) v = this.poolFeedback(`maxpool${k}`, v, this.act[i]);
      v = this.reluFeedback(`relu${k}`, v);
      v = g.op('ConvTranspose', [v, `conv${k}.weight`], `conv${k}_fb`, { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [1, 1] });
    }
    return v;
  }
}

/**
 * The ONNX graph of CNNF.run(x, { cycles }) with the given readout: the cycles unrolled (see the file
 * comment). With 0 cycles the plain CNN graph.
 */
export function onnxSpecOfCnnf(config: ModelConfig, arrays: Arrays, cycles: number, readout: Readout, doc = ''): OnnxModelSpec {
  if (cycles === 0) return onnxSpecOfCnn(config, arrays, doc);
  const spec = getArch(config.arch);
  const g = new OnnxGraphBuilder();
  const m = new CnnfOnnx(g, config);
  g.scope = 'pass0/';
  const first = m.forward('image', true);
  const all = [first.logits];
  let ff = first.orig!;
  let logits = first.logits;
  for (let c = 1; c <= cycles; c++) {
    g.scope = `cycle${c}/feedback/`;
    const recon = m.feedback(logits);
    g.scope = `cycle${c}/`;
    ff = g.op('Add', [ff, g.op('Mul', [g.op('Sub', [recon, ff], 'recon_minus_ff'), 'res_param'], 'r_recon_minus_ff')], 'ff');
    g.scope = `cycle${c}/forward/`;
    logits = m.forward(ff, false).logits;
    all.push(logits);
  }
  g.scope = '';
  if (readout === 'average') {
    const n = g.float('passes', [], Float32Array.of(all.length));
    g.op('Div', [g.op('Sum', all, 'logits_sum'), n], 'logits');
  } else {
    g.op('Identity', [logits], 'logits');
  }
  return modelSpec(config, spec, [...weightInits(config, spec, arrays), ...g.inits], g.nodes, doc);
}

export interface OnnxExportOptions {
  /** Feedback cycles to unroll (default: the checkpoint's); 0 = the feedforward pass. */
  cycles?: number;
  /** Readout over the passes (default: the checkpoint's). */
  readout?: Readout;
}

export interface OnnxExportResult {
  config: ModelConfig;
  cycles: number;
  readout: Readout;
  bytes: number;
  nodes: number;
}

/** Writes the checkpoint `ckpt` as the ONNX file `out` (atomically), its cycles unrolled. */
export async function exportOnnx(ckpt: string, out: string, opts: OnnxExportOptions = {}): Promise<OnnxExportResult> {
  const { cycles: wanted, readout: wantedReadout } = opts;
  if (wanted !== undefined && !(Number.isInteger(wanted) && wanted >= 0 && wanted <= ONNX_MAX_CYCLES)) {
    throw new UsageError(`--cycles must be an integer 0..${ONNX_MAX_CYCLES} for --to onnx (each cycle is unrolled into the graph), got ${wanted}`);
  }
  if (wantedReadout !== undefined && wantedReadout !== 'last' && wantedReadout !== 'average') {
    throw new UsageError(`--readout must be one of last, average, got ${JSON.stringify(wantedReadout)}`);
  }
  checkOutputFile(out, '-o');
  const loaded = await loadCheckpoint(ckpt);
  const { config } = loaded.info;
  if (config.cycles === 0 && wanted !== undefined && wanted > 0) {
    loaded.model.dispose();
    throw new UsageError(`${ckpt} is a plain CNN (0 feedback cycles): --cycles ${wanted} applies to CNN-F checkpoints only`);
  }
  const cycles = wanted ?? config.cycles;
  if (cycles > ONNX_MAX_CYCLES) {
    loaded.model.dispose();
    throw new UsageError(`${ckpt} runs ${cycles} feedback cycles; --to onnx unrolls at most ${ONNX_MAX_CYCLES} (give --cycles)`);
  }
  const readout = cycles === 0 ? 'last' : (wantedReadout ?? loaded.info.readout);
  const arrays = await loaded.model.toArrays();
  loaded.model.dispose();
  const what = cycles === 0 ? 'feedforward pass' : `${cycles} feedback cycle${cycles === 1 ? '' : 's'} unrolled, readout ${readout}`;
  const spec = onnxSpecOfCnnf(config, arrays, cycles, readout, `cnnf export --to onnx of ${basename(ckpt)} (sha256 ${loaded.sha256}; ${what}); input NCHW in [-1, 1], output logits`);
  spec.metadata = {
    [ONNX_ADAPTER_KEY]: JSON.stringify({
      inputRange: '-1,1', layout: 'NCHW', output: 'logits', classNames: loaded.info.classNames, dataset: loaded.info.dataset,
      exportedFrom: `${basename(ckpt)} (sha256 ${loaded.sha256})`,
    }),
    [ONNX_MODEL_KEY]: JSON.stringify({
      arch: config.arch, fc: config.fc, numClasses: config.numClasses, ind: config.ind, resParam: config.resParam,
      checkpointCycles: config.cycles, cycles, readout, gradients: cycles === 0 ? 'first pass' : 'e2e (every unrolled cycle)',
    }),
  };
  const bytes = encodeOnnxModel(spec);
  writeFileAtomic(out, bytes);
  return { config, cycles, readout, bytes: bytes.length, nodes: spec.nodes.length };
}
