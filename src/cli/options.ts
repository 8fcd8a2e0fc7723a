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

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * One number written as a decimal (0.03, 3e-2) or a fraction of two decimals (8/255, as papers write
 * epsilons); null when it is neither (or the fraction divides by zero).
 */
export function numberOrFraction(raw: string): number | null {
  const s = raw.trim();
  const slash = s.indexOf('/');
  if (slash === -1) return DECIMAL.test(s) && Number.isFinite(Number(s)) ? Number(s) : null;
  const [a, b] = [s.slice(0, slash).trim(), s.slice(slash + 1).trim()];
  if (!DECIMAL.test(a) || !DECIMAL.test(b) || Number(b) === 0) return null;
  const v = Number(a) / Number(b);
  return Number.isFinite(v) ? v : null;
}

/**
 * Epsilons: a comma-separated list of numbers or fractions, e.g. "0.1,0.2" or "8/255,16/255".
 * Anything else (also "0.1;0.2" or "0.1 0.2") is refused with a line that says what is expected.
 */
export function parseFractionList(flag: string, raw: string): number[] {
  const expected = `${flag} expects a comma-separated list of numbers or fractions (e.g. 0.1,0.2 or 8/255,16/255)`;
  const parts = String(raw).split(',').map((p) => p.trim()).filter((p) => p !== '');
  if (parts.length === 0) throw new UsageError(`${expected}, got ${JSON.stringify(raw)}`);
  return parts.map((p) => {
    const v = numberOrFraction(p);
    if (v === null) throw new UsageError(`${expected}, got ${JSON.stringify(raw)}${parts.length > 1 ? ` (${JSON.stringify(p)} is neither)` : ''}`);
    return v;
  });
}

export function parseChoice<T extends string>(flag: string, raw: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(raw)) {
    throw new UsageError(`${flag} must be one of ${choices.join(', ')}, got ${JSON.stringify(raw)}`);
  }
  return raw as T;
}
