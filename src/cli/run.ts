/**
 * The work behind `cnnf eval` and `cnnf attack` (loaded only when one of them runs): flag
 * validation, model and dataset loading, a progress bar on a TTY stderr, accuracy tables, results JSON.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import Table from 'cli-table3';
import { assetRoot } from '../assets.js';
import { UsageError } from '../errors.js';
import { percent, percentRange, terminalText } from '../format.js';
import { backendNotice, initBackend, seedFrom } from './common.js';
import { createProgress } from './progress.js';
import { parseFractionList, parseInteger } from './options.js';
import { datasetOptionsFromFlags } from './commands/data.js';
import { formatTestSubset, loadDatasetAsync } from '../data/index.js';
import { buildCheckpoint, readCheckpointFile, type CheckpointFile } from '../io/checkpoint.js';
import { checkOutputDir, checkOutputFile } from '../io/files.js';
import { writeFileAtomic } from '../io/atomic.js';
import { validateResults } from '../report/results-file.js';
import { attackMethods, flagName, getAttack, hasAttack, paramIndex, type TargetPolicy } from '../attacks/index.js';
import type { Readout } from '../models/cnnf.js';
import { chooseRunBatch, defaultModelName, defaultModelNames, evaluate, evaluateShard, modelInputShape, type EvalData, type EvalModel, type EvalProgress } from '../eval/evaluate.js';
import { buildTfjsModel, isTfjsModelPath, readTfjsModelFile, type TfjsModelFile } from '../io/tfjs.js';
import { buildOnnxModel, isOnnxModelPath, readOnnxModelFile, type OnnxModelFile } from '../io/onnx.js';
import { adapterFromFlags, modelFormatFromFlags } from './adapter-flags.js';
import type { InputAdapter } from '../models/foreign.js';
import { mergeShards, resolveShard } from '../eval/shard.js';
import type { AttackMode, AttackPoint, EvalResults } from '../eval/results.js';
import { loadSuite, parseSuite, type Suite } from '../eval/suite.js';
import { attackFieldsFromFlags } from './attack-flags.js';
import { compareResults, intervalOf } from '../eval/compare.js';
import { countsOf, INTERVAL_METHOD, PAIRED_TEST, wilson, type Interval } from '../eval/stats.js';
import { resolveWorkers, WorkerPool } from '../parallel/pool.js';
import { EVAL_BATCH, EVAL_PROBE } from '../eval/worker-tasks.js';
import { DEFAULT_MEMORY_BUDGET, parseMemorySize, type BatchChoice } from '../eval/memory.js';

const PACKAGE_ROOT = assetRoot();

type Flags = Record<string, unknown>;
const str = (flags: Flags, k: string): string | undefined => (flags[k] === undefined ? undefined : String(flags[k]));

/** A suite path, or a bare name of a bundled suite (attacks/NAME.json). */
export function resolveSuitePath(raw: string): string {
  if (raw.trim() === '') throw new UsageError('--suite must not be empty');
  if (existsSync(raw) || /[\\/]|\.json$/i.test(raw)) return raw;
  const bundled = join(PACKAGE_ROOT, 'attacks', `${raw}.json`);
  if (existsSync(bundled)) return bundled;
  throw new UsageError(`suite file not found: ${raw} (nor a bundled suite attacks/${raw}.json)`);
}

function epsList(flag: string, raw: string): number[] {
  const eps = parseFractionList(flag, raw);
  for (const e of eps) if (e < 0) throw new UsageError(`${flag} values must be >= 0, got ${e}`);
  if (new Set(eps).size !== eps.length) throw new UsageError(`${flag} repeats a value`);
  return eps;
}

