/**
 * `npm run bench -- --profile` (issue 21, item 3): where the time of an attack's model calls goes, per
 * tfjs kernel, on the shipped reference-cnn-adv and reference-cnnf-adv, one thread, on --backend:
 *   forward    the model's prediction (cycles + readout), as Square, SPSA, FAB's and APGD's
 *              bookkeeping passes and every clean pass run it
 *   grad:first the input gradient of the cross-entropy through the first pass (APGD, PGD, FAB on a CNN)
 *   grad:e2e   the same end to end through every cycle (CNN-F only)
 * at `--batch` images (default 10: AutoAttack's units on 2 cores are small), tf.profile of `reps` runs
 * after 3 warm-ups: kernel milliseconds per call (summed per kernel name; the custom-gradient ops'
 * enclosing "unnamed scope" entries are left out, their inner kernels counted) and the wall time, whose
 * difference is JS-side work (op dispatch, tape bookkeeping, reading the result back).
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { predictLogits, type Victim } from '../src/attacks/index.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';

export interface KernelProfile {
  model: string;
  what: string;
  batch: number;
  wallMs: number;
  kernelMs: number;
  kernelsPerCall: number;
  /** The kernels by time, ms per call. */
  top: Array<{ kernel: string; ms: number; calls: number }>;
}

export async function profileKernels(root: string, o: { batch: number; reps: number; log: (s: string) => void }): Promise<KernelProfile[]> {
  const out: KernelProfile[] = [];
  const x = tf.randomUniform([o.batch, 28, 28, 1], -1, 1, 'float32', 7) as tf.Tensor4D;
  const y = tf.tidy(() => tf.oneHot(tf.cast(tf.floor(tf.randomUniform([o.batch], 0, 10, 'float32', 8)), 'int32'), 10));
  try {
    for (const name of ['reference-cnn-adv', 'reference-cnnf-adv']) {
      const ck = await loadCheckpoint(join(root, 'models', `${name}.safetensors`));
      try {
        const cycles = ck.model.config.cycles;
        const victim = (mode: 'first' | 'e2e'): Victim => ({ model: ck.model, mode, cycles, readout: ck.info.readout });
        const loss = (v: Victim) => (xx: tf.Tensor) => tf.losses.softmaxCrossEntropy(y, predictLogits(v, xx as tf.Tensor4D)) as tf.Scalar;
        const calls: Array<[string, () => Promise<void>]> = [
          ['forward', async () => { await tf.tidy(() => predictLogits(victim('first'), x)).data(); }],
          ['grad:first', async () => { const g = tf.grad(loss(victim('first')))(x); await g.data(); g.dispose(); }],
        ];
        if (cycles > 0) calls.push(['grad:e2e', async () => { const g = tf.grad(loss(victim('e2e')))(x); await g.data(); g.dispose(); }]);
        for (const [what, call] of calls) {
          for (let i = 0; i < 3; i++) await call();
          const agg = new Map<string, { ms: number; calls: number }>();
          let wall = 0;
          for (let r = 0; r < o.reps; r++) {
            const t0 = performance.now();
            const info = await tf.profile(call);
            wall += performance.now() - t0;
            for (const k of info.kernels) {
              // a custom-gradient op (src/backend/engine.ts lazyGradOp) is profiled as one "unnamed scope"
              // kernel whose time is that of the kernels inside it, which are listed too
              if (k.name === 'unnamed scope') continue;
              const a = agg.get(k.name) ?? { ms: 0, calls: 0 };
              a.ms += Number(k.kernelTimeMs) || 0;
              a.calls++;
              agg.set(k.name, a);
            }
          }
          const per = (v: number) => +(v / o.reps).toFixed(3);
          const top = [...agg.entries()].map(([kernel, a]) => ({ kernel, ms: per(a.ms), calls: a.calls / o.reps })).sort((p, q) => q.ms - p.ms);
          const row: KernelProfile = {
            model: name, what, batch: o.batch, wallMs: per(wall), kernelMs: +top.reduce((s, k) => s + k.ms, 0).toFixed(3),
            kernelsPerCall: top.reduce((s, k) => s + k.calls, 0), top: top.slice(0, 12),
          };
          out.push(row);
          o.log(`bench: profile ${name} ${what}: ${row.wallMs} ms per call`);
        }
      } finally {
        ck.model.dispose();
      }
    }
  } finally {
    tf.dispose([x, y]);
  }
  return out;
}

export function profileLines(rows: KernelProfile[]): string[] {
  return rows.flatMap((r) => [
    `${r.model} ${r.what}, batch ${r.batch}: ${r.wallMs} ms per call (profiled), kernels ${r.kernelMs} ms, ${r.kernelsPerCall} kernels`,
    ...r.top.map((k) => `  ${k.kernel.padEnd(28)} ${k.ms.toFixed(3).padStart(8)} ms  ${(k.ms / r.kernelMs * 100).toFixed(0).padStart(3)} %  x${k.calls}`),
  ]);
}
