/** Task handlers for the worker-pool tests (loaded by URL into worker threads, like eval's and train's). */
import { UsageError } from '../../src/errors.js';
import { defineTask, handlerOf, type TaskHandlers } from '../../src/parallel/tasks.js';

/** Sums the model's parameter sizes plus `add`, reporting progress twice. */
export const PARAM_COUNT = defineTask<{ add: number }, number, number>('test:paramCount', import.meta.url);
/** Throws a UsageError with the given message and exit code. */
export const USAGE_FAIL = defineTask<{ message: string; exitCode: number }, never>('test:usageFail', import.meta.url);

export const taskHandlers: TaskHandlers = {
  [PARAM_COUNT.name]: handlerOf(PARAM_COUNT, (t, ctx) => {
    ctx.progress(1);
    let n = t.add;
    for (const v of ctx.model.params.values()) n += v.size;
    ctx.progress(2);
    return n;
  }),
  [USAGE_FAIL.name]: handlerOf(USAGE_FAIL, (t) => {
    throw new UsageError(t.message, t.exitCode);
  }),
};
