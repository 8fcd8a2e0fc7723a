/**
 * CNN-F: a CNN whose layers also run backwards (feedback) to reconstruct the feature at level `ind`
 * from the logits; `cycles` rounds of feedback + residual update + forward refine the prediction.
 * The plain CNN is the same network with 0 cycles. Inputs are NHWC [N,H,W,C] in [-1,1].
 */
import * as tf from '@tensorflow/tfjs-core';
import { Bias, Conv2d, Flatten, InsNorm, Linear, MaxPool2d, ResReLU, RunState, scoped, type LayerContext, type MaskRule, type Params } from '../nn/index.js';
import { getArch, paramSpecs, makeConfig, type ArchSpec, type ConfigInput, type ModelConfig } from './arch.js';

class ConvBlock {
  readonly conv: Conv2d;
  readonly ins: InsNorm;
  readonly bias: Bias;
  readonly relu: ResReLU;
  readonly pool?: MaxPool2d;

  constructor(readonly index: number, readonly tap?: string, pool = false) {
    const k = index + 1;
    this.conv = new Conv2d(`conv${k}`, `conv${k}.conv.weight`);
    this.ins = new InsNorm(`ins${k}`);
    this.bias = new Bias(`ins${k}_bias`, `ins${k}_bias.bias`);
    this.relu = new ResReLU(`relu${k}`);
    if (pool) this.pool = new MaxPool2d(`maxpool${k}`);
  }

  /** conv -> InsNorm -> Bias -> resReLU (-> maxpool); `act` is the resReLU output. */
  forward(ctx: LayerContext, x: tf.Tensor): { out: tf.Tensor; act: tf.Tensor } {
    const act = this.relu.forward(ctx, this.bias.forward(ctx, this.ins.forward(ctx, this.conv.forward(ctx, x))));
    return { out: this.pool ? this.pool.forward(ctx, act) : act, act };
  }

  /** InsNorm (as-is) -> maxpool.fb -> resReLU.fb -> (Bias.fb = identity) -> conv^T. */
  feedback(ctx: LayerContext, y: tf.Tensor): { out: tf.Tensor; act: tf.Tensor } {
    let v = this.ins.feedback(ctx, y);
    if (this.pool) v = this.pool.feedback(ctx, v);
    const act = this.relu.feedback(ctx, v);
    return { out: this.conv.feedback(ctx, this.bias.feedback(ctx, act)), act };
  }
}

class FcBlock {
  readonly linear: Linear;
  readonly bias: Bias;
  readonly relu?: ResReLU;

  constructor(readonly index: number, reluName?: string) {
    const k = index + 1;
    this.linear = new Linear(`fc${k}`, `fc${k}.weight`);
    this.bias = new Bias(`fc${k}_bias`, `fc${k}_bias.bias`);
    if (reluName) this.relu = new ResReLU(reluName);
  }

  forward(ctx: LayerContext, x: tf.Tensor): tf.Tensor {
    const v = this.bias.forward(ctx, this.linear.forward(ctx, x));
    return this.relu ? this.relu.forward(ctx, v) : v;
  }

  feedback(ctx: LayerContext, y: tf.Tensor): tf.Tensor {
    const v = this.relu ? this.relu.feedback(ctx, y) : y;
    return this.linear.feedback(ctx, this.bias.feedback(ctx, v));
  }
}

export interface ForwardResult {
  logits: tf.Tensor2D;
  /** Activation at level `ind` (first pass only). */
  orig?: tf.Tensor;
  /** resReLU outputs of tapped blocks, e.g. block1, block2. */
  taps: Record<string, tf.Tensor>;
}

export interface FeedbackResult {
  /** Reconstruction at level `ind`. */
  recon: tf.Tensor;
  /** Feedback resReLU outputs of tapped blocks (block1_recon, ...). */
  taps: Record<string, tf.Tensor>;
  /** Feedback continued down to the input level, when asked for. */
  image?: tf.Tensor;
}

export interface CycleRecord {
  recon: tf.Tensor;
  taps: Record<string, tf.Tensor>;
  ff: tf.Tensor;
  logits: tf.Tensor2D;
  image?: tf.Tensor;
}

