/**
 * CSV of an analytics result (RFC 4180): a header of the row fields, one line per row, CRLF line ends.
 * Numbers are written as they are (amounts in integer minor units), null as an empty field, booleans as
 * `true`/`false`; a field that could start a spreadsheet formula is prefixed with `'`.
 */
import type { AnalyticsResult } from './types.ts';

function field(value: unknown): string {
  if (value === null || value === undefined) return '';
  let text = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** The result as CSV text. */
export function toCsv<Row extends object>(result: AnalyticsResult<Row>): string {
  const lines = [result.columns.join(',')];
  for (const row of result.rows) lines.push(result.columns.map((column) => field((row as Record<string, unknown>)[column])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}
