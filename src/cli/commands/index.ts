/**
 * Every cnnf command, one module per command. A command's module (and whatever it imports: tfjs,
 * vega, sharp...) is loaded only when that command runs, so `cnnf --help` and `cnnf --version` start
 * in a fraction of a second; the top-level help lists each command with the description below, which
 * must equal the one its module registers (test/package.test.ts checks).
 */
import type { Command } from 'commander';

export type Register = (program: Command) => void;

export interface CommandEntry {
  name: string;
  description: string;
  load: () => Promise<{ register: Register }>;
}

export const COMMANDS: CommandEntry[] = [
  {
    name: 'backends',
    description: 'list the compute backends (tensorflow-gpu, tensorflow, webgpu, wasm, cpu): available or not, why not, which adapter; and what --backend auto picks',
    load: () => import('./backends.js'),
  },
  { name: 'data', description: 'inspect the datasets cnnf trains and evaluates on', load: () => import('./data.js') },
  {
    name: 'report',
    description: 'write a self-contained HTML report (DIR/index.html) and a Markdown report (DIR/report.md) from a results file',
    load: () => import('./report.js'),
  },
  {
    name: 'gate',
    description: 'check robustness requirements against a results file; exit 0 = all pass, 1 = any fail or missing metric, 2 = bad usage',
    load: () => import('./gate.js'),
  },
  {
    name: 'conformance',
    description: 'recompute every tensor of reference fixtures (eval, grad, attack, train) and report relative errors',
    load: () => import('./conformance.js'),
  },
  {
    name: 'import',
    description: 'convert reference PyTorch weights (NCHW, OIHW, [out,in], C-H-W flatten) into a cnnf checkpoint',
    load: () => import('./import.js'),
  },
  {
    name: 'export',
    description: 'write a cnnf checkpoint\'s weights in the reference PyTorch names and layouts (inverse of cnnf import), a plain CNN as a TF.js LayersModel folder, or a CNN or CNN-F (cycles unrolled) as one ONNX graph',
    load: () => import('./export.js'),
  },
  {
    name: 'train',
    description: 'train a CNN or CNN-F (SGD momentum 0.9, weight decay 5e-4, poly lr, grad clip 0.5) with per-epoch checkpoints and exact resume',
    load: () => import('./train.js'),
  },
  {
    name: 'grid',
    description: 'train one CNN-F per (cycles, res_param) pair into OUT/r<R>_c<C>; print clean and Gaussian-noisy test accuracy; write grid.json and grid.csv',
    load: () => import('./grid.js'),
  },
  {
    name: 'eval',
    description: 'evaluate checkpoints against an attack suite: accuracy-vs-epsilon tables on stdout, results JSON for report/gate',
    load: () => import('./eval.js'),
  },
  {
    name: 'merge',
    description: 'merge the shard files of one `cnnf eval --shard K/N` run into its results file (refuses missing, repeated or foreign shards)',
    load: () => import('./merge.js'),
  },
  {
    name: 'attack',
    description: 'attack one checkpoint at one or more epsilons and print its accuracy (and targeted success rate) per epsilon',
    load: () => import('./attack.js'),
  },
  {
    name: 'demo',
    description:
      'the main job: evaluate a CNN and a CNN-F trained the same way (adversarially) with attacks/main.json and write an HTML report',
    load: () => import('./demo.js'),
  },
];

/** The command argv asks for ("help X" asks for X), if it names one. */
export function requestedCommand(argv: string[]): CommandEntry | undefined {
  const args = argv.slice(2);
  const i = args.findIndex((a) => !a.startsWith('-'));
  if (i < 0) return undefined;
  const name = args[i] === 'help' && args[i + 1] !== undefined ? args[i + 1] : args[i];
  return COMMANDS.find((c) => c.name === name);
}
