/** `cnnf conformance FIXTURE...`: recompute every golden tensor of reference fixtures and compare. */
import type { Command } from 'commander';
import { CONFORMANCE_TOLERANCE, FLOAT64_PREFIX, runConformance, type ConformanceReport } from '../../eval/conformance.js';
import { addBackendOption, initBackend } from '../common.js';
import { parseNumber } from '../options.js';
import { makeTable } from '../table.js';
import { checkInputFile, INPUT_LIMITS } from '../../io/files.js';

export function register(program: Command): void {
  const cmd = program
    .command('conformance')
    .description('recompute every tensor of reference fixtures (eval, grad, attack, train) and report relative errors')
    .argument('<fixtures...>', 'safetensors fixture files made by the reference implementation')
    .option('--json', 'print the per-tensor report as JSON')
    .option('--tolerance <rel>', 'maximum relative error (max |diff| / max |reference|)', String(CONFORMANCE_TOLERANCE));
  addBackendOption(cmd).action(async (fixtures: string[], opts: { json?: boolean; tolerance: string; backend: string }) => {
    const tolerance = parseNumber('--tolerance', opts.tolerance, { min: 0 });
    // bad fixture paths (missing, FIFOs, devices) fail before the backend starts: one stderr line
    for (const f of fixtures) checkInputFile(f, 'fixture', { maxBytes: INPUT_LIMITS.safetensors, missing: (p) => `cannot read ${p}: no such file` });
    const backend = await initBackend(opts);
    const reports: ConformanceReport[] = [];
    for (const f of fixtures) reports.push(await runConformance(f, tolerance));
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ backend: backend.name, tolerance, pass: reports.every((r) => r.pass), reports }, null, 2)}\n`);
    } else {
      for (const r of reports) {
        const table = makeTable(['tensor', 'shape', 'rel. error', 'max abs', 'ok', 'note']);
        for (const row of r.rows) {
          table.push([row.name, `[${row.shape.join(',')}]`, row.relError.toExponential(2), row.maxAbsError.toExponential(2), row.pass ? 'yes' : 'NO', row.note ?? '']);
        }
        process.stdout.write(`${r.fixture} (backend ${backend.name}, ind ${r.config.ind}, cycles ${r.config.cycles}, res_param ${r.config.res_param})\n${table.toString()}\n`);
        const worst = Math.max(...r.rows.map((x) => (Number.isNaN(x.relError) ? Infinity : x.relError)));
        const f64 = r.rows.filter((x) => x.name.startsWith(FLOAT64_PREFIX));
        const own = r.rows.filter((x) => !x.name.startsWith(FLOAT64_PREFIX));
        const count = (rows: typeof r.rows) => `${rows.filter((x) => x.pass).length}/${rows.length}`;
        const extra = f64.length > 0 ? ` (backend ${backend.name}: ${count(own)}; model evaluated in float64, rows ${FLOAT64_PREFIX}*: ${count(f64)})` : '';
        process.stdout.write(`${r.pass ? 'PASS' : 'FAIL'}: ${count(r.rows)} tensors within ${tolerance}${extra}; worst ${worst.toExponential(2)}\n`);
      }
    }
    process.exitCode = reports.every((r) => r.pass) ? 0 : 1;
  });
}
