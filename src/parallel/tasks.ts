/**
 * Named worker tasks. The pool knows nothing of what a task computes: an upper layer (eval, train)
 * defines a task kind with `defineTask(name, import.meta.url)` in a module that also exports
 * `taskHandlers` (name -> handler). The pool tells each worker to import that module the first time
 * a task of the kind runs, so `parallel/` imports no upper layer and the worker loads only what it runs.
 */
import type { CNNF } from '../models/cnnf.js';

/** A task kind: its name, and the module (a file URL) whose `taskHandlers` export handles it in a worker. */
export interface TaskKind<Task, Outcome, Progress = string> {
  readonly name: string;
  readonly module: string;
  /** Type-only markers (never set): tie a kind to its task, outcome and progress types. */
  readonly _types?: { task: Task; outcome: Outcome; progress: Progress };
}

export function defineTask<Task, Outcome, Progress = string>(name: string, moduleUrl: string): TaskKind<Task, Outcome, Progress> {
  return { name, module: moduleUrl };
}

/** What a handler gets besides its task: the model the task names (weights as last synced) and a progress channel. */
export interface TaskContext<Progress = string> {
  model: CNNF;
  progress(p: Progress): void;
}

export type TaskHandler<Task = any, Outcome = any, Progress = any> = (task: Task, ctx: TaskContext<Progress>) => Outcome | Promise<Outcome>;

/** The `taskHandlers` export of a task module. */
export type TaskHandlers = Record<string, TaskHandler>;

/** A handler typed by its kind (for `taskHandlers = { [KIND.name]: handlerOf(KIND, ...) }`). */
export function handlerOf<T, O, P>(_kind: TaskKind<T, O, P>, h: TaskHandler<T, O, P>): TaskHandler<T, O, P> {
  return h;
}
