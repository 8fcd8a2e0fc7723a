/** The pass/fail table `cnnf gate` prints (cli-table3, no colours so logs stay plain text). */
import Table from 'cli-table3';
import { cleanText as printable } from '../format.js';
import type { GateCheck, GateReport } from './gate.js';

const VERDICT: Record<GateCheck['status'], string> = { pass: 'PASS', fail: 'FAIL', missing: 'FAIL (missing metric)' };

export function formatActual(v: number | null): string {
  if (v === null) return '—';
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
}

/** The Actual cell: the compared value, which interval end it is, and the 95% Wilson interval. */
export function formatActualCell(c: GateCheck): string {
  if (c.actual === null) return '—';
  const value = `${formatActual(c.actual)}${c.bound ? ` (${c.bound})` : ''}`;
  return c.interval ? `${value}\n95% CI [${formatActual(c.interval[0])}, ${formatActual(c.interval[1])}]` : value;
}

export function gateTable(report: GateReport): string {
  const table = new Table({ head: ['Requirement', 'Model', 'Actual', 'Verdict'], style: { head: [], border: [] }, wordWrap: true });
  for (const c of report.checks) {
    let verdict = VERDICT[c.status];
    if (c.status === 'missing') verdict += `\n${printable(c.message)}`;
    else if (c.resolvedMetric !== null && c.resolvedMetric !== c.metric) verdict += `\nvia ${printable(c.resolvedMetric)}`;
    table.push([printable(c.requirement), printable(c.model || '—'), formatActualCell(c), verdict]);
  }
  const summary = `${report.passedCount}/${report.total} checks passed` +
    (report.failedCount ? `, ${report.failedCount} failed` : '') + (report.missingCount ? `, ${report.missingCount} missing` : '');
  const note = report.checks.some((c) => c.interval) ? '95% CI: Wilson score interval over the evaluated examples\n' : '';
  return `${table.toString()}\n${summary}\n${note}`;
}
