/**
 * A realistic `cnnf eval` results object for report/gate tests: a plain CNN and a CNN-F (1 cycle)
 * on a 1000-example Fashion-MNIST subset, Gaussian noise, FGSM, PGD-7 (first and e2e for CNN-F) and a
 * targeted PGD-7. Every accuracy is exactly the trace of its 10x10 confusion matrix / 1000.
 * `sampleResults()` returns a fresh deep copy each call, so tests may mutate it.
 */
import { metricKey, RESULTS_FORMAT, type AttackMode, type AttackResult, type Counted, type EvalResults, type ModelResult } from '../../src/eval/results.js';
import { ALPHA, ciPair, encodeOutcomes, INTERVAL_METHOD, PAIRED_TEST } from '../../src/eval/stats.js';

export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

const PER_CLASS = 100;
/** Classes each class is most often mistaken for (Fashion-MNIST's usual confusions). */
const CONFUSABLE: number[][] = [[6, 3, 2], [3, 0, 4], [4, 6, 0], [0, 4, 6], [2, 6, 3], [7, 9, 8], [0, 2, 4], [5, 9, 8], [0, 6, 5], [7, 5, 8]];
/** How hard each class is relative to the average (Shirt hardest, Trouser/Bag easiest). */
const DIFFICULTY = [1, -3, 2, 1, 2, -2, 4, -1, -3, -1];

/** Deterministic confusion matrix whose trace is round(accuracy * 1000). */
export function confusionFor(accuracy: number): number[][] {
  const correct = Math.round(accuracy * PER_CLASS * 10);
  const diag = new Array<number>(10).fill(Math.floor(correct / 10));
  for (let i = 0; i < correct % 10; i++) diag[i]! += 1;
  // move correct predictions from hard to easy classes, keeping the total
  const spread = Math.round(Math.min(correct, 1000 - correct) / 60);
  for (let i = 0; i < 10; i++) {
    const j = 9 - i;
    const shift = Math.min(spread * Math.max(0, DIFFICULTY[i]!), diag[i]!, PER_CLASS - diag[j]!);
    if (DIFFICULTY[i]! > 0 && DIFFICULTY[j]! < 0 && shift > 0) {
      diag[i]! -= shift;
      diag[j]! += shift;
    }
  }
  return diag.map((d, i) => {
    const row = new Array<number>(10).fill(0);
    row[i] = d;
    let wrong = PER_CLASS - d;
    const [a, b, c] = CONFUSABLE[i]!;
    const toA = Math.round(wrong * 0.5);
    const toB = Math.round(wrong * 0.25);
    const toC = Math.round(wrong * 0.15);
    row[a!]! += toA;
    row[b!]! += toB;
    row[c!]! += toC;
    wrong -= toA + toB + toC;
    for (let k = 1; wrong > 0; k++) {
      const t = (i + k) % 10;
      if (t === i) continue;
      row[t]! += 1;
      wrong -= 1;
    }
    return row;
  });
}

const trace = (m: number[][]): number => m.reduce((s, row, i) => s + row[i]!, 0);

function attack(
  name: string, method: AttackResult['method'], mode: AttackMode | null, settings: Record<string, unknown>,
  points: Array<[eps: number, accuracy: number, successRate?: number]>, targeted = false,
): AttackResult {
  return {
    name, method, mode, targeted, settings,
    points: points.map(([eps, accuracy, successRate]) => {
      const confusion = confusionFor(accuracy);
      return { eps, accuracy: trace(confusion) / 1000, ...(successRate !== undefined ? { successRate } : {}), confusion };
    }),
  };
}

const GAUSSIAN = { clip: [0, 1], samples: 1 };
const FGSM = { clip: [0, 1], norm: 'linf' };
const PGD7 = { steps: 7, stepSize: 'eps/4', randomStart: true, restarts: 1, norm: 'linf', clip: [0, 1] };
const PGD7_TARGETED = { ...PGD7, target: 'random-other-class', loss: 'cross-entropy-to-target' };

function model(
  name: string, cycles: number, sha256: string, clean: number, attacks: AttackResult[], worst: Array<[number, number]>, dumps?: string[],
): ModelResult {
  const confusion = confusionFor(clean);
  const m: ModelResult = {
    name,
    path: `models/${name}.safetensors`,
    sha256,
    arch: cycles > 0 ? 'cnnf-ind2' : 'cnn-ind2',
    cycles,
    readout: 'last',
    classNames: [...FASHION_MNIST_CLASSES],
    clean: { accuracy: trace(confusion) / 1000, confusion },
    attacks,
    worstCase: worst.map(([eps, accuracy]) => ({ eps, accuracy })),
    metrics: {},
    ...(dumps ? { dumps } : {}),
  };
  m.metrics.clean = m.clean.accuracy;
  for (const a of attacks) {
    for (const p of a.points) {
      m.metrics[metricKey(a.name, p.eps, a.mode)] = p.accuracy;
      if (p.successRate !== undefined) m.metrics[metricKey(a.name, p.eps, a.mode, 'success')] = p.successRate;
    }
  }
  for (const w of m.worstCase) m.metrics[`worst@${w.eps}`] = w.accuracy;
  return m;
}

