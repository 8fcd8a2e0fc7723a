/** `cnnf grid`: trains one CNN-F per (res_param, cycles) pair and tabulates clean and noisy test accuracy. */
import type { Command } from 'commander';
import Table from 'cli-table3';
import { UsageError } from '../../errors.js';
import { percent } from '../../format.js';
import { loadDataset } from '../../data/index.js';
import { checkGrid, gridChanceWarnings, runGrid, type GridResult } from '../../train/index.js';
import { initBackend } from '../common.js';
import { resolveWorkers } from '../../parallel/pool.js';
import { parseNumberList } from '../options.js';
import { addTrainingOptions, progressHooks, trainOptionsFromFlags } from './train.js';

const pct = percent;

/** Rows res_param, columns cycles; each cell "clean / noisy". */
export function gridTable(g: GridResult, metric: 'testAccuracy' | 'noisyAccuracy'): string {
  const table = new Table({
    head: ['res_param \\ cycles', ...g.cycles.map(String)],
    style: { head: [], border: [], compact: true },
    colAligns: ['right', ...g.cycles.map(() => 'right' as const)],
  });
  for (const r of g.resParams) {
    table.push([String(r), ...g.cycles.map((c) => {
      const cell = g.cells.find((x) => x.resParam === r && x.cycles === c);
      return cell ? pct(cell[metric]) : '-';
    })]);
  }
  return table.toString();
}

export function register(program: Command): void {
  const cmd = program
    .command('grid')
    .description('train one CNN-F per (cycles, res_param) pair into OUT/r<R>_c<C>; print clean and Gaussian-noisy test accuracy; write grid.json and grid.csv')
    .requiredOption('--cycles <list>', 'feedback cycles to try, comma-separated (e.g. 1,2,3)')
    .requiredOption('--res-param <list>', 'residual parameters to try, comma-separated in [0, 1] (e.g. 0,0.1,0.3)');
  addTrainingOptions(cmd).action(async (flags: Record<string, unknown>) => {
    const cycles = parseNumberList('--cycles', String(flags.cycles), { integer: true, min: 1, max: 100 });
    const resParams = parseNumberList('--res-param', String(flags.resParam), { min: 0, max: 1 });
    if (flags.out === undefined) throw new UsageError('--out DIR is required');
    const base = trainOptionsFromFlags(flags, 'cnnf');
    const ctl = { out: String(flags.out), force: Boolean(flags.force), command: ['cnnf', ...process.argv.slice(2)].join(' '), workers: 1 };
    checkGrid(base, { cycles, resParams }, ctl);
    const ds = loadDataset(base.dataset);
    const backend = await initBackend(flags as { backend?: string });
    ctl.workers = resolveWorkers(flags.workers as string | undefined, backend.name, (m) => process.stderr.write(`cnnf: ${m}\n`));
    let prefix = '';
    const inner = progressHooks(Boolean(flags.json), '', 'grid');
    const hooks = {
      ...inner,
      dataset: ds,
      onNotice: (m: string) => inner.onNotice?.(`${prefix}${m}`),
      onCell: (c: { resParam: number; cycles: number; index: number; total: number }) => {
        prefix = `[${c.index + 1}/${c.total} res_param ${c.resParam}, cycles ${c.cycles}] `;
        process.stderr.write(`cnnf: grid cell ${prefix}\n`);
      },
      onCellDone: (cell: unknown) => {
        if (flags.json) process.stdout.write(`${JSON.stringify({ type: 'cell', ...(cell as object) })}\n`);
      },
    };
    try {
      const g = await runGrid(base, { cycles, resParams }, ctl, hooks);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ type: 'grid', ...g })}\n`);
      } else {
        process.stdout.write(
          `clean test accuracy (rows res_param, columns cycles)\n${gridTable(g, 'testAccuracy')}\n` +
            `Gaussian-noisy test accuracy, sigma ${g.evalSigma}\n${gridTable(g, 'noisyAccuracy')}\n` +
            `wrote ${String(flags.out)}/grid.json and grid.csv (${g.wallSeconds.toFixed(1)} s)\n`,
        );
      }
      for (const w of gridChanceWarnings(g, ds.numClasses, ds.test.count)) process.stderr.write(`cnnf: warning: ${w}\n`);
    } finally {
      inner.stop();
    }
  });
}
