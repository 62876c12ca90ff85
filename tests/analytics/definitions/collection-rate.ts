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
import type { Queryable } from '../../../src/store/database.ts';
import { int, PERIOD_CTE, ratio, type AnalyticsPeriod, type AnalyticsResult } from '../../../src/analytics/types.ts';
import type { CollectionRateRow } from '../../../src/analytics/collection-rate.ts';

const COLUMNS = ['month', 'billedMinor', 'collectedMinor', 'rate', 'balancesPaid', 'daysToPayMedian', 'daysToPayP90'] as const;

const SQL = `WITH ${PERIOD_CTE},
months AS (
  SELECT m::date AS month FROM period, generate_series(date_trunc('month', period.d0), date_trunc('month', period.d1), interval '1 month') AS m),
amounts AS (
  SELECT date_trunc('month', e.service_date)::date AS month,
         coalesce(sum(e.effect_minor) FILTER (WHERE e.kind = 'charge'), 0) AS billed,
         coalesce(-sum(e.effect_minor) FILTER (WHERE e.kind = 'payment'), 0) AS collected
  FROM ledger_entries e, period
  WHERE e.practice_id = $1 AND e.currency = $4 AND e.payer = 'patient' AND e.kind IN ('charge', 'payment')
    AND e.service_date BETWEEN period.d0 AND period.d1
  GROUP BY 1),
paid AS (
  SELECT date_trunc('month', (h.occurred_at AT TIME ZONE period.tz))::date AS month,
         (h.occurred_at AT TIME ZONE period.tz)::date - first_charge.d AS days
  FROM period
  JOIN balance_status_history h ON h.to_status = 'paid' AND h.occurred_at >= period.t0 AND h.occurred_at < period.t1
  JOIN balances b ON b.id = h.balance_id AND b.practice_id = $1 AND b.currency = $4
  CROSS JOIN LATERAL (
    SELECT min(c.service_date) AS d FROM ledger_entries c
    WHERE c.balance_id = b.id AND c.kind = 'charge' AND c.payer = 'patient' AND c.effect_minor > 0) first_charge
  WHERE first_charge.d IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM balance_status_history earlier WHERE earlier.balance_id = h.balance_id AND earlier.to_status = 'paid' AND earlier.id < h.id)),
paid_stats AS (
  SELECT month, count(*) AS balances_paid,
         round(percentile_cont(0.5) WITHIN GROUP (ORDER BY days)::numeric, 1) AS median,
         round(percentile_cont(0.9) WITHIN GROUP (ORDER BY days)::numeric, 1) AS p90
  FROM paid GROUP BY month)
SELECT to_char(months.month, 'YYYY-MM') AS month, coalesce(a.billed, 0)::text AS billed, coalesce(a.collected, 0)::text AS collected,
       coalesce(s.balances_paid, 0)::text AS balances_paid, s.median::text AS median, s.p90::text AS p90
FROM months LEFT JOIN amounts a USING (month) LEFT JOIN paid_stats s USING (month)
ORDER BY months.month`;

/** Collection rate and days to pay, per month of the period. */
export async function collectionRateByMonth(db: Queryable, period: AnalyticsPeriod): Promise<AnalyticsResult<CollectionRateRow>> {
  const { rows } = await db.query<{ month: string; billed: string; collected: string; balances_paid: string; median: string | null; p90: string | null }>(
    SQL,
    [period.practiceId, period.from, period.to, period.currency],
  );
  return {
    measure: 'collection-rate',
    from: period.from,
    to: period.to,
    currency: period.currency,
    asOf: 'live',
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