export interface RunResult {
  /** Logits of the first pass, then after every cycle (length cycles + 1). */
  logits: tf.Tensor2D[];
  first: ForwardResult;
  cycles: CycleRecord[];
}

export interface RunOptions {
  /** Cycles to run (default: the model's). */
  cycles?: number;
  training?: boolean;
  /** Also decode every cycle's feedback down to the input image (for dumps). */
  decodeToInput?: boolean;
  uniform?: (shape: number[]) => tf.Tensor;
}

export type Readout = 'last' | 'average';

export class CNNF {
  readonly spec: ArchSpec;
  private readonly blocks: ConvBlock[];
  private readonly flatten = new Flatten('flatten');
  private readonly fcs: FcBlock[];

  /** `maskRule` replaces the resReLU mask rule in every run (conformance tie search only). */
  constructor(readonly config: ModelConfig, readonly params: Params, private readonly maskRule?: MaskRule) {
    this.spec = getArch(config.arch);
    this.blocks = this.spec.convs.map((b, i) => new ConvBlock(i, b.tap, b.pool));
    const nfc = config.fc.length + 1;
    let relu = this.spec.convs.length;
    this.fcs = Array.from({ length: nfc }, (_, i) => new FcBlock(i, i < nfc - 1 ? `relu${++relu}` : undefined));
    for (const p of paramSpecs(config)) {
      const t = params.get(p.name);
      if (!t) throw new Error(`missing parameter ${p.name}`);
      if (t.shape.join(',') !== p.shape.join(',')) throw new Error(`parameter ${p.name}: shape [${t.shape}] != [${p.shape}]`);
    }
  }

  /** A freshly initialised model: conv N(0, sqrt(2/(k*k*out))), linear U(+-1/sqrt(in)), biases 0. */
  static init(partial: ConfigInput, seed: number): CNNF {
    const config = makeConfig(partial);
    const params: Params = new Map();
    let s = seed >>> 0;
    for (const p of paramSpecs(config)) {
      s = (s + 0x9e3779b9) >>> 0;
      const t = tf.tidy(() => {
        if (p.kind === 'conv') return tf.randomNormal(p.shape, 0, Math.sqrt(2 / p.fan), 'float32', s);
        if (p.kind === 'linear') return tf.randomUniform(p.shape, -1 / Math.sqrt(p.fan), 1 / Math.sqrt(p.fan), 'float32', s);
        return tf.zeros(p.shape);
      });
      params.set(p.name, tf.variable(t, true));
      t.dispose();
    }
    return new CNNF(config, params);
  }

  /** Model from named float32 arrays in cnnf layout (see paramSpecs). */
  static fromArrays(partial: ConfigInput, arrays: Map<string, Float32Array>): CNNF {
    const config = makeConfig(partial);
    const params: Params = new Map();
    for (const p of paramSpecs(config)) {
      const a = arrays.get(p.name);
      if (!a) throw new Error(`missing parameter ${p.name}`);
      // tf.variable shares the tensor's data and takes a reference: dispose the tensor, or the weights
      // outlive the model's dispose()
      const t = tf.tensor(a, p.shape, 'float32');
      params.set(p.name, tf.variable(t, true));
      t.dispose();
    }
    return new CNNF(config, params);
  }

  /** Same weights, another inference configuration (cycles, resParam, ...). Shares the variables. */
  withConfig(change: Partial<Pick<ModelConfig, 'cycles' | 'resParam' | 'ind'>>): CNNF {
    return new CNNF(makeConfig({ ...this.config, ...change }), this.params, this.maskRule);
  }

  /** Same weights and configuration, another resReLU mask rule (see LayerContext.mask). */
  withMaskRule(rule: MaskRule | undefined): CNNF {
    return new CNNF(this.config, this.params, rule);
  }

  variables(): tf.Variable[] {
    return [...this.params.values()].filter((p): p is tf.Variable => p instanceof tf.Variable);
  }

