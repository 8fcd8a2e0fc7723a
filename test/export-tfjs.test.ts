/** `cnnf export --to tfjs`: plain CNN checkpoint -> stock TF.js LayersModel folder with the same logits. */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tfl from '@tensorflow/tfjs';
import { tf, wasm } from './helpers/tf.js';
import { ROOT } from './helpers/cli.js';
import { exportTfjs } from '../src/io/export-tfjs.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { readLayersModelArtifacts, readSidecar } from '../src/io/tfjs.js';
import { loadDataset } from '../src/data/index.js';
import { UsageError } from '../src/errors.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'cnnf-tfx-'));

describe('export --to tfjs', () => {
  beforeAll(wasm);

  for (const name of ['cnn-fmnist', 'reference-cnn-adv']) {
    it(`${name}: the LayersModel's logits equal cnnf's forward`, async () => {
      const ckpt = join(ROOT, 'models', `${name}.safetensors`);
      const out = join(tmp(), 'm');
      await exportTfjs(ckpt, out);
      expect(readdirSync(out).sort()).toEqual(['group1-shard1of1.bin', 'model.cnnf.json', 'model.json']);
      expect(readSidecar(out)).toMatchObject({ range: '-1,1', layout: 'NHWC', output: 'logits' });
      const net = await tfl.loadLayersModel(tfl.io.fromMemory(readLayersModelArtifacts(out).artifacts));
      const test = loadDataset({ testSize: 32 }).test;
      const x = tf.tensor4d(test.images, [test.count, 28, 28, 1]);
      const ref = await loadCheckpoint(ckpt);
      const a = ref.model.logits(x).dataSync();
      const b = (net.predict(x) as tf.Tensor).dataSync();
      let maxRel = 0;
      const scale = Math.max(...Array.from(a, Math.abs));
      for (let i = 0; i < a.length; i++) maxRel = Math.max(maxRel, Math.abs(a[i] - b[i]) / scale);
      console.log(`${name}: max |diff| / max |logit| = ${maxRel.toExponential(2)}`);
      expect(b.length).toBe(a.length);
      expect(maxRel).toBeLessThan(1e-4);
      const am = (v: ArrayLike<number>) => Array.from({ length: test.count }, (_, n) => { let k = 0; for (let j = 1; j < 10; j++) if (v[n * 10 + j] > v[n * 10 + k]) k = j; return k; });
      expect(am(b)).toEqual(am(a));
      ref.model.dispose();
      net.dispose();
    }, 60_000);
  }

  it('refuses a CNN-F and a non-empty folder with one line', async () => {
    await expect(exportTfjs(join(ROOT, 'models', 'cnnf-fmnist.safetensors'), join(tmp(), 'x'))).rejects.toThrow(UsageError);
    await expect(exportTfjs(join(ROOT, 'models', 'cnn-fmnist.safetensors'), ROOT)).rejects.toThrow(/not empty/);
  });
});
