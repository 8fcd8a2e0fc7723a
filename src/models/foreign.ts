/**
 * Image classifiers cnnf did not build (a TF.js LayersModel today), behind one interface the attacks
 * take: logits for images in cnnf's canonical space (NHWC, values in [-1, 1], eps stated in those
 * units). An input adapter maps that space to what the model expects: value range ([0,1], [-1,1] or
 * [0,255]), per-channel mean/std (in the units of that range, as torchvision's Normalize after
 * ToTensor), layout (NHWC or NCHW) and output kind (logits, or probabilities whose log is used as
 * logits: softmax(log p) = p, so the cross-entropy and every margin are those of the model).
 */
import * as tf from '@tensorflow/tfjs-core';
import { UsageError } from '../errors.js';
import { readAndDispose } from '../nn/read.js';

/**
 * The part of a tfjs-layers LayersModel cnnf uses. Structural, so that cnnf's published declarations
 * name tfjs-core only (not tfjs-layers / tfjs-converter, whose own declarations do not type-check
 * without skipLibCheck); any tf.LayersModel is one.
 */
export interface TfjsLayersNet {
  readonly inputs: ReadonlyArray<{ readonly shape: ReadonlyArray<number | null> }>;
  readonly outputs: ReadonlyArray<{ readonly shape: ReadonlyArray<number | null> }>;
  apply(inputs: tf.Tensor, kwargs?: { training?: boolean }): unknown;
  dispose(): unknown;
}

/** The part of a tfjs-converter GraphModel cnnf uses (structural, as TfjsLayersNet); any tf.GraphModel is one. */
export interface TfjsGraphNet {
  readonly inputs: ReadonlyArray<{ readonly shape?: readonly number[] }>;
  readonly outputs: ReadonlyArray<{ readonly shape?: readonly number[] }>;
  execute(inputs: tf.Tensor): unknown;
  dispose(): void;
}

export type InputRange = '0,1' | '-1,1' | '0,255';
export const INPUT_RANGES: readonly InputRange[] = ['0,1', '-1,1', '0,255'];

export interface InputAdapter {
  range: InputRange;
  /** Per-channel mean subtracted after scaling to `range` (length 1 or C). */
  mean?: number[];
  /** Per-channel std divided by after the mean (length 1 or C, all > 0). */
  std?: number[];
  layout: 'NHWC' | 'NCHW';
  output: 'logits' | 'probabilities';
}

export const DEFAULT_ADAPTER: InputAdapter = { range: '0,1', layout: 'NHWC', output: 'logits' };

/** Values of one input image (H x W x C) a foreign model may declare: 2^24, e.g. 2048 x 2048 x 4. */
export const MAX_INPUT_VALUES = 2 ** 24;
/** Values one image may make a LayersModel's layers output, summed over the layers: 2^26 (256 MB in float32). */
export const MAX_ACTIVATION_VALUES = 2 ** 26;
/** Images of the load-time probe (a forward pass checked for shape and finite logits). */
export const PROBE_IMAGES = 2;
/** Bounds of adapter numbers that float32 can divide by and subtract without overflow. */
const ADAPTER_MIN_STD = 1e-30;
const ADAPTER_MAX = 1e30;

/** A classifier the attacks can take in place of a CNNF (see attacks/base.ts Victim). */
export interface ForeignClassifier {
  readonly foreign: true;
  /** Where it came from, for tables and reports ("TF.js LayersModel dir/model.json"). */
  readonly source: string;
  /** Canonical input shape [H, W, C]. */
  readonly inputShape: [number, number, number];
  readonly numClasses: number;
  /** Whether tfjs can differentiate logits() w.r.t. the input (white-box attacks apply). */
  readonly differentiable: boolean;
  readonly adapter: InputAdapter;
  /** Logits for canonical NHWC [-1, 1] images. */
  logits(x: tf.Tensor4D): tf.Tensor2D;
  dispose(): void;
}

export function isForeign(m: unknown): m is ForeignClassifier {
  return typeof m === 'object' && m !== null && (m as { foreign?: unknown }).foreign === true;
}

