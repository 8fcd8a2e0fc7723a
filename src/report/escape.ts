/** Escaping for every string that comes from a results file or training log before it reaches HTML, XML or Markdown. */

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
}

/** Characters XML 1.0 does not allow at all (most C0 controls, lone surrogates, U+FFFE/FFFF). */
// eslint-disable-next-line no-control-regex
const XML_INVALID = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Escapes text for XML content/attributes; characters XML cannot carry become U+FFFD. */
export function escapeXml(value: unknown): string {
  return String(value).replace(XML_INVALID, '\uFFFD').replace(/[&<>"']/g, (c) => (c === "'" ? '&apos;' : HTML_ESCAPES[c]!));
}

/**
 * Escapes text for a Markdown table cell or paragraph: & < > become entities (Markdown renderers
 * pass raw HTML through), inline Markdown punctuation and a leading block marker are
 * backslash-escaped, and line breaks become spaces so a value can never break a table row.
 */
export function escapeMarkdown(value: unknown): string {
  return String(value)
    .replace(/[\r\n]+/g, ' ')
    .replace(/[\\`*_[\]|~]/g, (c) => `\\${c}`)
    // block markers only count at the start and before a space: "# x", "- x", "1. x", "==="
    .replace(/^(#{1,6}|[+=-]+)(?=\s|$)/, (m) => `\\${m}`)
    .replace(/^(\d{1,9})([.)])(?=\s|$)/, (_m, d: string, p: string) => `${d}\\${p}`)
    .replace(/[&<>]/g, (c) => HTML_ESCAPES[c]!);
}

/** A file-name-safe slug (ASCII letters, digits, '-', '_'); never empty, never contains path separators. */
export function slugify(value: string, fallback = 'item'): string {
  const s = value
    .normalize('NFKD')
    .replace(/[^A-Za-z0-9_-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 48)
    .toLowerCase();
  return s === '' ? fallback : s;
}
