/**
 * `kill -9` during `cnnf train`, then `cnnf train --resume`, ends in the same place as an uninterrupted
 * run: the same weights and momentum (bytes), the same per-batch log rows and the same epoch metrics
 * (timings aside). Both runs go through the real launcher from the sources, as a user runs them.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors.js';
import { readTrainState } from '../src/train/state.js';
import { parseTrainingLog } from '../src/train/trainlog.js';
import { cnnf, ROOT } from './helpers/cli.js';

const tmp = (name: string) => mkdtempSync(join(tmpdir(), `cnnf-kill-${name}-`));
const FROM_SOURCE = { CNNF_FROM_SOURCE: '1' };

/** Starts `cnnf train ARGS` and SIGKILLs it as soon as `file` exists; resolves with how it ended. */
function killWhenWritten(args: string[], file: string): Promise<{ signal: NodeJS.Signals | null; code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'cnnf'), 'train', ...args], {
      cwd: ROOT, env: { ...process.env, CNNF_BACKEND: 'wasm', ...FROM_SOURCE }, timeout: 300_000,
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.resume();
    const poll = setInterval(() => {
      if (existsSync(file)) {
        clearInterval(poll);
        child.kill('SIGKILL');
      }
    }, 20);
    child.on('error', (e) => {
      clearInterval(poll);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearInterval(poll);
      resolve({ signal, code, stderr });
    });
  });
}

/** Tensor name -> bytes of a safetensors file's tensors. */
function tensorBytes(path: string): Map<string, Buffer> {
  const f = readSafetensors(path);
  return new Map([...f.tensors].map(([k, t]) => [k, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)]));
}

/** Epoch metrics without the timing fields. */
function epochsOf(dir: string): unknown[] {
  const st = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { history: Array<Record<string, unknown>> };
  return st.history.map(({ trainSeconds: _t, evalSeconds: _e, imagesPerSec: _i, ...rest }) => rest);
}

describe('cnnf train killed with SIGKILL', () => {
  it('resumes (with another --workers) to the same weights, momentum, log and metrics as an uninterrupted run', async () => {
    const args = [
      '--model', 'cnnf', '--arch', 'small', '--fc', '16', '--train-size', '128', '--test-size', '20', '--batch-size', '32',
      '--epochs', '3', '--seed', '5', '--workers', '1',
    ];
    const whole = join(tmp('whole'), 'run');
    const killed = join(tmp('killed'), 'run');
    // the uninterrupted run and the run to kill, at the same time
    const [ref, kill] = await Promise.all([
      cnnf(['train', ...args, '--out', whole], { env: FROM_SOURCE }),
      killWhenWritten([...args, '--out', killed], join(killed, 'state.safetensors')),
    ]);
    expect(ref.code, ref.stderr).toBe(0);
    expect(kill.signal, kill.stderr).toBe('SIGKILL');
    // killed after epoch 1's state and before the end
    // (from state.safetensors: the kill may land before state.json, its readable copy, is written)
    const at = readTrainState(killed).state;
    expect(at.completedEpochs).toBeGreaterThanOrEqual(1);
    expect(at.completedEpochs).toBeLessThan(3);

    // resumed with another worker count: the saved run's micro-batch split is kept (float sums depend on it)
    const resumed = await cnnf(['train', '--resume', killed, '--workers', '2'], { env: FROM_SOURCE });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(new RegExp(`epochs ${at.completedEpochs + 1}\\.\\.3`));

    for (const f of ['state.safetensors', 'last.safetensors', 'best.safetensors']) {
      const a = tensorBytes(join(whole, f));
      const b = tensorBytes(join(killed, f));
      expect([...b.keys()], f).toEqual([...a.keys()]);
      for (const [k, bytes] of a) expect(b.get(k)!.equals(bytes), `${f} ${k}`).toBe(true);
    }
    expect([...tensorBytes(join(whole, 'state.safetensors')).keys()].some((k) => k.startsWith('momentum/'))).toBe(true);
    const rows = (dir: string) => parseTrainingLog(readFileSync(join(dir, 'train-log.csv'), 'utf8'), dir).rows;
    expect(rows(whole).length).toBe(3 * 4);
    expect(rows(killed)).toEqual(rows(whole));
    expect(epochsOf(killed)).toEqual(epochsOf(whole));
    expect(existsSync(join(killed, 'loss.png'))).toBe(true);
    // temporary files of writes the kill interrupted are gone
    expect(readdirSync(killed).filter((f) => f.includes('.tmp-'))).toEqual([]);
  }, 180_000);
});
