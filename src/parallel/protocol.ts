/** Messages between the main thread and cnnf worker threads (structured-clone data only). */
import type { ModelConfig } from '../models/arch.js';
import type { BatchOutcome, BatchTask } from '../eval/batch.js';

/** One micro-batch of a training step (see train/step.ts). */
export interface GradTask {
  /** NHWC [n, 28, 28, 1]. */
  images: Float32Array;
  /** The perturbed copy for the pair loss, or null for clean cross-entropy. */
  perturbed: Float32Array | null;
  labels: Int32Array;
  /** The micro-batch's share of the batch (size / batch size). */
  scale: number;
  cleanWeight: number;
  reconWeight: number;
}

export interface GradOutcome {
  value: number;
  hits: number;
  grads: Array<[string, Float32Array]>;
}

export type ToWorker =
  | { type: 'init'; backend: string }
  | { type: 'model'; id: number; config: ModelConfig; arrays: Array<[string, Float32Array]> }
  | { type: 'weights'; id: number; arrays: Array<[string, Float32Array]> }
  | { type: 'drop'; id: number }
  | { type: 'evalBatch'; job: number; model: number; task: BatchTask }
  | { type: 'grads'; job: number; model: number; task: GradTask };

export type FromWorker =
  | { type: 'ready'; job?: number }
  | { type: 'progress'; job: number; stage: string }
  | { type: 'done'; job: number; outcome: BatchOutcome | GradOutcome }
  | { type: 'error'; job?: number; message: string; usage: boolean; stack?: string };
