/**
 * Hostile foreign models (issue 22, items 1, 3, 4, 5 and 7 on the TF.js side): LayersModel topologies
 * that would loop tfjs-layers' `fromConfig` forever (an inbound node naming a missing layer, a node
 * index never created, two layers feeding each other), declared sizes far beyond the weights (a Dense
 * of 1,000,000 units with a 31 KB shard, a 6000x6000x3 input), GraphModels with a cycle, 200k
 * Identity nodes, a 40000x40000 input or a Reshape that only fits a batch of 1, NaN/Inf weights,
 * quantisation scales or adapter numbers, a weight shard that is a symlink out of the model's folder,
 * a wrong-length --mean and a misspelt model.cnnf.json key. Every file is generated here. CLI cases:
 * exit 2, one stderr line naming the model (after the backend line), no stack trace, nothing on
 * stdout, no --json written; the child is killed after 120 s (a hang fails the test instead of
 * blocking it). The other cases run the CLI's own reader and builder in-process.
 * Non-finite logits at evaluation time (clean and attacked batches, foreign and cnnf models) are
 * refused with one line naming the model.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf, wasm } from './helpers/tf.js';
import { cnnf, inParallel, oneLine, referenceModel } from './helpers/cli.js';
import { UsageError } from '../src/errors.js';
import { buildTfjsModel, readTfjsModelFile, saveTfjsLayersModel } from '../src/io/tfjs.js';
import { TFJS_LIMITS } from '../src/io/tfjs-topology.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { evalBatch } from '../src/eval/batch.js';
import { evaluate } from '../src/eval/evaluate.js';
import { parseSuite } from '../src/eval/suite.js';
import { loadDataset, mulberry32 } from '../src/data/index.js';
import { DEFAULT_ADAPTER, type ForeignClassifier } from '../src/models/foreign.js';

const CLI_ENV = { CNNF_FROM_SOURCE: '1' };
let root: string;
/** model.json of the base functional model: input 28x28x1 -> flatten -> dense 10 (7,850 weights, a 31 KB shard). */
let baseJson: Record<string, any>;
let baseWeights: Buffer;

/** A model folder `name` with model.json edited by `edit` (the base shard, or `shard`); returns the folder. */
function variant(name: string, edit: (j: any) => void = () => undefined, shard?: Buffer, rawJson?: (text: string) => string): string {
  const d = join(root, name);
  mkdirSync(d);
  const j = structuredClone(baseJson);
  edit(j);
  const text = JSON.stringify(j);
  writeFileSync(join(d, 'model.json'), rawJson ? rawJson(text) : text);
  writeFileSync(join(d, 'weights.bin'), shard ?? baseWeights);
  return d;
}

const layer = (j: any, name: string): any => j.modelTopology.config.layers.find((l: any) => l.name === name);

/** The one-line UsageError that reading and building `dir` (as `cnnf eval` does) must give. */
async function refusedInProcess(dir: string, adapter = {}): Promise<string> {
  let m: Awaited<ReturnType<typeof buildTfjsModel>> | undefined;
  try {
    m = await buildTfjsModel(readTfjsModelFile(dir), adapter);
  } catch (e) {
    expect(e, String((e as Error).stack)).toBeInstanceOf(UsageError);
    expect((e as UsageError).exitCode).toBe(2);
    expect((e as Error).message).not.toContain('\n');
    return (e as Error).message;
  }
  m.model.dispose();
  throw new Error(`${dir} was accepted`);
}

