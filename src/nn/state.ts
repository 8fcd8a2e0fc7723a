/**
 * Explicit per-evaluation state of the feedback layers (ReLU masks and hidden values, pooling
 * selections, dropout masks, flatten shapes). A model run creates one and threads it through
 * forward and feedback, so two evaluations can never share masks by accident.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { tidy } from '@tensorflow/tfjs-core';

export type Params = Map<string, tf.Variable | tf.Tensor>;

export interface LayerContext {
  /** Latent state of every layer, keyed by layer name. */
  state: RunState;
  params: Params;
  /** Residual parameter r of resReLU (0 = plain adaptive ReLU). */
  resParam: number;
  training: boolean;
  /** Uniform [0,1) sampler for dropout masks (seeded). */
  uniform?: (shape: number[]) => tf.Tensor;
  /**
   * The ReLU mask rule (default: 1 where the pre-activation is > 0). Conformance checks pass a
   * rule that can decide float32 ties (pre-activations within rounding of 0); nothing else should.
   */
  mask?: MaskRule;
}

/**
 * Mask (1 = pass, 0 = block) of a resReLU layer given its pre-activation: x, or x' h when the layer
 * holds a hidden h from an earlier feedback (then `hidden` is h).
 */
export type MaskRule = (layer: string, pre: tf.Tensor, hidden?: tf.Tensor) => tf.Tensor;

export class RunState {
  private slots = new Map<string, Record<string, unknown>>();

  slot<T extends object>(name: string): Partial<T> {
    let s = this.slots.get(name);
    if (!s) {
      s = {};
      this.slots.set(name, s);
    }
    return s as Partial<T>;
  }

  /** Clears one layer's state (its `reset`). */
  reset(name: string): void {
    this.slots.delete(name);
  }

  /** Every tensor held in the state (masks, hidden values, selections). */
  tensors(): tf.Tensor[] {
    const out: tf.Tensor[] = [];
    for (const slot of this.slots.values()) {
      for (const v of Object.values(slot)) if (isTensor(v)) out.push(v);
    }
    return out;
  }

  /** Clears every layer's state: must precede each new input batch. */
  resetAll(): void {
    this.slots.clear();
  }
}

function isTensor(v: unknown): v is tf.Tensor {
  return typeof v === 'object' && v !== null && 'dataId' in v && 'shape' in v && typeof (v as { dispose?: unknown }).dispose === 'function';
}

/**
 * Runs one layer or block f in its own tf.tidy, keeping only its result and the layer state: the
 * intermediates (and, under a gradient tape, those no kernel saved for backprop) are freed as soon as
 * the block ends instead of when the whole evaluation does. Values are unchanged.
 */
export function scoped<T extends tf.TensorContainer>(ctx: LayerContext, f: () => T): T {
  return tidy(() => {
    const r = f();
    return { r, kept: ctx.state.tensors() };
  }).r;
}

export function param(ctx: LayerContext, name: string): tf.Tensor {
  const p = ctx.params.get(name);
  if (!p) throw new Error(`missing parameter ${name}`);
  return p;
}

/** A layer: forward and feedback side by side, state kept in the run's RunState under `name`. */
export interface FeedbackLayer {
  readonly name: string;
  forward(ctx: LayerContext, x: tf.Tensor): tf.Tensor;
  feedback(ctx: LayerContext, y: tf.Tensor): tf.Tensor;
  reset(ctx: LayerContext): void;
}
