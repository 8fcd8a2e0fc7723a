/** JUnit XML for `cnnf gate --junit`: one testcase per requirement × model, <failure> for fail and missing. */
import { escapeXml } from '../report/escape.js';
import type { GateReport } from './gate.js';

export function gateToJUnit(report: GateReport, opts: { suiteName?: string; resultsPath?: string } = {}): string {
  const suite = opts.suiteName ?? 'cnnf gate';
  const failures = report.failedCount + report.missingCount;
  const a = (v: unknown): string => `"${escapeXml(v)}"`;
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name=${a(suite)} tests="${report.total}" failures="${failures}" errors="0" time="0">`,
    `  <testsuite name=${a(suite)} tests="${report.total}" failures="${failures}" errors="0" skipped="0" time="0">`,
  ];
  if (opts.resultsPath) {
    lines.push('    <properties>', `      <property name="results" value=${a(opts.resultsPath)}/>`, '    </properties>');
  }
  for (const c of report.checks) {
    const name = `${c.requirement} [${c.model || '?'}]`;
    const head = `    <testcase classname=${a(`cnnf.gate.${c.model || 'unknown'}`)} name=${a(name)} time="0"`;
    if (c.status === 'pass') {
      lines.push(`${head}/>`);
    } else {
      const type = c.status === 'missing' ? 'missing-metric' : 'threshold';
      const detail = `requirement: ${c.requirement}\nmodel: ${c.model}\nmetric: ${c.metric}\nactual: ${c.actual ?? 'missing'}${c.bound ? ` (${c.bound} end of the 95% Wilson interval)` : ''}${c.interval ? `\n95% interval (Wilson): [${c.interval[0]}, ${c.interval[1]}]` : ''}\nrequired: ${c.op} ${c.threshold}`;
      lines.push(`${head}>`, `      <failure type="${type}" message=${a(c.message)}>${detail.split('\n').map(escapeXml).join('\n')}</failure>`, '    </testcase>');
    }
  }
  lines.push('  </testsuite>', '</testsuites>', '');
  return lines.join('\n');
}
