/** `cnnf train`: trains a CNN or CNN-F (see src/train); also exports the training flags `cnnf grid` shares. */
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import { formatTestSubset, type TestSubset } from '../../data/index.js';
import { UsageError } from '../../errors.js';
import { percent } from '../../format.js';
import { ARCH_NAMES, type ArchName } from '../../models/arch.js';
import {
  DEFAULT_MICRO_BATCH,
  formatPerturbation,
  MODEL_KINDS,
  parsePerturbation,
  perturbationSyntax,
  preflightTraining,
  readTrainState,
  SCHEDULE_NAMES,
  TRAIN_DEFAULTS,
  trainModel,
  type EpochMetrics,
  type ModelKind,
  type TrainHooks,
  type TrainOptions,
} from '../../train/index.js';
import { addBackendOption, addSeedOption, addWorkersOption, initBackend, seedFrom } from '../common.js';
import { createProgress } from '../progress.js';
import { resolveWorkers } from '../../parallel/pool.js';
import { writeLossPng } from '../../report/trainlog.js';
import { parseChoice, parseInteger, parseNumber, parseNumberList } from '../options.js';
import { addDatasetOptions, trainingDatasetFromFlags } from './data.js';

/** Training flags shared by train and grid (model-structure flags are added by each command). */
export function addTrainingOptions(cmd: Command): Command {
  addDatasetOptions(cmd);
  cmd
    .option('--arch <name>', `architecture: ${ARCH_NAMES.join('|')}`, 'fmnist')
    .option('--fc <widths>', 'hidden fc widths, comma-separated (fmnist: 1000,128; small: 128)')
    .option('--epochs <n>', 'training epochs', String(TRAIN_DEFAULTS.epochs))
    .option('--batch-size <n>', 'images per batch (the paper uses 256; 128 halves peak memory on the wasm backend)', String(TRAIN_DEFAULTS.batchSize))
    .option('--micro-batch <n>', `accumulate each batch's gradient over chunks of N images (default ${DEFAULT_MICRO_BATCH}, for any --workers; same update up to float rounding; larger chunks need ~20 MB per image on wasm)`)
    .option('--lr <x>', 'base learning rate', String(TRAIN_DEFAULTS.lr))
    .option('--momentum <x>', 'SGD momentum', String(TRAIN_DEFAULTS.momentum))
    .option('--weight-decay <x>', 'SGD weight decay (added to the gradient, as PyTorch)', String(TRAIN_DEFAULTS.weightDecay))
    .option('--schedule <name>', `learning-rate schedule per batch: ${SCHEDULE_NAMES.join('|')} (poly: lr*(1-step/total)^power)`, TRAIN_DEFAULTS.schedule)
    .option('--power <x>', 'poly schedule exponent', String(TRAIN_DEFAULTS.power))
    .option('--clip <x>', 'gradient-norm clip (total L2 norm over all parameters); "none" disables', String(TRAIN_DEFAULTS.clip))
    .option('--clean-weight <x>', 'weight p_c of the clean cross-entropy in the pair loss', String(TRAIN_DEFAULTS.cleanWeight))
    .option('--recon-weight <x>', 'weight p_m of the reconstruction loss', String(TRAIN_DEFAULTS.reconWeight))
    .option('--perturb <spec>', `perturbed half of the pair loss: ${perturbationSyntax()} (attacks use the current model, first-pass gradients; ` +
      `PGD's STEP and ITERS are its stepSize and steps, bounded as in the attack registry); cnnf default gaussian:0.3, cnn default none (plain cross-entropy)`)
    .option('--eval-sigma <x>', 'sigma of the noisy test accuracy (default: the gaussian perturbation sigma, else 0.3)')
    .option('--ind <n>', 'feedback level: 0 input, 1/2 conv block output (cnn: 0; cnnf: 2, small: 1)')
    .option('--out <dir>', 'output directory (checkpoints, state, log, loss.png, summary.json)')
    .option('--force', 'allow a non-empty --out (replaces earlier outputs)')
    .option('--json', 'print one JSON line per epoch on stdout');
  addWorkersOption(cmd);
  addBackendOption(cmd);
  addSeedOption(cmd, TRAIN_DEFAULTS.seed);
  return cmd;
}

