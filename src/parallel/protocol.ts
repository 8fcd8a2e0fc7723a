/** Messages between the main thread and cnnf worker threads (structured-clone data only). */
import type { ModelConfig } from '../models/arch.js';
import type { BatchOutcome, BatchTask } from '../eval/batch.js';

export type ToWorker =
  | { type: 'init'; backend: string }
  | { type: 'model'; id: number; config: ModelConfig; arrays: Array<[string, Float32Array]> }
  | { type: 'drop'; id: number }
  | { type: 'evalBatch'; job: number; model: number; task: BatchTask };

export type FromWorker =
  | { type: 'ready'; job?: number }
  | { type: 'progress'; job: number; stage: string }
  | { type: 'done'; job: number; outcome: BatchOutcome }
  | { type: 'error'; job?: number; message: string; usage: boolean; stack?: string };
