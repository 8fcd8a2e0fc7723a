import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { expectUsageError } from './helpers/cli.js';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { renderReport, writeReport, readResultsFile, validateResults, parseTrainingLog, movingAverage, escapeHtml, escapeMarkdown, escapeXml, cleanText } from '../src/report/index.js';
import { zoomDomain } from '../src/report/charts.js';
import { uniqueSlugs } from '../src/format.js';
import { legacySampleResults, sampleResults } from './helpers/results-sample.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'cnnf');
const CHROMIUM = '/usr/bin/chromium';
const XSS = '<script>alert(1)</script>';

interface Run { code: number; stdout: string; stderr: string }
function cnnf(args: string[], cwd = ROOT): Promise<Run> {
  return new Promise((res) => {
    execFile(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, NO_COLOR: '1' } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      res({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

function expectOneLineUsage(r: Run, pattern: RegExp): void {
  expect(r.code).toBe(2);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^cnnf: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

/** A small but real PNG (a 28x28 grey gradient, like an MNIST-sized dump). */
async function dumpPng(seed: number): Promise<Buffer> {
  const px = Buffer.alloc(28 * 28);
  for (let i = 0; i < px.length; i++) px[i] = (i * 7 + seed * 31) % 256;
  return sharp(px, { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
}

function trainingLogCsv(rows: number): string {
  const lines = ['epoch,batch,step,loss,accuracy,lr'];
  for (let s = 0; s < rows; s++) {
    const epoch = Math.floor(s / 100) + 1;
    const loss = 2.3 * Math.exp(-s / 120) + 0.25 + 0.08 * Math.sin(s * 1.7);
    lines.push(`${epoch},${s % 100},${s},${loss.toFixed(5)},${Math.min(0.99, 0.1 + s / 400).toFixed(4)},0.001`);
  }
  return `${lines.join('\n')}\n`;
}

let dir: string;
let resultsPath: string;
let logPath: string;
let outDir: string;
let html: string;
let md: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cnnf-report-test-'));
  resultsPath = join(dir, 'results.json');
  logPath = join(dir, 'train-cnnf.csv');
  outDir = join(dir, 'out');
  writeFileSync(resultsPath, JSON.stringify(sampleResults(), null, 2));
  writeFileSync(logPath, trainingLogCsv(300));
  mkdirSync(join(dir, 'dumps'));
  writeFileSync(join(dir, 'dumps', 'cnn-pgd7-0.2.png'), await dumpPng(1));
  writeFileSync(join(dir, 'dumps', 'cnnf-pgd7-0.2.png'), await dumpPng(2));
  const out = await writeReport(readResultsFile(resultsPath), { outDir, resultsPath, trainingLogs: [logPath], title: 'CNN vs CNN-F on Fashion-MNIST' });
  expect(out.indexHtml).toBe(join(resolve(outDir), 'index.html'));
  html = readFileSync(out.indexHtml, 'utf8');
  md = readFileSync(out.reportMd, 'utf8');
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('writeReport', () => {
  it('writes index.html and report.md with the same tables and numbers', () => {
    for (const doc of [html, md]) {
      expect(doc).toContain('CNN vs CNN-F on Fashion-MNIST');
      for (const section of ['Summary', 'Clean accuracy', 'Accuracy under pgd7', 'Targeted attack success rate', 'Worst-case accuracy', 'Confusion matrices', 'Training loss', 'Image dumps', 'Provenance']) {
        expect(doc).toContain(section);
      }
      // clean accuracies, PGD first vs e2e for CNN-F, targeted success, worst case
      for (const n of ['91.2%', '89.7%', '42.1%', '35.6%', '19.8%', '14.2%', '0.3%', '53.7%', '85.2%', '24.4%', '47.1%', '31.8%', '12.1%', '6.1%']) {
        expect(doc).toContain(n);
      }
      // one number format, the CLI's: one decimal ("85.6%", never "85.60%"), in tables, charts and tooltips alike
      expect(doc).not.toMatch(/\d\.\d\d%/);
      // provenance: seed, backend, checkpoint hashes, attack settings
      expect(doc).toContain('tfjs-cpu');
      expect(doc).toContain('1234');
      expect(doc).toContain('3f1c9a0d5e7b2468ac13579bdf02468ace13579bdf02468ace13579bdf024681');
      expect(doc).toContain('a07e55c2b1d94f3e8c6a2b0d19e7f4c3b5a6d8e0f1c2b3a4d5e6f708192a3b4c');
      expect(doc).toContain('random-other-class');
      expect(doc).toContain('512.3 s');
    }
    // CNN-F has separate first/e2e columns in the PGD table, the plain CNN only "first"
    // every accuracy carries its 95% Wilson interval (scipy: binomtest(87, 1000).proportion_ci -> [0.0709, 0.1062])
    const pgdRowHtml = /<tr><td class="num">0\.1<\/td><td class="num">8\.7% \[7\.1–10\.6\]<\/td><td class="num">42\.1% \[39\.1–45\.2\]<\/td><td class="num">35\.6% \[32\.7–38\.6\]<\/td><\/tr>/;
    expect(html).toMatch(pgdRowHtml);
    expect(md).toContain('| ε | cnn (first) | cnnf (first) | cnnf (e2e) |');
    expect(md).toContain('| 0.1 | 8.7% \\[7.1–10.6\\] | 42.1% \\[39.1–45.2\\] | 35.6% \\[32.7–38.6\\] |');
    // summary: the conservative (e2e) number decides and the paired test must be significant: cnnf at pgd7 eps 0.2
    // (142 vs 3 discordant examples); clean 91.2% vs 89.7% is not (92 vs 77 discordant, exact McNemar p = 0.28)
    expect(md).toMatch(/\| pgd7 \| ε = 0\.2 \| \*\*cnnf\*\* \(p &lt; 0\.001\) \| 0\.3% \\\[0\.1–0\.9\\\] \| 14\.2% \\\[12\.2–16\.5\\\] \|/);
    expect(md).toContain('| clean | — | no significant difference (p = 0.28) | 91.2% \\[89.3–92.8\\] | 89.7% \\[87.7–91.4\\] |');
    expect(md).toContain('| gaussian | σ = 0.2 | no significant difference (p = 0.14) |');
    expect(md).toContain('ε = 0.1: **cnnf** (p &lt; 0.001) — cnn 6.1% \\[4.8–7.8\\], cnnf 31.8% \\[29.0–34.8\\]');
    expect(md).not.toMatch(/\| clean \| — \| \*\*/); // nobody is "most robust" on clean accuracy
    for (const doc of [html, md]) {
      expect(doc).toContain('Wilson score');
      expect(doc).toContain('exact McNemar');
    }
  });

  it('inlines everything in index.html: SVG charts, PNG dumps, CSS; no scripts or external URLs', () => {
    // 4 accuracy + 1 success + 1 worst case + 27 confusion matrices (12 cnn, 15 cnnf) + 1 loss curve
    expect((html.match(/<figure class="chart"/g) ?? []).length).toBe(34);
    expect((html.match(/<svg\b/g) ?? []).length).toBe(34);
    expect(html).toContain('moving average (15 batches)');
    expect((html.match(/src="data:image\/png;base64,/g) ?? []).length).toBe(2);
    expect(html).toContain('Image dump missing: dumps/not-there.png');
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<link\b/i);
    // the only absolute URLs allowed are SVG/XLink namespace identifiers (never fetched)
    const urls = [...html.matchAll(/\b(?:https?|ftp):\/\/[^\s"'<>)]+/g)].map((m) => m[0]);
    expect(new Set(urls.filter((u) => !/^http:\/\/www\.w3\.org\/(2000\/svg|1999\/xlink)$/.test(u)))).toEqual(new Set());
    for (const m of html.matchAll(/\b(?:src|href)="([^"]*)"/g)) expect(m[1]).toMatch(/^(data:image\/png;base64,|#)/);
    // vega's def ids were made unique per chart
    const ids = [...html.matchAll(/\bid="([^"]+)"/g)].map((m) => m[1]);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('writes the PNG charts report.md references into one assets folder beside it', async () => {
    // the report folder holds index.html, report.md and one folder with everything else
    expect(readdirSync(outDir).sort()).toEqual(['assets', 'index.html', 'report.md']);
    const refs = [...md.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => m[1]!);
    expect(refs).toHaveLength(36); // 34 charts + 2 dumps
    expect(readdirSync(join(outDir, 'assets')).sort()).toEqual(refs.map((r) => r.slice('assets/'.length)).sort());
    for (const ref of refs) {
      expect(ref).toMatch(/^assets\/[a-z0-9._-]+\.png$/);
      const meta = await sharp(join(outDir, ref)).metadata();
      expect(meta.format).toBe('png');
      expect(meta.width).toBeGreaterThan(20);
    }
    const chart = await sharp(join(outDir, refs.find((r) => r.includes('accuracy-pgd7'))!)).stats();
    expect(chart.channels[0]!.stdev).toBeGreaterThan(5); // not a blank image
    expect(md).toContain('Image dump missing: dumps/not-there.png');
    expect(existsSync(join(outDir, 'report.md'))).toBe(true);
    // no temporary files left behind by the atomic writes
    expect(readdirSync(outDir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    expect(readdirSync(join(outDir, 'assets')).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('escapes names from the results in HTML and Markdown', async () => {
    const r = sampleResults();
    r.models[0]!.name = XSS;
    r.models[1]!.classNames[3] = '<img src=x onerror=alert(2)>';
    r.models[1]!.attacks.forEach((a) => { if (a.name === 'fgsm') a.name = 'fg"sm&<b>'; });
    // the metrics map follows the rename (an entry without its result is refused, issue 10)
    r.models[1]!.metrics = Object.fromEntries(Object.entries(r.models[1]!.metrics).map(([k, v]) => [k.replace(/^fgsm@/, 'fg"sm&<b>@'), v]));
    r.models[1]!.dumps = ['dumps/<i>nope</i>.png'];
    r.provenance.dataset = 'fashion<br>mnist';
    const rep = await renderReport(r, { resultsPath: join(dir, 'results.json'), title: `Report for ${XSS}` });
    for (const doc of [rep.html, rep.markdown]) {
      expect(doc).not.toContain(XSS);
      expect(doc).not.toContain('<script');
      expect(doc).not.toContain('<img src=x');
      expect(doc).not.toContain('<b>');
      expect(doc).not.toContain('<i>nope');
      expect(doc).not.toContain('fashion<br>');
      expect(doc).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    }
    expect(rep.html).toContain('fg&quot;sm&amp;&lt;b&gt;');
    // the SVG legends and confusion-matrix labels are escaped too
    expect(rep.html).toMatch(/<text[^>]*>&lt;script&gt;alert\(1\)/);
    expect(rep.html).toContain('&lt;img src=x onerror=alert(2)&gt;');
  });

  it('charts: lines start at the clean point with 95% bands, axes zoomed to the data, series told apart, single-epsilon attacks as points with error bars, nothing truncated', async () => {
    const chartOf = (doc: string, id: string): string => doc.slice(doc.indexOf(`id="${id}"`), doc.indexOf('</figure>', doc.indexOf(`id="${id}"`)));
    // the accuracy charts begin at eps 0 = clean accuracy, even for attacks that did not run at 0
    const fgsmChart = chartOf(html, 'chart-2-accuracy-fgsm');
    expect(fgsmChart).toMatch(/aria-label="ε \(L∞\): 0; accuracy: 91\.2\d*%; [^"]*series: cnn \(first\)/);
    expect(fgsmChart).toMatch(/aria-roledescription="errorband"/);
    expect(fgsmChart).toContain('95% confidence interval (Wilson)');
    // the y-axis spans the data and their bands plus a little, not 0-100%: Gaussian noise runs 73.1% (band from
    // 70.3%) to 91.2% (band to 92.8%), so the axis runs 65%-95%
    const yLabels = (chart: string): string[] => [...chart.matchAll(/<text[^>]*>(\d+(?:\.\d)?%)<\/text>/g)].map((m) => m[1]!);
    const gaussian = yLabels(chartOf(html, 'chart-1-accuracy-gaussian'));
    expect(gaussian[0]).toBe('65%');
    expect(gaussian[gaussian.length - 1]).toBe('95%');
    expect(gaussian).not.toContain('0%');
    expect(gaussian).not.toContain('100%');
    // every series has its own colour, stroke dash and (hollow) marker shape
    const pgdChart = chartOf(html, 'chart-3-accuracy-pgd7');
    const lineOf = (series: string): string => pgdChart.match(new RegExp(`series: ${series.replace(/[()]/g, '\\$&')};[^>]*aria-roledescription="line mark"[^>]*>`))?.[0] ?? '';
    const dash = (series: string): string | undefined => lineOf(series).match(/stroke-dasharray="([^"]+)"/)?.[1];
    const stroke = (series: string): string | undefined => lineOf(series).match(/stroke="([^"]+)"/)?.[1];
    expect([dash('cnn (first)'), dash('cnnf (first)'), dash('cnnf (e2e)')]).toEqual(['1,0', '6,3', '2,2']);
    expect(new Set([stroke('cnn (first)'), stroke('cnnf (first)'), stroke('cnnf (e2e)')]).size).toBe(3);
    const shapes = new Set([...pgdChart.matchAll(/aria-roledescription="point"[^>]* d="([^"]+)"/g)].map((m) => m[1]!.replace(/[\d.]+/g, 'N')));
    expect(shapes.size).toBe(3);
    expect(pgdChart).not.toMatch(/aria-roledescription="point"[^>]*fill="#/); // hollow: a marker never hides one below it
    expect(pgdChart).not.toContain('identical');
    // no chart text is cut off with an ellipsis (legend labels, legend titles, chart titles, confusion labels)
    expect(html).not.toMatch(/…<\/text>/);

    const r = sampleResults();
    const long = 'a-model-name-that-is-far-longer-than-any-legend-would-usually-allow-for';
    r.models[1]!.name = long;
    for (const m of r.models) {
      const single = structuredClone(m.attacks.find((a) => a.name === 'fgsm')!);
      single.name = 'fgsm-once';
      single.points = [single.points[1]!];
      m.attacks.push(single);
    }
    // first-pass and end-to-end PGD give exactly the same numbers (as for a CNN-F whose feedback adds nothing)
    const first = r.models[1]!.attacks.find((a) => a.name === 'pgd7' && a.mode === 'first')!;
    const e2e = r.models[1]!.attacks.find((a) => a.name === 'pgd7' && a.mode === 'e2e')!;
    e2e.points = structuredClone(first.points);
    for (const p of e2e.points) r.models[1]!.metrics[`pgd7@${p.eps}:e2e`] = p.accuracy;
    const rep = await renderReport(r, { title: 'single' });
    const dots = chartOf(rep.html, rep.html.match(/id="(chart-\d+-accuracy-fgsm-once)"/)![1]!);
    expect((dots.match(/aria-roledescription="point"/g) ?? []).length).toBe(4); // clean and eps 0.1, two models
    expect(dots).not.toMatch(/aria-roledescription="bar"/); // bars on a zoomed axis would mislead
    expect((dots.match(/aria-roledescription="errorbar"/g) ?? []).length).toBeGreaterThanOrEqual(4);
    expect(dots).toContain('>clean</text>');
    expect(dots).toContain('>ε = 0.1</text>');
    expect(dots).toContain(`>${long} (first)</text>`); // the legend shows the whole name
    expect(rep.html).not.toMatch(/…<\/text>/);
    // the coinciding series is named so in the legend and the subtitle
    const same = chartOf(rep.html, rep.html.match(/id="(chart-\d+-accuracy-pgd7)"/)![1]!);
    expect(same).toContain(`>${long} (e2e): identical to ${long} (first)</text>`);
    expect(same).toContain(`>identical: ${long} (first) and ${long} (e2e) have the same value at every point (drawn on top of each other)</tspan>`);
    expect(same).not.toContain('cnn (first): identical');
  });

  it('zoomDomain: data and bands plus padding, rounded to a tick step, within 0-100%, never flat', () => {
    expect(zoomDomain([0.703, 0.928, 0.731, 0.912])).toEqual({ domain: [0.65, 0.95], format: '%' });
    expect(zoomDomain([0.003, 0.928])).toEqual({ domain: [0, 1], format: '%' });
    // two models a point apart: a 4-point axis with one decimal
    expect(zoomDomain([0.856, 0.866])).toEqual({ domain: [0.84, 0.89], format: '.1%' });
    expect(zoomDomain([1, 1])).toEqual({ domain: [0.96, 1], format: '.1%' });
    expect(zoomDomain([0, 0])).toEqual({ domain: [0, 0.04], format: '.1%' });
    expect(zoomDomain([])).toEqual({ domain: [0, 1], format: '%' });
  });

  it('renders class and model names with control characters and markup (issue 22): written, escaped, no raw control characters', async () => {
    const hostile = 'a<b&"c\'\u001b]0;x\u0007\u202e';
    const r = sampleResults();
    for (const m of r.models) {
      m.classNames[0] = hostile;
      m.classNames[1] = 'line\nbreak\u0000\u0085\u2066';
      m.dumps = [];
    }
    r.models[0]!.name = 'cnn\u001b[31m\u202e';
    const out = join(dir, 'hostile-out');
    const written = await writeReport(r, { outDir: out, title: `names ${hostile}` });
    const h = readFileSync(written.indexHtml, 'utf8');
    const m = readFileSync(written.reportMd, 'utf8');
    // every chart was rasterised (the SVG is valid XML) and the whole report is there
    const pngs = readdirSync(join(out, 'assets'));
    expect(pngs.length).toBe(34 - 1); // no training log here
    for (const f of pngs) expect((await sharp(join(out, 'assets', f)).metadata()).format).toBe('png');
    // the names show, escaped: control and bidi characters as visible \x / \u escapes, markup as entities
    const shown = 'a&lt;b&amp;&quot;c&#39;\\x1b]0;x\\x07\\u202e';
    expect(h).toContain(`<title>names ${shown}</title>`);
    // confusion matrices: the whole name in each cell's description, the axis label cut to fit (after escaping)
    expect(h).toContain('aria-label="predicted class: a&lt;b&amp;&quot;c\'\\x1b]0;x\\x07\\u202e; true class: ');
    expect(h).toMatch(/<text[^>]*>a&lt;b&amp;"c'\\x1b]…<\/text>/);
    expect(h).toContain('line\\nbreak\\x00\\x85\\u2066');
    expect(h).toContain('cnn\\x1b[31m\\u202e');
    expect(m).toContain('# names a&lt;b&amp;"c\'\\\\x1b\\]0;x\\\\x07\\\\u202e');
    expect(m).toContain('**cnn\\\\x1b\\[31m\\\\u202e**');
    // nothing raw: no C0/C1 control (other than the documents' own line breaks), no bidi or invisible formatting character
    // eslint-disable-next-line no-control-regex
    const raw = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff]/;
    expect(h).not.toMatch(raw);
    expect(m).not.toMatch(raw);
    expect(h).not.toContain('<b&');
    // file names are slugs, whatever the names
    for (const f of pngs) expect(f).toMatch(/^[a-z0-9._-]+$/);
  });

  it('shows image dumps already in DIR/assets/ (cnnf demo) where they are, and copies others into it', async () => {
    const out = join(dir, 'demo-like');
    const dumpDir = join(out, 'assets', 'dumps', 'cnn', 'pgd7-first-eps0.2');
    mkdirSync(dumpDir, { recursive: true });
    writeFileSync(join(dumpDir, 'row-0.png'), await dumpPng(3));
    const r = sampleResults();
    r.models[0]!.dumps = ['assets/dumps/cnn/pgd7-first-eps0.2/row-0.png'];
    r.models[1]!.dumps = ['../dumps/cnnf-pgd7-0.2.png'];
    const results = join(out, 'results.json');
    writeFileSync(results, JSON.stringify(r));
    await writeReport(readResultsFile(results), { outDir: out, resultsPath: results });
    const doc = readFileSync(join(out, 'report.md'), 'utf8');
    expect(doc).toContain('](assets/dumps/cnn/pgd7-first-eps0.2/row-0.png)');
    expect(doc).toContain('](assets/dump-2-cnnf-1.png)');
    expect(existsSync(join(out, 'assets', 'dump-2-cnnf-1.png'))).toBe(true);
    expect(readdirSync(join(out, 'assets')).filter((f) => f.startsWith('dump-'))).toEqual(['dump-2-cnnf-1.png']);
    expect(readdirSync(out).sort()).toEqual(['assets', 'index.html', 'report.md', 'results.json']);
  });

  it('reads results written before counts and outcomes were stored: intervals from accuracy x n, no "most robust" claim', async () => {
    const rep = await renderReport(legacySampleResults(), { title: 'legacy' });
    expect(rep.markdown).toContain('| 0.1 | 8.7% \\[7.1–10.6\\] | 42.1% \\[39.1–45.2\\] | 35.6% \\[32.7–38.6\\] |');
    expect(rep.markdown).toMatch(/\| pgd7 \| ε = 0\.2 \| cnnf highest; not tested \(no per-example outcomes in the results\) \|/);
    expect(rep.markdown).not.toMatch(/\*\*cnnf\*\* \(p/);
  });

  it('escape helpers', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
    // a line break shows as \n (cleanText), so it can never end a table row; the backslash is escaped for Markdown
    expect(escapeMarkdown('a|b*c_d\n# e')).toBe('a\\|b\\*c\\_d\\\\n# e');
    expect(escapeMarkdown('# title')).toBe('\\# title');
    expect(escapeMarkdown('1. x')).toBe('1\\. x');
    expect(escapeMarkdown('91.2%')).toBe('91.2%');
    // one sanitiser for every string from a file: controls, bidi overrides, line breaks become visible escapes
    expect(cleanText('a\u001b]0;x\u0007\u202eb\r\n\t\u0000\u0085\u2066\u2028\ufeff\ud800')).toBe(
      'a\\x1b]0;x\\x07\\u202eb\\r\\n\\t\\x00\\x85\\u2066\\u2028\\ufeff\\ud800');
    expect(cleanText('T-shirt/top é 日本 👨‍👩‍👧')).toBe('T-shirt/top é 日本 👨‍👩‍👧'); // letters, emoji (with ZWJ) stay
    expect(escapeHtml('x\u001b[31m')).toBe('x\\x1b[31m');
    expect(escapeXml('<\u0007>')).toBe('&lt;\\x07&gt;');
    expect(escapeMarkdown('- x')).toBe('\\- x');
    // dump folders and report files: lowercase slugs, unique among their siblings
    expect(uniqueSlugs(['CNN (adv.)', 'cnn adv', 'CNN-F (adv.)', '...', '../x'], 'model')).toEqual(['cnn-adv', 'cnn-adv-2', 'cnn-f-adv', 'model', 'x']);
  });
});

describe('results validation', () => {
  const write = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const usage = expectUsageError;

  it('rejects missing, non-JSON, wrong-format and incomplete files with one-line UsageErrors', () => {
    expect(usage(() => readResultsFile(join(dir, 'nope.json'))).message).toMatch(/results file not found/);
    expect(usage(() => readResultsFile(write('bad.json', '{"format": "cnnf-results/1", '))).message).toMatch(/not valid JSON/);
    expect(usage(() => readResultsFile(write('fmt.json', '{"format": "other/2"}'))).message).toMatch(/unsupported format "other\/2"/);
    expect(usage(() => readResultsFile(write('nofmt.json', '[1,2]'))).message).toMatch(/must be an object|not a cnnf results file/);
    expect(usage(() => readResultsFile(dir)).message).toMatch(/is a directory/);

    const noModels = sampleResults() as unknown as Record<string, unknown>;
    delete noModels.models;
    expect(usage(() => validateResults(noModels, 'r.json')).message).toBe('r.json: models is missing');

    const badAcc = sampleResults();
    (badAcc.models[1]!.attacks[2]!.points[1] as unknown as Record<string, unknown>).accuracy = 'high';
    expect(usage(() => validateResults(badAcc, 'r.json')).message).toBe('r.json: models[1].attacks[2].points[1].accuracy must be a finite number');

    const badConf = sampleResults();
    badConf.models[0]!.clean.confusion.pop();
    expect(usage(() => validateResults(badConf, 'r.json')).message).toMatch(/clean\.confusion must have 10 rows/);

    const noSeed = sampleResults() as unknown as { provenance: Record<string, unknown> };
    delete noSeed.provenance.seed;
    expect(usage(() => validateResults(noSeed, 'r.json')).message).toBe('r.json: provenance.seed is missing');

    // counts, intervals and outcome bitsets must agree with the accuracy they describe
    const badN = sampleResults();
    badN.models[0]!.clean.n = 999;
    expect(usage(() => validateResults(badN, 'r.json')).message).toBe('r.json: models[0].clean.n must equal provenance.examples (1000), got 999');
    const badK = sampleResults();
    badK.models[0]!.attacks[1]!.points[0]!.correct = 500;
    expect(usage(() => validateResults(badK, 'r.json')).message).toBe('r.json: models[0].attacks[1].points[0].accuracy must equal correct / n = 500/1000, got 0.514');
    const badCi = sampleResults();
    badCi.models[1]!.worstCase[0]!.ci = [0.5, 0.6];
    expect(usage(() => validateResults(badCi, 'r.json')).message).toBe('r.json: models[1].worstCase[0].ci [0.5, 0.6] does not contain 0.318');
    const badBits = sampleResults();
    badBits.models[1]!.clean.outcomes = badBits.models[0]!.clean.outcomes;
    expect(usage(() => validateResults(badBits, 'r.json')).message).toBe('r.json: models[1].clean.outcomes has 912 correct of 1000, which disagrees with accuracy 0.897');
    const shortBits = sampleResults();
    shortBits.models[1]!.clean.outcomes = 'AAAA';
    expect(usage(() => validateResults(shortBits, 'r.json')).message).toMatch(/models\[1\]\.clean\.outcomes must be a base64 bitset of 1000 outcomes/);
    expect(validateResults(legacySampleResults(), 'old.json').models).toHaveLength(2);

    const dup = sampleResults();
    dup.models[1]!.name = 'cnn';
    expect(usage(() => validateResults(dup, 'r.json')).message).toMatch(/duplicates another model's name/);
  });

  it('parses training logs and rejects malformed ones', () => {
    const log = parseTrainingLog('epoch,batch,step,loss,accuracy,lr\n1,0,0,2.0,0.1,0.01\n1,1,1,1.0,0.2,0.01\n', 'log.csv');
    expect(log.rows).toHaveLength(2);
    expect(log.rows[1]).toEqual({ epoch: 1, batch: 1, step: 1, loss: 1, accuracy: 0.2, lr: 0.01 });
    expect(movingAverage([2, 4, 6, 8], 2)).toEqual([2, 3, 5, 7]);
    expect(usage(() => parseTrainingLog('epoch,step,loss\n1,2,3\n', 'a.csv')).message).toMatch(/a\.csv: not a training log .*missing batch, accuracy, lr/);
    expect(usage(() => parseTrainingLog('epoch,batch,step,loss,accuracy,lr\n1,0,0,nan?,0.1,0.1\n', 'b.csv')).message).toBe('b.csv:2: loss must be a number, got "nan?"');
    expect(usage(() => parseTrainingLog('epoch,batch,step,loss,accuracy,lr\n', 'c.csv')).message).toMatch(/no data rows/);
  });
});

describe('cnnf report (CLI)', () => {
  it('writes the report and prints the absolute path of index.html', async () => {
    const out = join(dir, 'cli-out');
    const r = await cnnf(['report', resultsPath, logPath, '--out', out, '--title', 'CLI report']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${join(out, 'index.html')}\n`);
    expect(readFileSync(join(out, 'index.html'), 'utf8')).toContain('<title>CLI report</title>');
    expect(existsSync(join(out, 'report.md'))).toBe(true);
  });

  it('exits 2 with one line on bad input', async () => {
    writeFileSync(join(dir, 'notjson.json'), 'hello');
    writeFileSync(join(dir, 'wrongfmt.json'), JSON.stringify({ ...sampleResults(), format: 'cnnf-results/99' }));
    writeFileSync(join(dir, 'badlog.csv'), 'a,b\n1,2\n');
    const [missing, notJson, wrongFmt, badLog] = await Promise.all([
      cnnf(['report', join(dir, 'missing.json'), '--out', join(dir, 'x')]),
      cnnf(['report', join(dir, 'notjson.json'), '--out', join(dir, 'x')]),
      cnnf(['report', join(dir, 'wrongfmt.json'), '--out', join(dir, 'x')]),
      cnnf(['report', resultsPath, join(dir, 'badlog.csv'), '--out', join(dir, 'x')]),
    ]);
    expectOneLineUsage(missing, /results file not found/);
    expectOneLineUsage(notJson, /not valid JSON/);
    expectOneLineUsage(wrongFmt, /unsupported format "cnnf-results\/99"/);
    expectOneLineUsage(badLog, /not a training log/);
    expect(existsSync(join(dir, 'x'))).toBe(false);
  });
});

describe('report in headless Chromium', () => {
  const have = existsSync(CHROMIUM);
  if (!have && !process.env.CI) {
    console.warn(`[report.test] SKIPPING the headless Chromium test: ${CHROMIUM} not found (install with .ci/install-chromium.sh)`);
  }
  it.skipIf(!have && !process.env.CI)('loads with no errors or requests, shows the SVG charts, screenshots', async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is required when CI is set: run .ci/install-chromium.sh`).toBe(true);
    const { chromium } = await import('playwright-core');
    const started = Date.now();
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const problems: string[] = [];
      const requests: string[] = [];
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
      page.on('request', (r) => requests.push(r.url()));
      const url = pathToFileURL(join(outDir, 'index.html')).href;
      const resp = await page.goto(url, { waitUntil: 'load' });
      expect(resp?.ok() ?? true).toBe(true);

      const dom = await page.evaluate(() => {
        const svgs = [...document.querySelectorAll('figure.chart > svg')];
        return {
          title: document.title,
          charts: svgs.length,
          sized: svgs.filter((s) => { const b = s.getBoundingClientRect(); return b.width > 50 && b.height > 50; }).length,
          marks: document.querySelectorAll('figure.chart svg path, figure.chart svg text').length,
          scripts: document.querySelectorAll('script').length,
          images: [...document.images].map((i) => ({ ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth })),
          tables: document.querySelectorAll('table').length,
          // confusion matrices: figures per row of the first grid (distinct left offsets among those on its first line)
          gridRow: (() => {
            const figs = [...document.querySelectorAll('.charts.grid > figure')].map((f) => f.getBoundingClientRect());
            return figs.filter((b) => Math.abs(b.top - figs[0]!.top) < 1).length;
          })(),
          gridFigures: document.querySelectorAll('.charts.grid > figure').length,
        };
      });
      expect(dom.title).toBe('CNN vs CNN-F on Fashion-MNIST');
      expect(dom.charts).toBe(34);
      expect(dom.sized).toBe(34);
      expect(dom.marks).toBeGreaterThan(1000);
      expect(dom.scripts).toBe(0);
      expect(dom.images).toEqual([{ ok: true, w: 28 }, { ok: true, w: 28 }]);
      expect(dom.tables).toBeGreaterThanOrEqual(10);
      expect(dom.gridFigures).toBe(27);
      expect(dom.gridRow).toBeGreaterThanOrEqual(3); // a grid, not one column (1280 px wide window)
      expect(problems).toEqual([]);
      expect(requests).toEqual([url]);

      const shot = join(dir, 'screenshot.png');
      await page.screenshot({ path: shot });
      const meta = await sharp(shot).metadata();
      expect(meta.format).toBe('png');
      expect([meta.width, meta.height]).toEqual([1280, 900]);
      expect(readFileSync(shot).length).toBeGreaterThan(20_000);

      // CNNF_REPORT_SCREENSHOT_DIR=DIR keeps a full-page screenshot and the first accuracy chart for a human to look at
      const keep = process.env.CNNF_REPORT_SCREENSHOT_DIR;
      if (keep) {
        mkdirSync(keep, { recursive: true });
        await page.screenshot({ path: join(keep, 'report-full.png'), fullPage: true });
        await page.locator('figure.chart').nth(2).screenshot({ path: join(keep, 'report-pgd7-chart.png') });
      }
      const chartShot = await page.locator('figure.chart').first().screenshot();
      const stats = await sharp(chartShot).stats();
      expect(stats.channels[0]!.stdev).toBeGreaterThan(5);
      console.info(`[report.test] headless Chromium test took ${Date.now() - started} ms`);
    } finally {
      await browser.close();
    }
  });
});
