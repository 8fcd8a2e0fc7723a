/**
 * `cnnf export --to pytorch`: cnnf checkpoint -> reference PyTorch names and layouts (safetensors or .pt).
 * `cnnf export --to tfjs`: plain CNN checkpoint -> TF.js LayersModel directory (stock layers only).
 * `cnnf export --to onnx`: CNN or CNN-F checkpoint -> one static ONNX graph, feedback cycles unrolled.
 */
import type { Command } from 'commander';
import { useBackend } from '../../backend/index.js';
import { addBackendOption } from '../common.js';
import { exportPyTorch } from '../../io/export.js';
import { exportTfjs } from '../../io/export-tfjs.js';
import { exportOnnx, ONNX_EXPORT_OPSET, ONNX_MAX_CYCLES } from '../../io/export-onnx.js';
import { parseChoice, parseInteger } from '../options.js';
import { UsageError } from '../../errors.js';
import { sameFile } from '../../io/files.js';

interface ExportFlags {
  to: string;
  backend: string;
  format?: string;
  prefix: string;
  out: string;
  force?: boolean;
  cycles?: string;
  readout?: string;
}

export function register(program: Command): void {
  const cmd = program
    .command('export')
    .description('write a cnnf checkpoint\'s weights in the reference PyTorch names and layouts (inverse of cnnf import), a plain CNN as a TF.js LayersModel folder, or a CNN or CNN-F (cycles unrolled) as one ONNX graph')
    .argument('<checkpoint>', 'cnnf checkpoint (.safetensors)')
    .requiredOption('--to <format>', 'target framework: pytorch | tfjs (plain CNNs: a LayersModel folder with model.json, weight shard and model.cnnf.json) | onnx (CNN or CNN-F: one .onnx file, NCHW input in [-1, 1], feedback cycles unrolled)')
    .option('--format <f>', 'file format: safetensors | pt (torch.save zip, torch.load(weights_only=True) reads it); default from the -o extension')
    .option('--prefix <p>', 'prepended to every tensor name (e.g. "module.")', '')
    .requiredOption('-o, --out <file>', 'output file (.safetensors, or .pt/.pth); with --to tfjs an output folder')
    .option('--force', 'with --to tfjs: allow a non-empty output folder (replaces the model files in it)')
    .option('--cycles <n>', `with --to onnx: feedback cycles to unroll, 0..${ONNX_MAX_CYCLES} (default: the checkpoint's; 0 = the feedforward pass)`)
    .option('--readout <r>', 'with --to onnx: last | average over the cycles + 1 passes (default: the checkpoint\'s)');
  addBackendOption(cmd).action(async (ckpt: string, f: ExportFlags) => {
      const to = parseChoice('--to', f.to, ['pytorch', 'tfjs', 'onnx'] as const);
      if (to === 'onnx') {
        if (f.format !== undefined || f.prefix !== '' || f.force) throw new UsageError('--format, --prefix and --force do not apply to --to onnx');
        const cycles = f.cycles === undefined ? undefined : parseInteger('--cycles', f.cycles, 0, ONNX_MAX_CYCLES);
        const readout = f.readout === undefined ? undefined : parseChoice('--readout', f.readout, ['last', 'average'] as const);
        await useBackend(f.backend, { quiet: true });
        const r = await exportOnnx(ckpt, f.out, { cycles, readout });
        const c = r.config;
        const what = r.cycles === 0 ? 'feedforward pass' : `${r.cycles} feedback cycle${r.cycles === 1 ? '' : 's'} unrolled (ind ${c.ind}, res_param ${c.resParam}), readout ${r.readout}`;
        process.stdout.write(`wrote ${f.out} (ONNX opset ${ONNX_EXPORT_OPSET}, ${r.nodes} nodes, ${r.bytes} bytes; ${c.arch}, fc ${c.fc.join(',')}, ${c.numClasses} classes; ${what}; input NCHW in [-1,1], recorded in its metadata for cnnf eval)\n`);
        return;
      }
      if (f.cycles !== undefined || f.readout !== undefined) throw new UsageError('--cycles and --readout apply to --to onnx only');
      if (to === 'tfjs') {
        if (f.format !== undefined || f.prefix !== '') throw new UsageError('--format and --prefix apply to --to pytorch only');
        await useBackend(f.backend, { quiet: true });
        const r = await exportTfjs(ckpt, f.out, { force: Boolean(f.force) });
        const c = r.config;
        process.stdout.write(`wrote ${f.out}/model.json (TF.js LayersModel, ${r.layers} stock layers, ${r.weightBytes} weight bytes; ${c.arch}, fc ${c.fc.join(',')}, ${c.numClasses} classes; input [-1,1] NHWC in model.cnnf.json)\n`);
        return;
      }
      if (f.force) throw new UsageError('--force applies to --to tfjs only');
      if (sameFile(ckpt, f.out)) throw new UsageError(`-o ${f.out} is the input ${ckpt}; give another output file`);
      const format = f.format === undefined ? undefined : parseChoice('--format', f.format, ['safetensors', 'pt'] as const);
      await useBackend(f.backend, { quiet: true }); // only holds the weights while they are read
      const r = await exportPyTorch(ckpt, f.out, { format, prefix: f.prefix });
      const c = r.config;
      process.stdout.write(`wrote ${f.out} (${r.format === 'pt' ? 'torch.save checkpoint' : 'safetensors'}, ${r.tensors} tensors in PyTorch layout; ${c.arch}, fc ${c.fc.join(',')}, ${c.numClasses} classes, ind ${c.ind}, cycles ${c.cycles}, res_param ${c.resParam})\n`);
    });
}
