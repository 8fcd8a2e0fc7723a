/**
 * Intervals and paired tests (src/eval/stats.ts, src/eval/compare.ts). Reference values come from
 * scipy 1.x: `binomtest(k, n).proportion_ci(0.95, method="wilson")` for Wilson intervals and
 * `binomtest(min(b, c), b + c, 0.5).pvalue` for the exact McNemar test; small cases are also worked
 * by hand in the comments.
 */
import { describe, it, expect } from 'vitest';
import {
  ciPair, compareModels, countsOf, decodeOutcomes, encodeOutcomes, formatInterval, formatP, intervalOf, mcnemarExact, measure,
  MAX_OUTCOMES, pairedTest, wilson, Z95, dumpCandidates, pickDumpExamples,
} from '../src/eval/index.js';

describe('wilson', () => {
  it('matches scipy for small and large samples', () => {
    const cases: Array<[number, number, number, number]> = [
      [0, 10, 0, 0.27753279986288926],
      [5, 10, 0.236593090512564, 0.7634069094874361],
      [86, 100, 0.7786281178903617, 0.9147365634006087],
      [10, 10, 0.7224672001371109, 1],
      [172, 200, 0.8051011913429243, 0.9013301736654437],
      [173, 200, 0.8107086162924745, 0.9055342954521209],
      [7000, 10000, 0.6909429132462646, 0.7089034874054647],
    ];
    for (const [k, n, lo, hi] of cases) {
      const iv = wilson(k, n);
      expect(iv.lower, `${k}/${n}`).toBeCloseTo(lo, 12);
      expect(iv.upper, `${k}/${n}`).toBeCloseTo(hi, 12);
    }
  });

  it('its bounds solve |p - π| = z·sqrt(π(1 - π)/n) (the score-test definition)', () => {
    for (const [k, n] of [[3, 17], [86, 100], [1234, 2000]] as const) {
      const p = k / n;
      for (const pi of Object.values(wilson(k, n))) {
        expect((p - pi) ** 2).toBeCloseTo((Z95 ** 2 * pi * (1 - pi)) / n, 12);
      }
    }
  });

  it('0/10 by hand: upper = z²/(n + z²) = 3.8415/13.8415 = 0.2775', () => {
    expect(wilson(0, 10).upper).toBeCloseTo(Z95 ** 2 / (10 + Z95 ** 2), 14);
  });

  it('the 86.0% vs 86.5% of the issue (200 images) overlap almost entirely', () => {
    const a = wilson(172, 200);
    const b = wilson(173, 200);
    expect(formatInterval(a)).toBe('[80.5%, 90.1%]');
    expect(formatInterval(b)).toBe('[81.1%, 90.6%]');
    expect(ciPair(172, 200)).toEqual([0.805101, 0.90133]);
  });

  it('rejects impossible counts', () => {
    expect(() => wilson(11, 10)).toThrow(RangeError);
    expect(() => wilson(0, 0)).toThrow(RangeError);
    expect(() => wilson(1.5, 10)).toThrow(RangeError);
  });
});

describe('mcnemarExact', () => {
  it('matches scipy and hand-worked values', () => {
    expect(mcnemarExact(1, 0)).toBe(1); // one discordant pair: 2 · P(X <= 0) = 2 · 1/2 = 1
    expect(mcnemarExact(0, 0)).toBe(1); // the models agree everywhere
    expect(mcnemarExact(10, 0)).toBeCloseTo(0.001953125, 15); // 2 · 2^-10
    expect(mcnemarExact(5, 1)).toBeCloseTo(0.21875, 15); // 2 · (1 + 6)/64
    expect(mcnemarExact(1, 5)).toBeCloseTo(0.21875, 15); // symmetric
    expect(mcnemarExact(12, 3)).toBeCloseTo(0.03515625, 14);
    expect(mcnemarExact(40, 60)).toBeCloseTo(0.05688793364098089, 12);
    expect(mcnemarExact(3000, 3100)).toBeCloseTo(0.2049495446515585, 10);
  });

  it('formats p values for people', () => {
    expect(formatP(1)).toBe('p = 1');
    expect(formatP(0.21875)).toBe('p = 0.22');
    expect(formatP(0.0352)).toBe('p = 0.035');
    expect(formatP(0.0004)).toBe('p < 0.001');
  });
});

describe('outcome bitsets', () => {
  it('round-trip, are compact and reject bitsets of the wrong size', () => {
    const ok = Uint8Array.from({ length: 1003 }, (_, i) => (i * 7919) % 3 === 0 ? 1 : 0);
    const b64 = encodeOutcomes(ok);
    expect(b64.length).toBe(4 * Math.ceil(126 / 3)); // 1003 bits = 126 bytes
    expect(decodeOutcomes(b64, 1003)).toEqual(ok);
    expect(decodeOutcomes(b64, 1000)).toBeNull(); // extra set bits past n
    expect(decodeOutcomes(b64, 1010)).toBeNull(); // wrong byte count
    expect(decodeOutcomes('not base64!', 3)).toBeNull();
    expect(encodeOutcomes([1, 0, 0, 0, 0, 0, 0, 0, 1])).toBe(Buffer.from([1, 1]).toString('base64'));
    expect(() => encodeOutcomes(new Uint8Array(MAX_OUTCOMES + 1))).toThrow(RangeError);
  });

  it('measure gives accuracy, counts, interval and outcomes', () => {
    const ok = Uint8Array.from({ length: 200 }, (_, i) => (i < 172 ? 1 : 0));
    const m = measure(ok);
    expect(m).toMatchObject({ accuracy: 0.86, correct: 172, n: 200, ci: [0.805101, 0.90133] });
    expect(decodeOutcomes(m.outcomes!, 200)).toEqual(ok);
    expect(countsOf(0.86, 200)).toEqual({ correct: 172, n: 200 });
    expect(countsOf(0.8612, 200)).toBeNull();
  });

  it('pairedTest counts the discordant pairs', () => {
    expect(pairedTest([1, 1, 0, 0, 1], [1, 0, 1, 0, 0])).toEqual({ b: 2, c: 1, p: 1 });
    expect(() => pairedTest([1], [1, 0])).toThrow(RangeError);
  });
});

