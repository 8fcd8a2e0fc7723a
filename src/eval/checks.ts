/**
 * Automatic checks for evaluations that cannot be trusted (masked or obfuscated gradients, broken
 * attacks, models that are not what they seem), run by every `cnnf eval`. Sources: AutoAttack
 * (Croce & Hein 2020, its zero-gradient and softmax checks), "On Evaluating Adversarial Robustness"
 * (Carlini et al. 2019, section 5 checklist) and "On Adaptive Attacks" (Tramer et al. 2020).
 *
 * Two kinds: result checks compare the attack results of one model (2-5, 8, 9); probe checks run a few
 * small computations on a probe batch of the test split (1, 6, 7).
 */
import * as tf from '@tensorflow/tfjs-core';
import { lossGradient, PGD, predictLogits, type Victim } from '../attacks/index.js';
import { deriveSeed, mulberry32 } from '../data/index.js';
import type { CNNF, Readout } from '../models/cnnf.js';
import { isForeign, type ForeignClassifier } from '../models/foreign.js';
import { percent } from '../format.js';
import type { AttackMode, AttackResult } from './results.js';

export type CheckSeverity = 'warning' | 'info';

export interface EvalCheck {
  /** Stable id, e.g. "zero-gradient". */
  id: string;
  /** The number of the check in the list below (1-9). */
  number: number;
  severity: CheckSeverity;
  model: string;
  message: string;
  evidence: Record<string, unknown>;
}

export const CHECK_IDS = {
  1: 'zero-gradient',
  2: 'gradient-free-beats-white-box',
  3: 'margin-beats-ce',
  4: 'accuracy-rises',
  5: 'gradient-paths-disagree',
  6: 'nondeterministic',
  7: 'unbounded-attack-fails',
  8: 'clean-near-chance',
  9: 'dataset-mismatch',
} as const;

const pct = percent;

/** Half-width of a difference two accuracies on n examples may show by chance (two standard errors, at least one example). */
export function noiseMargin(p: number, n: number): number {
  return Math.max(1 / n, 1.96 * Math.sqrt((2 * Math.max(p * (1 - p), 1 / n)) / n));
}

interface Pt { attack: AttackResult; eps: number; accuracy: number }

function lossFamily(a: AttackResult): string {
  const l = a.settings.loss;
  if (typeof l !== 'string') return 'ce';
  return l.replace(/-targeted$/, '');
}

function normOf(a: AttackResult): string {
  return typeof a.settings.norm === 'string' ? a.settings.norm : 'linf';
}

/** Which kind of attack produced a result (by its settings; the registry's kind is passed in by evaluate). */
export interface ResultCheckInput {
  model: string;
  clean: number;
  numClasses: number;
  examples: number;
  attacks: AttackResult[];
  /** Kind of each attack, by attack name. */
  kinds: Record<string, string>;
  /** The dataset the checkpoint records and the one it was evaluated on, where they differ (check 9). */
  trainedOn?: string;
  dataset?: string;
}

