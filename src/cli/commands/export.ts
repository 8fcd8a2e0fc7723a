/** `cnnf export --to pytorch`: cnnf checkpoint -> reference PyTorch names and layouts (safetensors or .pt). */
import type { Command } from 'commander';
import { useBackend } from '../../backend/index.js';
import { addBackendOption } from '../common.js';
import { exportPyTorch } from '../../io/export.js';
import { parseChoice } from '../options.js';

interface ExportFlags {
  to: string;
  backend: string;
  format?: string;
  prefix: string;
  out: string;
}

export function register(program: Command): void {
  const cmd = program
    .command('export')
    .description('write a cnnf checkpoint\'s weights in the reference PyTorch names and layouts (inverse of cnnf import)')
    .argument('<checkpoint>', 'cnnf checkpoint (.safetensors)')
    .requiredOption('--to <format>', 'target framework (pytorch)')
    .option('--format <f>', 'file format: safetensors | pt (torch.save zip, torch.load(weights_only=True) reads it); default from the -o extension')
    .option('--prefix <p>', 'prepended to every tensor name (e.g. "module.")', '')
    .requiredOption('-o, --out <file>', 'output file (.safetensors, or .pt/.pth)');
  addBackendOption(cmd).action(async (ckpt: string, f: ExportFlags) => {
      parseChoice('--to', f.to, ['pytorch'] as const);
      const format = f.format === undefined ? undefined : parseChoice('--format', f.format, ['safetensors', 'pt'] as const);
      await useBackend(f.backend, { quiet: true }); // only holds the weights while they are read
      const r = await exportPyTorch(ckpt, f.out, { format, prefix: f.prefix });
      const c = r.config;
      process.stdout.write(`wrote ${f.out} (${r.format === 'pt' ? 'torch.save checkpoint' : 'safetensors'}, ${r.tensors} tensors in PyTorch layout; ${c.arch}, fc ${c.fc.join(',')}, ${c.numClasses} classes, ind ${c.ind}, cycles ${c.cycles}, res_param ${c.resParam})\n`);
    });
}
