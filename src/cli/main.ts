/** cnnf command-line entry: builds the commander program, maps UsageError to one line + exit 2. */
import { cleanText } from '../format.js';
import { Command, CommanderError } from 'commander';
import { UsageError } from '../errors.js';
import { VERSION } from '../version.js';
import { COMMANDS, requestedCommand } from './commands/index.js';

/**
 * Commander's error text as the one stderr line every cnnf usage error is: "error: unknown option
 * '--epoch'\n(Did you mean --epochs?)\n" -> "cnnf: unknown option '--epoch'; did you mean --epochs?
 * (run with --help for usage)".
 */
export function oneLineCommanderError(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const first = (lines[0] ?? 'bad usage').replace(/^error: /, '');
  const rest = lines.slice(1).map((l) => {
    const m = /^\(Did you mean (.*)\)$/.exec(l);
    return m ? `; did you mean ${m[1]}` : ` ${l}`;
  }).join('');
  // the message quotes argv (an unknown option as typed): no control characters reach the terminal
  // eslint-disable-next-line no-control-regex
  return `cnnf: ${`${first}${rest}`.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?')} (run with --help for usage)\n`;
}

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
    // every command inherits these (commander copies them into each subcommand at creation): an unknown
    // option or command gets a "did you mean", and every commander error is one line (exit 2)
    .showHelpAfterError(false)
    .showSuggestionAfterError(true)
    .configureOutput({ outputError: (text, write) => write(oneLineCommanderError(text)) })
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
  } finally {
    // webgpu: Dawn's device and GPU object keep the event loop alive until released
    if (backendLoaded()) (await import('../backend/index.js')).releaseBackend();
  }
}

/** Whether a command loaded the backend module (`cnnf --help` and the like never do: no tfjs start-up). */
function backendLoaded(): boolean {
  return (globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu !== undefined;
}