/** Checks 2-5, 8 and 9 from a model's results. */
export function resultChecks(r: ResultCheckInput): EvalCheck[] {
  const out: EvalCheck[] = [];
  const n = r.examples;
  const push = (num: keyof typeof CHECK_IDS, message: string, evidence: Record<string, unknown>, severity: CheckSeverity = 'warning'): void => {
    out.push({ id: CHECK_IDS[num], number: num, severity, model: r.model, message, evidence });
  };
  const pts: Pt[] = r.attacks.flatMap((a) => a.points.map((p) => ({ attack: a, eps: p.eps, accuracy: p.accuracy })));
  const kind = (a: AttackResult): string => r.kinds[a.name] ?? 'gradient';
  const untargeted = pts.filter((p) => !p.attack.targeted && kind(p.attack) !== 'noise');
  const epsNorms = [...new Set(untargeted.map((p) => `${normOf(p.attack)}|${p.eps}`))];

  for (const key of epsNorms) {
    const [norm, epsStr] = key.split('|');
    const eps = Number(epsStr);
    const here = untargeted.filter((p) => p.eps === eps && normOf(p.attack) === norm);
    const best = (list: Pt[]): Pt | undefined => list.reduce<Pt | undefined>((b, p) => (!b || p.accuracy < b.accuracy ? p : b), undefined);
    const margin = (p: number): number => Math.max(0.01, noiseMargin(p, n));
    // 2: a gradient-free or transfer attack beats every white-box attack
    const wb = best(here.filter((p) => kind(p.attack) === 'gradient' || kind(p.attack) === 'ensemble'));
    const bb = best(here.filter((p) => kind(p.attack) === 'score' || kind(p.attack) === 'transfer'));
    if (wb && bb && bb.accuracy < wb.accuracy - margin(wb.accuracy)) {
      push(2, `${bb.attack.name} (${kind(bb.attack) === 'transfer' ? 'transfer' : 'gradient-free'}) leaves ${pct(bb.accuracy)} at eps ${eps} ${norm}, below the best white-box attack ` +
        `(${wb.attack.name}${wb.attack.mode ? ` ${wb.attack.mode}` : ''}, ${pct(wb.accuracy)}): the gradients mislead the white-box attacks (masked or obfuscated gradients suspected; ` +
        'Carlini et al. 2019 §5.4, AutoAttack). The white-box number is not this model\'s robustness.',
      { eps, norm, whiteBox: { attack: wb.attack.name, mode: wb.attack.mode, accuracy: wb.accuracy }, blackBox: { attack: bb.attack.name, accuracy: bb.accuracy } });
    }
    // 3: a margin loss (DLR / CW) beats cross-entropy on the same attack family
    const grads = here.filter((p) => kind(p.attack) === 'gradient');
    const ce = best(grads.filter((p) => lossFamily(p.attack) === 'ce'));
    const mg = best(grads.filter((p) => lossFamily(p.attack) === 'dlr' || lossFamily(p.attack) === 'cw'));
    if (ce && mg && mg.accuracy < ce.accuracy - margin(ce.accuracy)) {
      push(3, `${mg.attack.name} (${lossFamily(mg.attack)} loss) leaves ${pct(mg.accuracy)} at eps ${eps} ${norm}, below the best cross-entropy attack (${ce.attack.name}, ${pct(ce.accuracy)}): ` +
        'cross-entropy saturates on this model (scaled logits or an over-confident softmax; AutoAttack\'s DLR rationale, Croce & Hein 2020 §3). CE-based numbers overstate its robustness.',
      { eps, norm, ce: { attack: ce.attack.name, mode: ce.attack.mode, accuracy: ce.accuracy }, margin: { attack: mg.attack.name, mode: mg.attack.mode, accuracy: mg.accuracy } });
    }
  }

  // 4: accuracy rises with epsilon, or with more iterations
  for (const a of r.attacks) {
    if (kind(a) === 'noise') continue;
    const ps = [...a.points].sort((x, y) => x.eps - y.eps);
    for (let i = 0; i < ps.length; i++) {
      for (let j = i + 1; j < ps.length; j++) {
        if (ps[j].accuracy > ps[i].accuracy + noiseMargin(ps[i].accuracy, n)) {
          push(4, `${a.name}${a.mode ? ` (${a.mode})` : ''}: accuracy rises from ${pct(ps[i].accuracy)} at eps ${ps[i].eps} to ${pct(ps[j].accuracy)} at eps ${ps[j].eps}, ` +
            'beyond sampling noise: a larger ball can only make the attack stronger, so the attack is not converging (Carlini et al. 2019 §5.2).',
          { attack: a.name, mode: a.mode, lower: { eps: ps[i].eps, accuracy: ps[i].accuracy }, higher: { eps: ps[j].eps, accuracy: ps[j].accuracy } });
          i = ps.length;
          break;
        }
      }
    }
  }
  const iterKey = (a: AttackResult): string =>
    JSON.stringify([a.method, a.mode, a.targeted, lossFamily(a), normOf(a), a.settings.stepSize === undefined || typeof a.settings.stepSize === 'string' ? 'rel' : 'abs', a.settings.randomStart]);
  const itersOf = (a: AttackResult): number | undefined => {
    const s = a.settings.steps ?? a.settings.iterations;
    return typeof s === 'number' ? s * (typeof a.settings.restarts === 'number' ? a.settings.restarts : 1) : undefined;
  };
  const groups = new Map<string, AttackResult[]>();
  for (const a of r.attacks) if (itersOf(a) !== undefined && kind(a) === 'gradient') groups.set(iterKey(a), [...(groups.get(iterKey(a)) ?? []), a]);
  for (const list of groups.values()) {
    for (const lo of list) {
      for (const hi of list) {
        if (itersOf(hi)! <= itersOf(lo)!) continue;
        for (const p of lo.points) {
          const q = hi.points.find((x) => x.eps === p.eps);
          if (q && q.accuracy > p.accuracy + noiseMargin(p.accuracy, n)) {
            push(4, `${hi.name} (${itersOf(hi)} iterations) leaves ${pct(q.accuracy)} at eps ${p.eps}, more than ${lo.name} (${itersOf(lo)} iterations, ${pct(p.accuracy)}): ` +
              'more iterations or restarts should never help the model (Carlini et al. 2019 §5.2).',
            { eps: p.eps, fewer: { attack: lo.name, iterations: itersOf(lo), accuracy: p.accuracy }, more: { attack: hi.name, iterations: itersOf(hi), accuracy: q.accuracy } });
          }
        }
      }
    }
  }

  // 5: first-pass and end-to-end gradients disagree
  for (const a of r.attacks) {
    if (a.mode !== 'first') continue;
    const b = r.attacks.find((x) => x.name === a.name && x.mode === 'e2e');
    if (!b) continue;
    for (const p of a.points) {
      const q = b.points.find((x) => x.eps === p.eps);
      // more than 2 points and beyond sampling noise (one example of 50 is not a disagreement)
      if (!q || Math.abs(p.accuracy - q.accuracy) <= Math.max(0.02, noiseMargin(Math.max(p.accuracy, q.accuracy), n)) + 1e-9) continue;
      const [strong, weak] = p.accuracy < q.accuracy ? [{ mode: 'first', acc: p.accuracy }, { mode: 'e2e', acc: q.accuracy }] : [{ mode: 'e2e', acc: q.accuracy }, { mode: 'first', acc: p.accuracy }];
      push(5, `${a.name} at eps ${p.eps}: the ${strong.mode} gradient path is stronger (${pct(strong.acc)} vs ${pct(weak.acc)} through ${weak.mode}); ` +
        `the ${weak.mode} number must not be reported as this model's robustness (the worst case takes both; Tramer et al. 2020, attack every path).`,
      { attack: a.name, eps: p.eps, first: p.accuracy, e2e: q.accuracy, stronger: strong.mode });
    }
  }

  // 8: clean accuracy near chance
  const chance = 1 / r.numClasses;
  if (r.clean <= chance + Math.max(0.05, noiseMargin(chance, n))) {
    push(8, `clean accuracy ${pct(r.clean)} is near chance (${pct(chance)} for ${r.numClasses} classes): there is nothing to evaluate; robust accuracies mean nothing ` +
      '(Carlini et al. 2019 §5.1: check the clean model first).', { clean: r.clean, chance });
  }

  // 9: a checkpoint trained on another dataset (evaluated anyway: --allow-dataset-mismatch)
  if (r.trainedOn !== undefined && r.trainedOn !== r.dataset) {
    push(9, `trained on ${r.trainedOn} (its checkpoint metadata) but evaluated on ${r.dataset} (--allow-dataset-mismatch): ` +
      'its accuracies here say nothing about the model on the data it was trained for.', { trainedOn: r.trainedOn, dataset: r.dataset ?? null });
  }
  return out;
}

