/**
 * The report as a renderer-neutral list of blocks holding plain (unescaped) text. The HTML and the
 * Markdown renderers each escape for their own output, so both show exactly the same tables.
 */
import { escapeHtml, escapeMarkdown, slugify } from './escape.js';
import { VERSION } from '../version.js';

/** Inline text: a plain string, or a styled run. */
export type Inline = string | { strong: string } | { code: string };
export type Text = Inline | Inline[];

export interface ChartAsset {
  id: string;
  title: string;
  /** SVG with ids already made unique for inlining. */
  svg: string;
  /** Path of the PNG report.md shows, relative to report.md (in the assets folder). */
  pngFile: string;
}

export interface ImageAsset {
  title: string;
  /** PNG bytes, or null when the image could not be used (then `note` says why). */
  png: Buffer | null;
  pngFile: string;
  note?: string;
}

export type Block =
  | { kind: 'heading'; level: 1 | 2 | 3; text: string; id?: string }
  | { kind: 'paragraph'; text: Text }
  | { kind: 'note'; text: Text }
  | { kind: 'list'; items: Text[] }
  | { kind: 'table'; header: string[]; rows: Text[][]; numeric?: boolean[] }
  | { kind: 'code'; text: string }
  /** Charts side by side; `grid`: a fixed grid of small multiples (confusion matrices, three or four a row). */
  | { kind: 'charts'; charts: ChartAsset[]; layout?: 'grid' }
  | { kind: 'images'; images: ImageAsset[] };

const parts = (t: Text): Inline[] => (Array.isArray(t) ? t : [t]);

function inlineHtml(t: Text): string {
  return parts(t)
    .map((p) => (typeof p === 'string' ? escapeHtml(p) : 'strong' in p ? `<strong>${escapeHtml(p.strong)}</strong>` : `<code>${escapeHtml(p.code)}</code>`))
    .join('');
}

function inlineMd(t: Text): string {
  return parts(t)
    .map((p) => {
      if (typeof p === 'string') return escapeMarkdown(p);
      if ('strong' in p) return `**${escapeMarkdown(p.strong)}**`;
      // code spans show backslashes literally, so use <code> with entity-escaped text instead
      return `<code>${escapeHtml(p.code.replace(/[\r\n]+/g, ' ')).replace(/\|/g, '&#124;')}</code>`;
    })
    .join('');
}