  /** Named weights as float32 arrays (cnnf layout). */
  async toArrays(): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const p of paramSpecs(this.config)) {
      const t = this.params.get(p.name)!;
      out.set(p.name, { shape: p.shape, data: (await t.data()) as Float32Array });
    }
    return out;
  }

  dispose(): void {
    for (const p of this.params.values()) p.dispose();
  }

  context(training = false, uniform?: (shape: number[]) => tf.Tensor): LayerContext {
    return { state: new RunState(), params: this.params, resParam: this.config.resParam, training, uniform, mask: this.maskRule };
  }

  /** Forward pass; first=false starts at level `ind` (blocks below it are skipped). */
  forward(ctx: LayerContext, x: tf.Tensor, first: boolean): ForwardResult {
    const ind = this.config.ind;
    let v = x;
    let orig: tf.Tensor | undefined;
    const taps: Record<string, tf.Tensor> = {};
    for (let k = first ? 0 : ind; k < this.blocks.length; k++) {
      if (first && k === ind) orig = v;
      const block = this.blocks[k];
      const r = scoped(ctx, () => block.forward(ctx, v));
      if (this.blocks[k].tap) taps[this.blocks[k].tap!] = r.act;
      v = r.out;
    }
    if (first && ind === this.blocks.length) orig = v;
    v = this.flatten.forward(ctx, v);
    for (const fc of this.fcs) {
      const input = v;
      v = scoped(ctx, () => fc.forward(ctx, input));
    }
    return { logits: v as tf.Tensor2D, orig, taps };
  }

  /** Feedback from logits down to level `ind` (or further, to the input, with decodeToInput). */
  feedback(ctx: LayerContext, logits: tf.Tensor, decodeToInput = false): FeedbackResult {
    const ind = this.config.ind;
    let v: tf.Tensor = logits;
    for (let i = this.fcs.length - 1; i >= 0; i--) {
      const fc = this.fcs[i];
      const input = v;
      v = scoped(ctx, () => fc.feedback(ctx, input));
    }
    v = this.flatten.feedback(ctx, v);
    const taps: Record<string, tf.Tensor> = {};
    let recon: tf.Tensor | undefined;
    const stop = decodeToInput ? 0 : ind;
    for (let k = this.blocks.length - 1; k >= stop; k--) {
      const block = this.blocks[k];
      const input = v;
      const r = scoped(ctx, () => block.feedback(ctx, input));
      if (this.blocks[k].tap) taps[`${this.blocks[k].tap}_recon`] = r.act;
      v = r.out;
      if (k === ind) recon = v;
    }
    if (recon === undefined) recon = v;
    return { recon, taps, image: decodeToInput ? v : undefined };
  }

  /** Inference with feedback cycles: first pass, then `cycles` rounds of feedback, residual update, forward. */
  run(x: tf.Tensor, opts: RunOptions = {}): RunResult {
    const cycles = opts.cycles ?? this.config.cycles;
    const r = this.config.resParam;
    const ctx = this.context(opts.training ?? false, opts.uniform);
    const first = this.forward(ctx, x, true);
    let logits = first.logits;
    const all = [logits];
    const records: CycleRecord[] = [];
    let ff = first.orig!;
    for (let c = 0; c < cycles; c++) {
      const fb = this.feedback(ctx, logits, opts.decodeToInput);
      ff = tf.add(ff, tf.mul(tf.sub(fb.recon, ff), r));
      logits = this.forward(ctx, ff, false).logits;
      all.push(logits);
      records.push({ recon: fb.recon, taps: fb.taps, ff, logits, image: fb.image });
    }
    return { logits: all, first, cycles: records };
  }

  /** The readout logits: "last" = after the final cycle, "average" = mean over the cycles + 1 passes. */
  logits(x: tf.Tensor, readout: Readout = 'last', cycles?: number): tf.Tensor2D {
    const res = this.run(x, { cycles });
    return readoutOf(res, readout);
  }
}

export function readoutOf(res: RunResult, readout: Readout): tf.Tensor2D {
  if (readout === 'last' || res.logits.length === 1) return res.logits[res.logits.length - 1];
  return tf.div(tf.addN(res.logits), res.logits.length) as tf.Tensor2D;
}
