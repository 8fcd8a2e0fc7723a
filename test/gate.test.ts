import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { expectUsageError } from './helpers/cli.js';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { evaluateGate, gateTable, gateToJUnit, parseRequirement, validateGateConfig, type GateReport } from '../src/gate/index.js';
import { legacySampleResults, sampleResults } from './helpers/results-sample.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'cnnf');

interface Run { code: number; stdout: string; stderr: string }
function cnnf(args: string[]): Promise<Run> {
  return new Promise((res) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

function expectOneLine(r: Run, code: number, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(code);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^cnnf: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at |Error:/);
}

const usageError = expectUsageError;

/**
 * Rough XML well-formedness check: balanced, properly nested tags, quoted attributes, no stray
 * '<' or unescaped '&'. Returns the element names in document order.
 */
function checkXml(xml: string): string[] {
  expect(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n')).toBe(true);
  const body = xml.slice(xml.indexOf('?>') + 2);
  const stack: string[] = [];
  const names: string[] = [];
  const tag = /<(\/?)([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.:-]*="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tag.exec(body); m; m = tag.exec(body)) {
    const text = body.slice(last, m.index);
    expect(text).not.toMatch(/[<>]/);
    expect(text).not.toMatch(/&(?!(amp|lt|gt|quot|apos|#\d+);)/);
    expect(m[3] ?? '').not.toMatch(/&(?!(amp|lt|gt|quot|apos|#\d+);)/);
    const [, close, name, , selfClose] = m;
    if (close) {
      expect(stack.pop()).toBe(name);
    } else {
      names.push(name!);
      if (!selfClose) stack.push(name!);
    }
    last = tag.lastIndex;
  }
  expect(body.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
  return names;
}

describe('parseRequirement', () => {
  it('parses [MODEL/]METRIC OP NUMBER', () => {
    expect(parseRequirement('clean >= 0.85')).toEqual({ text: 'clean >= 0.85', model: null, metric: 'clean', op: '>=', threshold: 0.85 });
    expect(parseRequirement('  cnnf/pgd7@0.2:e2e>.1 ')).toEqual({ text: 'cnnf/pgd7@0.2:e2e>.1', model: 'cnnf', metric: 'pgd7@0.2:e2e', op: '>', threshold: 0.1 });
    expect(parseRequirement('runs/a/cnn/gaussian@0.3 < 1e0')).toMatchObject({ model: 'runs/a/cnn', metric: 'gaussian@0.3', op: '<', threshold: 1 });
    expect(parseRequirement('pgd7-targeted@0.1:e2e:success <= 0.3')).toMatchObject({ metric: 'pgd7-targeted@0.1:e2e:success', op: '<=' });
    expect(parseRequirement('worst@0.2 == -0')).toMatchObject({ op: '==', threshold: -0 });
  });

  it('rejects malformed expressions with a one-line usage error', () => {
    const bad: Array<[string, RegExp]> = [
      ['', /empty/],
      ['clean 0.8', /no comparison operator/],
      ['clean => 0.8', /unsupported operator "=>"/],
      ['clean = 0.8', /unsupported operator "="/],
      ['clean != 0.8', /unsupported operator "!="/],
      ['clean >= ', /missing threshold/],
      ['clean >= high', /"high" is not a number/],
      ['clean >= 0x10', /is not a number/],
      ['clean >= 80%', /is not a number/],
      ['>= 0.8', /missing metric/],
      ['0.5 <= clean <= 0.9', /more than one operator/],
      ['/clean >= 0.5', /empty model name/],
      ['cnn/ >= 0.5', /missing metric after/],
      ['pgd7@abc:first >= 0.1', /"abc" is not an epsilon/],
      ['pgd7@0.1:frist >= 0.1', /unknown qualifier "frist"/],
      ['pgd7@0.1:first:e2e >= 0.1', /conflicting qualifiers/],
      ['@0.1 >= 0.1', /no attack name/],
      ['clean:first >= 0.1', /qualifier but no "@EPS"/],
      ['my metric >= 0.1', /contains spaces/],
    ];
    for (const [expr, why] of bad) expect(usageError(() => parseRequirement(expr)).message, expr).toMatch(why);
  });
});

describe('evaluateGate', () => {
  const r = sampleResults();
  const status = (rep: GateReport): string[] => rep.checks.map((c) => `${c.model}:${c.status}`);

  it('passes when every requirement holds for every model', () => {
    const rep = evaluateGate(r, ['clean >= 0.85', 'gaussian@0.1 > 0.88', 'fgsm@0.05:first >= 0.5']);
    expect(rep.passed).toBe(true);
    expect(rep.total).toBe(6);
    expect(rep.passedCount).toBe(6);
    expect(status(rep)).toEqual(['cnn:pass', 'cnnf:pass', 'cnn:pass', 'cnnf:pass', 'cnn:pass', 'cnnf:pass']);
    expect(rep.checks[0]).toMatchObject({ requirement: 'clean >= 0.85', model: 'cnn', actual: 0.912, resolvedMetric: 'clean' });
  });

  it('fails when one model misses a threshold', () => {
    const rep = evaluateGate(r, ['pgd7@0.1:first >= 0.4']);
    expect(rep.passed).toBe(false);
    expect(status(rep)).toEqual(['cnn:fail', 'cnnf:pass']);
    expect(rep.checks[0]!.actual).toBe(0.087);
    expect(rep.checks[0]!.message).toMatch(/violates >= 0\.4/);
    expect(rep.failedCount).toBe(1);
  });

  it('treats an absent metric as a failure (fail closed), not a crash', () => {
    // plain CNN was never attacked end-to-end; nobody ran FGSM at 0.3
    const rep = evaluateGate(r, ['pgd7@0.2:e2e >= 0.1', 'fgsm@0.3:first >= 0', 'cnnf/nosuch >= 0']);
    expect(rep.passed).toBe(false);
    expect(status(rep)).toEqual(['cnn:missing', 'cnnf:pass', 'cnn:missing', 'cnnf:missing', 'cnnf:missing']);
    expect(rep.checks[0]).toMatchObject({ actual: null, message: 'missing metric pgd7@0.2:e2e' });
    expect(rep.missingCount).toBe(4);
    expect(evaluateGate(r, ['nobody/clean >= 0']).checks[0]).toMatchObject({ model: 'nobody', status: 'missing', message: 'missing model nobody (results have: cnn, cnnf)' });
  });

  it('scopes by MODEL/ prefix or the default model', () => {
    expect(status(evaluateGate(r, ['cnnf/pgd7@0.2:e2e >= 0.14']))).toEqual(['cnnf:pass']);
    expect(status(evaluateGate(r, ['worst@0.2 >= 0.1'], { model: 'cnnf' }))).toEqual(['cnnf:pass']);
    // a prefix wins over the default model
    expect(status(evaluateGate(r, ['cnn/clean >= 0.9', 'clean >= 0.89'], { model: 'cnnf' }))).toEqual(['cnn:pass', 'cnnf:pass']);
  });

  it('compares with every operator; == tolerates float noise', () => {
    const one = (expr: string): string => evaluateGate(r, [`cnnf/${expr}`]).checks[0]!.status;
    expect(one('clean > 0.897')).toBe('fail');
    expect(one('clean >= 0.897')).toBe('pass');
    expect(one('clean < 0.897')).toBe('fail');
    expect(one('clean <= 0.897')).toBe('pass');
    expect(one('clean == 0.8970000000001')).toBe('pass');
    expect(one('clean == 0.898')).toBe('fail');
    expect(one('pgd7-targeted@0.2:e2e:success <= 0.5')).toBe('pass');
    expect(one('pgd7-targeted@0.2:e2e:success < 0.4')).toBe('fail');
  });

  it('normalises epsilons, resolves an attack method to the one attack of that method, falls back to the attack points', () => {
    const a = evaluateGate(r, ['cnnf/pgd7@0.20:e2e >= 0.1']).checks[0]!;
    expect(a).toMatchObject({ status: 'pass', resolvedMetric: 'pgd7@0.2:e2e', actual: 0.142 });
    const alias = evaluateGate(r, ['pgd@0.2:first >= 0']);
    expect(alias.checks.map((c) => [c.resolvedMetric, c.actual])).toEqual([['pgd7@0.2:first', 0.003], ['pgd7@0.2:first', 0.198]]);
    expect(evaluateGate(r, ['cnnf/pgd@0.2:e2e:success >= 0']).checks[0]).toMatchObject({ resolvedMetric: 'pgd7-targeted@0.2:e2e:success', actual: 0.471 });

    // two untargeted PGD attacks: "pgd" is ambiguous, which fails closed
    const two = sampleResults();
    two.models[1]!.attacks.push({ ...structuredClone(two.models[1]!.attacks[3]!), name: 'pgd40' });
    expect(evaluateGate(two, ['cnnf/pgd@0.2:e2e >= 0']).checks[0]).toMatchObject({ status: 'missing', message: expect.stringMatching(/ambiguous metric pgd@0\.2:e2e: pgd matches attacks pgd7, pgd40/) });

    // a key missing from the flat map is still found in the structured results
    const sparse = sampleResults();
    delete sparse.models[1]!.metrics['pgd7@0.1:e2e'];
    delete sparse.models[1]!.metrics['worst@0.2'];
    delete sparse.models[1]!.metrics.clean;
    const rep = evaluateGate(sparse, ['cnnf/pgd7@0.1:e2e == 0.356', 'cnnf/worst@0.2 == 0.121', 'cnnf/clean == 0.897']);
    expect(rep.passed).toBe(true);
  });

  it('checks the lower or upper end of the 95% Wilson interval: METRIC.lower / METRIC.upper', () => {
    // sample: 1000 examples; cnnf pgd7@0.2:e2e = 142/1000, Wilson [0.121734, 0.165006] (scipy binomtest(142, 1000).proportion_ci)
    expect(parseRequirement('cnnf/pgd7@0.2:e2e.lower >= 0.12')).toEqual({
      text: 'cnnf/pgd7@0.2:e2e.lower >= 0.12', model: 'cnnf', metric: 'pgd7@0.2:e2e', op: '>=', threshold: 0.12, bound: 'lower',
    });
    expect(parseRequirement('worst@0.2.upper < 0.5')).toMatchObject({ metric: 'worst@0.2', bound: 'upper' });
    expect(parseRequirement('clean.lower >= 0.8')).toMatchObject({ metric: 'clean', bound: 'lower' });
    expect(usageError(() => parseRequirement('clean.lower.upper >= 0.8')).message).toMatch(/must come last, once/);
    expect(usageError(() => parseRequirement('pgd7@0.2:e2e.middle >= 0.8')).message).toMatch(/unknown qualifier "e2e.middle"/);

    const lower = evaluateGate(r, ['cnnf/pgd7@0.2:e2e.lower >= 0.12', 'cnnf/pgd7@0.2:e2e.lower >= 0.13', 'cnnf/pgd7@0.2:e2e.upper < 0.16']);
    expect(lower.checks.map((c) => c.status)).toEqual(['pass', 'fail', 'fail']);
    expect(lower.checks[0]!.actual).toBeCloseTo(0.121734, 6);
    expect(lower.checks[2]!.actual).toBeCloseTo(0.165006, 6);
    expect(lower.checks[1]!.interval![0]).toBeCloseTo(0.121734, 6);
    expect(lower.checks[1]!.message).toMatch(/^pgd7@0\.2:e2e\.lower = 0\.121734 \(pgd7@0\.2:e2e = 0\.142 \[95% CI 0\.121734, 0\.165006\]\) violates >= 0\.13$/);
    // the point estimate passes where its lower bound does not: 0.142 >= 0.13
    expect(evaluateGate(r, ['cnnf/pgd7@0.2:e2e >= 0.13']).checks[0]!.status).toBe('pass');
    // in a gate config too, and in the table, with the interval next to every actual value
    const text = gateTable(evaluateGate(r, validateGateConfig({ requirements: ['cnnf/pgd7@0.2:e2e.lower >= 0.13', 'cnn/clean >= 0.9'] })));
    expect(text).toMatch(/0\.121734 \(lower\)/);
    expect(text).toMatch(/95% CI \[0\.121734, 0\.165006\]/);
    expect(text).toMatch(/95% CI \[0\.892/);
    expect(text).toContain('Wilson score interval');
    // an accuracy that is not k / examples has no interval: a bound on it fails closed
    // (the point and its metrics entry together: a map that disagrees with its point is refused, issue 10)
    const odd = legacySampleResults();
    expect(odd.models[1]!.attacks[3]!.points[2]).toMatchObject({ eps: 0.2, accuracy: 0.142 });
    odd.models[1]!.attacks[3]!.points[2]!.accuracy = 0.14234;
    delete odd.models[1]!.attacks[3]!.points[2]!.confusion;
    odd.models[1]!.metrics['pgd7@0.2:e2e'] = 0.14234;
    expect(evaluateGate(odd, ['cnnf/pgd7@0.2:e2e.lower >= 0']).checks[0]).toMatchObject({ status: 'missing', message: expect.stringMatching(/no interval for/) });
    const mapOnly = sampleResults();
    mapOnly.models[1]!.metrics['pgd7@0.2:e2e'] = 0.14234;
    expect(() => evaluateGate(mapOnly, ['cnnf/pgd7@0.2:e2e >= 0'])).toThrow(/metrics\["pgd7@0.2:e2e"\] is 0.14234 but the results it summarises say 0.142/);
  });

  it('a count (warnings) gets no 95% CI, in the message, the report or the table; a bound on it fails closed', () => {
    const w = sampleResults();
    w.checks = [];
    for (const m of w.models) m.metrics.warnings = 0;
    const rep = evaluateGate(w, ['warnings==0', 'clean >= 0.85']);
    expect(rep.checks.map((c) => c.status)).toEqual(['pass', 'pass', 'pass', 'pass']);
    const counts = rep.checks.filter((c) => c.metric === 'warnings');
    expect(counts).toHaveLength(2);
    for (const c of counts) {
      expect(c).toMatchObject({ actual: 0, interval: null });
      expect(c.message).toBe('warnings = 0 satisfies == 0');
    }
    // accuracies keep theirs
    expect(rep.checks.find((c) => c.metric === 'clean')!.interval).not.toBeNull();
    const table = gateTable(evaluateGate(w, ['warnings==0']));
    expect(table).toMatch(/warnings==0 .*cnn .*0 .*PASS/);
    expect(table).not.toContain('95% CI');
    expect(table).not.toContain('Wilson');
    expect(evaluateGate(w, ['warnings.upper <= 0']).checks[0]).toMatchObject({ status: 'missing', message: expect.stringMatching(/it is a count, not an accuracy or rate/) });
  });

  it('prints a table with requirement, model, actual and verdict', () => {
    const text = gateTable(evaluateGate(r, ['clean >= 0.9', 'fgsm@0.3:first >= 0']));
    expect(text).toMatch(/Requirement.*Model.*Actual.*Verdict/);
    expect(text).toMatch(/clean >= 0\.9 .*cnn .*0\.912 .*PASS/);
    expect(text).toMatch(/clean >= 0\.9 .*cnnf .*0\.897 .*FAIL/);
    expect(text).toContain('FAIL (missing metric)');
    expect(text).toContain('1/4 checks passed, 1 failed, 2 missing');
    expect(text).not.toContain('\u001b['); // no colour codes
  });
});

describe('gate config and JUnit', () => {
  it('validates gate.json', () => {
    expect(validateGateConfig({ requirements: ['clean >= 0.8'] })).toEqual(['clean >= 0.8']);
    expect(usageError(() => validateGateConfig([], 'g.json')).message).toMatch(/g\.json: must be a JSON object/);
    expect(usageError(() => validateGateConfig({}, 'g.json')).message).toBe('g.json: "requirements" is missing');
    expect(usageError(() => validateGateConfig({ requirements: 'clean >= 1' }, 'g.json')).message).toMatch(/must be an array/);
    expect(usageError(() => validateGateConfig({ requirements: [0.8] }, 'g.json')).message).toBe('g.json: requirements[0] must be a string');
    expect(usageError(() => validateGateConfig({ requirement: [] }, 'g.json')).message).toMatch(/unknown key "requirement"/);
  });

  it('writes well-formed JUnit XML with one testcase per requirement x model', () => {
    const r = sampleResults();
    r.models[0]!.name = 'cnn<&"\'>\u0001';
    const rep = evaluateGate(r, ['clean >= 0.9', 'pgd7@0.2:e2e >= 0.1', 'cnnf/worst@0.1 > 0.3']);
    const xml = gateToJUnit(rep, { resultsPath: 'out/results & more.json' });
    const names = checkXml(xml);
    expect(names.filter((n) => n === 'testcase')).toHaveLength(5);
    expect(names.filter((n) => n === 'failure')).toHaveLength(2);
    expect(xml).toMatch(/<testsuite name="cnnf gate" tests="5" failures="2" errors="0"/);
    expect(xml).toContain('type="missing-metric" message="missing metric pgd7@0.2:e2e"');
    // control characters show as escapes (cleanText, the one sanitiser), so the XML stays well-formed and the name readable
    expect(xml).toContain('classname="cnnf.gate.cnn&lt;&amp;&quot;&apos;&gt;\\x01"');
    expect(xml).toContain('value="out/results &amp; more.json"');
    expect(xml).not.toContain('\u0001');
  });
});

describe('cnnf gate (CLI)', () => {
  let dir: string;
  let results: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cnnf-gate-test-'));
    results = join(dir, 'results.json');
    writeFileSync(results, JSON.stringify(sampleResults()));
    writeFileSync(join(dir, 'gate.json'), JSON.stringify({ requirements: ['clean >= 0.85', 'cnnf/pgd7@0.2:e2e >= 0.1'] }));
    writeFileSync(join(dir, 'bad-gate.json'), JSON.stringify({ requirements: 'clean >= 0.85' }));
    writeFileSync(join(dir, 'notjson.json'), '{ nope');
    writeFileSync(join(dir, 'v2.json'), JSON.stringify({ ...sampleResults(), format: 'cnnf-results/2' }));
    const partial = sampleResults() as unknown as { models: Array<Record<string, unknown>> };
    delete partial.models[0]!.metrics;
    writeFileSync(join(dir, 'partial.json'), JSON.stringify(partial));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('exit 0 when all pass, with a table and JUnit', async () => {
    const junit = join(dir, 'pass.xml');
    const r = await cnnf(['gate', results, '--config', join(dir, 'gate.json'), '--require', 'worst@0.1 >= 0.05', '--junit', junit]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/cnnf\/pgd7@0\.2:e2e >= 0\.1 .*cnnf .*0\.142 .*PASS/);
    expect(r.stdout).toContain('5/5 checks passed');
    const lower = await cnnf(['gate', results, '--require', 'cnnf/pgd7@0.2:e2e.lower >= 0.13']);
    expectOneLine(lower, 1, /gate failed: 1 of 1 checks failed/);
    expect(lower.stdout).toMatch(/0\.121734 \(lower\)/);
    const names = checkXml(readFileSync(junit, 'utf8'));
    expect(names.filter((n) => n === 'testcase')).toHaveLength(5);
    expect(names).not.toContain('failure');
  });

  it('exit 1 on a failed threshold and on a missing metric; --json and --junit still written', async () => {
    const junit = join(dir, 'fail.xml');
    const [fail, missing, json, badModel] = await Promise.all([
      cnnf(['gate', results, '--require', 'pgd7@0.2:first >= 0.1', '--junit', junit]),
      cnnf(['gate', results, '--require', 'clean >= 0.5', '--require', 'fgsm@0.3:first >= 0.1']),
      cnnf(['gate', results, '--require', 'clean >= 0.9', '--model', 'cnnf', '--json']),
      cnnf(['gate', results, '--require', 'clean >= 0.5', '--model', 'resnet']),
    ]);
    expectOneLine(fail, 1, /gate failed: 1 of 2 checks failed/);
    expect(fail.stdout).toMatch(/pgd7@0\.2:first >= 0\.1 .*cnn .*0\.003 .*FAIL/);
    const names = checkXml(readFileSync(junit, 'utf8'));
    expect(names.filter((n) => n === 'failure')).toHaveLength(1);

    expectOneLine(missing, 1, /gate failed: 2 of 4 checks failed \(2 missing\)/);
    expect(missing.stdout).toContain('missing metric fgsm@0.3:first');

    expectOneLine(json, 1, /gate failed/);
    const rep = JSON.parse(json.stdout) as GateReport;
    expect(rep).toMatchObject({ passed: false, total: 1, failedCount: 1 });
    expect(rep.checks[0]).toMatchObject({ model: 'cnnf', actual: 0.897, status: 'fail' });

    expectOneLine(badModel, 1, /gate failed/);
    expect(badModel.stdout).toContain('missing model resnet');
  });

  it('exit 2 with one stderr line for bad usage', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['gate', results, '--require', 'clean >== 0.5'], /malformed requirement "clean >== 0.5"/],
      [['gate', results, '--require', 'clean'], /no comparison operator/],
      [['gate', results], /no requirements given/],
      [['gate', join(dir, 'missing.json'), '--require', 'clean >= 0'], /results file not found/],
      [['gate', join(dir, 'notjson.json'), '--require', 'clean >= 0'], /not valid JSON/],
      [['gate', join(dir, 'v2.json'), '--require', 'clean >= 0'], /unsupported format "cnnf-results\/2"/],
      [['gate', join(dir, 'partial.json'), '--require', 'clean >= 0'], /models\[0\]\.metrics is missing/],
      [['gate', results, '--config', join(dir, 'bad-gate.json')], /"requirements" must be an array/],
      [['gate', results, '--config', join(dir, 'no-gate.json')], /gate config not found/],
    ];
    const runs = await Promise.all(cases.map(([args]) => cnnf(args)));
    runs.forEach((r, i) => {
      expectOneLine(r, 2, cases[i]![1]);
      expect(r.stdout).toBe('');
    });
    expect(existsSync(join(dir, 'never.xml'))).toBe(false);
  });
});