const num = (flag: string, raw: unknown, min?: number) => parseNumber(flag, String(raw), { min });

/** Parses the shared training flags into TrainOptions (model kind and cycles/resParam set by the caller). */
export function trainOptionsFromFlags(flags: Record<string, unknown>, model: ModelKind): TrainOptions {
  const str = (k: string): string | undefined => (flags[k] === undefined ? undefined : String(flags[k]));
  const clipRaw = str('clip') ?? String(TRAIN_DEFAULTS.clip);
  const clip = clipRaw === 'none' ? null : num('--clip', clipRaw, 0);
  if (clip !== null && clip <= 0) throw new UsageError(`--clip must be > 0 or "none", got ${clipRaw}`);
  const lr = num('--lr', str('lr'), 0);
  if (lr <= 0) throw new UsageError(`--lr must be > 0, got ${lr}`);
  const momentum = num('--momentum', str('momentum'), 0);
  if (momentum >= 1) throw new UsageError(`--momentum must be < 1, got ${momentum}`);
  const opts: TrainOptions = {
    model,
    arch: parseChoice('--arch', str('arch') ?? 'fmnist', ARCH_NAMES) as ArchName,
    epochs: parseInteger('--epochs', str('epochs') ?? '', 1, 1_000_000),
    batchSize: parseInteger('--batch-size', str('batchSize') ?? '', 1, 65_536),
    lr,
    momentum,
    weightDecay: num('--weight-decay', str('weightDecay'), 0),
    schedule: parseChoice('--schedule', str('schedule') ?? 'poly', SCHEDULE_NAMES),
    power: num('--power', str('power'), 0),
    clip,
    cleanWeight: num('--clean-weight', str('cleanWeight'), 0),
    reconWeight: num('--recon-weight', str('reconWeight'), 0),
    seed: seedFrom(str('seed') ?? '0'),
    perturb: str('perturb') !== undefined ? parsePerturbation(str('perturb')!) : null,
    dataset: trainingDatasetFromFlags(flags),
  };
  if (str('fc') !== undefined) opts.fc = parseNumberList('--fc', str('fc')!, { integer: true, min: 1, max: 100_000 });
  if (str('microBatch') !== undefined) opts.microBatch = parseInteger('--micro-batch', str('microBatch')!, 1, 65_536);
  if (str('ind') !== undefined) opts.ind = parseInteger('--ind', str('ind')!, 0, 10);
  if (str('evalSigma') !== undefined) opts.evalSigma = num('--eval-sigma', str('evalSigma'), 0);
  return opts;
}

const pct = percent;

export function epochLine(m: EpochMetrics, epochs: number, cnnf: boolean): string {
  const acc = cnnf
    ? `test ${pct(m.testAccuracy)} (first pass ${pct(m.testAccuracyFirst)}), noisy ${pct(m.noisyAccuracy)} (first ${pct(m.noisyAccuracyFirst)})`
    : `test ${pct(m.testAccuracy)}, noisy ${pct(m.noisyAccuracy)}`;
  return `epoch ${m.epoch}/${epochs}: loss ${m.trainLoss.toFixed(4)}, train acc ${pct(m.trainAccuracy)}, ${acc}, ` +
    `${m.trainSeconds.toFixed(1)} s (${Math.round(m.imagesPerSec)} img/s)${m.best ? ', best' : ''}`;
}

/**
 * Progress hooks: batches and each epoch's test evaluation as a bar on a TTY stderr, else as plain
 * lines (a line per stage, at most one per 15 s, with done/total and ETA; see ../progress.ts); one
 * stderr line per finished epoch; --json lines on stdout. Also draws OUT/loss.png after each epoch.
 */
