/**
 * Attack flags derived from the attack registry: one flag per attack parameter (its type, bounds and
 * default come from the descriptor), shared by `cnnf attack` and `cnnf eval --attacks`. A flag given
 * for an attack that does not take it is a one-line UsageError.
 */
import { Option, type Command } from 'commander';
import { UsageError } from '../errors.js';
import { allAttacks, flagName, getAttack, hasAttack, NORMS, paramIndex, parseParamFlag } from '../attacks/index.js';

/** Adds --norm, --loss, --steps, ... (every registry parameter) to a command. */
export function addAttackParamOptions(cmd: Command): Command {
  cmd.addOption(new Option('--norm <n>', 'norm of the eps-ball (default: the attack\'s first, linf)').choices([...NORMS]));
  for (const [key, { spec, methods }] of paramIndex()) {
    const flag = flagName(key);
    const dflt = spec.default !== undefined ? ` (default ${String(spec.default)})` : '';
    const bounds = spec.min !== undefined || spec.max !== undefined ? ` [${spec.min ?? ''}..${spec.max ?? ''}]` : '';
    const desc = `${methods.join('/')}: ${spec.description}${bounds}${dflt}`;
    if (spec.type === 'boolean') {
      cmd.option(flag, desc);
      cmd.option(`--no-${flag.slice(2)}`, `${methods.join('/')}: the opposite of ${flag}`);
    } else if (spec.type === 'enum') {
      cmd.addOption(new Option(`${flag} <v>`, desc).choices([...spec.values!]));
    } else {
      cmd.option(`${flag} <v>`, desc);
    }
  }
  return cmd;
}

/** The registry's methods with a one-line summary each, for --help. */
export function attackHelp(): string {
  return `\nAttacks (--method / --attacks):\n${allAttacks().map((d) => `  ${d.method.padEnd(10)} ${d.summary}`).join('\n')}\n`;
}

/**
 * The attack-specific fields of a suite entry for `method`, from flags. Flags the method does not
 * take are refused when `strict` (cnnf attack); with several methods (eval --attacks) a flag applies
 * to the methods that take it and must be taken by at least one.
 */
export function attackFieldsFromFlags(methods: string[], flags: Record<string, unknown>): Array<Record<string, unknown>> {
  if (methods.length === 1 && methods[0] === 'transfer') return [transferFieldsFromFlags(flags)];
  const idx = paramIndex();
  const given = [...idx.keys()].filter((k) => flags[k] !== undefined);
  for (const k of given) {
    const takers = idx.get(k)!.methods;
    if (!methods.some((m) => takers.includes(m))) {
      throw new UsageError(`${flagName(k)} applies to ${takers.join(', ')}, not ${methods.join(', ')}`);
    }
  }
  return methods.map((m) => {
    const fields: Record<string, unknown> = {};
    if (flags.norm !== undefined) fields.norm = flags.norm;
    for (const k of given) {
      const { spec, methods: takers } = idx.get(k)!;
      if (!takers.includes(m)) continue;
      const raw = flags[k];
      fields[k] = spec.type === 'boolean' && typeof raw === 'boolean' ? raw : parseParamFlag(spec, String(raw), flagName(k));
    }
    return fields;
  });
}

/** `--method transfer --surrogate CK [--via METHOD] [--surrogate-mode M]`: every other attack flag goes to the inner attack. */
function transferFieldsFromFlags(flags: Record<string, unknown>): Record<string, unknown> {
  const own = Object.keys(getAttack('transfer').params);
  const via = flags.via === undefined ? 'pgd' : String(flags.via);
  if (!hasAttack(via)) throw new UsageError(`--via must be one of ${allAttacks().filter((d) => d.kind === 'gradient').map((d) => d.method).join(', ')}, got ${JSON.stringify(via)}`);
  const rest = Object.fromEntries(Object.entries(flags).filter(([k]) => !own.includes(k)));
  const inner = attackFieldsFromFlags([via], rest)[0];
  delete inner.norm;
  const out: Record<string, unknown> = { via: { method: via, ...inner } };
  if (flags.norm !== undefined) out.norm = flags.norm;
  if (flags.surrogate !== undefined) out.surrogate = String(flags.surrogate);
  if (flags.surrogateMode !== undefined) out.surrogateMode = String(flags.surrogateMode);
  return out;
}