/** Victim and run options shared by both commands. */
function runOptions(flags: Flags): { cycles?: number; readout?: Readout; batchSize?: number; memoryBudget: number; dumpCount: number; seed: number } {
  const cycles = str(flags, 'cycles');
  const batch = str(flags, 'batchSize');
  const budget = str(flags, 'memoryBudget');
  return {
    memoryBudget: budget === undefined ? DEFAULT_MEMORY_BUDGET : parseMemorySize(budget),
    cycles: cycles === undefined ? undefined : parseInteger('--cycles', cycles, 0, 100),
    readout: flags.readout as Readout | undefined,
    batchSize: batch === undefined ? undefined : parseInteger('--batch-size', batch, 1, 100_000),
    dumpCount: parseInteger('--dump-count', str(flags, 'dumpCount') ?? '4', 1, 100_000),
    seed: seedFrom(str(flags, 'seed') ?? '0'),
  };
}

/**
 * The test split the models are evaluated on. An image folder is read at the models' input shape;
 * any other dataset must already have it (evaluate()'s plan checks it: one-line error otherwise).
 */
async function loadData(flags: Flags, models: EvalModel[], suiteSubset?: string): Promise<EvalData> {
  const f = { ...flags };
  if (f.testSubset === undefined && suiteSubset !== undefined) f.testSubset = suiteSubset;
  const opts = datasetOptionsFromFlags(f);
  if (opts.trainSize === undefined) opts.testOnly = true;
  const want = models.length > 0 ? modelInputShape(models[0]) : undefined;
  if (opts.dataset === 'folder' && opts.imageShape === undefined && want) opts.imageShape = want;
  const ds = await loadDatasetAsync(opts);
  const parts = [
    opts.testSize !== undefined ? `test-size:${opts.testSize}` : '',
    opts.testSubset !== undefined ? (typeof opts.testSubset === 'string' ? opts.testSubset : formatTestSubset(opts.testSubset)) : '',
  ].filter((s) => s !== '');
  return { name: ds.name, classNames: ds.classNames, numClasses: ds.numClasses, split: ds.test, testSubset: parts.length ? parts.join(',') : 'full' };
}

function commandLine(): string {
  const q = (a: string): string => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return ['cnnf', ...process.argv.slice(2)].map(q).join(' ');
}

/** Evaluation progress on stderr: a bar on a TTY, else a line per model and at most one per interval (see progress.ts). */
export function evalProgress(label = 'eval', quiet = false): { update: (p: EvalProgress) => void; stop: () => void } {
  const progress = createProgress({ label, ...(quiet ? { mode: 'off' as const } : {}) });
  return { update: (p) => progress.update(p.model, p.done, p.total, p.detail ?? p.stage), stop: () => progress.stop() };
}

const pct = percent;
/** 95% Wilson interval of a targeted success rate (stored, or from rate x n). */
function successIv(p: AttackPoint, n: number): Interval | null {
  if (p.successRate === undefined) return null;
  if (p.successCi) return { lower: p.successCi[0], upper: p.successCi[1] };
  const c = countsOf(p.successRate, n);
  return c ? wilson(c.correct, c.n) : null;
}
/** "86.0% [80.5-90.1]": an accuracy with its 95% Wilson interval (percent). */
const pctCi = (v: number, iv: Interval | null): string => (iv ? `${pct(v)} [${percentRange(iv.lower, iv.upper)}]` : pct(v));

/** Whether a results arch names a foreign model ("TF.js LayersModel", "TF.js GraphModel"). */
const isForeignArch = (arch: string): boolean => arch.startsWith('TF.js ') || arch === 'ONNX';

