/** Reading a user-supplied JSON file: every problem (missing, a directory, unreadable, not JSON) is a one-line UsageError. */
import { readFileSync, statSync } from 'node:fs';
import { UsageError } from '../errors.js';

/** Parsed contents of `path`; `what` names the file in messages ("suite file", "results file", ...). */
export function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    if (statSync(path).isDirectory()) throw new UsageError(`${what} ${path} is a directory`);
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof UsageError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'ENOENT' ? `${what} not found: ${path}` : `cannot read ${what} ${path}: ${code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    throw new UsageError(`${path} is not valid JSON: ${(e as Error).message.split('\n')[0]}`);
  }
}
