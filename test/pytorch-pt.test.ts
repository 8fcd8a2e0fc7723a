/**
 * PyTorch checkpoints (.pt, torch.save zip format): the restricted unpickler, the bounded zip reader,
 * `cnnf import --from pytorch model.pt` and `cnnf export --to pytorch`.
 *
 * Fixtures (fixtures/pt, made by fixtures/make_pt_fixture.py): ref.pt is written with the standard
 * library in torch.save's format; ref-torch.pt is torch.save(model.state_dict()) of the reference
 * architecture by Debian's PyTorch 1.13, with the same weights (those of fixtures/cnnf-ind2-c2.safetensors,
 * fc 64/32); views.pt holds strided views, every accepted dtype and a nested dict; evil-*.pt and
 * legacy.pt are hostile or unsupported files.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf, wasm } from './helpers/tf.js';
import { cnnf, oneLine, ROOT, type CliResult } from './helpers/cli.js';
import { main } from '../src/cli/main.js';
import { parseSafetensors, type NamedTensor } from '../src/io/safetensors.js';
import { encodeTorchCheckpoint, parseTorchCheckpoint, readTorchCheckpoint, sniffTorchFormat } from '../src/io/torch.js';
import { PyDict, PyTuple, unpickle, type PicklePolicy } from '../src/io/pickle.js';
import { readZipEntries } from '../src/io/zip.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { loadDataset } from '../src/data/index.js';
import { UsageError } from '../src/errors.js';

const PT = join(ROOT, 'fixtures', 'pt');
const FIXTURE = join(ROOT, 'fixtures', 'cnnf-ind2-c2.safetensors');
const tmp = () => mkdtempSync(join(tmpdir(), 'cnnf-pt-'));
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');
const sameTensors = (a: Map<string, NamedTensor>, b: Map<string, NamedTensor>) => {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  for (const [k, t] of a) {
    expect(t.shape, k).toEqual(b.get(k)!.shape);
    expect(bits(t.data), k).toBe(bits(b.get(k)!.data));
  }
};
async function refused(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect((e as Error).message).not.toContain('\n');
    return (e as Error).message;
  }
  throw new Error('expected a UsageError');
}

beforeAll(wasm);

/** The CLI in this process (the same commands as bin/cnnf without its ~10 s start-up on a loaded machine). */
async function run(args: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const [ow, ew] = [process.stdout.write, process.stderr.write];
  process.stdout.write = ((s: string | Uint8Array) => { stdout += String(s); return true; }) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => { stderr += String(s); return true; }) as typeof process.stderr.write;
  try {
    const code = await main(['node', 'cnnf', ...args]);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

describe('reading torch.save checkpoints', () => {
  const reference = new Map([...parseSafetensors(readFileSync(FIXTURE), FIXTURE).tensors]
    .filter(([k]) => k.startsWith('param.')).map(([k, v]) => [k.slice('param.'.length), v]));

  it('reads the stdlib-written and the torch-written state_dict bit for bit as the safetensors weights', async () => {
    for (const f of ['ref.pt', 'ref-torch.pt']) {
      const c = await readTorchCheckpoint(join(PT, f));
      expect(c.tensors.size).toBe(14);
      sameTensors(c.tensors, reference);
      expect(c.tensors.get('conv4.conv.weight')!.shape).toEqual([64, 32, 3, 3]);
      expect(c.tensors.get('conv4.conv.weight')!.torchDtype).toBe('float32');
    }
    expect((await readTorchCheckpoint(join(PT, 'ref-torch.pt'))).archive).toBe('ref-torch');
  });

  it('rebuilds strided views, every storage type, parameters and nested dicts', async () => {
    const c = await readTorchCheckpoint(join(PT, 'views.pt'));
    const v = (k: string) => Array.from(c.tensors.get(`model.${k}`)!.data);
    expect(v('a')).toEqual([0, 1, 2, 3, 4, 5]);
    expect(v('a_t')).toEqual([0, 3, 1, 4, 2, 5]);
    expect(c.tensors.get('model.a_t')!.shape).toEqual([3, 2]);
    expect(v('tail')).toEqual([6, 7, 8, 9, 10, 11]);
    expect(v('expand')).toEqual([1, 2, 1, 2]);
    expect(v('half')).toEqual([1.5, -2, 65504]);
    expect(v('bf16')).toEqual([1.5, -3]);
    expect(v('f64')).toEqual([Math.fround(0.1), Math.fround(-1e-3)]);
    expect(v('i64')).toEqual([7, -9]);
    expect(v('i32')).toEqual([-5]);
    expect(c.tensors.get('model.i32')!.shape).toEqual([]);
    expect(v('u8')).toEqual([0, 255]);
    expect(v('bool')).toEqual([1, 0]);
    expect(v('param')).toEqual([3, 4, 5]);
    expect(c.tensors.get('model.bf16')!.torchDtype).toBe('bfloat16');
    expect(c.metadata).toEqual({ epoch: '3', lr: '0.1', name: 'views', best: 'null' });
  });

  it('sniffs zip, legacy pickle and other files from their first bytes', () => {
    expect(sniffTorchFormat(readFileSync(join(PT, 'ref.pt')))).toBe('zip');
    expect(sniffTorchFormat(readFileSync(join(PT, 'legacy.pt')))).toBe('legacy-pickle');
    expect(sniffTorchFormat(readFileSync(FIXTURE))).toBe('other');
  });

  it('refuses damaged records, inconsistent storages and over-limit archives with one line', async () => {
    const ref = readFileSync(join(PT, 'views.pt'));
    // flip one byte inside the first storage record: the CRC-32 check catches it
    const bad = Buffer.from(ref);
    const at = bad.indexOf(Buffer.from('views/data/0')) + 'views/data/0'.length + 3;
    bad[at] ^= 0xff;
    expect(await refused(parseTorchCheckpoint(bad, 'flip.pt'))).toMatch(/flip.pt: zip entry views\/data\/0 fails its CRC-32 check/);
    expect(await refused(readZipEntries(ref, 'few.pt', { maxEntries: 3 }))).toMatch(/has \d+ entries \(at most 3 accepted\)/);
    expect(await refused(readZipEntries(ref, 'small.pt', { maxEntryBytes: 100 }))).toMatch(/declares \d+ bytes \(at most 100 accepted\)/);
    expect(await refused(parseTorchCheckpoint(ref, 'tiny.pt', { maxTensorElements: 5 }))).toMatch(/tensor of shape \[2, 3\] has more than 5 elements/);
    expect(await refused(parseTorchCheckpoint(Buffer.from('hello world'), 'x.pt'))).toMatch(/x.pt: not a PyTorch checkpoint/);
    // torch.jit.save of nn.Linear(2, 2) (Debian's PyTorch 1.13, fixtures/make_pt_fixture.py --torch)
    expect(await refused(readTorchCheckpoint(join(PT, 'torchscript.pt')))).toMatch(/a TorchScript archive \(torch.jit.save\).*torch.save\(model.state_dict\(\), path\)/);
  });

  it('refuses views beyond their storage, hooks and stride-0 blow-ups (hand-made pickles)', async () => {
    const pid = (numel: number) => `((X\x07\0\0\0storagectorch\nFloatStorage\nX\x01\0\0\x000X\x03\0\0\0cpuJ${le32(numel)}tQ`;
    const tensor = (numel: number, offset: number, size: string, stride: string, hooks = 'ccollections\nOrderedDict\n)R') =>
      `\x80\x02ccollections\nOrderedDict\n)RX\x01\0\0\0wctorch._utils\n_rebuild_tensor_v2\n${pid(numel)}J${le32(offset)}${size}${stride}\x89${hooks}tRs.`;
    const zipOf = async (pkl: string, storage: Buffer) => {
      const z = await encodeTorchCheckpoint(new Map([['w', { shape: [storage.length / 4], data: new Float32Array(storage.buffer, storage.byteOffset, storage.length / 4) }]]), 'archive');
      // swap in the hand-made pickle: rebuild a zip with yazl through the same writer's layout
      return replacePickle(z, Buffer.from(pkl, 'latin1'));
    };
    const four = Buffer.alloc(16);
    expect(await refused(parseTorchCheckpoint(await zipOf(tensor(4, 2, 'K\x03\x85', 'K\x01\x85'), four), 'off.pt')))
      .toMatch(/tensor of shape \[3\] \(offset 2, stride \[1\]\) reaches element 4 of a storage of 4/);
    expect(await refused(parseTorchCheckpoint(await zipOf(tensor(5, 0, 'K\x05\x85', 'K\x01\x85'), four), 'numel.pt')))
      .toMatch(/storage 0 claims 5 elements of FloatStorage \(20 bytes\) but its record holds 16 bytes/);
    expect(await refused(parseTorchCheckpoint(await zipOf(tensor(4, 0, 'K\x04\x85', 'K\x01\x85', 'ccollections\nOrderedDict\n)RK\x01K\x02s'), four), 'hooks.pt')))
      .toMatch(/_rebuild_tensor_v2 with backward hooks/);
    // [4097, 4096] stride (0, 0) views one element 16.8M times: more than 4x the stored elements and 2^24
    expect(await refused(parseTorchCheckpoint(await zipOf(tensor(4, 0, 'M\x01\x10M\x00\x10\x86', 'K\x00K\x00\x86'), four), 'expand.pt')))
      .toMatch(/expand 4 stored elements/);
    const ok = await parseTorchCheckpoint(await zipOf(tensor(4, 1, 'K\x03\x85', 'K\x01\x85'), Buffer.from(Float32Array.from([9, 8, 7, 6]).buffer)), 'ok.pt');
    expect(Array.from(ok.tensors.get('w')!.data)).toEqual([8, 7, 6]);
  });

  it('the unpickler refuses object construction, unknown globals and calls, and bounds its memory', () => {
    const policy: PicklePolicy = {
      globals: new Set(['collections.OrderedDict']),
      call: (fn, args, refuse) => (fn.qualified === 'collections.OrderedDict' && args.length === 0 ? new PyDict() : refuse(`calls ${fn.qualified}`)),
      persistentLoad: (_pid, refuse) => refuse('no persistent ids'),
      build: (obj, _state, refuse) => (obj instanceof PyDict ? obj : refuse('BUILD')),
    };
    const run = (s: string, limits = {}) => () => unpickle(Buffer.from(s, 'latin1'), 'p', policy, limits);
    const r = run('\x80\x02]q\x00(K\x01M\x00\x01J\xff\xff\xff\xff\x8a\x05\x00\x00\x00\x00\x01G?\xf8\x00\x00\x00\x00\x00\x00X\x02\x00\x00\x00hi\x88N)h\x00\x85e.')() as unknown[];
    expect(r.slice(0, 8)).toEqual([1, 256, -1, 2 ** 32, 1.5, 'hi', true, null]);
    expect(r[8]).toBeInstanceOf(PyTuple);
    expect(r[9]).toBeInstanceOf(PyTuple);
    const cases: Array<[string, RegExp, object?]> = [
      ['\x80\x02cos\nsystem\n.', /p: refused: the pickle names os.system, which is not allowed here/],
      ['\x80\x02ccollections\nOrderedDict\nK\x01\x85R.', /refused: calls collections.OrderedDict/],
      ['\x80\x02ccollections\nOrderedDict\n)\x81.', /opcode NEWOBJ/],
      ['(S\'x\'\n.', /opcode STRING/],
      ['\x80\x02K\x01K\x02b.', /refused: BUILD/],
      ['\x80\x02N', /truncated pickle \(no STOP opcode\)/],
      ['\x80\x02X\x10\x00\x00\x00abc', /truncated pickle \(a string needs 16 bytes, 3 left\)/],
      ['\x80\x02\x8a\x09' + '\x00'.repeat(9) + '.', /an integer of 9 bytes/],
      ['\x80\x02\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x40.', /out of the safe range/],
      ['\x80\x02' + 'K\x01'.repeat(11) + '.', /pickle stack deeper than 10/, { maxStack: 10 }],
      ['\x80\x02' + '('.repeat(11) + '.', /more than 10 nested MARKs/, { maxMarks: 10 }],
      ['\x80\x02' + ']'.repeat(5) + 'a'.repeat(4) + '.', /nested deeper than 4/, { maxDepth: 4 }],
      ['\x80\x02N' + 'q\x00q\x01q\x02' + '.', /memo larger than 2 entries/, { maxMemo: 2 }],
      ['\x80\x02K\x01K\x02.', /STOP with a non-empty stack/],
      ['\x80\x02\xfe.', /unknown pickle opcode 0xfe/],
    ];
    for (const [s, re, lim] of cases) {
      const e = (() => { try { run(s, lim)(); } catch (err) { return err as Error; } return undefined; })();
      expect(e, s).toBeInstanceOf(UsageError);
      expect(e!.message).toMatch(re);
    }
  });
});

describe('cnnf import --from pytorch model.pt', () => {
  it('imports the .pt files exactly as the safetensors weights, with the same logits and clean accuracy', async () => {
    const dir = tmp();
    const args = ['--from', 'pytorch', '--cycles', '2', '--res-param', '0.1'];
    const a = await run(['import', join(PT, 'ref.pt'), ...args, '-o', join(dir, 'a.safetensors')]);
    const b = await run(['import', join(PT, 'ref-torch.pt'), ...args, '-o', join(dir, 'b.safetensors')]);
    const c = await run(['import', FIXTURE, '--prefix', 'param.', ...args, '-o', join(dir, 'c.safetensors')]);
    for (const r of [a, b, c]) expect(r.code, r.stderr).toBe(0);
    expect(a.stdout).toMatch(/wrote .*a.safetensors \(fmnist, fc 64,32, 10 classes, ind 2, cycles 2, res_param 0.1\)/);
    const ma = await loadCheckpoint(join(dir, 'a.safetensors'));
    const mb = await loadCheckpoint(join(dir, 'b.safetensors'));
    const mc = await loadCheckpoint(join(dir, 'c.safetensors'));
    expect(ma.info.source).toBe('imported from PyTorch checkpoint ref.pt');
    expect(ma.info.config).toEqual(mc.info.config);
    const arrays = async (m: typeof ma) => new Map([...(await m.model.toArrays())].map(([k, v]) => [k, { ...v, dtype: 'F32' as const }]));
    sameTensors(await arrays(ma), await arrays(mc));
    sameTensors(await arrays(mb), await arrays(mc));
    const test = loadDataset({ testSize: 50 }).test;
    const x = tf.tensor4d(test.images, [test.count, 28, 28, 1]);
    const acc = (m: typeof ma) => {
      const logits = m.model.logits(x);
      const pred = logits.argMax(1).dataSync();
      const hex = bits(logits.dataSync() as Float32Array);
      return { hex, acc: Array.from(pred).reduce((s, p, i) => s + (p === test.labels[i] ? 1 : 0), 0) / test.count };
    };
    const [ra, rb, rc] = [acc(ma), acc(mb), acc(mc)];
    expect(ra.hex).toBe(rc.hex);
    expect(rb.hex).toBe(rc.hex);
    expect(ra.acc).toBe(rc.acc);
    // (the fixture's narrowed reference weights are untrained: its accuracy is near chance, 0.12 here)
    expect(rc.acc).toBeGreaterThanOrEqual(0);
  }, 120_000);

  const hostile: Array<[string, RegExp]> = [
    ['evil-os-system.pt', /refused: the pickle names os\.system/],
    ['evil-posix-system.pt', /refused: the pickle names posix\.system/],
    ['evil-getattr.pt', /refused: the pickle names builtins\.getattr/],
    ['evil-stack-global.pt', /refused: the pickle names builtins\.eval/],
    ['evil-reduce-storage.pt', /refused: the pickle calls torch\.FloatStorage/],
    ['evil-newobj.pt', /refused: pickle opcode NEWOBJ/],
    ['evil-deep.pt', /refused: containers nested deeper than 64/],
    ['evil-huge-string.pt', /refused: a string of 4294967295 bytes/],
    ['evil-huge-storage.pt', /refused: storage 0 claims 1099511627776 elements/],
    ['evil-huge-shape.pt', /refused: tensor of shape \[1000000000, 1000000000\] has more than/],
    ['evil-memo.pt', /refused: malformed pickle \(memo entry 0 is missing\)/],
    ['evil-zip-bomb.pt', /inflates 65232 bytes to 67108864 .*zip bomb/],
    ['evil-zip-liar.pt', /zip entry archive\/data.pkl is damaged \(too many bytes/],
    ['evil-truncated.pt', /not a readable zip archive .*truncated/],
    ['evil-truncated-tail.pt', /not a readable zip archive .*truncated/],
    ['legacy.pt', /legacy \(pre-1\.6\) torch\.save format.*_use_new_zipfile_serialization=True.*safetensors/],
  ];
  it('every hostile or legacy file: exit 2, one line, nothing written', async () => {
    expect(readdirSync(PT).filter((f) => f.startsWith('evil-') || f === 'legacy.pt').sort()).toEqual(hostile.map(([f]) => f).sort());
    const dirs = hostile.map(() => tmp());
    const results: CliResult[] = [];
    for (const [i, [f]] of hostile.entries()) results.push(await run(['import', '--from', 'pytorch', join(PT, f), '-o', join(dirs[i], 'out.safetensors')]));
    // and through the launcher in a child process, for the first one
    results.push(await cnnf(['import', '--from', 'pytorch', join(PT, hostile[0][0]), '-o', join(dirs[0], 'out.safetensors')], { cwd: dirs[0] }));
    const cases = [...hostile, hostile[0]];
    results.forEach((r, i) => {
      expect(oneLine(r), cases[i][0]).toMatch(cases[i][1]);
      expect(readdirSync(dirs[i % hostile.length]), cases[i][0]).toEqual([]);
    });
  }, 120_000);
});

describe('cnnf export --to pytorch', () => {
  it('round-trips import -> export (safetensors and .pt) -> import bit for bit; the .pt is deterministic', async () => {
    const dir = tmp();
    const imported = join(dir, 'm.safetensors');
    expect((await run(['import', '--from', 'pytorch', join(PT, 'ref.pt'), '--cycles', '1', '-o', imported])).code).toBe(0);
    const e1 = await cnnf(['export', '--to', 'pytorch', imported, '-o', join(dir, 'ref.safetensors')]);
    const e2 = await run(['export', '--to', 'pytorch', imported, '--backend', 'wasm', '-o', join(dir, 'ref.pt')]);
    const e3 = await run(['export', '--to', 'pytorch', imported, '--backend', 'wasm', '--prefix', 'module.', '--format', 'pt', '-o', join(dir, 'ddp.bin')]);
    for (const r of [e1, e2, e3]) expect(r.code, r.stderr).toBe(0);
    expect(e2.stdout).toMatch(/torch.save checkpoint, 14 tensors/);
    // the exported tensors are the reference state_dict bit for bit, in either format
    const ref = await readTorchCheckpoint(join(PT, 'ref-torch.pt'));
    sameTensors(parseSafetensors(readFileSync(join(dir, 'ref.safetensors')), 'x').tensors, ref.tensors);
    const pt = await readTorchCheckpoint(join(dir, 'ref.pt'));
    sameTensors(pt.tensors, ref.tensors);
    expect([...pt.tensors.keys()]).toEqual([...ref.tensors.keys()]);
    expect([...(await readTorchCheckpoint(join(dir, 'ddp.bin'))).tensors.keys()][0]).toBe('module.conv1.conv.weight');
    const back = [
      await run(['import', '--from', 'pytorch', join(dir, 'ref.safetensors'), '--cycles', '1', '-o', join(dir, 'b1.safetensors')]),
      await run(['import', '--from', 'pytorch', join(dir, 'ref.pt'), '--cycles', '1', '-o', join(dir, 'b2.safetensors')]),
    ];
    for (const r of back) expect(r.code, r.stderr).toBe(0);
    const t0 = parseSafetensors(readFileSync(imported), 'a').tensors;
    sameTensors(parseSafetensors(readFileSync(join(dir, 'b1.safetensors')), 'b').tensors, t0);
    sameTensors(parseSafetensors(readFileSync(join(dir, 'b2.safetensors')), 'c').tensors, t0);
    // deterministic bytes: the same tensors encode to the same file
    const again = await encodeTorchCheckpoint(new Map([...pt.tensors].map(([k, v]) => [k, v])), 'ref');
    expect(again.equals(readFileSync(join(dir, 'ref.pt')))).toBe(true);
  }, 120_000);

  const torchPython = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
  it.skipIf(!torchPython)('PyTorch reads the exported .pt with torch.load(weights_only=True) equal to its own torch.save (needs python3-torch)', async () => {
    const dir = tmp();
    const imported = join(dir, 'm.safetensors');
    expect((await run(['import', '--from', 'pytorch', join(PT, 'ref-torch.pt'), '-o', imported])).code).toBe(0);
    expect((await run(['export', '--to', 'pytorch', imported, '--backend', 'wasm', '-o', join(dir, 'out.pt')])).code).toBe(0);
    const script = `import torch,sys\nsd=torch.load(sys.argv[1],weights_only=True)\nref=torch.load(sys.argv[2],weights_only=True)\nprint(type(sd).__name__, list(sd)==list(ref), all(torch.equal(sd[k],ref[k]) for k in ref))`;
    const r = spawnSync('/usr/bin/python3', ['-c', script, join(dir, 'out.pt'), join(PT, 'ref-torch.pt')], { encoding: 'utf8' });
    expect(r.stdout.trim(), r.stderr).toBe('OrderedDict True True');
  }, 120_000);

  it('bad input: one line, exit 2, nothing written', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'junk.safetensors'), 'junk');
    const rs = [
      await run(['export', '--to', 'keras', FIXTURE, '-o', join(dir, 'x.pt')]),
      await run(['export', '--to', 'pytorch', FIXTURE, '--backend', 'wasm', '-o', join(dir, 'x.pt')]),
      await run(['export', '--to', 'pytorch', join(dir, 'junk.safetensors'), '--backend', 'wasm', '-o', join(dir, 'x.pt')]),
      await run(['export', '--to', 'pytorch', FIXTURE, '--format', 'onnx', '-o', join(dir, 'x.pt')]),
    ];
    expect(oneLine(rs[0])).toMatch(/--to must be one of pytorch, tfjs, onnx/);
    expect(oneLine(rs[1])).toMatch(/not a cnnf checkpoint.*cnnf import/);
    expect(oneLine(rs[2])).toMatch(/junk.safetensors/);
    expect(oneLine(rs[3])).toMatch(/--format must be one of safetensors, pt/);
    expect(existsSync(join(dir, 'x.pt'))).toBe(false);
  }, 120_000);
});

function le32(n: number): string {
  return String.fromCharCode(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
}

/** The same archive with ARCHIVE/data.pkl replaced (re-zipped with the readers' own writer path). */
async function replacePickle(zip: Buffer, pkl: Buffer): Promise<Buffer> {
  const entries = await readZipEntries(zip, 'mem');
  const yazl = (await import('yazl')).default;
  const z = new yazl.ZipFile();
  for (const [name, data] of entries) z.addBuffer(name.endsWith('/data.pkl') ? pkl : data, name, { compress: false });
  z.end();
  const chunks: Buffer[] = [];
  for await (const c of z.outputStream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}