/** Accuracy-vs-epsilon tables: a summary (clean + worst case) and one table per attack. */
export function resultTables(results: EvalResults): string {
  const out: string[] = [];
  const style = { head: [], border: [], compact: true };
  const n = results.provenance.examples;
  const wcEps = [...new Set(results.models.flatMap((m) => m.worstCase.map((w) => w.eps)))].sort((a, b) => a - b);
  const summary = new Table({ head: ['model', 'cycles', 'readout', 'clean', ...wcEps.map((e) => `worst@${e}`)], style });
  for (const m of results.models) {
    summary.push([m.name, m.cycles, m.readout, pctCi(m.clean.accuracy, intervalOf(m.clean, n)), ...wcEps.map((e) => {
      const w = m.worstCase.find((x) => x.eps === e);
      return w ? pctCi(w.accuracy, intervalOf(w, n)) : '-';
    })]);
  }
  out.push(
    `clean and worst-case accuracy (${n} examples, ${results.provenance.dataset} ${results.provenance.testSubset}; [95% interval, ${INTERVAL_METHOD.replace(/, 95%$/, '')}])`,
    summary.toString(),
  );
  const foreign = results.models.filter((m) => isForeignArch(m.arch)).map((m) => `  ${m.name}: ${m.arch} ${m.path} (main thread)`);
  if (foreign.length > 0) out.push('foreign models:', ...foreign);
  const recipes = results.models.filter((m) => m.recipe !== undefined).map((m) => `  ${m.name}: ${m.recipe}`);
  if (recipes.length > 0) out.push('training:', ...recipes);
  const attackNames = [...new Set(results.models.flatMap((m) => m.attacks.map((a) => a.name)))];
  for (const name of attackNames) {
    const rows = results.models.flatMap((m) => m.attacks.filter((a) => a.name === name).map((a) => ({ m, a })));
    const eps = [...new Set(rows.flatMap(({ a }) => a.points.map((p) => p.eps)))].sort((x, y) => x - y);
    const first = rows[0].a;
    const t = new Table({ head: [first.targeted ? 'model[/mode] acc (success)' : 'model[/mode]', 'clean', ...eps.map((e) => `eps ${e}`)], style });
    for (const { m, a } of rows) {
      t.push([`${m.name}${a.mode ? `/${a.mode}` : ''}`, pctCi(m.clean.accuracy, intervalOf(m.clean, n)), ...eps.map((e) => {
        const p = a.points.find((x) => x.eps === e);
        if (!p) return '-';
        const acc = pctCi(p.accuracy, intervalOf(p, n));
        return p.successRate !== undefined ? `${acc} (${pctCi(p.successRate, successIv(p, n))})` : acc;
      })]);
    }
    out.push('', `${name} (${first.method}${first.targeted ? ', targeted' : ''}${first.method === 'gaussian' ? ', eps = sigma' : ''})`, t.toString());
    // staged attacks (AutoAttack): robust accuracy after each stage, as AutoAttack prints it
    for (const { m, a } of rows) {
      for (const p of a.points) {
        if (!p.stages?.length) continue;
        out.push(`  ${m.name} at eps ${p.eps}, robust after each stage: ${p.stages.map((s) => `${s.stage} ${pct(s.accuracy)}`).join(' -> ')}`);
      }
    }
  }
  if (results.checks) {
    if (results.checks.length === 0) out.push('', `checks: none raised (${results.models.length === 1 ? 'the model passed' : 'all models passed'} the 8 trust checks)`);
    else {
      out.push('', `checks: ${results.checks.length} raised (see src/eval/checks.ts; gate on them with --require "warnings==0")`);
      for (const c of results.checks) out.push(`  [${c.severity} ${c.number} ${c.id}] ${c.model}: ${c.message}`);
    }
  }
  if (results.models.length > 1) {
    out.push('', `best model, by a paired test on the per-example outcomes (${PAIRED_TEST.replace(/ \(.*\)$/, '')}, alpha 0.05; several gradient paths: the lower accuracy counts):`);
    // clean accuracy is not robustness: its row names the highest clean accuracy, the others the most robust model
    for (const row of compareResults(results)) out.push(`  ${row.metric === 'clean' ? 'highest clean accuracy' : `most robust at ${row.metric}`}: ${row.verdict.text}`);
  }
  return `${terminalText(out.join('\n'))}\n`;
}

type ModelFile = { kind: 'cnnf'; file: CheckpointFile } | { kind: 'tfjs'; file: TfjsModelFile } | { kind: 'onnx'; file: OnnxModelFile };

const ADAPTER_FLAGS = ['inputRange', 'mean', 'std', 'layout', 'logits', 'probabilities'] as const;

/**
 * Reads and validates every model file (no backend needed): a TF.js model (a folder with
 * model.json, or a JSON file: detected by content) or a cnnf checkpoint. The adapter flags apply to
 * the foreign models only: given with cnnf checkpoints only, they are refused.
 */
