/**
 * Charts as inline SVG drawn on the server: no chart library, no script. Each chart is a figure with a caption,
 * an SVG labelled for screen readers (`role="img"`, `<title>`, `<desc>`), and its numbers in a table under a
 * disclosure, so what a bar shows can also be read and copied. Colours use presentation attributes (never
 * `style`), so the dashboard's CSP needs no 'unsafe-inline'.
 */
import { html, table, type Html } from './html.ts';

/** One bar: a label and one value per series. */
export interface ChartRow {
  label: string;
  values: number[];
}

/** A bar chart to draw. */
export interface BarChart {
  /** Unique within the page (used for element ids). */
  id: string;
  title: string;
  /** One sentence saying what the chart shows, for screen readers. */
  description: string;
  /** Series names, one per value of each row (one series: a single colour, no legend). */
  series: string[];
  /** What a row is (`Month`, `Age`), the first column of the numbers table. */
  category?: string;
  rows: ChartRow[];
  /** How a value reads (`$1,234.56`, `42%`). */
  format(value: number): string;
}

/** Colours with at least 3:1 contrast against white, told apart by the legend too. */
const COLOURS = ['#0b4f9c', '#c2410c', '#0f6b3a', '#6b21a8'];

const WIDTH = 520;
const LABEL_WIDTH = 150;
const VALUE_WIDTH = 110;
const ROW_GAP = 6;

/** A horizontal bar chart: one group of bars per row, longest value the full width. */
export function barChart(chart: BarChart): Html {
  const seriesCount = Math.max(1, chart.series.length);
  const barHeight = seriesCount === 1 ? 20 : 14;
  const groupHeight = barHeight * seriesCount + ROW_GAP * 2;
  const legendHeight = seriesCount > 1 ? 24 : 0;
  const height = legendHeight + Math.max(1, chart.rows.length) * groupHeight + 4;
  const max = Math.max(0, ...chart.rows.flatMap((r) => r.values.map((v) => Math.abs(v))));
  const plot = WIDTH - LABEL_WIDTH - VALUE_WIDTH;
  const titleId = `${chart.id}-title`;
  const descId = `${chart.id}-desc`;
  const legend = seriesCount > 1
    ? chart.series.map((name, s) => html`<rect x="${LABEL_WIDTH + s * 130}" y="4" width="12" height="12" fill="${COLOURS[s % COLOURS.length]}"></rect><text x="${LABEL_WIDTH + s * 130 + 16}" y="15" font-size="12" fill="#1b1f24">${name}</text>`)
    : '';
  const bars = chart.rows.map((row, r) => {
    const y0 = legendHeight + r * groupHeight + ROW_GAP;
    return html`<g class="bar-group"><text x="${LABEL_WIDTH - 8}" y="${y0 + (barHeight * seriesCount) / 2 + 4}" font-size="12" text-anchor="end" fill="#1b1f24">${truncate(row.label, 22)}</text>${row.values.map((value, s) => {
      const w = max === 0 ? 0 : Math.max(value === 0 ? 0 : 1, Math.round((Math.abs(value) / max) * plot));
      const y = y0 + s * barHeight;
      return html`<rect class="bar" x="${LABEL_WIDTH}" y="${y}" width="${w}" height="${barHeight - 2}" fill="${COLOURS[s % COLOURS.length]}" data-value="${value}"><title>${row.label}${seriesCount > 1 ? ` (${chart.series[s]})` : ''}: ${chart.format(value)}</title></rect><text x="${LABEL_WIDTH + w + 6}" y="${y + barHeight - 5}" font-size="11" fill="#1b1f24">${chart.format(value)}</text>`;
    })}</g>`;
  });
  const empty = chart.rows.length === 0 ? html`<text x="${LABEL_WIDTH}" y="${legendHeight + 20}" font-size="13" fill="#4a5361">No data yet.</text>` : '';
  return html`<figure id="${chart.id}" class="chart">
<figcaption id="${titleId}">${chart.title}</figcaption>
<svg viewBox="0 0 ${WIDTH} ${height}" width="100%" role="img" aria-labelledby="${titleId} ${descId}" focusable="false">
<title>${chart.title}</title><desc id="${descId}">${chart.description}</desc>
${legend}${bars}${empty}
</svg>
<details><summary>The numbers</summary>${table(chart.title, [chart.category ?? 'Group', ...(seriesCount > 1 ? chart.series : ['Value'])], chart.rows.map((r) => [r.label, ...r.values.map((v) => chart.format(v))]), 'No data yet.')}</details>
</figure>`;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
