/** `cnnf gate --config gate.json`: `{ "requirements": ["cnnf/pgd7@0.2:e2e >= 0.5", ...] }`. */
import { UsageError } from '../errors.js';
import { readJsonFile } from '../io/json.js';

const ALLOWED_KEYS = new Set(['requirements', 'description', '$schema']);

/** Validates a parsed gate config and returns its requirement strings. */
export function validateGateConfig(data: unknown, source = 'gate config'): string[] {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new UsageError(`${source}: must be a JSON object like {"requirements": ["clean >= 0.8"]}`);
  }
  const obj = data as Record<string, unknown>;
  const unknown = Object.keys(obj).filter((k) => !ALLOWED_KEYS.has(k));
  if (unknown.length > 0) throw new UsageError(`${source}: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} (expected "requirements")`);
  const reqs = obj.requirements;
  if (reqs === undefined) throw new UsageError(`${source}: "requirements" is missing`);
  if (!Array.isArray(reqs)) throw new UsageError(`${source}: "requirements" must be an array of strings`);
  reqs.forEach((r, i) => {
    if (typeof r !== 'string') throw new UsageError(`${source}: requirements[${i}] must be a string`);
  });
  return reqs as string[];
}

export function readGateConfig(path: string): string[] {
  return validateGateConfig(readJsonFile(path, 'gate config'), path);
}