function readModels(paths: string[], flags: Flags = {}): { files: ModelFile[]; adapter: Partial<InputAdapter> } {
  const format = modelFormatFromFlags(flags);
  const files = paths.map((p): ModelFile => {
    if (p.trim() === '') throw new UsageError('--model must not be empty');
    if (format === 'onnx' || (format === 'auto' && isOnnxModelPath(p))) return { kind: 'onnx', file: readOnnxModelFile(p) };
    const tfjs = format === 'auto' ? isTfjsModelPath(p) : format === 'tfjs';
    if (format === 'tfjs' && !isTfjsModelPath(p)) throw new UsageError(`--format tfjs: ${p} is not a TF.js model (a model.json, or a folder holding one)`);
    if (format === 'cnnf' && isTfjsModelPath(p)) throw new UsageError(`--format cnnf: ${p} is a TF.js model (model.json), not a cnnf checkpoint; use --format tfjs or auto`);
    return tfjs ? { kind: 'tfjs', file: readTfjsModelFile(p) } : { kind: 'cnnf', file: readCheckpointFile(p) };
  });
  const given = ADAPTER_FLAGS.filter((k) => flags[k] !== undefined && flags[k] !== false);
  if (given.length > 0 && files.every((f) => f.kind === 'cnnf')) {
    const flag = `--${given[0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    throw new UsageError(`${flag} applies to foreign models (a TF.js model.json or an ONNX file) only; ${paths[0]} is a cnnf checkpoint, which records its own input space`);
  }
  return { files, adapter: adapterFromFlags(flags) };
}

/** Builds the models on the backend (cnnf ones checked for finite outputs); frees them all if one fails. */
async function buildModels(read: { files: ModelFile[]; adapter: Partial<InputAdapter> }): Promise<EvalModel[]> {
  const built: EvalModel[] = [];
  try {
    for (const f of read.files) built.push(f.kind === 'cnnf' ? await buildCheckpoint(f.file) : f.kind === 'onnx' ? await buildOnnxModel(f.file, read.adapter) : await buildTfjsModel(f.file, read.adapter));
  } catch (e) {
    for (const m of built) m.model.dispose();
    throw e;
  }
  return built;
}

/** Worker threads for these models: foreign models run in the main thread only, so a run of foreign models starts none. */
/** Notes about --workers, printed once the inputs are checked (a bad input stays one stderr line). */
const workerNotes: string[] = [];
const workersNote = (m: string): void => {
  workerNotes.push(m);
};
/** Whether --workers was a number (not auto): only then is a reduction worth a note. */
let explicitWorkers = false;
const workersFlag = (raw: string | undefined): string | undefined => {
  explicitWorkers = raw !== undefined && raw.trim() !== 'auto';
  return raw;
};
const workersFor = (files: ModelFile[], workers: number): number => (files.every((f) => f.kind !== 'cnnf') ? 1 : workers);

function suiteFromAttackFlags(flags: Flags): Suite {
  const list = [...new Set(str(flags, 'attacks')!.split(',').map((s) => s.trim()).filter((s) => s !== ''))];
  if (list.length === 0) throw new UsageError(`--attacks needs at least one of ${attackMethods().join(', ')}`);
  for (const a of list) {
    if (!hasAttack(a)) throw new UsageError(`--attacks: unknown attack ${JSON.stringify(a)} (known: ${attackMethods().join(', ')})`);
  }
  const rawEps = str(flags, 'eps');
  if (rawEps === undefined) throw new UsageError('--attacks needs --eps E1,E2,...');
  const eps = epsList('--eps', rawEps);
  const modes = (str(flags, 'modes') ?? 'first,e2e').split(',').map((s) => s.trim());
  for (const m of modes) if (m !== 'first' && m !== 'e2e') throw new UsageError(`--modes must list first and/or e2e, got ${JSON.stringify(m)}`);
  const fields = attackFieldsFromFlags(list, flags);
  const attacks = list.map((method, i) => {
    const whiteBox = getAttack(method).kind === 'gradient';
    return { method, eps, ...(whiteBox ? { modes } : {}), ...fields[i] };
  });
  return parseSuite({ name: `adhoc:${list.join(',')}`, attacks }, 'command line');
}

/** What a run's pool is sized for: its data, models and suite, and the flags that settle the batch size. */
interface RunWork {
  examples: number;
  models: EvalModel[];
  suite: Suite;
  batchSize?: number;
  memoryBudget: number;
  cycles?: number;
  stateDir?: string;
}

/**
 * Runs `body` with a pool of at most `workers` worker threads, started when `body` calls `started()`
 * with the run's size (after the data is loaded and every input checked). started() settles the batch
 * size (--batch-size, a resumed state's, else the memory budget's: src/eval/memory.ts) and starts
 * never more workers than units of work per model (a 10-image run does not start 256 copies of the
 * model) nor, with --workers auto, than the budget holds. They are stopped afterwards, whatever happens.
 */
async function withWorkers<T>(
  workers: number, backend: string, body: (started: (work: RunWork) => Promise<{ pool: WorkerPool | undefined; batch: BatchChoice }>) => Promise<T>,
): Promise<T> {
  let pool: Promise<WorkerPool | undefined> | undefined;
  let batch: BatchChoice | undefined;
  const started = async (work: RunWork): Promise<{ pool: WorkerPool | undefined; batch: BatchChoice }> => {
    if (pool && batch) return { pool: await pool, batch };
    for (const m of workerNotes.splice(0)) process.stderr.write(`cnnf: ${m}\n`);
    const b = chooseRunBatch(work.models, work.suite, work.examples, {
      batchSize: work.batchSize, memoryBudget: work.memoryBudget, cycles: work.cycles, workers, workersAuto: !explicitWorkers, stateDir: work.stateDir,
    });
    batch = b;
    if (b.note !== undefined) process.stderr.write(`cnnf: ${b.note}\n`);
    const batches = Math.ceil(work.examples / b.batchSize);
    const units = batches * (1 + work.suite.attacks.reduce((t, a) => t + Math.max(1, a.modes.length), 0)) + 1;
    const n = Math.min(b.workers, units);
    if (n < b.workers && explicitWorkers) process.stderr.write(`cnnf: using ${n} of the ${workers} workers (${units} units of work per model)\n`);
    pool = n > 1 ? WorkerPool.start(n, backend, { tasks: [EVAL_BATCH, EVAL_PROBE] }) : Promise.resolve(undefined);
    return { pool: await pool, batch: b };
  };
  try {
    return await body(started);
  } finally {
    await (await pool?.catch(() => undefined))?.close();
  }
}

export async function runEvalCommand(flags: Flags): Promise<void> {
  const modelPaths = (flags.model as string[] | undefined) ?? [];
  if (modelPaths.length === 0) throw new UsageError('give at least one --model CHECKPOINT');
  const suiteFlag = str(flags, 'suite');
  if (suiteFlag !== undefined && flags.attacks !== undefined) throw new UsageError('give either --suite or --attacks, not both');
  if (suiteFlag === undefined && flags.attacks === undefined) throw new UsageError('give --suite attacks/NAME.json or --attacks gaussian,fgsm,pgd --eps LIST');
  if (suiteFlag !== undefined) {
    for (const k of ['eps', 'norm', ...paramIndex().keys()]) if (flags[k] !== undefined) throw new UsageError(`${flagName(k)} only applies with --attacks (the suite sets it)`);
  }
  const suite = suiteFlag !== undefined ? loadSuite(resolveSuitePath(suiteFlag)) : suiteFromAttackFlags(flags);
  const run = runOptions(flags);
  const jsonPath = str(flags, 'json');
  if (jsonPath !== undefined && jsonPath.trim() === '') throw new UsageError('--json must not be empty');
  const dumpDir = str(flags, 'dump');
  if (dumpDir !== undefined && dumpDir.trim() === '') throw new UsageError('--dump must not be empty');
  // every output location is checked before any long work
  if (jsonPath !== undefined) checkOutputFile(jsonPath, '--json');
  if (dumpDir !== undefined) checkOutputDir(dumpDir, '--dump');

  // names: --name PATH=LABEL or DEFAULTNAME=LABEL
  const names = defaultModelNames(modelPaths);
  for (const raw of (flags.name as string[] | undefined) ?? []) {
    const i = raw.lastIndexOf('=');
    if (i <= 0 || i === raw.length - 1) throw new UsageError(`--name must be PATH=LABEL, got ${JSON.stringify(raw)}`);
    const key = raw.slice(0, i);
    const label = raw.slice(i + 1).trim();
    const idx = modelPaths.findIndex((p, j) => p === key || resolve(p) === resolve(key) || names[j] === key || defaultModelName(p) === key);
    if (idx < 0) throw new UsageError(`--name ${raw}: ${key} is not one of the --model paths`);
    names[idx] = label;
  }

  const shardRaw = str(flags, 'shard');
  const shardCount = str(flags, 'shardCount');
  if (shardCount !== undefined && shardRaw === undefined) throw new UsageError('--shard-count only applies with --shard auto');
  const shard = shardRaw !== undefined ? resolveShard(shardRaw, process.env, shardCount) : undefined;
  if (shard && jsonPath === undefined) throw new UsageError('--shard needs --json FILE (the shard file `cnnf merge` reads)');
  if (shard && dumpDir !== undefined) throw new UsageError('--dump is not available with --shard (dumps need every batch in one place); run it without --shard');
  const stateDir = str(flags, 'state');
  if (stateDir !== undefined && stateDir.trim() === '') throw new UsageError('--state must not be empty');

  datasetOptionsFromFlags(flags); // validate dataset flags before the slow work
  const read = readModels(modelPaths, flags);
  const backend = await initBackend(flags as { backend?: string }, { quiet: true });
  const workers = workersFor(read.files, resolveWorkers(workersFlag(str(flags, 'workers')), backend.name, workersNote));
  const models = await buildModels(read);
  const out = await withWorkers(workers, backend.name, async (started) => {
    const data = await loadData(flags, models, suite.testSubset);
    backendNotice(backend); // after every input check: a bad input is exactly one stderr line
    if (shard) process.stderr.write(`cnnf: shard ${shard.index}/${shard.count} (from ${shard.source})\n`);
    const { pool, batch } = await started({ examples: data.split.count, models, suite, batchSize: run.batchSize, memoryBudget: run.memoryBudget, cycles: run.cycles, stateDir });
    const bar = evalProgress('eval', flags.quiet === true);
    const opts = {
      seed: run.seed,
      batchSize: batch.batchSize,
      batchSizeFrom: batch.from,
      memoryBudget: run.memoryBudget,
      cycles: run.cycles,
      readout: run.readout,
      names,
      allowDatasetMismatch: Boolean(flags.allowDatasetMismatch),
      onProgress: bar.update,
      dumpDir,
      dumpCount: run.dumpCount,
      dumpBase: jsonPath !== undefined ? dirname(resolve(jsonPath)) : process.cwd(),
      command: commandLine(),
      pool,
      stateDir,
      onResume: (done: number, total: number) => process.stderr.write(`cnnf: resuming from ${stateDir}: ${done} of ${total} units already done\n`),
    };
    try {
      return shard ? { shard: await evaluateShard(models, data, suite, opts, shard) } : { results: await evaluate(models, data, suite, opts) };
    } finally {
      bar.stop();
    }
  });
  if (out.shard) {
    writeFileAtomic(jsonPath!, `${JSON.stringify(out.shard)}\n`);
    process.stderr.write(`cnnf: wrote shard ${shard!.index}/${shard!.count} (${out.shard.units.length} units) to ${jsonPath} (${out.shard.provenance.durationSeconds} s); merge all ${shard!.count} with \`cnnf merge\`\n`);
    return;
  }
  const results = out.results!;
  validateResults(results, 'evaluation results');
  process.stdout.write(resultTables(results));
  if (jsonPath !== undefined) {
    writeFileAtomic(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
    process.stderr.write(`cnnf: wrote ${jsonPath} (${results.provenance.durationSeconds} s)\n`);
  }
}

