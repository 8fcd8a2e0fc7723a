/**
 * Progress on stderr that works everywhere. On a TTY: a cli-progress bar, redrawn in place. Anywhere
 * else (CI logs, `cnnf ... 2> log`, pipes): plain lines, one when a stage starts and then at most one
 * every `intervalMs` (15 s by default; CNNF_PROGRESS_INTERVAL=SECONDS, 10..30, overrides it), each with
 * done/total, percent and an ETA from the rate since the stage started. CNNF_PROGRESS=lines|bar|off forces a form.
 */
import cliProgress from 'cli-progress';

export interface ProgressOptions {
  /** Prefix of every line, e.g. "eval" or "train". */
  label: string;
  /** Where to write (default process.stderr). */
  stream?: { write(s: string): unknown; isTTY?: boolean };
  /** Force the form (default: CNNF_PROGRESS, else "bar" on a TTY stream, "lines" otherwise). */
  mode?: ProgressMode;
  /** Milliseconds between two progress lines of one stage (lines mode). */
  intervalMs?: number;
  /** Clock in milliseconds (tests pass a fake one). */
  now?: () => number;
  /**
   * Lines mode: while a stage runs, a line at least this often even when no update came (a sign of
   * life through a long unit of work); default 60 s with the real clock, none with a fake one.
   */
  heartbeatMs?: number;
}

export type ProgressMode = 'bar' | 'lines' | 'off';

export interface Progress {
  /** `done` of `total` units; `stage` names what runs now (a new stage starts a new line in lines mode). */
  update(stage: string, done: number, total: number, detail?: string): void;
  /** Ends the bar (TTY) and forgets the stage; safe to call twice. */
  stop(): void;
}

export const DEFAULT_INTERVAL_MS = 15_000;

/** "45 s", "3 min 05 s", "1 h 02 min". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

function envMode(): ProgressMode | undefined {
  const v = process.env.CNNF_PROGRESS;
  return v === 'bar' || v === 'lines' || v === 'off' ? v : undefined;
}

function envInterval(): number {
  const v = Number(process.env.CNNF_PROGRESS_INTERVAL);
  return Number.isFinite(v) && v >= 10 && v <= 30 ? v * 1000 : DEFAULT_INTERVAL_MS;
}

export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const mode = opts.mode ?? envMode() ?? (stream.isTTY ? 'bar' : 'lines');
  if (mode === 'off') return { update: () => undefined, stop: () => undefined };
  return mode === 'bar' ? barProgress(opts, stream) : lineProgress(opts, stream);
}

/** Plain lines: a stage start, then at most one line per interval, with done/total and ETA. */
function lineProgress(opts: ProgressOptions, stream: { write(s: string): unknown }): Progress {
  const now = opts.now ?? (() => performance.now());
  const interval = opts.intervalMs ?? envInterval();
  let stage: string | null = null;
  let stageStart = 0;
  let stageDone0 = 0;
  let last = 0;
  let lastArgs: { done: number; total: number; detail: string | undefined } | null = null;
  let timer: ReturnType<typeof setInterval> | null = null;
  const heartbeat = opts.heartbeatMs ?? (opts.now ? 0 : 60_000);
  let lastDone = 0;
  let lastDoneT = 0;
  const line = (done: number, total: number, detail: string | undefined, t: number): string => {
    const pct = total > 0 ? Math.floor((done / total) * 100) : 0;
    const rate = (done - stageDone0) / Math.max(1e-9, t - stageStart);
    // a unit running twice as long as the average so far makes the rate a guess: say so
    const perUnit = done > stageDone0 ? (lastDoneT - stageStart) / (done - stageDone0) : Infinity;
    const overdue = t - lastDoneT > 2 * perUnit;
    const eta = done >= total ? 'done' : rate > 0 && !overdue ? `ETA ${formatDuration((total - done) / rate / 1000)}` : 'ETA ?';
    return `cnnf: ${opts.label} ${stage}: ${done}/${total} (${pct}%), ${formatDuration((t - stageStart) / 1000)} elapsed, ${eta}${detail ? `, ${detail}` : ''}\n`;
  };
  const beat = (): void => {
    const t = now();
    if (stage === null || lastArgs === null || t - last < heartbeat) return;
    last = t;
    stream.write(line(lastArgs.done, lastArgs.total, lastArgs.detail, t));
  };
  return {
    update(name, done, total, detail) {
      const t = now();
      lastArgs = { done, total, detail };
      if (name !== stage || done !== lastDone) {
        lastDone = done;
        lastDoneT = t;
      }
      if (heartbeat > 0 && timer === null) {
        timer = setInterval(beat, Math.min(heartbeat, 5_000));
        timer.unref();
      }
      if (name !== stage) {
        stage = name;
        stageStart = t;
        stageDone0 = done;
        last = t;
        stream.write(`cnnf: ${opts.label} ${stage}: ${done}/${total} (${total > 0 ? Math.floor((done / total) * 100) : 0}%)${detail ? `, ${detail}` : ''}\n`);
        return;
      }
      if (t - last >= interval) {
        last = t;
        stream.write(line(done, total, detail, t));
      }
    },
    stop() {
      stage = null;
      lastArgs = null;
      if (timer !== null) clearInterval(timer);
      timer = null;
    },
  };
}

/** The cli-progress bar, restarted when the total changes. */
function barProgress(opts: ProgressOptions, stream: { write(s: string): unknown }): Progress {
  let bar: cliProgress.SingleBar | null = null;
  let total = -1;
  return {
    update(stage, done, t, detail) {
      if (!bar || t !== total) {
        bar?.stop();
        bar = new cliProgress.SingleBar(
          {
            stream: stream as NodeJS.WritableStream,
            format: ` {bar} {percentage}% | {value}/{total} | ETA {eta_formatted} | ${opts.label} {stage}{detail}`,
            hideCursor: true,
            clearOnComplete: true,
            etaBuffer: 20,
          },
          cliProgress.Presets.shades_classic,
        );
        total = t;
        bar.start(t, done, { stage, detail: '' });
      }
      bar.update(done, { stage, detail: detail ? ` | ${detail}` : '' });
    },
    stop() {
      bar?.stop();
      bar = null;
      total = -1;
    },
  };
}
