/**
 * What every analytics measure takes and returns. A measure is one set-based SQL query over one practice
 * and one period; money is exact integer minor units (cents) in one currency, never a float.
 */

/** The measures, as named in `GET /analytics/{measure}`. */
export const MEASURE_NAMES = [
  'collection-rate',
  'aging',
  'unpaid-by-service-code',
  'unpaid-by-payer',
  'demographics',
  'channels',
  'plans',
  'roi',
] as const;
export type MeasureName = (typeof MEASURE_NAMES)[number];

/** How many days after a send a link open or payment is credited to it (channel attribution, last touch). */
export const ATTRIBUTION_WINDOW_DAYS = 30;

/** One practice, one period, one currency. */
export interface AnalyticsPeriod {
  practiceId: string;
  /** First day of the period, `YYYY-MM-DD` in the practice's time zone (inclusive). */
  from: string;
  /** Last day of the period, `YYYY-MM-DD` in the practice's time zone (inclusive). */
  to: string;
  /** ISO 4217; amounts in other currencies are left out, never converted. */
  currency: string;
}

/** A measure's answer: the period it covers and one flat row per group (what the CSV export writes). */
export interface AnalyticsResult<Row extends object> {
  measure: MeasureName;
  from: string;
  to: string;
  currency: string;
  /**
   * The instant the figures reflect (ISO 8601): when the practice's analytics rollup was last refreshed
   * (src/analytics/rollup.ts); for a measure read from the live tables, the time of the query.
   */
  asOf: string;
  /** The row fields, in CSV column order. */
  columns: readonly (keyof Row & string)[];
  rows: Row[];
}

/** A ratio of two exact integers, rounded to 4 decimals; null when the denominator is not positive. */
export function ratio(numerator: number, denominator: number): number | null {
  if (!(denominator > 0)) return null;
  return Math.round((numerator / denominator) * 10_000) / 10_000;
}

/** A bigint/numeric column as read by `pg` (text) to a safe integer; null stays null. */
export function int(value: string | number | null | undefined): number {
  if (value === null || value === undefined) return 0;
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`analytics: ${value} is not a safe integer`);
  return n;
}

/** A nullable integer column. */
export function intOrNull(value: string | number | null | undefined): number | null {
  return value === null || value === undefined ? null : int(value);
}

/**
 * The SQL of the `period` CTE every measure starts with: the practice's time zone and the period's bounds as
 * instants (`t0` inclusive, `t1` exclusive: midnight after `to`, local time). Parameters: $1 practice id,
 * $2 from, $3 to.
 */
export const PERIOD_CTE = `period AS (
  SELECT time_zone AS tz, $2::date AS d0, $3::date AS d1,
         ($2::date)::timestamp AT TIME ZONE time_zone AS t0,
         ($3::date + 1)::timestamp AT TIME ZONE time_zone AS t1
  FROM practices WHERE id = $1)`;

/** The aging bucket of a whole number of days, in SQL (the buckets of src/domain/ledger.ts). */
export function bucketSql(days: string): string {
  return `CASE WHEN ${days} <= 30 THEN '0-30' WHEN ${days} <= 60 THEN '31-60' WHEN ${days} <= 90 THEN '61-90' WHEN ${days} <= 120 THEN '91-120' ELSE '120+' END`;
}