/** Canonical [-1, 1] NHWC images -> the model's input (range, mean/std, layout). */
export function adaptInput(x: tf.Tensor4D, a: InputAdapter): tf.Tensor4D {
  return tf.tidy(() => {
    let v: tf.Tensor = x;
    if (a.range === '0,1') v = tf.div(tf.add(v, 1), 2);
    else if (a.range === '0,255') v = tf.mul(tf.add(v, 1), 127.5);
    const c = x.shape[3];
    if (a.mean) v = tf.sub(v, tf.tensor1d(perChannel(a.mean, c, 'mean')));
    if (a.std) v = tf.div(v, tf.tensor1d(perChannel(a.std, c, 'std')));
    if (a.layout === 'NCHW') v = tf.transpose(v, [0, 3, 1, 2]);
    return v as tf.Tensor4D;
  });
}

/** The adapter's mean/std have 1 or C values: one line naming the model otherwise. */
function checkChannels(a: InputAdapter, c: number, source: string): void {
  for (const [k, v] of [['mean', a.mean], ['std', a.std]] as const) {
    if (v && v.length !== 1 && v.length !== c) throw new UsageError(`${source}: the input adapter's ${k} has ${v.length} values (--${k} or model.cnnf.json) for a model with ${c} input channels (give 1 or ${c})`);
  }
}

/** Refuses an input shape with more than MAX_INPUT_VALUES values, before any tensor of it exists. */
function checkInputSize(shape: readonly number[], source: string): void {
  const values = shape.reduce((x, y) => x * y, 1);
  if (values > MAX_INPUT_VALUES) throw new UsageError(`${source}: input shape [${shape.join(', ')}] has ${values} values per image, more than ${MAX_INPUT_VALUES}`);
}

/** PROBE_IMAGES fixed canonical images: mid-grey, then a fixed pattern over [-1, 1]. */
function probeBatch(shape: [number, number, number]): tf.Tensor4D {
  const per = shape[0] * shape[1] * shape[2];
  const v = new Float32Array(PROBE_IMAGES * per);
  let h = 12345;
  for (let i = per; i < v.length; i++) {
    h = (Math.imul(h, 1103515245) + 12345) >>> 0;
    v[i] = (h >>> 8) / 2 ** 23 - 1;
  }
  return tf.tensor4d(v, [PROBE_IMAGES, ...shape]);
}

/**
 * The load-time probe of a foreign classifier: a forward pass on PROBE_IMAGES fixed images must
 * give [PROBE_IMAGES, numClasses] finite logits (a NaN weight, an adapter that overflows float32, a
 * Reshape that only fits a batch of 1 are refused here, with one line).
 */
async function probeForward(m: ForeignClassifier): Promise<void> {
  const x = probeBatch(m.inputShape);
  try {
    const ok = (await readAndDispose(tf.tidy(() => tf.all(tf.isFinite(m.logits(x))))))[0] === 1;
    if (!ok) throw new UsageError(`${m.source}: the model computes non-finite logits (NaN or Inf) on a plain test input: its weights, or the input adapter's mean/std, overflow float32`);
  } finally {
    x.dispose();
  }
}

/** Whether tfjs can take the input gradient of `m`'s logits (tried once on one image). */
function probeGradient(m: ForeignClassifier): boolean {
  const x = tf.zeros([1, ...m.inputShape]) as tf.Tensor4D;
  try {
    const g = tf.grad((v: tf.Tensor) => tf.sum(m.logits(v as tf.Tensor4D)))(x);
    const ok = g.shape.join('x') === x.shape.join('x');
    g.dispose();
    return ok;
  } catch {
    return false;
  } finally {
    x.dispose();
  }
}

/**
 * A foreign model's logits for `x` through `run`, as one-line UsageErrors naming the model when
 * tfjs cannot run it on this batch or its output is not [batch, numClasses].
 */
function runForeign(m: ForeignClassifier, x: tf.Tensor4D, run: (v: tf.Tensor4D) => tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    let y: tf.Tensor;
    try {
      y = run(adaptInput(x, m.adapter));
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(`${m.source}: tfjs cannot run this model on a batch of ${x.shape[0]}: ${String((e as Error)?.message ?? e).split('\n')[0].slice(0, 200)}`);
    }
    if (!(y instanceof tf.Tensor) || y.shape.length !== 2 || y.shape[0] !== x.shape[0] || y.shape[1] !== m.numClasses) {
      throw new UsageError(`${m.source}: for a batch of ${x.shape[0]} the model outputs ${y instanceof tf.Tensor ? `shape [${y.shape.join(', ')}]` : 'no tensor'}, not [${x.shape[0]}, ${m.numClasses}]`);
    }
    return m.adapter.output === 'probabilities' ? (tf.log(tf.maximum(y, 1e-30)) as tf.Tensor2D) : (y as tf.Tensor2D);
  });
}

