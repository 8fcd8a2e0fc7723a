/** Flag parsers shared by every command: each returns a value or throws a one-line UsageError. */
import { UsageError } from '../errors.js';

export function parseNumber(flag: string, raw: string, opts: { min?: number; max?: number; integer?: boolean } = {}): number {
  const s = String(raw).trim();
  const v = s === '' ? NaN : Number(s);
  if (!Number.isFinite(v)) throw new UsageError(`${flag} must be a number, got ${JSON.stringify(raw)}`);
  if (opts.integer && !Number.isInteger(v)) throw new UsageError(`${flag} must be an integer, got ${JSON.stringify(raw)}`);
  if (opts.min !== undefined && v < opts.min) throw new UsageError(`${flag} must be >= ${opts.min}, got ${v}`);
  if (opts.max !== undefined && v > opts.max) throw new UsageError(`${flag} must be <= ${opts.max}, got ${v}`);
  return v;
}

export const parseInteger = (flag: string, raw: string, min = 0, max = Number.MAX_SAFE_INTEGER): number =>
  parseNumber(flag, raw, { min, max, integer: true });

/** Comma-separated numbers, e.g. "0,0.1,0.2". */
export function parseNumberList(flag: string, raw: string, opts: { min?: number; max?: number; integer?: boolean } = {}): number[] {
  const parts = String(raw).split(',').map((p) => p.trim()).filter((p) => p !== '');
  if (parts.length === 0) throw new UsageError(`${flag} needs at least one value`);
  return parts.map((p) => parseNumber(flag, p, opts));
}

export function parseChoice<T extends string>(flag: string, raw: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(raw)) {
    throw new UsageError(`${flag} must be one of ${choices.join(', ')}, got ${JSON.stringify(raw)}`);
  }
  return raw as T;
}
