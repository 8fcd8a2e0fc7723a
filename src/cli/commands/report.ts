/** `cnnf report RESULTS.json [TRAINLOG.csv ...] --out DIR [--title T]`: HTML + Markdown report. */
import type { Command } from 'commander';
import { UsageError } from '../../errors.js';

export function register(program: Command): void {
  program
    .command('report')
    .description('write a self-contained HTML report (DIR/index.html) and a Markdown report (DIR/report.md) from a results file')
    .argument('<results>', 'results JSON written by `cnnf eval`')
    .argument('[trainlogs...]', 'training log CSVs (epoch,batch,step,loss,accuracy,lr) for loss curves')
    .option('--out <dir>', 'output directory', 'cnnf-report')
    .option('--title <title>', 'report title')
    .action(async (resultsPath: string, trainlogs: string[], opts: { out: string; title?: string }) => {
      if (opts.out.trim() === '') throw new UsageError('--out must not be empty');
      const { checkOutputDir } = await import('../../io/files.js');
      checkOutputDir(opts.out, '--out'); // before any work
      // heavy modules (vega, sharp) load only when this command runs
      const { readResultsFile } = await import('../../report/results-file.js');
      const { readTrainingLog } = await import('../../report/trainlog.js');
      const results = readResultsFile(resultsPath);
      const trainingLogs = trainlogs.map((p) => readTrainingLog(p));
      const { writeReport } = await import('../../report/report.js');
      const out = await writeReport(results, { outDir: opts.out, title: opts.title, trainingLogs, resultsPath });
      process.stdout.write(`${out.indexHtml}\n`);
    });
}