export function progressHooks(json: boolean, prefix = '', label = 'train'): TrainHooks & { stop(): void } {
  const progress = createProgress({ label });
  let epochs = 0;
  let cnnf = false;
  const stop = () => progress.stop();
  return {
    stop,
    // the report layer draws OUT/loss.png after each epoch
    onOutputs: writeLossPng,
    onNotice: (msg) => process.stderr.write(`cnnf: ${prefix}${msg}\n`),
    onStart: (info) => {
      epochs = info.epochs;
      cnnf = info.config.cycles > 0;
      process.stderr.write(
        `cnnf: ${prefix}training ${cnnf ? `CNN-F (${info.config.cycles} cycle(s), ind ${info.config.ind}, res_param ${info.config.resParam})` : 'CNN'} ` +
          `arch ${info.config.arch} fc ${info.config.fc.join(',')} on ${info.dataset} (${info.trainCount} train, ${info.testCount} test), ` +
          `perturb ${formatPerturbation(info.perturb)}${info.perturbDefaulted ? ' (default)' : ''}, epochs ${info.startEpoch}..${info.epochs}, ${info.batchesPerEpoch} batches/epoch\n`,
      );
    },
    onBatch: (b) => {
      progress.update(`${prefix}epoch ${b.epoch}/${epochs} batches`, b.batch, b.batches,
        `loss ${b.loss.toFixed(4)}, acc ${pct(b.runningAccuracy)}, ${Math.round(b.imagesPerSec)} img/s`);
    },
    onEvalProgress: (e) => {
      progress.update(`${prefix}epoch ${e.epoch}/${epochs} evaluation (${e.split} images)`, e.done, e.total);
    },
    onEpoch: (m) => {
      stop();
      process.stderr.write(`cnnf: ${prefix}${epochLine(m, epochs, cnnf)}\n`);
      if (json) process.stdout.write(`${JSON.stringify({ type: 'epoch', ...m })}\n`);
    },
  };
}

/** Keys of TrainOptions that --resume takes from the saved run unless given on the command line. */
const FLAG_OF: Record<string, keyof TrainOptions> = {
  arch: 'arch', fc: 'fc', ind: 'ind', cycles: 'cycles', resParam: 'resParam', epochs: 'epochs', batchSize: 'batchSize', microBatch: 'microBatch', lr: 'lr',
  momentum: 'momentum', weightDecay: 'weightDecay', schedule: 'schedule', power: 'power', clip: 'clip', cleanWeight: 'cleanWeight',
  reconWeight: 'reconWeight', seed: 'seed', perturb: 'perturb', evalSigma: 'evalSigma', model: 'model',
};
const DATASET_FLAGS = ['dataset', 'dataDir', 'trainSize', 'testSize', 'testSubset', 'numClasses'];

