/**
 * Explicit per-evaluation state of the feedback layers (ReLU masks and hidden values, pooling
 * selections, dropout masks, flatten shapes). A model run creates one and threads it through
 * forward and feedback, so two evaluations can never share masks by accident.
 */
import type * as tf from '@tensorflow/tfjs-core';

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

  /** Clears every layer's state: must precede each new input batch. */
  resetAll(): void {
    this.slots.clear();
  }
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