export interface ProbeOptions {
  /** A cnnf model or a foreign classifier (one the checks cannot differentiate skips checks 1 and 7). */
  model: CNNF | ForeignClassifier;
  name: string;
  cycles: number;
  readout: Readout;
  /** Probe batch, NHWC in [-1, 1], and its labels. */
  images: Float32Array;
  labels: Int32Array;
  shape: [number, number, number];
  numClasses: number;
  seed: number;
}

/** The probe as a worker task: everything but the model, which the pool ships (src/eval/worker-tasks.ts). */
export type ProbeTask = Omit<ProbeOptions, 'model'>;

/**
 * Probe examples computed at once: bounds the probe's memory (a tfjs wasm heap never shrinks, and
 * CNN-F end-to-end input gradients take ~10 MB per image). The checks do not depend on the worker
 * count: the chunking is fixed, and each chunk's random draws derive from the seed and its index.
 */
export const PROBE_CHUNK = 16;

/** Checks 1, 6 and 7: zero gradients, non-determinism, an unbounded attack that fails. */
export async function probeChecks(o: ProbeOptions): Promise<EvalCheck[]> {
  const out: EvalCheck[] = [];
  const n = o.labels.length;
  if (n === 0) return out;
  const push = (num: keyof typeof CHECK_IDS, message: string, evidence: Record<string, unknown>): void => {
    out.push({ id: CHECK_IDS[num], number: num, severity: 'warning', model: o.name, message, evidence });
  };
  // checks 1 and 7 need input gradients: not for a model tfjs cannot differentiate
  const gradients = !isForeign(o.model) || o.model.differentiable;
  const modes: AttackMode[] = !gradients ? [] : o.cycles > 0 ? ['first', 'e2e'] : ['first'];
  const victims = modes.map((mode): Victim => ({ model: o.model, mode, cycles: o.cycles, readout: o.readout }));
  const first: Victim = { model: o.model, mode: 'first', cycles: o.cycles, readout: o.readout };
  const P = o.shape[0] * o.shape[1] * o.shape[2];
  // per mode: examples with an exactly zero gradient (1), examples the sanity attack leaves correct (7)
  const zeros = modes.map(() => 0);
  const correct = modes.map(() => 0);
  let diff = 0;
  let nonFinite = false;
  for (let c = 0; c * PROBE_CHUNK < n; c++) {
    const s = c * PROBE_CHUNK;
    const m = Math.min(PROBE_CHUNK, n - s);
    const x = tf.tensor4d(o.images.subarray(s * P, (s + m) * P), [m, ...o.shape]);
    const y = tf.tensor1d(o.labels.subarray(s, s + m), 'int32');
    try {
      // 1: examples whose loss gradient is exactly zero at the clean input (AutoAttack's check_zero_gradients)
      for (const [mi, v] of victims.entries()) {
        const zeroCount = tf.tidy(() => {
          const g = lossGradient(v, x, 'ce', y);
          return tf.sum(tf.cast(tf.equal(tf.max(tf.abs(g), [1, 2, 3]), 0), 'int32'));
        });
        zeros[mi] += (await zeroCount.data())[0];
        zeroCount.dispose();
      }
      // 6: two forward passes must agree bit for bit
      const [a, b] = [tf.tidy(() => predictLogits(first, x)), tf.tidy(() => predictLogits(first, x))];
      const [da, db] = [await a.data(), await b.data()];
      tf.dispose([a, b]);
      for (let i = 0; i < da.length; i++) diff = Math.max(diff, Math.abs(da[i] - db[i]));
      if (da.some((v) => !Number.isFinite(v))) nonFinite = true;
      // 7: an unbounded attack (the whole [-1, 1] box) must reach ~0% accuracy
      for (const [mi, v] of victims.entries()) {
        const pgd = new PGD({ name: 'sanity', steps: 20, relStepSize: 0.1, randomStart: true });
        const rng = mulberry32(deriveSeed(o.seed, `probe|sanity|${modes[mi]}|${c}`));
        const adv = await pgd.perturb(v, x, y, 2, { nextSeed: () => Math.floor(rng() * 2 ** 31) });
        const hits = tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.argMax(predictLogits(v, adv), 1), tf.cast(y, 'int32')), 'int32')));
        adv.dispose();
        correct[mi] += (await hits.data())[0];
        hits.dispose();
      }
    } finally {
      x.dispose();
      y.dispose();
    }
    // a macrotask turn per chunk: signals, progress output and IPC are not starved
    await new Promise<void>((r) => setImmediate(r));
  }
  for (const [mi, mode] of modes.entries()) {
    if (zeros[mi] > 0) {
      const evidence = { mode, zeroGradientExamples: zeros[mi], probeExamples: n };
      push(1, probeCheckMessage(1, evidence), evidence);
    }
  }
  if (diff > 0 || nonFinite) {
    const evidence = { maxLogitDifference: diff, ...(nonFinite ? { nonFinite: true } : {}) };
    push(6, probeCheckMessage(6, evidence), evidence);
  }
  // the strongest path: first, or e2e where it leaves less
  let worst = 1;
  let worstMode: AttackMode = 'first';
  for (const [mi, mode] of modes.entries()) {
    const acc = correct[mi] / n;
    if (acc < worst || mode === 'first') {
      worst = acc;
      worstMode = mode;
    }
  }
  const chance = 1 / o.numClasses;
  if (gradients && worst > chance + noiseMargin(chance, n)) {
    const evidence = { accuracy: worst, mode: worstMode, probeExamples: n, chance };
    push(7, probeCheckMessage(7, evidence), evidence);
  }
  return out;
}