export function register(program: Command): void {
  const cmd = program
    .command('train')
    .description('train a CNN or CNN-F (SGD momentum 0.9, weight decay 5e-4, poly lr, grad clip 0.5) with per-epoch checkpoints and exact resume');
  cmd.addOption(new Option('--model <kind>', `model: ${MODEL_KINDS.join('|')} (required unless --resume)`));
  cmd
    .option('--cycles <n>', 'feedback cycles (cnn: 0; cnnf: 1)')
    .option('--res-param <x>', 'residual parameter r in [0, 1] (0.1)');
  addTrainingOptions(cmd);
  cmd
    .option('--resume <dir>', 'continue the run in DIR from its last completed epoch (flags not given are taken from the saved run)')
    .option('--stop-after-epochs <n>', 'stop cleanly after N epochs in this invocation (resume later with --resume)')
    .option('--extend', 'with --resume, allow a --epochs other than the saved run\'s: from the next step the learning rate is that of a run planned ' +
      'for the new number of epochs (poly: lr*(1-step/total)^power over the new total); the completed epochs keep theirs, so the result is not that of a ' +
      'straight run of that length (recorded as "extensions" in state.json and summary.json)')
    .action(async (flags: Record<string, unknown>) => {
      const given = (k: string) => cmd.getOptionValueSource(k) === 'cli' || cmd.getOptionValueSource(k) === 'env';
      const resumeDir = flags.resume === undefined ? undefined : String(flags.resume);
      if (resumeDir !== undefined && resumeDir.trim() === '') throw new UsageError('--resume needs a directory');
      if (resumeDir === undefined && flags.out === undefined) throw new UsageError('--out DIR is required (or --resume DIR)');
      if (flags.extend && resumeDir === undefined) throw new UsageError('--extend continues a saved run: it needs --resume DIR (and --epochs N)');
      if (resumeDir !== undefined && flags.out !== undefined && resolve(String(flags.out)) !== resolve(resumeDir)) {
        throw new UsageError('--out must be the --resume directory (or be left out)');
      }
      const merged: Record<string, unknown> = { ...flags };
      if (resumeDir !== undefined) {
        // flags not given on the command line come from the saved run
        const saved = readTrainState(resumeDir).state.options as unknown as Record<string, unknown>;
        const savedDataset = saved.dataset as Record<string, unknown>;
        for (const [flag, key] of Object.entries(FLAG_OF)) {
          if (given(flag)) continue;
          const v = saved[key];
          if (v === undefined || v === null) {
            merged[flag] = key === 'clip' && v === null ? 'none' : undefined;
            continue;
          }
          if (key === 'perturb') merged[flag] = formatPerturbation(v as never);
          else if (Array.isArray(v)) merged[flag] = v.join(',');
          else merged[flag] = String(v);
        }
        if (!DATASET_FLAGS.some(given)) {
          for (const k of DATASET_FLAGS) {
            const v = savedDataset[k];
            merged[k] = v === undefined || v === null ? undefined : typeof v === 'object' ? formatTestSubset(v as TestSubset) : String(v);
          }
        }
      }
      if (merged.model === undefined) throw new UsageError(`--model ${MODEL_KINDS.join('|')} is required`);
      const model = parseChoice('--model', String(merged.model ?? 'cnnf'), MODEL_KINDS);
      const opts = trainOptionsFromFlags(merged, model);
      if (merged.cycles !== undefined) opts.cycles = parseInteger('--cycles', String(merged.cycles), 0, 100);
      if (merged.resParam !== undefined) opts.resParam = parseNumber('--res-param', String(merged.resParam), { min: 0, max: 1 });
      const stopAfter = flags.stopAfterEpochs === undefined ? undefined : parseInteger('--stop-after-epochs', String(flags.stopAfterEpochs), 1);
      const out = resumeDir ?? String(flags.out);
      const ctl = {
        out, resume: resumeDir !== undefined, extend: Boolean(flags.extend), force: Boolean(flags.force), stopAfterEpochs: stopAfter,
        command: ['cnnf', ...process.argv.slice(2)].join(' '),
      };
      // every input check (and the dataset load) before the backend starts
      const { ds } = preflightTraining(opts, ctl);
      const backend = await initBackend(flags as { backend?: string });
      const workers = resolveWorkers(flags.workers as string | undefined, backend.name, (m) => process.stderr.write(`cnnf: ${m}\n`));
      const hooks = { ...progressHooks(Boolean(flags.json)), dataset: ds };
      try {
        const res = await trainModel(opts, { ...ctl, workers }, hooks);
        res.model.dispose();
        const last = res.history[res.history.length - 1];
        process.stderr.write(
          `cnnf: ${res.finished ? 'finished' : 'stopped'} after epoch ${res.completedEpochs}/${opts.epochs}` +
            `${last ? `: test accuracy ${pct(last.testAccuracy)}` : ''}${res.best ? `, best ${pct(res.best.accuracy)} (epoch ${res.best.epoch})` : ''}; ` +
            `outputs in ${res.out} (${res.wallSeconds.toFixed(1)} s)\n`,
        );
        if (flags.json) process.stdout.write(`${JSON.stringify({ type: 'summary', ...res.summary })}\n`);
      } finally {
        hooks.stop();
      }
    });
}