/**
 * Values one image makes the layers of a built LayersModel output (nested models' layers included),
 * from their symbolic shapes: what a forward pass holds per image.
 */
export function activationValues(net: TfjsLayersNet): number {
  /** The structure of a built tfjs-layers model this walks (structural, as TfjsLayersNet). */
  interface LayersLike {
    layers: Array<{ inboundNodes: Array<{ outputTensors: Array<{ shape: ReadonlyArray<number | null> }> }> }>;
  }
  let sum = 0;
  const seen = new Set<unknown>();
  const walk = (m: LayersLike): void => {
    for (const l of m.layers) {
      if (seen.has(l)) continue;
      seen.add(l);
      for (const node of l.inboundNodes) {
        for (const t of node.outputTensors) sum += t.shape.slice(1).reduce((a: number, d) => a * (d ?? 1), 1);
      }
      const inner = l as unknown as Partial<LayersLike>;
      if (Array.isArray(inner.layers)) walk(inner as LayersLike);
    }
  };
  walk(net as unknown as LayersLike);
  return sum;
}

function perChannel(v: number[], c: number, what: string): number[] {
  if (v.length === 1) return new Array<number>(c).fill(v[0]);
  if (v.length !== c) throw new UsageError(`--${what} has ${v.length} values for a model with ${c} input channels`);
  return v;
}

/** Checks an adapter's numbers (finite mean, positive std). */
export function checkAdapter(a: InputAdapter): InputAdapter {
  if (!INPUT_RANGES.includes(a.range)) throw new UsageError(`--input-range must be one of ${INPUT_RANGES.join(', ')}, got ${JSON.stringify(a.range)}`);
  if (a.mean && (a.mean.length === 0 || !a.mean.every(Number.isFinite))) throw new UsageError('--mean must be finite numbers');
  if (a.std && (a.std.length === 0 || !a.std.every((s) => Number.isFinite(s) && s > 0))) throw new UsageError('--std must be numbers > 0');
  // float32 divides by std and subtracts mean: 1e-300 passes in float64 but is 0 in float32
  const badStd = a.std?.find((s) => s < ADAPTER_MIN_STD || s > ADAPTER_MAX);
  if (badStd !== undefined) throw new UsageError(`--std ${badStd} is outside ${ADAPTER_MIN_STD}..${ADAPTER_MAX}: dividing by it overflows float32 (--std or model.cnnf.json)`);
  const badMean = a.mean?.find((m) => Math.abs(m) > ADAPTER_MAX);
  if (badMean !== undefined) throw new UsageError(`--mean ${badMean} is outside -${ADAPTER_MAX}..${ADAPTER_MAX} (--mean or model.cnnf.json)`);
  if (a.layout !== 'NHWC' && a.layout !== 'NCHW') throw new UsageError(`--layout must be NHWC or NCHW, got ${JSON.stringify(a.layout)}`);
  if (a.output !== 'logits' && a.output !== 'probabilities') throw new UsageError(`the model output must be logits or probabilities, got ${JSON.stringify(a.output)}`);
  return a;
}

/**
 * A TF.js LayersModel behind the adapter. White-box when tfjs can take its input gradient on this
 * backend (probed once at load: e.g. tfjs-layers' fused Conv2D gradient needs Conv2DBackpropFilter,
 * which tfjs-wasm lacks); otherwise the gradient-free attacks only, as for GraphModels.
 */
export class TfjsLayersClassifier implements ForeignClassifier {
  readonly foreign = true as const;
  readonly inputShape: [number, number, number];
  readonly numClasses: number;
  private canDifferentiate = false;

  /** Checks the model's shapes and probes it (a forward pass, then an input gradient). */
  static async create(net: TfjsLayersNet, adapter: InputAdapter, source: string): Promise<TfjsLayersClassifier> {
    const m = new TfjsLayersClassifier(net, adapter, source);
    await probeForward(m);
    m.canDifferentiate = probeGradient(m);
    return m;
  }

  get differentiable(): boolean {
    return this.canDifferentiate;
  }

