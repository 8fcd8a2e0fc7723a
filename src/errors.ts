/**
 * User-facing errors. A `UsageError` is bad input (flags, files, shapes): the CLI prints its
 * message on one line and exits with code 2. Anything else is a bug and keeps its stack trace.
 */
export class UsageError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 2) {
    super(message);
    this.name = 'UsageError';
    this.exitCode = exitCode;
  }
}

/** Throws a UsageError when `cond` is false. */
export function check(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new UsageError(typeof message === 'function' ? message() : message);
}
