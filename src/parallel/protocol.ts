/** Messages between the main thread and cnnf worker threads (structured-clone data only). */
import type { ModelConfig } from '../models/arch.js';

export type ToWorker =
  | { type: 'init'; backend: string }
  /** Import a task module (a file URL) and register its `taskHandlers`. */
  | { type: 'load'; module: string }
  | { type: 'model'; id: number; config: ModelConfig; arrays: Array<[string, Float32Array]> }
  | { type: 'weights'; id: number; arrays: Array<[string, Float32Array]> }
  | { type: 'drop'; id: number }
  | { type: 'task'; job: number; name: string; model: number; task: unknown };

export type FromWorker =
  | { type: 'ready'; job?: number }
  | { type: 'progress'; job: number; progress: unknown }
  | { type: 'done'; job: number; outcome: unknown }
  /** usage: the error was a UsageError (bad input), re-thrown as one with `exitCode` in the main thread. */
  | { type: 'error'; job?: number; message: string; usage: boolean; exitCode?: number; stack?: string };
