/** `cnnf merge SHARD.json... -o results.json`: the shard files of one `cnnf eval --shard K/N` run -> its results. */
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('merge')
    .description('merge the shard files of one `cnnf eval --shard K/N` run into its results file (refuses missing, repeated or foreign shards)')
    .argument('<shards...>', 'shard files written by `cnnf eval --shard K/N --json FILE`')
    .option('-o, --out <file>', 'results JSON to write (atomically); the same as an unsharded run\'s, timings aside')
    .option('--quiet', 'do not print the accuracy tables')
    .action(async (shards: string[], flags: Record<string, unknown>) => {
      const { runMergeCommand } = await import('../run.js');
      runMergeCommand(shards, flags);
    });
}