describe('compareModels', () => {
  const bits = (n: number, ones: (i: number) => boolean): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (ones(i) ? 1 : 0));

  it('86.0% vs 86.5% on 200 images with one discordant example: no significant difference', () => {
    const a = bits(200, (i) => i < 172);
    const b = bits(200, (i) => i < 173);
    const v = compareModels([{ name: 'cnn', accuracy: 0.86, outcomes: a }, { name: 'cnnf', accuracy: 0.865, outcomes: b }]);
    expect(v).toMatchObject({ mostRobust: null, best: ['cnnf'], tested: true, text: 'no significant difference (p = 1)' });
    expect(v.tests).toEqual([{ other: 'cnn', b: 1, c: 0, p: 1 }]);
  });

  it('names the most robust model only when the paired test is significant', () => {
    // cnnf right on 30 examples cnn gets wrong, cnn right on 5 cnnf gets wrong: p = 2·P(X <= 5 | 35, 1/2)
    const cnn = bits(200, (i) => i < 100 || (i >= 130 && i < 135));
    const cnnf = bits(200, (i) => i < 130);
    const v = compareModels([{ name: 'cnn', accuracy: 105 / 200, outcomes: cnn }, { name: 'cnnf', accuracy: 130 / 200, outcomes: cnnf }]);
    expect(v.mostRobust).toBe('cnnf');
    expect(v.tests).toEqual([{ other: 'cnn', b: 30, c: 5, p: mcnemarExact(30, 5) }]);
    expect(v.tests[0]!.p).toBeLessThan(0.001);
    expect(v.text).toBe('cnnf (p < 0.001)');
  });

  it('with three models, the best must beat each of the others', () => {
    const a = bits(100, (i) => i < 90);
    const b = bits(100, (i) => i < 88);
    const c = bits(100, (i) => i < 50);
    const v = compareModels([{ name: 'a', accuracy: 0.9, outcomes: a }, { name: 'b', accuracy: 0.88, outcomes: b }, { name: 'c', accuracy: 0.5, outcomes: c }]);
    expect(v.mostRobust).toBeNull();
    expect(v.text).toBe('no significant difference between a and b (p = 0.5)');
    expect(v.tests.map((t) => t.other)).toEqual(['b', 'c']);
  });

  it('does not claim anything without per-example outcomes (older results files)', () => {
    const v = compareModels([{ name: 'cnn', accuracy: 0.5 }, { name: 'cnnf', accuracy: 0.9 }]);
    expect(v.mostRobust).toBeNull();
    expect(v.tested).toBe(false);
    expect(v.text).toMatch(/^cnnf highest; not tested/);
    expect(compareModels([{ name: 'x', accuracy: undefined }]).text).toBe('—');
  });

  it('intervalOf uses stored intervals, stored counts, or accuracy x n', () => {
    expect(intervalOf({ accuracy: 0.86, ci: [0.1, 0.9] }, 200)).toEqual({ lower: 0.1, upper: 0.9 });
    expect(intervalOf({ accuracy: 0.86, correct: 172, n: 200 }, 999)).toEqual(wilson(172, 200));
    expect(intervalOf({ accuracy: 0.86 }, 200)).toEqual(wilson(172, 200));
    expect(intervalOf({ accuracy: 0.8612 }, 200)).toBeNull();
  });
});

describe('dump selection (evaluate.ts)', () => {
  it('candidates: the first 3 examples of every class, and at least the first dumpCount', () => {
    const labels = [0, 0, 0, 0, 1, 0, 1, 2, 1, 1, 2, 2, 2];
    expect(dumpCandidates(labels, labels.length, 3, 2)).toEqual([0, 1, 2, 4, 6, 7, 8, 10, 11]);
    expect(dumpCandidates(labels, labels.length, 3, 5)).toEqual([0, 1, 2, 3, 4, 6, 7, 8, 10, 11]);
  });

  it('picks one example per class, preferring ones the attack flips, flipped classes first', () => {
    const cands = [
      { index: 0, label: 0, flipped: false }, { index: 1, label: 0, flipped: true },
      { index: 2, label: 1, flipped: false }, { index: 3, label: 2, flipped: false }, { index: 4, label: 2, flipped: true },
      { index: 5, label: 3, flipped: false },
    ];
    expect(pickDumpExamples(cands, 2)).toEqual([1, 4]); // classes 0 and 2 have flipped examples
    expect(pickDumpExamples(cands, 4)).toEqual([1, 2, 4, 5]); // one per class
    expect(pickDumpExamples(cands, 5)).toEqual([0, 1, 2, 4, 5]); // more than classes: fill with further candidates
    expect(pickDumpExamples(cands.map((c) => ({ ...c, flipped: false })), 2)).toEqual([0, 2]);
  });
});
