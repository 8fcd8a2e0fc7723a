/**
 * `cnnf demo` (what `npm start` runs): evaluates the shipped CNN and CNN-F with the bundled main
 * suite, prints the accuracy-vs-epsilon tables and writes the HTML report into ./cnnf-report/.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { UsageError } from '../../errors.js';
import { runEvalCommand } from '../../eval/cli-run.js';
import { checkOutputDir } from '../../io/files.js';
import { addBackendOption, addSeedOption, addWorkersOption } from '../common.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The shipped pair the main job compares: [path, display name, training log]. */
export const DEMO_MODELS: Array<[string, string, string]> = [
  ['models/cnn-fmnist.safetensors', 'CNN', 'models/cnn-fmnist.train-log.csv'],
  ['models/cnnf-fmnist.safetensors', 'CNN-F', 'models/cnnf-fmnist.train-log.csv'],
];

const collect = (value: string, previous: string[]): string[] => [...previous, value];

export function register(program: Command): void {
  const cmd = program
    .command('demo')
    .description('the main job: evaluate the shipped CNN and CNN-F with attacks/main.json and write an HTML report')
    .option('--model <path>', 'checkpoint to evaluate instead of the shipped pair (repeatable)', collect, [])
    .option('--suite <file>', 'attack suite (a bundled name or a JSON file)', 'main')
    .option('--test-subset <spec>', "test images to use (default: the suite's)")
    .option('--out <dir>', 'report directory', 'cnnf-report');
  addSeedOption(cmd);
  addWorkersOption(cmd);
  addBackendOption(cmd).action(async (flags: { model: string[]; suite: string; testSubset?: string; out: string; seed: string; backend: string; workers: string }) => {
    const custom = flags.model.length > 0;
    const models = custom ? flags.model : DEMO_MODELS.map(([p]) => join(ROOT, p));
    for (const m of models) if (!existsSync(m)) throw new UsageError(`model not found: ${m}`);
    const out = checkOutputDir(flags.out, '--out');
    const json = join(out, 'results.json');
    const names = custom ? [] : DEMO_MODELS.map(([p, name]) => `${join(ROOT, p)}=${name}`);
    await runEvalCommand({
      model: models,
      name: names,
      suite: flags.suite,
      testSubset: flags.testSubset,
      json,
      dump: join(out, 'dumps'),
      dumpCount: '3',
      seed: flags.seed,
      backend: flags.backend,
      workers: flags.workers,
      dataset: 'fashion-mnist',
    });
    const { readResultsFile, writeReport } = await import('../../report/index.js');
    const logs = custom ? [] : DEMO_MODELS.map(([, , log]) => join(ROOT, log)).filter((p) => existsSync(p));
    const report = await writeReport(readResultsFile(json), {
      outDir: out,
      resultsPath: json,
      trainingLogs: logs,
      title: 'cnnf: CNN vs CNN-F robustness on Fashion-MNIST',
    });
    process.stdout.write(`\nreport: ${report.indexHtml}\n`);
  });
}
