/** `cnnf import --from pytorch`: reference PyTorch-layout weights -> cnnf checkpoint. */
import type { Command } from 'commander';
import { UsageError } from '../../errors.js';
import { checkArraysReadable, saveArrays } from '../../io/checkpoint.js';
import { checkOutputFile, sameFile } from '../../io/files.js';
import { useBackend } from '../../backend/index.js';
import { fromPyTorch, inferPyTorchWidths, refuseCnnfCheckpoint } from '../../io/pytorch.js';
import { readPyTorchWeights } from '../../io/torch.js';
import { getArch, makeConfig, paramSpecs } from '../../models/arch.js';
import { parseChoice, parseInteger, parseNumber } from '../options.js';
import { FASHION_MNIST_CLASS_NAMES } from '../../data/index.js';

interface ImportFlags {
  from: string;
  arch: string;
  ind?: string;
  cycles?: string;
  resParam?: string;
  readout: string;
  prefix: string;
  dataset: string;
  f16?: boolean;
  out: string;
}

export function register(program: Command): void {
  program
    .command('import')
    .description('convert reference PyTorch weights (NCHW, OIHW, [out,in], C-H-W flatten) into a cnnf checkpoint')
    .argument('<input>', 'torch.save checkpoint (.pt/.pth, zip format; read with a restricted unpickler) or safetensors file, with reference names (conv1.conv.weight, ins1_bias.bias, fc1.weight, fc1_bias.bias, ...)')
    .requiredOption('--from <format>', 'source format (pytorch)')
    .option('--arch <name>', 'architecture: fmnist | small', 'fmnist')
    .option('--ind <level>', 'feedback level 0|1|2 (default: 2 when cycles > 0, else 0)')
    .option('--cycles <n>', 'feedback cycles used at inference (0 = plain CNN)', '0')
    .option('--res-param <r>', 'residual parameter in [0,1]', '0.1')
    .option('--readout <r>', 'default readout: last | average', 'last')
    .option('--prefix <p>', 'tensor name prefix in the input (e.g. "param.")', '')
    .option('--dataset <name>', 'dataset the weights were trained on (recorded in the checkpoint)', 'fashion-mnist')
    .option('--f16', 'store weights as float16 (half the size)')
    .requiredOption('-o, --out <file>', 'output checkpoint (.safetensors)')
    .action(async (input: string, f: ImportFlags) => {
      parseChoice('--from', f.from, ['pytorch'] as const);
      checkOutputFile(f.out, '-o'); // before reading anything
      if (sameFile(input, f.out)) throw new UsageError(`-o ${f.out} is the input ${input}; give another output file`);
      const readout = parseChoice('--readout', f.readout, ['last', 'average'] as const);
      const cycles = parseInteger('--cycles', f.cycles ?? '0', 0, 100);
      const ind = f.ind !== undefined ? parseInteger('--ind', f.ind, 0, 2) : cycles > 0 ? 2 : 0;
      const resParam = parseNumber('--res-param', f.resParam ?? '0.1', { min: 0, max: 1 });
      const file = await readPyTorchWeights(input);
      refuseCnnfCheckpoint(file, input);
      const widths = inferPyTorchWidths(file.tensors, getArch(f.arch).name, f.prefix, input);
      const config = makeConfig({ arch: f.arch, fc: widths.fc, numClasses: widths.numClasses, ind, cycles, resParam });
      const arrays = fromPyTorch(file.tensors, config, input, f.prefix);
      const expected = new Set(paramSpecs(config).map((p) => f.prefix + p.name));
      const extra = [...file.tensors.keys()].filter((k) => !expected.has(k) && k.startsWith(f.prefix));
      if (extra.length > 0 && f.prefix === '') throw new UsageError(`${input}: unexpected tensor ${extra[0]} for arch ${config.arch}`);
      const shaped = new Map(paramSpecs(config).map((p) => [p.name, { shape: p.shape, data: arrays.get(p.name)! }]));
      const classNames = f.dataset === 'fashion-mnist' && config.numClasses === 10 ? [...FASHION_MNIST_CLASS_NAMES] : undefined;
      const opts = {
        readout,
        dataset: f.dataset,
        classNames,
        source: `imported from PyTorch ${file.format === 'torch.save' ? 'checkpoint' : 'weights'} ${input.split('/').pop()}`,
        training: file.metadata && Object.keys(file.metadata).length > 0 ? { pytorchMetadata: file.metadata } : {},
        dtype: f.f16 ? 'F16' as const : 'F32' as const,
      };
      // never write a checkpoint that cnnf would refuse to read (float16 overflow, non-finite outputs)
      await useBackend(process.env.CNNF_BACKEND ?? 'auto', { quiet: true });
      await checkArraysReadable(input, config, shaped, opts);
      saveArrays(f.out, config, shaped, opts);
      process.stdout.write(`wrote ${f.out} (${config.arch}, fc ${config.fc.join(',')}, ${config.numClasses} classes, ind ${config.ind}, cycles ${config.cycles}, res_param ${config.resParam})\n`);
    });
}
