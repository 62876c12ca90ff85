/**
 * Server-side HTML for the dashboard: an escaping template tag, and the small pieces every page is made of
 * (tables with headers and captions, pagination, money and dates). Every interpolated value is escaped unless it
 * is already {@link Html}, so text from the database can never become markup.
 */
import { displayMoney, type Money } from '../domain/money.ts';

/** Markup that is safe to insert as is. */
export class Html {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text escaped for HTML content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function render(value: unknown): string {
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Date) return escapeHtml(formatDateTime(value));
  return escapeHtml(String(value));
}

/** Tagged template: `html\`<td>${value}</td>\`` escapes `value`; arrays are joined; null, undefined and false render nothing. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new Html(out);
}

/** Amount of money as people read it (`$1,234.56`). */
export function showMoney(m: Money | { amountMinor: number; currency: string }): string {
  return 'amountMinor' in m ? displayMoney({ amount: m.amountMinor, currency: m.currency }) : displayMoney(m);
}

/** A timestamp as staff read it, in UTC (`2026-06-01 14:00 UTC`). */
export function formatDateTime(at: Date | string | null | undefined): string {
  if (at === null || at === undefined) return '—';
  const date = typeof at === 'string' ? new Date(at) : at;
  if (Number.isNaN(date.getTime())) return String(at);
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** Words for a machine value (`in_outreach` → `in outreach`, `writeback-failed` → `writeback failed`). */
export function words(value: string | null | undefined): string {
  return value ? value.replace(/[_-]+/g, ' ') : '—';
}

/**
 * A data table with a caption and column headers; `empty` is shown in one row when there are no rows. A wide table
 * scrolls sideways inside a labelled region that takes keyboard focus, so it can be scrolled without a mouse.
 */
export function table(caption: string, headers: readonly string[], rows: readonly (readonly unknown[])[], empty = 'Nothing here.'): Html {
  return html`<div class="table-wrap" role="region" aria-label="${caption}" tabindex="0"><table>
<caption>${caption}</caption>
<thead><tr>${headers.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead>
<tbody>${rows.length === 0
    ? html`<tr><td colspan="${headers.length}" class="empty">${empty}</td></tr>`
    : rows.map((row) => html`<tr>${row.map((cell, i) => (i === 0 ? html`<th scope="row">${cell}</th>` : html`<td>${cell}</td>`))}</tr>`)}</tbody>
</table></div>`;
}

/** A URL with query parameters (empty ones left out). */
export function withQuery(path: string, query: Record<string, string | number | undefined | null>): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/**
 * Previous/next links of a paged table. `previous`/`next` are the target URLs, absent at either end; with cursor
 * paging `first` replaces `previous` (a cursor only goes forward).
 */
export function pager(label: string, links: { previous?: string; next?: string; first?: string }): Html {
  if (!links.previous && !links.next && !links.first) return html``;
  return html`<nav class="pager" aria-label="${label} pages">
${links.first ? html`<a href="${links.first}">← First page</a>` : links.previous ? html`<a href="${links.previous}" rel="prev">← Previous</a>` : html`<span aria-disabled="true">← Previous</span>`}
${links.next ? html`<a href="${links.next}" rel="next">Next →</a>` : html`<span aria-disabled="true">Next →</span>`}
</nav>`;
}

/** Offset paging links for a page of `limit` rows starting at `offset`. */
export function offsetPager(label: string, path: string, query: Record<string, string | undefined>, offset: number, limit: number, hasNext: boolean): Html {
  return pager(label, {
    ...(offset > 0 ? { previous: withQuery(path, { ...query, offset: Math.max(0, offset - limit) || undefined }) } : {}),
    ...(hasNext ? { next: withQuery(path, { ...query, offset: offset + limit }) } : {}),
  });
}

/** A whole number from a query value, within bounds; `fallback` when absent or not a number. */
export function queryInt(value: unknown, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof value === 'string' && /^\d{1,9}$/.test(value) ? Number(value) : NaN;
  return Number.isFinite(n) ? Math.min(Math.max(n, min), max) : fallback;
}
