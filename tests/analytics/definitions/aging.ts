/**
 * Outstanding and recovered by aging bucket (0–30, 31–60, 61–90, 91–120, 120+ days).
 *
 * - `outstandingMinor`, `balances`: what patients owe now (balances with a positive patient amount, except those
 *   written off), each balance whole in the bucket of its oldest open charge (first-in first-out, as the ledger
 *   ages it) counted on the period's last day;
 * - `recoveredMinor`, `payments`: patient payments dated in the period (net of reversals and refunds), in the
 *   bucket of the age of the balance's oldest patient charge on the payment's date.
 */
import { AGING_BUCKETS, type AgingBucket } from '../../../src/domain/ledger.ts';
import type { Queryable } from '../../../src/store/database.ts';
import { bucketSql, int, PERIOD_CTE, type AnalyticsPeriod, type AnalyticsResult } from '../../../src/analytics/types.ts';
import type { AgingRow } from '../../../src/analytics/aging.ts';

const COLUMNS = ['bucket', 'balances', 'outstandingMinor', 'payments', 'recoveredMinor'] as const;

const SQL = `WITH ${PERIOD_CTE},
outstanding AS (
  SELECT ${bucketSql('(period.d1 - b.oldest_open_date)')} AS bucket, count(*) AS balances, sum(b.patient_amount_minor) AS amount
  FROM balances b, period
  WHERE b.practice_id = $1 AND b.currency = $4 AND b.patient_amount_minor > 0 AND b.status <> 'written_off' AND b.oldest_open_date IS NOT NULL
  GROUP BY 1),
recovered AS (
  SELECT ${bucketSql('(e.service_date - first_charge.d)')} AS bucket,
         count(*) FILTER (WHERE e.reverses_entry_id IS NULL AND e.amount_minor > 0) AS payments, -sum(e.effect_minor) AS amount
  FROM period
  JOIN ledger_entries e ON e.practice_id = $1 AND e.currency = $4 AND e.payer = 'patient' AND e.kind = 'payment'
    AND e.service_date BETWEEN period.d0 AND period.d1
  CROSS JOIN LATERAL (
    SELECT coalesce(min(c.service_date), e.service_date) AS d FROM ledger_entries c
    WHERE c.balance_id = e.balance_id AND c.kind = 'charge' AND c.payer = 'patient' AND c.effect_minor > 0) first_charge
  GROUP BY 1)
SELECT bucket, coalesce(o.balances, 0)::text AS balances, coalesce(o.amount, 0)::text AS outstanding,
       coalesce(r.payments, 0)::text AS payments, coalesce(r.amount, 0)::text AS recovered
FROM outstanding o FULL JOIN recovered r USING (bucket)`;

/** Outstanding and recovered amounts per aging bucket (every bucket present, youngest first). */
export async function agingBuckets(db: Queryable, period: AnalyticsPeriod): Promise<AnalyticsResult<AgingRow>> {
  const { rows } = await db.query<{ bucket: AgingBucket; balances: string; outstanding: string; payments: string; recovered: string }>(
    SQL,
    [period.practiceId, period.from, period.to, period.currency],
  );
  const byBucket = new Map(rows.map((r) => [r.bucket, r]));
  return {
    measure: 'aging',
    from: period.from,
    to: period.to,
    currency: period.currency,
    asOf: 'live',
    columns: COLUMNS,
    rows: AGING_BUCKETS.map((bucket) => {
      const r = byBucket.get(bucket);
      return {
        bucket,
        balances: int(r?.balances),
        outstandingMinor: int(r?.outstanding),
        payments: int(r?.payments),
        recoveredMinor: int(r?.recovered),
      };
    }),
  };
}