/** GraphModel folder: x [-1, H, W, 1] -> [Identity x ids] -> Reshape `target` -> MatMul W [784, 10]. */
function graphModel(name: string, o: { shape?: number[]; target?: [number, number]; ids?: number; cycle?: boolean } = {}): string {
  const d = join(root, name);
  mkdirSync(d);
  const dim = (...v: number[]) => ({ dim: v.map((x) => ({ size: String(x) })) });
  const node: any[] = [
    { name: 'x', op: 'Placeholder', attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: dim(...(o.shape ?? [-1, 28, 28, 1])) } } },
    { name: 'shape', op: 'Const', attr: { dtype: { type: 'DT_INT32' }, value: { tensor: { dtype: 'DT_INT32', tensorShape: dim(2) } } } },
    { name: 'W', op: 'Const', attr: { dtype: { type: 'DT_FLOAT' }, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: dim(784, 10) } } } },
  ];
  let prev = 'x';
  for (let i = 0; i < (o.ids ?? 0); i++) {
    node.push({ name: `id${i}`, op: 'Identity', input: [prev], attr: { T: { type: 'DT_FLOAT' } } });
    prev = `id${i}`;
  }
  node.push({ name: 'flat', op: 'Reshape', input: [o.cycle ? 'logits' : prev, 'shape'], attr: { T: { type: 'DT_FLOAT' }, Tshape: { type: 'DT_INT32' } } });
  node.push({ name: 'logits', op: 'MatMul', input: ['flat', 'W'], attr: { T: { type: 'DT_FLOAT' }, transpose_a: { b: false }, transpose_b: { b: false } } });
  const json = {
    format: 'graph-model',
    modelTopology: { node, library: {}, versions: {} },
    weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'shape', shape: [2], dtype: 'int32' }, { name: 'W', shape: [784, 10], dtype: 'float32' }] }],
  };
  const rng = mulberry32(11);
  const w = Float32Array.from({ length: 7840 }, () => (rng() - 0.5) * 0.2);
  writeFileSync(join(d, 'model.json'), JSON.stringify(json));
  writeFileSync(join(d, 'w.bin'), Buffer.concat([Buffer.from(new Int32Array(o.target ?? [-1, 784]).buffer), Buffer.from(w.buffer)]));
  return d;
}

beforeAll(async () => {
  await wasm();
  root = mkdtempSync(join(tmpdir(), 'cnnf-hostile-models-'));
  const input = tfl.input({ shape: [28, 28, 1], name: 'img' });
  const flat = tfl.layers.flatten({ name: 'flat' }).apply(input) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 10, name: 'dense', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }).apply(flat) as tfl.SymbolicTensor;
  const net = tfl.model({ inputs: input, outputs: out });
  const base = join(root, 'base');
  await saveTfjsLayersModel(net, base);
  net.dispose();
  baseJson = JSON.parse(readFileSync(join(base, 'model.json'), 'utf8'));
  baseWeights = readFileSync(join(base, 'weights.bin'));
  expect(baseWeights.length).toBe(7850 * 4);
});

