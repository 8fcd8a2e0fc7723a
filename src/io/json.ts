/** Reading a user-supplied JSON file: every problem (missing, a directory, a FIFO or device, too large, unreadable, not JSON,
 *  a number outside the double range) is a one-line UsageError. */
import { UsageError } from '../errors.js';
import { INPUT_LIMITS, readInputFile } from './files.js';

/** The first number literal in `text` that does not fit a double (e.g. 1e309), if any. */
function hugeLiteral(text: string): string | undefined {
  const re = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
  for (let m = re.exec(text); m; m = re.exec(text)) if (!Number.isFinite(Number(m[0]))) return m[0];
  return undefined;
}

/** Parses JSON text; numbers that overflow a double (1e309 -> Infinity) are an error, not a silent null later. */
export function parseJsonText(text: string, source: string): unknown {
  let overflowKey: string | undefined;
  let data: unknown;
  try {
    data = JSON.parse(text.replace(/^\uFEFF/, ''), (key, value: unknown) => {
      if (typeof value === 'number' && !Number.isFinite(value) && overflowKey === undefined) overflowKey = key;
      return value;
    });
  } catch (e) {
    throw new UsageError(`${source} is not valid JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  if (overflowKey !== undefined) {
    const lit = hugeLiteral(text);
    throw new UsageError(`${source}: number ${lit ?? ''}${overflowKey !== '' ? ` at ${JSON.stringify(overflowKey)}` : ''} is outside the range of a double`.replace('number  at', 'number at'));
  }
  return data;
}

/** Parsed contents of `path`; `what` names the file in messages ("suite file", "results file", ...). */
export function readJsonFile(path: string, what: string, maxBytes: number = INPUT_LIMITS.json): unknown {
  const buf = readInputFile(path, what, { maxBytes });
  return parseJsonText(buf.toString('utf8'), path);
}

/**
 * The first key that occurs twice in one object of a JSON text (JSON.parse silently keeps the last),
 * as "OBJECT-PATH.KEY"; undefined when there is none. `text` must be valid JSON (parse it first).
 */
export function findDuplicateKey(text: string): string | undefined {
  type Frame = { obj: boolean; keys: Set<string>; expectKey: boolean; path: string; lastKey: string; index: number };
  const stack: Frame[] = [];
  const childPath = (f: Frame | undefined): string => (!f ? '' : f.obj ? `${f.path}${f.path ? '.' : ''}${f.lastKey}` : `${f.path}[${f.index}]`);
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top && top.obj && top.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.keys.has(key)) return `${top.path}${top.path ? '.' : ''}${key}`;
        top.keys.add(key);
        top.lastKey = key;
        top.expectKey = false;
      }
      i = j;
    } else if (ch === '{' || ch === '[') {
      stack.push({ obj: ch === '{', keys: new Set(), expectKey: ch === '{', path: childPath(stack[stack.length - 1]), lastKey: '', index: 0 });
    } else if (ch === '}' || ch === ']') {
      stack.pop();
    } else if (ch === ',') {
      const top = stack[stack.length - 1];
      if (top?.obj) top.expectKey = true;
      else if (top) top.index++;
    }
  }
  return undefined;
}
