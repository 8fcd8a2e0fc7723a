/**
 * The examples stay runnable as written: every `cnnf` command line in examples/sharded/ (GitHub
 * Actions matrix, Kubernetes Indexed Job, Slurm array) names an existing command and only flags
 * that command has (checked against its --help), and the sharded eval lines use --shard.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cnnf as cli, ROOT } from './helpers/cli.js';

const DIR = join(ROOT, 'examples', 'sharded');

/** `node bin/cnnf CMD ...` command lines, with YAML folded blocks (`>`) and shell continuations joined. */
function commandLines(text: string): string[][] {
  const lines = text.replace(/\\\n\s*/g, ' ').split('\n');
  const logical: string[] = [];
  const indent = (l: string): number => l.length - l.trimStart().length;
  for (let i = 0; i < lines.length; i++) {
    let l = lines[i];
    if (/>\s*$/.test(l) && !/^\s*#/.test(l)) {
      const base = indent(l);
      const body: string[] = [];
      while (i + 1 < lines.length && (lines[i + 1].trim() === '' || indent(lines[i + 1]) > base)) body.push(lines[++i].trim());
      l = body.join(' ');
    }
    logical.push(l);
  }
  const out: string[][] = [];
  for (const l of logical) {
    if (/^\s*#/.test(l)) continue;
    for (const m of l.matchAll(/node (?:\/cnnf\/)?bin\/cnnf ([^&]+)/g)) out.push(m[1].replace(/"\s*$/, '').trim().split(/\s+/));
  }
  return out;
}

describe('examples/sharded', () => {
  it('every cnnf command line uses real commands and flags', async () => {
    const files = readdirSync(DIR).filter((f) => /\.(ya?ml|sh)$/.test(f));
    expect(files.sort()).toEqual(['github-actions.yml', 'kubernetes-indexed-job.yaml', 'kubernetes-merge-job.yaml', 'slurm-array.sh']);
    const help = new Map<string, string>();
    let evalLines = 0;
    for (const f of files) {
      const lines = commandLines(readFileSync(join(DIR, f), 'utf8'));
      expect(lines.length, f).toBeGreaterThan(0);
      for (const [cmd, ...args] of lines) {
        if (!help.has(cmd)) {
          const r = await cli([cmd, '--help']);
          expect(r.code, `${f}: cnnf ${cmd}`).toBe(0);
          help.set(cmd, r.stdout);
        }
        for (const a of args.filter((x) => x.startsWith('--'))) expect(help.get(cmd), `${f}: cnnf ${cmd} ${a}`).toContain(`${a.split('=')[0]} `);
        if (cmd === 'eval') {
          evalLines++;
          expect(args).toContain('--shard');
        }
      }
    }
    expect(evalLines).toBe(3);
    expect(help.has('merge')).toBe(true);
  }, 120_000);
});
