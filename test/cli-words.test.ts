/**
 * What the CLI says (issue 19, item 7): epsilons as numbers or fractions (8/255), a bad list says what
 * is expected; an unknown option or command gets a "did you mean", still in one line with exit 2;
 * clean accuracy is called the highest clean accuracy, not robustness; several gradient paths: the
 * lower accuracy counts, in the CLI and in the report alike.
 */
import { describe, expect, it } from 'vitest';
import { numberOrFraction, parseFractionList } from '../src/cli/options.js';
import { oneLineCommanderError } from '../src/cli/main.js';
import { resultTables } from '../src/cli/run.js';
import { renderReport } from '../src/report/index.js';
import { cnnf, cnnfInProcess, expectUsageError, inParallel, oneLine, referenceModel } from './helpers/cli.js';
import { sampleResults } from './helpers/results-sample.js';

describe('--eps: numbers or fractions, comma-separated', () => {
  it('parses decimals, exponents and fractions', () => {
    expect(parseFractionList('--eps', '0.1,0.2')).toEqual([0.1, 0.2]);
    expect(parseFractionList('--eps', '8/255')).toEqual([8 / 255]);
    expect(parseFractionList('--eps', ' 8/255 , 16 / 255,3e-2,.5, ')).toEqual([8 / 255, 16 / 255, 0.03, 0.5]);
    expect(numberOrFraction('-1/2')).toBe(-0.5);
    expect(numberOrFraction('0.5/0.25')).toBe(2);
    for (const bad of ['', 'abc', '1/0', '1/', '/2', '1/2/3', '8/255x', '0x10', 'Infinity', '1e999', 'NaN']) expect(numberOrFraction(bad), bad).toBeNull();
  });

  it('refuses anything else with one line saying a comma-separated list of numbers or fractions is expected', () => {
    for (const [raw, detail] of [['0.1;0.2', '"0.1;0.2"'], ['8/255;16/255', ''], ['0.1 0.2', ''], ['abc', ''], ['', ''], [',', ''], ['0.1,eps', '("eps" is neither)'], ['1/0', '']]) {
      const e = expectUsageError(() => parseFractionList('--eps', raw));
      expect(e.message, raw).toMatch(/^--eps expects a comma-separated list of numbers or fractions \(e\.g\. 0\.1,0\.2 or 8\/255,16\/255\), got /);
      expect(e.message, raw).toContain(JSON.stringify(raw));
      if (detail) expect(e.message, raw).toContain(detail);
    }
  });
});

describe('commander errors: one line, with a suggestion', () => {
  it('folds the "(Did you mean ...?)" line and the help hint into the first line', () => {
    expect(oneLineCommanderError("error: unknown option '--epoch'\n(Did you mean --epochs?)\n")).toBe("cnnf: unknown option '--epoch'; did you mean --epochs? (run with --help for usage)\n");
    expect(oneLineCommanderError("error: unknown command 'trian'\n(Did you mean one of train, grid?)\n")).toBe("cnnf: unknown command 'trian'; did you mean one of train, grid? (run with --help for usage)\n");
    expect(oneLineCommanderError("error: missing required argument 'results'\n")).toBe("cnnf: missing required argument 'results' (run with --help for usage)\n");
    expect(oneLineCommanderError("error: unknown option '--x\u001b[2J\u009b'\n")).toBe("cnnf: unknown option '--x?[2J?' (run with --help for usage)\n");
  });

  it('every command suggests the option meant, in one stderr line with exit 2; an 8/255 eps runs', async () => {
    const model = referenceModel('cnn-adv');
    const cases: Array<[string[], RegExp]> = [
      // (commander reports a missing mandatory option first, so the required ones are given)
      [['attack', '--model', model, '--method', 'fgsm', '--eps', '0.1', '--mdoe', 'e2e'], /^cnnf: unknown option '--mdoe'; did you mean --mode\? \(run with --help for usage\)$/],
      [['eval', '--mdoel', model], /unknown option '--mdoel'; did you mean --model\?/],
      [['train', '--epoch', '2'], /unknown option '--epoch'; did you mean --epochs\?/],
      [['grid', '--cycles', '1', '--res-param', '0.1', '--out', 'g', '--shedule', 'poly'], /unknown option '--shedule'; did you mean --schedule\?/],
      [['gate', 'r.json', '--requier', 'clean>=0'], /unknown option '--requier'; did you mean --require\?/],
      [['report', 'r.json', '--outt', 'x'], /unknown option '--outt'; did you mean --out\?/],
      [['trian'], /^cnnf: unknown command 'trian'; did you mean train\?/],
      [['attack', '--model', model, '--method', 'fgsm', '--eps', '0.1;0.2'], /--eps expects a comma-separated list of numbers or fractions .*got "0\.1;0\.2"/],
      [['eval', '--model', model, '--attacks', 'fgsm', '--eps', '8/255;16/255'], /--eps expects a comma-separated list of numbers or fractions/],
    ];
    // two through the real launcher (an unknown option, an unknown command), the rest through the CLI's main in
    // this process (the same commander set-up without ~2 s of start-up each)
    const runs = await inParallel(cases.map(([args], i) => () => ([0, 6].includes(i) ? cnnf : cnnfInProcess)(args)));
    runs.forEach((r, i) => {
      expect.soft(oneLine(r), cases[i][0].join(' ')).toMatch(cases[i][1]);
      expect.soft(r.stdout).toBe('');
    });
    const r = await cnnf(['attack', '--model', model, '--method', 'fgsm', '--eps', '0,8/255', '--test-subset', 'first:8', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as { models: Array<{ attacks: Array<{ points: Array<{ eps: number }> }> }> };
    expect(res.models[0].attacks[0].points.map((p) => p.eps)).toEqual([0, 8 / 255]);
  });
});

describe('words of the comparison', () => {
  it('the CLI calls the clean row the highest clean accuracy and says the lower accuracy counts', () => {
    const text = resultTables(sampleResults());
    expect(text).toContain('several gradient paths: the lower accuracy counts');
    expect(text).toMatch(/^ {2}highest clean accuracy: /m);
    expect(text).toMatch(/^ {2}most robust at worst@0\.2: /m);
    expect(text).not.toMatch(/^ {2}clean: /m);
    expect(text).not.toMatch(/weakest|strongest/);
  });

  it('the report says the same', async () => {
    const { markdown } = await renderReport(sampleResults(), { title: 'words' });
    expect(markdown).toContain('the lower accuracy counts');
    expect(markdown).toContain('on clean images the highest clean accuracy (not robustness)');
    expect(markdown).toMatch(/\| Attack \| ε \/ σ \| Best \(paired test\) \|/);
    expect(markdown).not.toMatch(/strongest path counts/);
  });
});
