/**
 * Escaping for every string that comes from a results file or training log before it reaches HTML,
 * XML or Markdown. Each escaper first applies cleanText (src/format.ts), the one sanitiser for text
 * from files: control, bidi and other invisible characters become visible escapes, so no output
 * carries them raw and every string is valid XML.
 */
import { cleanText, slugify } from '../format.js';

export { cleanText, slugify };

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return cleanText(value).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
}

/** Escapes text for XML content/attributes (one line: line breaks show as \n; split multi-line text first). */
export function escapeXml(value: unknown): string {
  return cleanText(value).replace(/[&<>"']/g, (c) => (c === "'" ? '&apos;' : HTML_ESCAPES[c]!));
}

/**
 * Escapes text for a Markdown table cell or paragraph: & < > become entities (Markdown renderers
 * pass raw HTML through), inline Markdown punctuation and a leading block marker are
 * backslash-escaped, and line breaks show as \n (cleanText) so a value can never break a table row.
 */
export function escapeMarkdown(value: unknown): string {
  return cleanText(value)
    .replace(/[\\`*_[\]|~]/g, (c) => `\\${c}`)
    // block markers only count at the start and before a space: "# x", "- x", "1. x", "==="
    .replace(/^(#{1,6}|[+=-]+)(?=\s|$)/, (m) => `\\${m}`)
    .replace(/^(\d{1,9})([.)])(?=\s|$)/, (_m, d: string, p: string) => `${d}\\${p}`)
    .replace(/[&<>]/g, (c) => HTML_ESCAPES[c]!);
}
