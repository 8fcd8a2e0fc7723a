/** Progress without a terminal (CI logs, redirected stderr): a line per stage, at most one per interval, done/total and ETA. */
import { describe, expect, it } from 'vitest';
import { createProgress, formatDuration } from '../src/cli/progress.js';

function fake(isTTY = false) {
  const lines: string[] = [];
  let t = 0;
  return {
    lines,
    stream: { isTTY, write: (s: string) => lines.push(s) },
    now: () => t,
    advance: (ms: number) => (t += ms),
  };
}

describe('line progress (no TTY)', () => {
  it('prints the stage start at once, then at most one line per interval with done/total, percent and an ETA from the stage rate', () => {
    const f = fake();
    const p = createProgress({ label: 'eval', stream: f.stream, now: f.now, intervalMs: 15_000 });
    p.update('CNN', 0, 100, 'start');
    expect(f.lines).toEqual(['cnnf: eval CNN: 0/100 (0%), start\n']);
    // 10 units per 5 s: nothing until 15 s have passed since the last line
    for (let done = 10; done <= 30; done += 10) {
      f.advance(5_000);
      p.update('CNN', done, 100, 'pgd7:first');
    }
    // at 15 s: 30 done at 2 units/s -> 70 left = 35 s
    expect(f.lines).toEqual(['cnnf: eval CNN: 0/100 (0%), start\n', 'cnnf: eval CNN: 30/100 (30%), 15 s elapsed, ETA 35 s, pgd7:first\n']);
    f.advance(14_999);
    p.update('CNN', 40, 100);
    expect(f.lines).toHaveLength(2);
    f.advance(1);
    p.update('CNN', 40, 100);
    // 40 units in 30 s -> 60 left / (4/3 per s) = 45 s
    expect(f.lines[2]).toBe('cnnf: eval CNN: 40/100 (40%), 30 s elapsed, ETA 45 s\n');
  });

  it('a new stage prints a line at once, and its ETA counts from its own start', () => {
    const f = fake();
    const p = createProgress({ label: 'eval', stream: f.stream, now: f.now, intervalMs: 10_000 });
    p.update('CNN', 0, 200);
    f.advance(60_000);
    p.update('CNN', 100, 200);
    p.update('CNN-F', 100, 200);
    expect(f.lines.slice(1)).toEqual(['cnnf: eval CNN: 100/200 (50%), 1 min 00 s elapsed, ETA 1 min 00 s\n', 'cnnf: eval CNN-F: 100/200 (50%)\n']);
    // CNN-F runs at 1 unit per 0.5 s: 20 units in 10 s -> 80 left = 40 s
    f.advance(10_000);
    p.update('CNN-F', 120, 200);
    expect(f.lines[3]).toBe('cnnf: eval CNN-F: 120/200 (60%), 10 s elapsed, ETA 40 s\n');
    f.advance(10_000);
    p.update('CNN-F', 200, 200);
    expect(f.lines[4]).toBe('cnnf: eval CNN-F: 200/200 (100%), 20 s elapsed, done\n');
  });

  it('after stop() the same stage name starts again (the next epoch of a grid cell)', () => {
    const f = fake();
    const p = createProgress({ label: 'train', stream: f.stream, now: f.now, intervalMs: 10_000 });
    p.update('epoch 1/1 batches', 1, 10);
    p.stop();
    p.update('epoch 1/1 batches', 1, 10);
    expect(f.lines).toEqual(['cnnf: train epoch 1/1 batches: 1/10 (10%)\n', 'cnnf: train epoch 1/1 batches: 1/10 (10%)\n']);
  });

  it('no TTY means lines, a TTY means the bar, and mode off prints nothing', () => {
    const lines = fake(false);
    createProgress({ label: 'x', stream: lines.stream, now: lines.now }).update('s', 1, 2);
    expect(lines.lines).toEqual(['cnnf: x s: 1/2 (50%)\n']);
    const off = fake(false);
    createProgress({ label: 'x', stream: off.stream, mode: 'off' }).update('s', 1, 2);
    expect(off.lines).toEqual([]);
    const tty = fake(true);
    const bar = createProgress({ label: 'x', stream: tty.stream });
    bar.update('s', 1, 2);
    bar.stop();
    // cli-progress draws with cursor control sequences, not "cnnf:" lines
    expect(tty.lines.join('')).not.toContain('cnnf: x');
    expect(tty.lines.join('')).toContain('1/2');
  });

  it('formats durations for people', () => {
    expect(formatDuration(4.4)).toBe('4 s');
    expect(formatDuration(185)).toBe('3 min 05 s');
    expect(formatDuration(3725)).toBe('1 h 02 min');
    expect(formatDuration(Infinity)).toBe('?');
  });
});
