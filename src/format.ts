/** Numbers and text formatted for people (terminal tables, reports, recipes, file names). */

/** 1.97e-4, 0.05, 128: a number as people write it (3 significant digits, exponent below 1e-3). */
export function humanNumber(v: number): string {
  if (!Number.isFinite(v) || v === 0) return String(v);
  if (Math.abs(v) < 1e-3) return v.toExponential(2).replace(/\.?0+e/, 'e');
  return String(Number(v.toPrecision(3)));
}

/** "85.6%": a fraction as a percentage with one decimal, the one format of every accuracy cnnf prints. */
export function percent(v: number): string {
  return `${(v * 100).toFixed(1)}%`;
}

/** "80.5-90.1": an interval of fractions in percent (one decimal, no % sign); `sep` joins the ends. */
export function percentRange(lower: number, upper: number, sep = '-'): string {
  return `${(lower * 100).toFixed(1)}${sep}${(upper * 100).toFixed(1)}`;
}

/**
 * Characters that must never reach a terminal, a table cell or an SVG/HTML/Markdown text as they are:
 * C0 and C1 controls and DEL (ESC starts terminal sequences, BEL ends OSC titles, NUL, CR and LF split
 * lines and rows), Unicode format characters (bidi overrides/isolates such as U+202E reorder the text
 * around them; zero-width and invisible characters), line/paragraph separators, lone surrogates and
 * the noncharacters U+FFFE/U+FFFF (not allowed in XML). ZERO WIDTH JOINER stays (emoji sequences).
 */
const UNSAFE = /(?!\u200d)[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\ufffe\uffff]/gu;

const hex = (cp: number, width: number): string => cp.toString(16).padStart(width, '0');

/**
 * The one sanitiser for a string read from a file (a class name, a model or attack name, a message)
 * before it is shown anywhere: every unsafe character (see UNSAFE) becomes a visible escape, `\n`,
 * `\t`, `\r`, `\x1b`, `\u202e`, so the text stays on one line, cannot drive a terminal or reorder
 * its surroundings, is valid XML, and two names that differ only in such characters stay distinct.
 * Markup characters are left to the output's own escaper (escapeHtml, escapeXml, escapeMarkdown).
 */
export function cleanText(value: unknown): string {
  return String(value).replace(UNSAFE, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    const cp = c.codePointAt(0)!;
    if (cp < 0x100) return `\\x${hex(cp, 2)}`;
    return cp <= 0xffff ? `\\u${hex(cp, 4)}` : `\\u{${hex(cp, 5)}}`;
  });
}

/** Multi-line text for a terminal (tables): every line through cleanText, the line breaks kept. */
export function terminalText(text: string): string {
  return text.split('\n').map(cleanText).join('\n');
}

/**
 * A file-name-safe slug: lowercase ASCII letters, digits, '-' and '_' ("CNN (adv.)" -> "cnn-adv");
 * never empty (then `fallback`), never a path separator or a leading dot, at most 48 characters.
 */
export function slugify(value: string, fallback = 'item'): string {
  const s = value
    .normalize('NFKD')
    .replace(/[^A-Za-z0-9_-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 48)
    .replace(/-$/, '')
    .toLowerCase();
  return s === '' ? fallback : s;
}

/** Slugs of `values`, made unique by a "-2", "-3" ... suffix (case-insensitively, for every filesystem). */
export function uniqueSlugs(values: readonly string[], fallback = 'item'): string[] {
  const used = new Set<string>();
  return values.map((v) => {
    const base = slugify(v, fallback);
    let s = base;
    for (let i = 2; used.has(s); i++) s = `${base}-${i}`;
    used.add(s);
    return s;
  });
}
