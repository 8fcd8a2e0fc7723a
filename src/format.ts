/** Numbers formatted for people (reports, tables, recipes). */

/** 1.97e-4, 0.05, 128: a number as people write it (3 significant digits, exponent below 1e-3). */
export function humanNumber(v: number): string {
  if (!Number.isFinite(v) || v === 0) return String(v);
  if (Math.abs(v) < 1e-3) return v.toExponential(2).replace(/\.?0+e/, 'e');
  return String(Number(v.toPrecision(3)));
}
