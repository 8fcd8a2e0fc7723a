/** cnnf command-line entry: builds the commander program, maps UsageError to one line + exit 2. */
import { cleanText } from '../format.js';
import { Command, CommanderError } from 'commander';
import { UsageError } from '../errors.js';
import { VERSION } from '../version.js';
import { COMMANDS, requestedCommand } from './commands/index.js';

/**
 * The commander program for `argv`: the command it runs is registered in full (its module loaded),
 * every other one by name and description only (enough for the top-level help). `argv` undefined
 * registers every command in full.
 */
export async function buildProgram(argv?: string[]): Promise<Command> {
  const program = new Command();
  program
    .name('cnnf')
    .description('Adversarial robustness of CNNs with and without recurrent generative feedback (CNN-F)')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  const wanted = argv === undefined ? undefined : requestedCommand(argv);
  for (const c of COMMANDS) {
    if (argv === undefined || c === wanted) (await c.load()).register(program);
    else program.command(c.name).description(c.description);
  }
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and version exit 0; commander already printed the message for usage errors
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return 2;
    }
    if (e instanceof UsageError) {
      // one line, whatever a file put into the message (escape sequences, carriage returns, bidi overrides)
      process.stderr.write(`cnnf: ${cleanText(e.message.split('\n')[0])}\n`);
      return e.exitCode;
    }
    throw e;
  }
}