/** `cnnf merge SHARD... -o results.json`: the shards of one run -> its results (tables on stdout). */
export function runMergeCommand(paths: string[], flags: Flags): void {
  const outPath = str(flags, 'out');
  if (outPath === undefined || outPath.trim() === '') throw new UsageError('give -o results.json');
  checkOutputFile(outPath, '-o');
  const { results, shards, units } = mergeShards(paths, commandLine());
  validateResults(results, 'merged results');
  if (!flags.quiet) process.stdout.write(resultTables(results));
  writeFileAtomic(outPath, `${JSON.stringify(results, null, 2)}\n`);
  process.stderr.write(`cnnf: merged ${shards} shards (${units} units) into ${outPath}\n`);
}

/** What `attack --dump` wrote: every epsilon gets its own set (DIR/epsE/ when there are several). */
function dumpNote(files: number, eps: number[], dir: string): string {
  const how = 'one example per class where possible, preferring examples the attack flips';
  if (eps.length === 1) return `dumped ${files} examples at eps ${eps[0]} to ${dir} (${how})\n`;
  return `dumped ${files} examples, one set per eps, to ${eps.map((e) => join(dir, `eps${e}`)).join(', ')} (${how})\n`;
}

export async function runAttackCommand(flags: Flags): Promise<void> {
  const modelPath = str(flags, 'model')!;
  if (modelPath.trim() === '') throw new UsageError('--model must not be empty');
  const method = str(flags, 'method')!;
  const d = getAttack(method);
  const eps = epsList('--eps', str(flags, 'eps')!);
  const mode = (flags.mode as AttackMode | undefined) ?? 'first';
  const targetRaw = str(flags, 'target');
  let target: TargetPolicy | undefined;
  if (targetRaw !== undefined) {
    if (!d.targetable) throw new UsageError(`--target does not apply to ${method}`);
    target = targetRaw === 'next' || targetRaw === 'random' ? targetRaw : parseInteger('--target', targetRaw, 0, 10_000);
  }
  const spec: Record<string, unknown> = { method, eps, ...attackFieldsFromFlags([method], flags)[0] };
  if (d.kind === 'gradient') spec.modes = [mode];
  if (target !== undefined) Object.assign(spec, { targeted: true, target });
  const suite = parseSuite({ name: `attack:${method}`, attacks: [spec] }, 'command line');
  const run = runOptions(flags);
  const dumpDir = str(flags, 'dump');
  if (dumpDir !== undefined && dumpDir.trim() === '') throw new UsageError('--dump must not be empty');
  if (dumpDir !== undefined) checkOutputDir(dumpDir, '--dump');

  datasetOptionsFromFlags(flags); // validate dataset flags before the slow work
  const read = readModels([modelPath], flags);
  const backend = await initBackend(flags as { backend?: string }, { quiet: true });
  const workers = workersFor(read.files, resolveWorkers(workersFlag(str(flags, 'workers')), backend.name, workersNote));
  const [model] = await buildModels(read);
  const results = await withWorkers(workers, backend.name, async (started) => {
    const data = await loadData(flags, [model]);
    backendNotice(backend);
    const { pool, batch } = await started({ examples: data.split.count, models: [model], suite, batchSize: run.batchSize, memoryBudget: run.memoryBudget, cycles: run.cycles });
    const bar = evalProgress('attack', flags.quiet === true);
    try {
      return await evaluate([model], data, suite, {
        seed: run.seed,
        batchSize: batch.batchSize,
        batchSizeFrom: batch.from,
        memoryBudget: run.memoryBudget,
        cycles: run.cycles,
        readout: run.readout,
        allowDatasetMismatch: Boolean(flags.allowDatasetMismatch),
        onProgress: bar.update,
        dumpDir,
        dumpCount: run.dumpCount,
        flatDump: true,
        command: commandLine(),
        pool,
      });
    } finally {
      bar.stop();
    }
  });
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    return;
  }
  const m = results.models[0];
  const a = m.attacks[0];
  const t = new Table({
    head: ['eps', 'accuracy [95% CI]', ...(a.targeted ? ['success rate [95% CI]'] : [])],
    colAligns: ['right', 'right', 'right'],
    style: { head: [], border: [], compact: true },
  });
  const n = results.provenance.examples;
  for (const p of a.points) t.push([p.eps, pctCi(p.accuracy, intervalOf(p, n)), ...(p.successRate !== undefined ? [pctCi(p.successRate, successIv(p, n))] : [])]);
  const foreign = isForeignArch(m.arch);
  const modeNote = a.mode ? `, mode ${a.mode}${m.cycles === 0 && mode === 'e2e' ? ` (${foreign ? 'foreign model' : 'plain CNN'}: e2e = first)` : ''}` : '';
  process.stdout.write(terminalText(
    `${m.name}${foreign ? ` [${m.arch} ${m.path}]` : ''}: ${a.name} (${a.method}${a.targeted ? `, targeted ${String(target)}` : ''}${modeNote}, ${m.cycles} cycles, readout ${m.readout}) ` +
      `on ${results.provenance.examples} ${results.provenance.dataset} test images (${results.provenance.testSubset}), clean accuracy ${pctCi(m.clean.accuracy, intervalOf(m.clean, n))}\n` +
      `${t.toString()}\n(95% intervals: ${INTERVAL_METHOD.replace(/, 95%$/, '')})\n` +
      (m.dumps && m.dumps.length ? dumpNote(m.dumps.length, a.points.map((p) => p.eps), dumpDir!) : ''),
  ));
}

