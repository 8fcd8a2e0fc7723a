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
  readonly differentiable: boolean;
  readonly inputShape: [number, number, number];
  readonly numClasses: number;

  constructor(readonly net: TfjsLayersNet, readonly adapter: InputAdapter, readonly source: string) {
    checkAdapter(adapter);
    if (net.inputs.length !== 1 || net.outputs.length !== 1) throw new UsageError(`${source}: expected one input and one output, got ${net.inputs.length} and ${net.outputs.length}`);
    const s = net.inputs[0].shape;
    if (s.length !== 4 || s.slice(1).some((d) => d === null || !Number.isInteger(d) || (d as number) <= 0)) {
      throw new UsageError(`${source}: input shape [${s.join(', ')}] is not an image batch [null, H, W, C] with fixed H, W, C`);
    }
    const [a, b, c] = s.slice(1) as number[];
    this.inputShape = adapter.layout === 'NCHW' ? [b, c, a] : [a, b, c];
    const o = net.outputs[0].shape;
    if (o.length !== 2 || o[1] === null || (o[1] as number) < 2) throw new UsageError(`${source}: output shape [${o.join(', ')}] is not [null, classes] with at least 2 classes`);
    this.numClasses = o[1] as number;
    const x = tf.zeros([1, ...this.inputShape]) as tf.Tensor4D;
    try {
      const g = tf.grad((v: tf.Tensor) => tf.sum(this.logits(v as tf.Tensor4D)))(x);
      this.differentiable = g.shape.join('x') === x.shape.join('x');
      g.dispose();
    } catch {
      this.differentiable = false;
    } finally {
      x.dispose();
    }
  }

  logits(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      const y = this.net.apply(adaptInput(x, this.adapter), { training: false }) as tf.Tensor2D;
      return this.adapter.output === 'probabilities' ? (tf.log(tf.maximum(y, 1e-30)) as tf.Tensor2D) : y;
    });
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

  private constructor(
    readonly net: TfjsGraphNet, readonly adapter: InputAdapter, readonly source: string,
    readonly inputShape: [number, number, number], readonly numClasses: number, readonly differentiable: boolean,
  ) {}

  static create(net: TfjsGraphNet, adapter: InputAdapter, source: string): TfjsGraphClassifier {
    try {
      checkAdapter(adapter);
      if (net.inputs.length !== 1 || net.outputs.length !== 1) throw new UsageError(`${source}: expected one input and one output, got ${net.inputs.length} and ${net.outputs.length}`);
      const s = net.inputs[0].shape ?? [];
      if (s.length !== 4 || s.slice(1).some((d) => !Number.isInteger(d) || d <= 0)) {
        throw new UsageError(`${source}: input shape [${s.join(', ')}] is not an image batch [-1, H, W, C] with fixed H, W, C`);
      }
      const [a, b, c] = s.slice(1);
      const inputShape: [number, number, number] = adapter.layout === 'NCHW' ? [b, c, a] : [a, b, c];
      const x = tf.zeros([1, ...inputShape]) as tf.Tensor4D;
      let out: tf.Tensor;
      try {
        out = tf.tidy(() => net.execute(adaptInput(x, adapter)) as tf.Tensor);
      } catch (e) {
        x.dispose();
        throw new UsageError(`${source}: tfjs cannot run this GraphModel: ${String((e as Error)?.message ?? e).split('\n')[0].slice(0, 200)}`);
      }
      const shape = out.shape;
      out.dispose();
      if (shape.length !== 2 || shape[0] !== 1 || shape[1] < 2) {
        x.dispose();
        throw new UsageError(`${source}: output shape [${shape.join(', ')}] for one image is not [1, classes] with at least 2 classes`);
      }
      let differentiable = true;
      try {
        const g = tf.grad((v: tf.Tensor) => tf.sum(net.execute(adaptInput(v as tf.Tensor4D, adapter)) as tf.Tensor))(x);
        differentiable = g.shape.join('x') === x.shape.join('x');
        g.dispose();
      } catch {
        differentiable = false;
      }
      x.dispose();
      return new TfjsGraphClassifier(net, adapter, source, inputShape, shape[1], differentiable);
    } catch (e) {
      net.dispose();
      throw e;
    }
  }

  logits(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      const y = this.net.execute(adaptInput(x, this.adapter)) as tf.Tensor2D;
      return this.adapter.output === 'probabilities' ? (tf.log(tf.maximum(y, 1e-30)) as tf.Tensor2D) : y;
    });
  }

  dispose(): void {
    this.net.dispose();
  }
}
