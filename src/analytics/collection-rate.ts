/**
 * Collection rate by month, and days to pay.
 *
 * For each calendar month of the period (by the ledger date of each entry, in the practice's time zone):
 * - `billedMinor`: patient responsibility billed: patient-payer charges dated in the month, net of reversals;
 * - `collectedMinor`: patient payments dated in the month (from the EHR and through Settle), net of reversals,
 *   refunds and lost disputes;
 * - `rate`: collected ÷ billed (4 decimals; null when nothing was billed). Cash basis: a month's payments may
 *   pay earlier months' charges;
 * - `balancesPaid`: balances that first became `paid` in the month;
 * - `daysToPayMedian`, `daysToPayP90`: for those balances, days from the service date of their oldest patient
 *   charge to the local date they first became paid (continuous percentiles, 1 decimal; null with none).
 */
import type { Queryable } from '../store/database.ts';
import { rollupAsOf } from './rollup.ts';
import { int, PERIOD_CTE, ratio, type AnalyticsPeriod, type AnalyticsResult } from './types.ts';

/** One month. */
export interface CollectionRateRow {
  /** `YYYY-MM`. */
  month: string;
  billedMinor: number;
  collectedMinor: number;
  rate: number | null;
  balancesPaid: number;
  daysToPayMedian: number | null;
  daysToPayP90: number | null;
}

const COLUMNS = ['month', 'billedMinor', 'collectedMinor', 'rate', 'balancesPaid', 'daysToPayMedian', 'daysToPayP90'] as const;

const SQL = `WITH ${PERIOD_CTE},
months AS (
  SELECT m::date AS month FROM period, generate_series(date_trunc('month', period.d0), date_trunc('month', period.d1), interval '1 month') AS m),
amounts AS (
  SELECT date_trunc('month', d.day)::date AS month,
         coalesce(sum(d.effect_minor) FILTER (WHERE d.kind = 'charge'), 0) AS billed,
         coalesce(-sum(d.effect_minor) FILTER (WHERE d.kind = 'payment'), 0) AS collected
  FROM analytics_entry_days d, period
  WHERE d.practice_id = $1 AND d.currency = $4 AND d.payer = 'patient' AND d.kind IN ('charge', 'payment')
    AND d.day BETWEEN period.d0 AND period.d1
  GROUP BY 1),
-- Days to pay from counts per value: percentile_cont's own interpolation (float8, between the values at rows
-- floor and ceil of p × (n − 1)), so the figures are exactly what percentile_cont over the balances gives.
paid AS (
  SELECT date_trunc('month', d.day)::date AS month, d.days, sum(d.balances) AS n
  FROM analytics_paid_days d, period
  WHERE d.practice_id = $1 AND d.currency = $4 AND d.day BETWEEN period.d0 AND period.d1
  GROUP BY 1, 2),
ranked AS (
  SELECT month, days, sum(n) OVER (PARTITION BY month ORDER BY days) AS upto, sum(n) OVER (PARTITION BY month) AS total FROM paid),
positions AS (
  SELECT DISTINCT month, total, p, p * (total - 1)::float8 AS pos FROM ranked, (VALUES (0.5::float8), (0.9::float8)) AS ps(p)),
percentiles AS (
  SELECT x.month, x.total, x.p,
         lo.days::float8 + (x.pos - floor(x.pos)) * (hi.days::float8 - lo.days::float8) AS value
  FROM positions x
  CROSS JOIN LATERAL (SELECT min(r.days) AS days FROM ranked r WHERE r.month = x.month AND r.upto > floor(x.pos)) lo
  CROSS JOIN LATERAL (SELECT min(r.days) AS days FROM ranked r WHERE r.month = x.month AND r.upto > ceil(x.pos)) hi),
paid_stats AS (
  SELECT month, min(total) AS balances_paid,
         round(min(value) FILTER (WHERE p = 0.5)::numeric, 1) AS median,
         round(min(value) FILTER (WHERE p = 0.9)::numeric, 1) AS p90
  FROM percentiles GROUP BY month)
SELECT to_char(months.month, 'YYYY-MM') AS month, coalesce(a.billed, 0)::text AS billed, coalesce(a.collected, 0)::text AS collected,
       coalesce(s.balances_paid, 0)::text AS balances_paid, s.median::text AS median, s.p90::text AS p90
FROM months LEFT JOIN amounts a USING (month) LEFT JOIN paid_stats s USING (month)
ORDER BY months.month`;

/** Collection rate and days to pay, per month of the period, from the analytics rollup. */
export async function collectionRateByMonth(db: Queryable, period: AnalyticsPeriod): Promise<AnalyticsResult<CollectionRateRow>> {
  const asOf = await rollupAsOf(db, period.practiceId);
  const { rows } = await db.query<{ month: string; billed: string; collected: string; balances_paid: string; median: string | null; p90: string | null }>(
    SQL,
    [period.practiceId, period.from, period.to, period.currency],
  );
  return {
    measure: 'collection-rate',
    from: period.from,
    to: period.to,
    currency: period.currency,
    asOf: asOf.toISOString(),
    columns: COLUMNS,
    rows: rows.map((r) => ({
      month: r.month,
      billedMinor: int(r.billed),
      collectedMinor: int(r.collected),
      rate: ratio(int(r.collected), int(r.billed)),
      balancesPaid: int(r.balances_paid),
      daysToPayMedian: r.median === null ? null : Number(r.median),
      daysToPayP90: r.p90 === null ? null : Number(r.p90),
    })),
  };
}