const SAMPLE: EvalResults = {
  format: RESULTS_FORMAT,
  tool: { name: 'cnnf', version: '0.1.0' },
  createdAt: '2025-11-27T04:30:12.345Z',
  provenance: {
    command: 'cnnf eval models/cnn.safetensors models/cnnf.safetensors --suite standard --examples 1000 --seed 1234 --json results.json',
    backend: 'tfjs-cpu',
    seed: 1234,
    dataset: 'fashion-mnist',
    testSubset: 'test[0:1000]',
    examples: 1000,
    suite: 'standard',
    node: 'v20.20.2',
    platform: 'linux-x64',
    durationSeconds: 512.3,
  },
  models: [
    model('cnn', 0, '3f1c9a0d5e7b2468ac13579bdf02468ace13579bdf02468ace13579bdf024681', 0.912, [
      attack('gaussian', 'gaussian', null, GAUSSIAN, [[0.1, 0.897], [0.2, 0.842], [0.3, 0.731]]),
      attack('fgsm', 'fgsm', 'first', FGSM, [[0.05, 0.514], [0.1, 0.231], [0.2, 0.064]]),
      attack('pgd7', 'pgd', 'first', PGD7, [[0, 0.912], [0.1, 0.087], [0.2, 0.003]]),
      attack('pgd7-targeted', 'pgd', 'first', PGD7_TARGETED, [[0.1, 0.402, 0.537], [0.2, 0.118, 0.852]], true),
    ], [[0.1, 0.061], [0.2, 0.001]], ['dumps/cnn-pgd7-0.2.png']),
    model('cnnf', 1, 'a07e55c2b1d94f3e8c6a2b0d19e7f4c3b5a6d8e0f1c2b3a4d5e6f708192a3b4c', 0.897, [
      attack('gaussian', 'gaussian', null, GAUSSIAN, [[0.1, 0.889], [0.2, 0.866], [0.3, 0.812]]),
      attack('fgsm', 'fgsm', 'first', FGSM, [[0.05, 0.683], [0.1, 0.524], [0.2, 0.298]]),
      attack('pgd7', 'pgd', 'first', PGD7, [[0, 0.897], [0.1, 0.421], [0.2, 0.198]]),
      attack('pgd7', 'pgd', 'e2e', PGD7, [[0, 0.897], [0.1, 0.356], [0.2, 0.142]]),
      attack('pgd7-targeted', 'pgd', 'e2e', PGD7_TARGETED, [[0.1, 0.611, 0.244], [0.2, 0.402, 0.471]], true),
    ], [[0.1, 0.318], [0.2, 0.121]], ['dumps/cnnf-pgd7-0.2.png', 'dumps/not-there.png']),
  ],
};

/**
 * Per-example outcomes for every accuracy, as `cnnf eval` stores them: example i is correct when its
 * pseudo-random rank (a fixed hash of model, metric and i) is below accuracy x 1000, so the outcomes
 * of two models are nearly independent: a few points apart is not significant, tens of points are.
 */
function addCounts(r: EvalResults): void {
  const n = r.provenance.examples;
  const fill = (c: Counted & { accuracy: number }, key: string): void => {
    const k = Math.round(c.accuracy * n);
    let h = 2166136261;
    for (const ch of key) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
    const order = Array.from({ length: n }, (_, i) => i);
    let state = h || 1;
    for (let i = n - 1; i > 0; i--) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      const j = state % (i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const ok = new Uint8Array(n);
    for (let i = 0; i < k; i++) ok[order[i]!] = 1;
    Object.assign(c, { correct: k, n, ci: ciPair(k, n), outcomes: encodeOutcomes(ok) });
  };
  for (const m of r.models) {
    fill(m.clean, `${m.name}/clean`);
    for (const a of m.attacks) {
      for (const p of a.points) {
        fill(p, `${m.name}/${a.name}/${a.mode}/${p.eps}`);
        if (p.successRate !== undefined) p.successCi = ciPair(Math.round(p.successRate * n), n);
      }
    }
    for (const w of m.worstCase) fill(w, `${m.name}/worst/${w.eps}`);
  }
  r.statistics = { interval: INTERVAL_METHOD, pairedTest: PAIRED_TEST, alpha: ALPHA };
}
addCounts(SAMPLE);

export function sampleResults(): EvalResults {
  return structuredClone(SAMPLE);
}

/** The same results as written before counts, intervals and outcomes were stored (still valid input). */
export function legacySampleResults(): EvalResults {
  const r = sampleResults();
  const strip = (c: Counted & { successCi?: unknown }): void => {
    delete c.correct;
    delete c.n;
    delete c.ci;
    delete c.outcomes;
    delete c.successCi;
  };
  for (const m of r.models) {
    strip(m.clean);
    for (const a of m.attacks) a.points.forEach(strip);
    m.worstCase.forEach(strip);
  }
  delete r.statistics;
  return r;
}
