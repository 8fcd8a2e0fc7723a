/**
 * `cnnf eval --model A --model B [--name A=label] [--suite attacks/NAME.json | --attacks fgsm,pgd --eps 0.1,0.2]
 *  [--test-subset stride:K] [--cycles N --readout last|average] [--dump DIR] --json results.json`.
 */
import { Option, type Command } from 'commander';
import { addAdapterOptions } from '../adapter-flags.js';
import { addAttackParamOptions, attackHelp } from '../attack-flags.js';
import { addBackendOption, addSeedOption, addWorkersOption } from '../common.js';
import { addDatasetOptions } from './data.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Flags shared by `cnnf eval` and `cnnf attack`: victim settings, batch size, dumps. */
export function addEvalRunOptions(cmd: Command): Command {
  return cmd
    .option('--cycles <n>', 'feedback cycles for CNN-F models (default: each checkpoint\'s own; plain CNNs always run 0)')
    .addOption(new Option('--readout <r>', 'readout for prediction (default: each checkpoint\'s own)').choices(['last', 'average']))
    .option('--batch-size <n>', 'examples per batch (default: the largest, up to the suite\'s batchSize or else 100, that fits --memory-budget; a resumed --state run keeps its own)')
    .option('--memory-budget <size>', 'memory for the whole process, which sets the default batch size and, with --workers auto, how many workers run: 1G, 800M, 2048 (MB)', '1G')
    .option('--dump <dir>', 'write PNGs of attacked examples (clean | perturbed | perturbation | reconstructions) and index.json here')
    .option('--dump-count <k>', 'examples to dump per model x attack x mode', '4')
    .option('--quiet', 'no progress on stderr (as CNNF_PROGRESS=off); errors and the backend line still print')
    .option('--allow-dataset-mismatch', 'evaluate a checkpoint whose metadata records another dataset than --dataset (refused otherwise); the results then carry a dataset-mismatch warning');
}

export function register(program: Command): void {
  const cmd = program
    .command('eval')
    .description('evaluate checkpoints against an attack suite: accuracy-vs-epsilon tables on stdout, results JSON for report/gate');
  cmd
    .option('--model <path>', 'cnnf checkpoint or TF.js model (DIR/model.json, detected by content) to evaluate (repeatable)', collect, [])
    .option('--name <path=label>', 'display name for a model, by its path or default name (repeatable)', collect, [])
    .option('--suite <file>', 'attack suite JSON (attacks/NAME.json; a bare NAME means the bundled attacks/NAME.json)')
    .option('--attacks <list>', 'instead of --suite: comma-separated methods (see the list below), run at --eps')
    .option('--eps <list>', 'with --attacks: comma-separated epsilons (gaussian: sigma), in [-1, 1] input units')
    .option('--modes <list>', 'with --attacks: gradient paths first,e2e', 'first,e2e')
    .option('--json <file>', 'write the results JSON here (atomically); with --shard, the shard file for `cnnf merge`')
    .option('--shard <K/N|auto>', 'run only shard K of N of the work (1 <= K <= N; merge the N shard files with `cnnf merge`); auto: from CNNF_SHARD=K/N, JOB_COMPLETION_INDEX (Kubernetes Indexed Job, with --shard-count) or SLURM_ARRAY_TASK_ID/COUNT')
    .option('--shard-count <n>', 'with --shard auto under a Kubernetes Indexed Job: the number of shards (the Job\'s completions)')
    .option('--state <dir>', 'resumable run: record every finished unit in DIR; the same command run again (after a crash or kill -9) continues where it stopped, with identical results');
  addAttackParamOptions(cmd);
  cmd.addHelpText('after', attackHelp());
  addEvalRunOptions(cmd);
  addAdapterOptions(cmd);
  addDatasetOptions(cmd);
  addSeedOption(cmd);
  addWorkersOption(cmd);
  addBackendOption(cmd);
  cmd.action(async (flags: Record<string, unknown>) => {
    const { runEvalCommand } = await import('../run.js');
    await runEvalCommand(flags);
  });
}
