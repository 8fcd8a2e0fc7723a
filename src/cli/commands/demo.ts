/**
 * `cnnf demo` (what `npm start` runs): evaluates a CNN and a CNN-F trained the same way (the
 * reference pair, both adversarially trained with the paper's PGD recipe by the reference PyTorch
 * code), so the difference between them is the feedback; prints the accuracy-vs-epsilon tables with
 * each model's training recipe and writes the HTML report into ./cnnf-report/. It calls the library
 * (loadCheckpoint, loadDataset, evaluate, writeReport) directly.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { assetRoot } from '../../assets.js';
import { UsageError } from '../../errors.js';
import { checkOutputDir } from '../../io/files.js';
import { addBackendOption, addSeedOption, addWorkersOption } from '../common.js';

const ROOT = assetRoot();

/** The shipped pair the main job compares: [path, display name]. Both adversarially trained (model cards models/*.md). */
export const DEMO_MODELS: Array<[string, string]> = [
  ['models/reference-cnn-adv.safetensors', 'CNN (adv)'],
  ['models/reference-cnnf-adv.safetensors', 'CNN-F (adv)'],
];

const collect = (value: string, previous: string[]): string[] => [...previous, value];

export function register(program: Command): void {
  const cmd = program
    .command('demo')
    .description('the main job: evaluate a CNN and a CNN-F trained the same way (adversarially) with attacks/main.json and write an HTML report')
    .option('--model <path>', 'checkpoint to evaluate instead of the shipped pair (repeatable)', collect, [])
    .option('--suite <file>', 'attack suite (a bundled name or a JSON file)', 'main')
    .option('--test-subset <spec>', "test images to use (default: the suite's)")
    .option('--out <dir>', 'report directory', 'cnnf-report');
  addSeedOption(cmd);
  addWorkersOption(cmd);
  addBackendOption(cmd).action(async (flags: { model: string[]; suite: string; testSubset?: string; out: string; seed: string; backend: string; workers: string }) => {
    const custom = flags.model.length > 0;
    const models = custom ? flags.model : DEMO_MODELS.map(([p]) => join(ROOT, p));
    for (const m of models) if (m.trim() === '' || !existsSync(m)) throw new UsageError(`model not found: ${m}`);
    const names = custom ? undefined : DEMO_MODELS.map(([, name]) => name);
    const { runDemo } = await import('../run.js');
    const report = await runDemo({ models, names, suite: flags.suite, testSubset: flags.testSubset, out: checkOutputDir(flags.out, '--out'), seed: flags.seed, backend: flags.backend, workers: flags.workers });
    process.stdout.write(`\nreport: ${report}\n`);
  });
}