  private constructor(readonly net: TfjsLayersNet, readonly adapter: InputAdapter, readonly source: string) {
    checkAdapter(adapter);
    if (net.inputs.length !== 1 || net.outputs.length !== 1) throw new UsageError(`${source}: expected one input and one output, got ${net.inputs.length} and ${net.outputs.length}`);
    const s = net.inputs[0].shape;
    if (s.length !== 4 || s.slice(1).some((d) => d === null || !Number.isInteger(d) || (d as number) <= 0)) {
      throw new UsageError(`${source}: input shape [${s.join(', ')}] is not an image batch [null, H, W, C] with fixed H, W, C`);
    }
    const [a, b, c] = s.slice(1) as number[];
    this.inputShape = adapter.layout === 'NCHW' ? [b, c, a] : [a, b, c];
    checkInputSize(this.inputShape, source);
    checkChannels(adapter, this.inputShape[2], source);
    const o = net.outputs[0].shape;
    if (o.length !== 2 || o[1] === null || (o[1] as number) < 2) throw new UsageError(`${source}: output shape [${o.join(', ')}] is not [null, classes] with at least 2 classes`);
    this.numClasses = o[1] as number;
    const act = activationValues(net);
    if (act > MAX_ACTIVATION_VALUES) throw new UsageError(`${source}: its layers output ${act} values per image, more than ${MAX_ACTIVATION_VALUES}`);
  }

  logits(x: tf.Tensor4D): tf.Tensor2D {
    return runForeign(this, x, (v) => this.net.apply(v, { training: false }) as tf.Tensor);
  }

  dispose(): void {
    this.net.dispose();
  }
}

/**
 * A TF.js GraphModel (tensorflowjs_converter's default output) behind the adapter. White-box only
 * where tfjs can differentiate its ops: create() tries an input gradient once and records the answer
 * in `differentiable` (false: only the gradient-free attacks apply).
 */
export class TfjsGraphClassifier implements ForeignClassifier {
  readonly foreign = true as const;

  private canDifferentiate = false;

  private constructor(
    readonly net: TfjsGraphNet, readonly adapter: InputAdapter, readonly source: string,
    readonly inputShape: [number, number, number], readonly numClasses: number,
  ) {}

  get differentiable(): boolean {
    return this.canDifferentiate;
  }

  static async create(net: TfjsGraphNet, adapter: InputAdapter, source: string): Promise<TfjsGraphClassifier> {
    try {
      checkAdapter(adapter);
      if (net.inputs.length !== 1 || net.outputs.length !== 1) throw new UsageError(`${source}: expected one input and one output, got ${net.inputs.length} and ${net.outputs.length}`);
      const s = net.inputs[0].shape ?? [];
      if (s.length !== 4 || s.slice(1).some((d) => !Number.isInteger(d) || d <= 0)) {
        throw new UsageError(`${source}: input shape [${s.join(', ')}] is not an image batch [-1, H, W, C] with fixed H, W, C`);
      }
      const [a, b, c] = s.slice(1);
      const inputShape: [number, number, number] = adapter.layout === 'NCHW' ? [b, c, a] : [a, b, c];
      checkInputSize(inputShape, source);
      checkChannels(adapter, inputShape[2], source);
      const x = tf.zeros([1, ...inputShape]) as tf.Tensor4D;
      let shape: number[];
      try {
        const out = tf.tidy(() => net.execute(adaptInput(x, adapter)) as tf.Tensor);
        shape = out instanceof tf.Tensor ? out.shape : [];
        tf.dispose(out);
      } catch (e) {
        throw new UsageError(`${source}: tfjs cannot run this GraphModel: ${String((e as Error)?.message ?? e).split('\n')[0].slice(0, 200)}`);
      } finally {
        x.dispose();
      }
      if (shape.length !== 2 || shape[0] !== 1 || shape[1] < 2) {
        throw new UsageError(`${source}: output shape [${shape.join(', ')}] for one image is not [1, classes] with at least 2 classes`);
      }
      const m = new TfjsGraphClassifier(net, adapter, source, inputShape, shape[1]);
      await probeForward(m);
      m.canDifferentiate = probeGradient(m);
      return m;
    } catch (e) {
      net.dispose();
      throw e;
    }
  }

  logits(x: tf.Tensor4D): tf.Tensor2D {
    return runForeign(this, x, (v) => this.net.execute(v) as tf.Tensor);
  }

  dispose(): void {
    this.net.dispose();
  }
}
