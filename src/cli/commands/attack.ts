/**
 * `cnnf attack --model CKPT --method METHOD --eps E[,E2...] [--norm --loss --steps ... (every registry parameter)
 *  --target K|next|random --mode first|e2e --cycles N --readout last|average] [--dataset ... --test-subset ...]
 *  [--dump DIR --dump-count K] [--json]`: one attack on one model, accuracy (and targeted success) per epsilon.
 */
import { Option, type Command } from 'commander';
import { attackMethods } from '../../attacks/index.js';
import { addAdapterOptions } from '../adapter-flags.js';
import { addAttackParamOptions, attackHelp } from '../attack-flags.js';
import { addBackendOption, addSeedOption, addWorkersOption } from '../common.js';
import { addDatasetOptions } from './data.js';
import { addEvalRunOptions } from './eval.js';

export function register(program: Command): void {
  const cmd = program
    .command('attack')
    .description('attack one checkpoint at one or more epsilons and print its accuracy (and targeted success rate) per epsilon');
  cmd
    .requiredOption('--model <path>', 'cnnf checkpoint or TF.js model (DIR/model.json, detected by content) to attack')
    .addOption(new Option('--method <m>', 'attack (see the list below)').choices(attackMethods()).makeOptionMandatory())
    .requiredOption('--eps <list>', 'comma-separated epsilons (radius in [-1, 1] input units; gaussian: sigma)')
    .option('--target <t>', 'targeted attack: a class index, next ((y+1) mod K) or random')
    .addOption(new Option('--mode <m>', 'gradient path: first pass only or end to end through the feedback cycles').choices(['first', 'e2e']).default('first'))
    .option('--json', 'print the results JSON (cnnf-results/1) on stdout instead of a table');
  addAttackParamOptions(cmd);
  cmd.addHelpText('after', attackHelp());
  addEvalRunOptions(cmd);
  addAdapterOptions(cmd);
  addDatasetOptions(cmd);
  addSeedOption(cmd);
  addWorkersOption(cmd);
  addBackendOption(cmd);
  cmd.action(async (flags: Record<string, unknown>) => {
    const { runAttackCommand } = await import('../run.js');
    await runAttackCommand(flags);
  });
}
