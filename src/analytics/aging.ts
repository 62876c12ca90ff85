/**
 * Outstanding and recovered by aging bucket (0–30, 31–60, 61–90, 91–120, 120+ days).
 *
 * - `outstandingMinor`, `balances`: what patients owe now (balances with a positive patient amount, except those
 *   written off), each balance whole in the bucket of its oldest open charge (first-in first-out, as the ledger
 *   ages it) counted on the period's last day;
 * - `recoveredMinor`, `payments`: patient payments dated in the period (net of reversals and refunds), in the
 *   bucket of the age of the balance's oldest patient charge on the payment's date.
 */
import { AGING_BUCKETS, type AgingBucket } from '../domain/ledger.ts';
import type { Queryable } from '../store/database.ts';
import { rollupAsOf } from './rollup.ts';
import { bucketSql, int, PERIOD_CTE, type AnalyticsPeriod, type AnalyticsResult } from './types.ts';

/** One bucket. */
export interface AgingRow {
  bucket: AgingBucket;
  balances: number;
  outstandingMinor: number;
  payments: number;
  recoveredMinor: number;
}

const COLUMNS = ['bucket', 'balances', 'outstandingMinor', 'payments', 'recoveredMinor'] as const;

const SQL = `WITH ${PERIOD_CTE},
outstanding AS (
  SELECT ${bucketSql('(period.d1 - o.oldest_open_date)')} AS bucket, sum(o.balances) AS balances, sum(o.outstanding_minor) AS amount
  FROM analytics_open_days o, period
  WHERE o.practice_id = $1 AND o.currency = $4
  GROUP BY 1),
recovered AS (
  SELECT r.bucket, sum(r.payments) AS payments, sum(r.amount_minor) AS amount
  FROM analytics_recovered_days r, period
  WHERE r.practice_id = $1 AND r.currency = $4 AND r.day BETWEEN period.d0 AND period.d1
  GROUP BY 1)
SELECT bucket, coalesce(o.balances, 0)::text AS balances, coalesce(o.amount, 0)::text AS outstanding,
       coalesce(r.payments, 0)::text AS payments, coalesce(r.amount, 0)::text AS recovered
FROM outstanding o FULL JOIN recovered r USING (bucket)`;

/** Outstanding and recovered amounts per aging bucket (every bucket present, youngest first). */
export async function agingBuckets(db: Queryable, period: AnalyticsPeriod): Promise<AnalyticsResult<AgingRow>> {
  const asOf = await rollupAsOf(db, period.practiceId);
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
    asOf: asOf.toISOString(),
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