export function headingId(text: string, used: Set<string>): string {
  const base = `s-${slugify(text, 'section')}`;
  let id = base;
  for (let i = 2; used.has(id); i++) id = `${base}-${i}`;
  used.add(id);
  return id;
}

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1b1f24; background: #fafbfc; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; background: #fff; min-height: 100vh; }
h1 { font-size: 1.7rem; margin: 0.2em 0 0.4em; }
h2 { font-size: 1.3rem; margin: 1.8em 0 0.5em; padding-bottom: 0.25em; border-bottom: 1px solid #e3e6ea; }
h3 { font-size: 1.05rem; margin: 1.4em 0 0.4em; }
nav.toc { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 0.9rem; background: #f4f6f8; padding: 8px 14px; border-radius: 6px; }
nav.toc a { color: #0b5cad; text-decoration: none; white-space: nowrap; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.9rem; }
th, td { border: 1px solid #d6dadf; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f1f3f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fafbfc; }
code { font-family: "DejaVu Sans Mono", ui-monospace, Menlo, Consolas, monospace; font-size: 0.85em; background: #f1f3f5; padding: 1px 4px; border-radius: 3px; word-break: break-all; }
pre { background: #f1f3f5; padding: 10px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 12px; margin: 0.6em 0; }
.charts { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.charts.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 12px 14px; }
figure { margin: 0; }
figure svg, figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.8rem; color: #57606a; margin-top: 4px; word-break: break-all; }
footer { margin-top: 3em; font-size: 0.8rem; color: #57606a; }
`;

export function renderHtml(title: string, blocks: Block[]): string {
  const toc = blocks
    .filter((b): b is Extract<Block, { kind: 'heading' }> => b.kind === 'heading' && b.level === 2 && b.id !== undefined)
    .map((b) => `<a href="#${escapeHtml(b.id!)}">${escapeHtml(b.text)}</a>`)
    .join('');
  const body = blocks.map(blockHtml).join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="cnnf ${escapeHtml(VERSION)}">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<h1>${escapeHtml(title)}</h1>
${toc ? `<nav class="toc">${toc}</nav>` : ''}
${body}
<footer>Generated by cnnf ${escapeHtml(VERSION)} <code>cnnf report</code>. This file is self-contained: no scripts, no external resources.</footer>
</main>
</body>
</html>
`;
}

function blockHtml(b: Block): string {
  switch (b.kind) {
    case 'heading':
      return `<h${b.level}${b.id ? ` id="${escapeHtml(b.id)}"` : ''}>${escapeHtml(b.text)}</h${b.level}>`;
    case 'paragraph':
      return `<p>${inlineHtml(b.text)}</p>`;
    case 'note':
      return `<p class="note">${inlineHtml(b.text)}</p>`;
    case 'list':
      return `<ul>${b.items.map((i) => `<li>${inlineHtml(i)}</li>`).join('')}</ul>`;
    case 'code':
      return `<pre><code>${escapeHtml(b.text)}</code></pre>`;
    case 'table': {
      const head = b.header.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
      const rows = b.rows
        .map((r) => `<tr>${r.map((c, i) => `<td${b.numeric?.[i] ? ' class="num"' : ''}>${inlineHtml(c)}</td>`).join('')}</tr>`)
        .join('\n');
      return `<table>\n<thead><tr>${head}</tr></thead>\n<tbody>\n${rows}\n</tbody>\n</table>`;
    }
    case 'charts':
      return `<div class="charts${b.layout === 'grid' ? ' grid' : ''}">${b.charts
        .map((c) => `<figure class="chart" id="${escapeHtml(c.id)}" aria-label="${escapeHtml(c.title)}">${c.svg}</figure>`)
        .join('\n')}</div>`;
    case 'images':
      return `<div class="charts">${b.images
        .map((img) =>
          img.png
            ? `<figure class="dump"><img alt="${escapeHtml(img.title)}" src="data:image/png;base64,${img.png.toString('base64')}"><figcaption>${escapeHtml(img.title)}</figcaption></figure>`
            : `<p class="note">${escapeHtml(img.note ?? `image unavailable: ${img.title}`)}</p>`,
        )
        .join('\n')}</div>`;
  }
}

export function renderMarkdown(title: string, blocks: Block[]): string {
  const out: string[] = [`# ${escapeMarkdown(title)}`, ''];
  for (const b of blocks) {
    switch (b.kind) {
      case 'heading':
        out.push(`${'#'.repeat(b.level)} ${escapeMarkdown(b.text)}`, '');
        break;
      case 'paragraph':
        out.push(inlineMd(b.text), '');
        break;
      case 'note':
        out.push(`> **Note:** ${inlineMd(b.text)}`, '');
        break;
      case 'list':
        out.push(...b.items.map((i) => `- ${inlineMd(i)}`), '');
        break;
      case 'code':
        // an HTML <pre> block (CommonMark type 1, ends only at </pre>) so the text can be entity-escaped
        out.push(`<pre><code>${escapeHtml(b.text)}</code></pre>`, '');
        break;
      case 'table':
        out.push(
          `| ${b.header.map(escapeMarkdown).join(' | ')} |`,
          `| ${b.header.map((_, i) => (b.numeric?.[i] ? '---:' : '---')).join(' | ')} |`,
          ...b.rows.map((r) => `| ${r.map(inlineMd).join(' | ')} |`),
          '',
        );
        break;
      case 'charts':
        for (const c of b.charts) out.push(`![${escapeMarkdown(c.title)}](${c.pngFile})`, '');
        break;
      case 'images':
        for (const img of b.images) {
          out.push(img.png ? `![${escapeMarkdown(img.title)}](${img.pngFile})` : `> **Note:** ${escapeMarkdown(img.note ?? `image unavailable: ${img.title}`)}`, '');
        }
        break;
    }
  }
  out.push(`---`, '', `Generated by cnnf ${escapeMarkdown(VERSION)} \`cnnf report\`.`, '');
  return out.join('\n');
}