/** The message of probe check 1, 6 or 7, from its evidence (the only source: records read back from files are checked against it). */
export function probeCheckMessage(num: 1 | 6 | 7, e: Record<string, unknown>): string {
  if (num === 1) {
    return `the cross-entropy gradient (${String(e.mode)} path) is exactly zero for ${String(e.zeroGradientExamples)} of ${String(e.probeExamples)} probe examples at the clean input: gradient attacks cannot move them, ` +
      'and their robust accuracy is overstated (AutoAttack flag "there are zero gradients"; Carlini et al. 2019 §5.4). Use a margin loss (DLR/APGD) or a gradient-free attack.';
  }
  if (num === 6) {
    const diff = typeof e.maxLogitDifference === 'number' ? e.maxLogitDifference : NaN;
    return `two forward passes on the same input differ (max logit difference ${diff.toExponential(2)}${e.nonFinite === true ? ', non-finite logits' : ''}): ` +
      'a randomised or broken model needs expectation over transformation (Athalye et al. 2018; Carlini et al. 2019 §5.6).';
  }
  return `an unbounded attack (PGD-20 with eps = 2, the whole [-1, 1] box) still leaves ${pct(e.accuracy as number)} accuracy on ${String(e.probeExamples)} probe examples (best path ${String(e.mode)}; chance is ${pct(e.chance as number)}): ` +
    'with an unbounded budget any classifier can be fooled, so the gradient attack is broken on this model (Carlini et al. 2019 §5.3; masked gradients likely).';
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A probe check read back from a file (a shard or a --state unit): one of cnnf's own probe checks
 * (1, 6, 7) for `ctx.model`, its evidence of the shape probeChecks writes and consistent with the
 * plan (probe size, classes, gradient paths), and its message exactly the one cnnf writes for that
 * evidence. Returns the check, or what is wrong with it (a forged message is never shown as cnnf's).
 */
export function checkProbeRecord(c: unknown, ctx: { model: string; cycles: number; probeExamples: number; numClasses: number }): EvalCheck | string {
  if (!isRecord(c)) return 'is not an object';
  const keys = Object.keys(c).sort().join(',');
  if (keys !== 'evidence,id,message,model,number,severity') return 'must have exactly id, number, severity, model, message, evidence';
  const num = c.number;
  if (num !== 1 && num !== 6 && num !== 7) return `is not one of cnnf's probe checks (1, 6, 7), got number ${JSON.stringify(num)}`;
  if (c.id !== CHECK_IDS[num]) return `number ${num} must have id ${CHECK_IDS[num]}`;
  if (c.severity !== 'warning') return 'must have severity "warning"';
  if (c.model !== ctx.model) return `must be about model ${JSON.stringify(ctx.model)}`;
  const e = c.evidence;
  if (!isRecord(e)) return 'has no evidence';
  const n = ctx.probeExamples;
  const modes = ctx.cycles > 0 ? ['first', 'e2e'] : ['first'];
  const ek = Object.keys(e).sort().join(',');
  const intIn = (x: unknown, lo: number, hi: number): boolean => typeof x === 'number' && Number.isInteger(x) && x >= lo && x <= hi;
  let ok: boolean;
  if (num === 1) {
    ok = ek === 'mode,probeExamples,zeroGradientExamples' && modes.includes(e.mode as string) && e.probeExamples === n && intIn(e.zeroGradientExamples, 1, n);
  } else if (num === 6) {
    const d = e.maxLogitDifference;
    ok = (ek === 'maxLogitDifference' || (ek === 'maxLogitDifference,nonFinite' && e.nonFinite === true)) &&
      ((typeof d === 'number' && d >= 0 && (d > 0 || e.nonFinite === true)) || (d === null && e.nonFinite === true));
  } else {
    const chance = 1 / ctx.numClasses;
    const acc = e.accuracy;
    ok = ek === 'accuracy,chance,mode,probeExamples' && modes.includes(e.mode as string) && e.probeExamples === n && e.chance === chance &&
      typeof acc === 'number' && acc <= 1 && n > 0 && Number.isInteger(Math.round(acc * n)) && Math.abs(acc * n - Math.round(acc * n)) < 1e-6 &&
      acc > chance + noiseMargin(chance, n);
  }
  if (!ok) return `(${CHECK_IDS[num]}) has evidence that check ${num} does not produce`;
  if (c.message !== probeCheckMessage(num, e)) return `(${CHECK_IDS[num]}) has a message that is not cnnf's for its evidence (edited?)`;
  return { id: CHECK_IDS[num], number: num, severity: 'warning', model: ctx.model, message: c.message, evidence: e };
}