export interface DemoRun {
  models: string[];
  /** Display names, one per model (default: file names). */
  names?: string[];
  suite: string;
  testSubset?: string;
  /** Report directory (index.html, report.md, results.json; charts and dumps in assets/). */
  out: string;
  seed: string;
  backend: string;
  workers: string;
}

/** `cnnf demo`: evaluate() the models on the suite, print the tables, write results.json and the report; returns index.html's path. */
export async function runDemo(d: DemoRun): Promise<string> {
  const suite = loadSuite(resolveSuitePath(d.suite));
  const seed = seedFrom(d.seed);
  const flags: Flags = { dataset: 'fashion-mnist', testSubset: d.testSubset };
  datasetOptionsFromFlags({ ...flags, testSubset: d.testSubset ?? suite.testSubset }); // validate before the slow work
  const read = readModels(d.models);
  const backend = await initBackend({ backend: d.backend }, { quiet: true });
  const workers = workersFor(read.files, resolveWorkers(workersFlag(d.workers), backend.name, workersNote));
  const models = await buildModels(read);
  const json = join(d.out, 'results.json');
  const results = await withWorkers(workers, backend.name, async (started) => {
    const data = await loadData(flags, models, suite.testSubset);
    backendNotice(backend); // after every input check
    const { pool, batch } = await started({ examples: data.split.count, models, suite, memoryBudget: DEFAULT_MEMORY_BUDGET });
    const progress = evalProgress('demo');
    try {
      return await evaluate(models, data, suite, {
        seed,
        batchSize: batch.batchSize,
        batchSizeFrom: batch.from,
        memoryBudget: DEFAULT_MEMORY_BUDGET,
        names: d.names,
        onProgress: progress.update,
        // inside the report's one folder of extras (ASSETS_DIR in report/report.ts), where report.md shows them in place
        dumpDir: join(d.out, 'assets', 'dumps'),
        dumpCount: 3,
        dumpBase: d.out,
        command: commandLine(),
        pool,
      });
    } finally {
      progress.stop();
    }
  });
  validateResults(results, 'evaluation results');
  process.stdout.write(resultTables(results));
  writeFileAtomic(json, `${JSON.stringify(results, null, 2)}\n`);
  const { writeReport } = await import('../report/index.js');
  const report = await writeReport(results, {
    outDir: d.out,
    resultsPath: json,
    title: d.names ? 'cnnf: CNN vs CNN-F, both adversarially trained, on Fashion-MNIST' : 'cnnf: robustness on Fashion-MNIST',
  });
  return report.indexHtml;
}
