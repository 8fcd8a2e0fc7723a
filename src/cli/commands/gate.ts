/** `cnnf gate RESULTS.json --require "EXPR" ... [--config gate.json] [--model NAME] [--junit out.xml] [--json]`. */
import type { Command } from 'commander';
import { UsageError } from '../../errors.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

export function register(program: Command): void {
  program
    .command('gate')
    .description('check robustness requirements against a results file; exit 0 = all pass, 1 = any fail or missing metric, 2 = bad usage')
    .argument('<results>', 'results JSON written by `cnnf eval`')
    .option('--require <expr>', 'requirement "[MODEL/]METRIC OP NUMBER", OP one of >= > <= < == (repeatable), e.g. "cnnf/pgd7@0.2:e2e >= 0.5"; METRIC.lower / METRIC.upper compare an end of its 95% Wilson interval, e.g. "pgd7@0.2:e2e.lower >= 0.7"', collect, [])
    .option('--config <file>', 'JSON file {"requirements": ["..."]}')
    .option('--model <name>', 'check requirements without a MODEL/ prefix only against this model (default: every model)')
    .option('--junit <file>', 'also write JUnit XML (one testcase per requirement x model)')
    .option('--json', 'print the gate report as JSON instead of a table')
    .action(async (resultsPath: string, opts: { require: string[]; config?: string; model?: string; junit?: string; json?: boolean }) => {
      const { readGateConfig } = await import('../../gate/config.js');
      const { parseRequirement, evaluateGate } = await import('../../gate/gate.js');
      const texts = [...(opts.config ? readGateConfig(opts.config) : []), ...opts.require];
      if (texts.length === 0) throw new UsageError('no requirements given (use --require "METRIC OP NUMBER" or --config gate.json)');
      const requirements = texts.map((t) => parseRequirement(t));
      if (opts.model !== undefined && opts.model.trim() === '') throw new UsageError('--model must not be empty');
      if (opts.junit !== undefined && opts.junit.trim() === '') throw new UsageError('--junit must not be empty');
      if (opts.junit !== undefined) (await import('../../io/files.js')).checkOutputFile(opts.junit, '--junit');

      const { readResultsFile } = await import('../../report/results-file.js');
      const results = readResultsFile(resultsPath);
      const report = evaluateGate(results, requirements, { model: opts.model });

      if (opts.junit) {
        const [{ gateToJUnit }, { writeFileAtomic }] = await Promise.all([import('../../gate/junit.js'), import('../../io/atomic.js')]);
        writeFileAtomic(opts.junit, gateToJUnit(report, { resultsPath }));
      }
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      } else {
        const { gateTable } = await import('../../gate/table.js');
        process.stdout.write(gateTable(report));
      }
      if (!report.passed) {
        const bad = report.failedCount + report.missingCount;
        throw new UsageError(`gate failed: ${bad} of ${report.total} checks failed${report.missingCount ? ` (${report.missingCount} missing)` : ''}`, 1);
      }
    });
}
