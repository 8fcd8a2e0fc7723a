/**
 * SGD with momentum and weight decay exactly as PyTorch's torch.optim.SGD (dampening 0, no Nesterov),
 * gradient-norm clipping as torch.nn.utils.clip_grad_norm_ (applied before the step), and the
 * learning-rate schedules (poly per batch, constant). The state (step count, momentum buffers) can be
 * exported as float32 arrays and restored bit for bit, so an interrupted run resumes exactly.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface SGDOptions {
  momentum: number;
  weightDecay: number;
  /** Max total L2 norm of all gradients (clip_grad_norm_); undefined or Infinity = no clipping. */
  clipNorm?: number;
}

export interface OptimizerState {
  /** Optimiser steps taken so far. */
  step: number;
  /** Momentum buffer of every parameter (float32, parameter shape), by parameter name. */
  buffers: Map<string, { shape: number[]; data: Float32Array }>;
}

export interface StepResult {
  /** Total gradient norm before clipping (a scalar tensor the caller owns). */
  gradNorm: tf.Scalar;
}

/**
 * clip_grad_norm_: total = sqrt(sum of squared gradients over every parameter);
 * coef = max_norm / (total + 1e-6); when coef < 1 every gradient is multiplied by coef.
 * Returns new tensors (the caller disposes them, or calls this inside tf.tidy).
 */
export function clipGradNorm(grads: tf.Tensor[], maxNorm: number): { grads: tf.Tensor[]; norm: tf.Scalar } {
  const norm = tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))) as tf.Scalar;
  if (!Number.isFinite(maxNorm)) return { grads: grads.map((g) => tf.clone(g)), norm };
  const coef = tf.minimum(tf.div(tf.scalar(maxNorm), tf.add(norm, 1e-6)), 1);
  return { grads: grads.map((g) => tf.mul(g, coef)), norm };
}

/**
 * torch.optim.SGD over named variables: g = grad + wd*w; buf = g at the first step, else
 * momentum*buf + g; w -= lr*buf.
 */
export class SGD {
  private readonly names: string[];
  private readonly buffers = new Map<string, tf.Variable>();
  private steps = 0;

  constructor(readonly params: Map<string, tf.Variable>, readonly opts: SGDOptions) {
    if (!(opts.momentum >= 0) || !(opts.weightDecay >= 0)) throw new Error('SGD: momentum and weight decay must be >= 0');
    this.names = [...params.keys()];
  }

  get stepCount(): number {
    return this.steps;
  }

  /**
   * One update with learning rate `lr` from gradients keyed by parameter name (missing gradients
   * count as zero, as PyTorch skips parameters whose .grad is None; here every parameter gets one).
   * Clips first (opts.clipNorm), then applies weight decay and momentum.
   */
  step(grads: Map<string, tf.Tensor> | Record<string, tf.Tensor>, lr: number): StepResult {
    const get = (n: string): tf.Tensor | undefined => (grads instanceof Map ? grads.get(n) : grads[n]);
    const first = this.steps === 0;
    const gradNorm = tf.tidy(() => {
      const raw = this.names.map((n) => get(n) ?? tf.zerosLike(this.params.get(n)!));
      const { grads: clipped, norm } = clipGradNorm(raw, this.opts.clipNorm ?? Infinity);
      this.names.forEach((n, i) => {
        const w = this.params.get(n)!;
        let g = clipped[i];
        if (this.opts.weightDecay !== 0) g = tf.add(g, tf.mul(w, this.opts.weightDecay));
        let buf: tf.Tensor = g;
        if (this.opts.momentum !== 0) {
          const old = this.buffers.get(n);
          if (first || !old) {
            if (old) old.assign(g);
            else this.buffers.set(n, tf.variable(g, false));
          } else {
            old.assign(tf.add(tf.mul(old, this.opts.momentum), g));
          }
          buf = this.buffers.get(n)!;
        }
        w.assign(tf.sub(w, tf.mul(buf, lr)));
      });
      return norm;
    });
    this.steps++;
    return { gradNorm };
  }

  /** Copies the state out (float32 arrays). */
  async getState(): Promise<OptimizerState> {
    const buffers = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [n, b] of this.buffers) buffers.set(n, { shape: [...b.shape], data: (await b.data()) as Float32Array });
    return { step: this.steps, buffers };
  }

  /** Restores a state from getState() (shapes are checked). */
  setState(state: OptimizerState): void {
    for (const [n, b] of state.buffers) {
      const p = this.params.get(n);
      if (!p) throw new Error(`optimizer state: unknown parameter ${n}`);
      if (p.shape.join(',') !== b.shape.join(',')) throw new Error(`optimizer state: ${n} has shape [${b.shape}], parameter [${p.shape}]`);
      const t = tf.tensor(b.data, b.shape, 'float32');
      const old = this.buffers.get(n);
      if (old) old.assign(t);
      else this.buffers.set(n, tf.variable(t, false));
      t.dispose();
    }
    this.steps = state.step;
  }

  dispose(): void {
    for (const b of this.buffers.values()) b.dispose();
    this.buffers.clear();
  }
}

export type ScheduleName = 'poly' | 'constant';
export const SCHEDULE_NAMES: readonly ScheduleName[] = ['poly', 'constant'];

export interface Schedule {
  name: ScheduleName;
  base: number;
  /** Poly exponent (paper 0.9). */
  power: number;
  /** Total optimiser steps of the run (epochs * batches per epoch). */
  total: number;
}

/** Learning rate of step `step` (0-based): poly = base*(1 - step/total)^power, constant = base. */
export function learningRate(s: Schedule, step: number): number {
  if (s.name === 'constant') return s.base;
  const frac = Math.min(1, Math.max(0, step / s.total));
  return s.base * Math.pow(1 - frac, s.power);
}