describe('hostile TF.js models through the CLI: exit 2, one line naming the model, no stack trace, nothing written', () => {
  it('hangs, huge declared sizes, GraphModel crashes, NaN/overflowing numbers, symlinks out of the folder, a wrong-length --mean', async () => {
    const outside = join(root, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'weights.bin'), baseWeights);
    const link = variant('symlink');
    // a shard that is a symlink to a file outside the folder (lexically the path is "weights.bin")
    const { rmSync } = await import('node:fs');
    rmSync(join(link, 'weights.bin'));
    symlinkSync(join(outside, 'weights.bin'), join(link, 'weights.bin'));
    const nanShard = Buffer.from(baseWeights);
    nanShard.writeFloatLE(NaN, 4 * 100);
    const overflow = Buffer.from(new Float32Array(7850).fill(3e38).buffer);
    const stdDir = variant('tiny-std');
    writeFileSync(join(stdDir, 'model.cnnf.json'), JSON.stringify({ inputRange: '0,1', std: [1e-300] }));
    const cases: Array<[dir: string, pattern: RegExp, extra?: string[]]> = [
      // item 1: fromConfig would re-queue these nodes forever
      [variant('unresolvable', (j) => { layer(j, 'dense').inbound_nodes = [[['nope', 0, 0, {}]]]; }), /unresolvable\/model.json: layer "dense": input layer "nope" is not a layer of this model$/],
      [variant('node-index', (j) => { layer(j, 'dense').inbound_nodes = [[['flat', 3, 0, {}]]]; }), /node-index\/model.json: layer "dense": layer "flat" has no node 3 \(it has 1\)$/],
      [variant('cycle', (j) => { layer(j, 'flat').inbound_nodes = [[['dense', 0, 0, {}]]]; }), /cycle\/model.json: layer "(flat|dense)" depends on its own output \(the layer calls form a cycle\)$/],
      // item 2: refused before the 1,000,000-unit kernel or a 6000x6000x3 probe tensor is allocated
      [variant('units', (j) => { layer(j, 'dense').config.units = 1_000_000; }), /units\/model.json: layer "dense" declares units 1000000, more than the 7850 weight values model.json's manifest holds$/],
      [variant('input', (j) => { layer(j, 'img').config.batch_input_shape = [null, 6000, 6000, 3]; }), /input\/model.json: layer "img": batchInputShape \[null, 6000, 6000, 3\] has 108000000 values per example, more than 16777216$/],
      // item 3: GraphModels that crashed with TypeError / RangeError / stack traces (exit 7)
      [graphModel('g-cycle', { cycle: true }), /g-cycle\/model.json: GraphModel node "(flat|logits)" depends on its own output \(the graph has a cycle\)$/],
      [graphModel('g-200k', { ids: 200_000 }), /g-200k\/model.json: the GraphModel has 200005 nodes, more than 20000$/],
      [graphModel('g-huge', { shape: [-1, 40000, 40000, 1] }), /TF.js GraphModel g-huge\/model.json: input shape \[40000, 40000, 1\] has 1600000000 values per image, more than 16777216$/],
      [graphModel('g-batch1', { target: [1, 784] }), /TF.js GraphModel g-batch1\/model.json: (tfjs cannot run this model on a batch of 2|for a batch of 2 the model outputs)/],
      // item 4: NaN weights, finite weights whose logits overflow, an adapter std that is 0 in float32
      [variant('nan', () => undefined, nanShard), /nan\/model.json: weight "dense\/kernel" holds a non-finite value \(NaN or Inf\) at index 100$/],
      [variant('overflow', () => undefined, overflow), /TF.js LayersModel overflow\/model.json: the model computes non-finite logits \(NaN or Inf\) on a plain test input/],
      [stdDir, /--std 1e-300 is outside 1e-30..1e\+30: dividing by it overflows float32/],
      // item 5: containment by realpath
      [link, /symlink\/model.json: weight shard "weights.bin" is a symbolic link to a file outside the model's folder$/],
      // item 7: a wrong-length --mean says so (it was "tfjs cannot differentiate this model")
      [join(root, 'base'), /TF.js LayersModel base\/model.json: the input adapter's mean has 2 values \(--mean or model.cnnf.json\) for a model with 1 input channels \(give 1 or 1\)$/, ['--mean', '0.5,0.5']],
    ];
    const runs = await inParallel(cases.map(([dir, , extra]) => () => cnnf(
      ['eval', '--model', dir, '--attacks', 'fgsm', '--eps', '0.1', '--test-size', '4', '--json', join(dir, 'r.json'), ...(extra ?? [])],
      { env: CLI_ENV, timeoutMs: 120_000 },
    )));
    runs.forEach((r, i) => {
      const [dir, pattern] = cases[i];
      expect(r.code, `${dir}: killed (a hang?)\n${r.stderr}`).not.toBe(-1);
      expect(oneLine(r), dir).toMatch(pattern);
      expect(r.stderr).not.toMatch(/\n\s+at |TypeError|RangeError|Aborted/);
      expect(r.stdout).toBe('');
      expect(existsSync(join(dir, 'r.json'))).toBe(false);
    });
  }, 600_000);
});

describe('hostile TF.js models in-process (the CLI\'s reader and builder)', () => {
  it('more layers or calls than the bounds, unresolvable input/output layers, duplicate or reserved names, an empty call', async () => {
    const many = variant('many', (j) => {
      const ls = j.modelTopology.config.layers;
      const d = ls.pop();
      let prev = 'flat';
      for (let i = 0; i < TFJS_LIMITS.layers; i++) {
        ls.push({ name: `a${i}`, class_name: 'Activation', config: { name: `a${i}`, activation: 'linear', trainable: true }, inbound_nodes: [[[prev, 0, 0, {}]]] });
        prev = `a${i}`;
      }
      d.inbound_nodes = [[[prev, 0, 0, {}]]];
      ls.push(d);
    });
    expect(await refusedInProcess(many)).toMatch(/many\/model.json: modelTopology has more than 4096 layers$/);
    expect(await refusedInProcess(variant('out-missing', (j) => { j.modelTopology.config.output_layers = [['ghost', 0, 0]]; })))
      .toMatch(/output_layers: input layer "ghost" is not a layer of this model$/);
    expect(await refusedInProcess(variant('dup', (j) => { layer(j, 'flat').name = 'dense'; layer(j, 'dense').config.name = 'dense'; })))
      .toMatch(/layer "dense" has config name "flat"|two layers are named "dense"/);
    expect(await refusedInProcess(variant('reserved', (j) => { layer(j, 'flat').config.name = 'constructor'; layer(j, 'flat').name = 'constructor'; layer(j, 'dense').inbound_nodes = [[['constructor', 0, 0, {}]]]; })))
      .toMatch(/layer name "constructor" is reserved$/);
    expect(await refusedInProcess(variant('empty-call', (j) => { layer(j, 'dense').inbound_nodes = [[]]; })))
      .toMatch(/layer "dense": an inbound node is not a non-empty list/);
    expect(await refusedInProcess(variant('proto', (j) => j, undefined, (t) => t.replace('"trainable":true', '"__proto__":{"units":5},"trainable":true'))))
      .toMatch(/modelTopology has a "__proto__" key$/);
    // a mutual pair deep inside a longer chain, and a self-loop
    expect(await refusedInProcess(variant('self', (j) => { layer(j, 'dense').inbound_nodes = [[['dense', 0, 0, {}]]]; })))
      .toMatch(/layer "dense" depends on its own output/);
  }, 120_000);

  it('declared sizes beyond the manifest are refused before tfjs allocates them: a kernel from a wide input, filters, Keras model_config', async () => {
    // units stay 10 but a 28x28x1000 input makes a [784000, 10] kernel: refused by the weight guard before the allocation
    expect(await refusedInProcess(variant('wide', (j) => { layer(j, 'img').config.batch_input_shape = [null, 28, 28, 1000]; })))
      .toMatch(/wide\/model.json: layer "dense" would create a \[784000, 10\] weight, more than the 7850 weight values model.json's manifest holds in all \(0 made already\)/);
    expect(await refusedInProcess(variant('filters', (j) => { layer(j, 'dense').config.filters = 99999; })))
      .toMatch(/layer "dense" declares filters 99999, more than the 7850 weight values/);
    // the Keras h5 converter's {model_config} wrapper is unwrapped and checked the same way
    expect(await refusedInProcess(variant('wrapped', (j) => { layer(j, 'dense').config.units = 1_000_000; j.modelTopology = { model_config: j.modelTopology, training_config: {} }; })))
      .toMatch(/layer "dense" declares units 1000000/);
    // a quantisation scale of 1e400 parses as Infinity
    const q = variant('qscale', (j) => {
      j.weightsManifest[0].weights = [
        { name: 'dense/kernel', shape: [784, 10], dtype: 'float32', quantization: { dtype: 'uint8', scale: 12345, min: 0 } },
        { name: 'dense/bias', shape: [10], dtype: 'float32', quantization: { dtype: 'uint8', scale: 1, min: 0 } },
      ];
    }, Buffer.alloc(7850), (t) => t.replace('"scale":12345', '"scale":1e400'));
    expect(await refusedInProcess(q)).toMatch(/qscale\/model.json: weight "dense\/kernel" has a quantization scale or min that is not a finite float32 \(scale Infinity, min 0\)$/);
    // the unchanged base model loads (the checks are not vacuous)
    const ok = await buildTfjsModel(readTfjsModelFile(join(root, 'base')));
    expect(ok.model.inputShape).toEqual([28, 28, 1]);
    expect(ok.model.numClasses).toBe(10);
    ok.model.dispose();
  }, 120_000);

  it('model.cnnf.json: unknown keys are named (with a did-you-mean), a symlink out of the folder is refused', async () => {
    const typo = variant('typo');
    writeFileSync(join(typo, 'model.cnnf.json'), JSON.stringify({ inputRange: '0,1', stdd: [0.5] }));
    expect(await refusedInProcess(typo)).toMatch(/typo\/model.cnnf.json: unknown key "stdd" \(known: inputRange, mean, std, layout, output, classNames, normalisation, dataset, exportedFrom\); did you mean "std"\?$/);
    const other = variant('other');
    writeFileSync(join(other, 'model.cnnf.json'), JSON.stringify({ colour: true }));
    expect(await refusedInProcess(other)).toMatch(/unknown key "colour" \(known: [^)]*\)$/);
    const side = variant('side-link');
    writeFileSync(join(root, 'outside-side.json'), JSON.stringify({ inputRange: '0,255' }));
    symlinkSync(join(root, 'outside-side.json'), join(side, 'model.cnnf.json'));
    expect(await refusedInProcess(side)).toMatch(/side-link\/model.json: model.cnnf.json "model.cnnf.json" is a symbolic link to a file outside the model's folder$/);
    // a symlink that stays inside the folder is fine
    const inside = variant('inside-link');
    const { renameSync } = await import('node:fs');
    renameSync(join(inside, 'weights.bin'), join(inside, 'real.bin'));
    symlinkSync('real.bin', join(inside, 'weights.bin'));
    const m = await buildTfjsModel(readTfjsModelFile(inside));
    expect(m.model.numClasses).toBe(10);
    m.model.dispose();
  }, 120_000);
});

describe('non-finite logits during an evaluation are refused with one line naming the model', () => {
  const ds = () => loadDataset({ testSize: 8, testOnly: true });

  it('a foreign model: NaN on the clean batch, and NaN only on attacked images', async () => {
    const w = tf.randomNormal([784, 10], 0, 0.1, 'float32', 3);
    let calls = 0;
    /** Finite logits for the first `finite` calls, then NaN. */
    const fake = (finite: number): ForeignClassifier => ({
      foreign: true, source: 'TF.js LayersModel nan/model.json', inputShape: [28, 28, 1], numClasses: 10, differentiable: true, adapter: DEFAULT_ADAPTER,
      logits: (x) => tf.tidy(() => {
        const l = tf.matMul(tf.reshape(x, [x.shape[0], 784]), w) as tf.Tensor2D;
        return calls++ < finite ? l : (tf.mul(l, NaN) as tf.Tensor2D);
      }),
      dispose: () => undefined,
    });
    const d = ds();
    const data = { name: 'fashion-mnist', classNames: d.classNames, numClasses: 10, split: d.test, testSubset: 'test-size:8' };
    const suite = parseSuite({ name: 's', attacks: [{ method: 'gaussian', eps: [0.1] }] }, 't');
    const run = async (finite: number): Promise<string> => {
      calls = 0;
      try {
        await evaluate([{ model: fake(finite), path: 'nan/model.json', sha256: '0'.repeat(64), source: 'TF.js LayersModel' }], data, suite, { seed: 1, checks: false });
      } catch (e) {
        expect(e).toBeInstanceOf(UsageError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(await run(0)).toBe('TF.js LayersModel nan/model.json: the model computes non-finite logits (NaN or Inf) on test examples 0..7 (clean); no numbers are reported for it');
    expect(await run(1)).toBe('TF.js LayersModel nan/model.json: the model computes non-finite logits (NaN or Inf) on test examples 0..7 (gaussian at eps 0.1); no numbers are reported for it');
    // finite throughout: evaluated (the check is not vacuous)
    calls = 0;
    const res = await evaluate([{ model: fake(1e9), path: 'nan/model.json', sha256: '0'.repeat(64), source: 'TF.js LayersModel' }], data, suite, { seed: 1, checks: false });
    expect(res.models[0].clean.accuracy).toBeGreaterThanOrEqual(0);
    w.dispose();
  }, 120_000);

  it('a cnnf model whose weight turns NaN after loading: its batch is refused, naming it', async () => {
    const ck = await loadCheckpoint(referenceModel('cnn-standard'));
    const d = ds();
    const task = {
      name: 'cnn-standard', start: 0, images: d.test.images.slice(0, 4 * 784), labels: Int32Array.from(d.test.labels.subarray(0, 4)),
      cycles: 0, readout: 'last' as const, numClasses: 10, seed: 1, jobs: [], keep: [],
    };
    const before = await evalBatch(ck.model, task);
    expect(before.clean.length).toBe(4);
    const [, p] = [...ck.model.params.entries()][0];
    (p as tf.Variable).assign(tf.fill(p.shape, NaN));
    await expect(evalBatch(ck.model, task)).rejects.toThrow(/^cnn-standard: the model computes non-finite logits \(NaN or Inf\) on test examples 0..3 \(clean\); no numbers are reported for it$/);
    ck.model.dispose();
  }, 120_000);
});
