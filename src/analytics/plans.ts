/**
 * Payment plans set up in the period (created in it), by their status now: `pending` (first installment not
 * paid yet), `active`, `completed`, `paid-off` (paid early), `defaulted`, `cancelled`.
 *
 * - `plans`: how many; `totalMinor`: what they were set up to pay;
 * - `collectedMinor`: what was collected on them, at any time: the Settle payments of their installments, first
 *   installment and early payoff that succeeded, net of refunds and lost disputes.
 */
import type { Queryable } from '../store/database.ts';
import { int, PERIOD_CTE, type AnalyticsPeriod, type AnalyticsResult } from './types.ts';

/** Plan statuses, in the order rows come. */
export const PLAN_STATUSES = ['pending', 'active', 'completed', 'paid-off', 'defaulted', 'cancelled'] as const;
export type PlanStatus = (typeof PLAN_STATUSES)[number];

/** One status. */
export interface PlanRow {
  status: PlanStatus;
  plans: number;
  totalMinor: number;
  collectedMinor: number;
}

const COLUMNS = ['status', 'plans', 'totalMinor', 'collectedMinor'] as const;

const SQL = `WITH ${PERIOD_CTE},
plans AS (
  SELECT pl.id, pl.status, pl.total_minor, pl.first_payment_id, pl.payoff_payment_id
  FROM period, payment_plans pl
  WHERE pl.practice_id = $1 AND pl.currency = $4 AND pl.created_at >= period.t0 AND pl.created_at < period.t1),
plan_payments AS (
  SELECT DISTINCT plans.id AS plan_id, x.payment_id
  FROM plans CROSS JOIN LATERAL (
    SELECT plans.first_payment_id UNION SELECT plans.payoff_payment_id
    UNION SELECT i.payment_id FROM plan_installments i WHERE i.practice_id = $1 AND i.plan_id = plans.id) x(payment_id)
  WHERE x.payment_id IS NOT NULL),
collected AS (
  SELECT pp.plan_id, sum(p.amount_minor - p.refunded_minor - p.reversed_minor) AS amount
  FROM plan_payments pp JOIN payments p ON p.practice_id = $1 AND p.id = pp.payment_id AND p.succeeded_at IS NOT NULL
  GROUP BY pp.plan_id)
SELECT plans.status, count(*)::text AS plans, sum(plans.total_minor)::text AS total, coalesce(sum(c.amount), 0)::text AS collected
FROM plans LEFT JOIN collected c ON c.plan_id = plans.id
GROUP BY plans.status`;

/** Plans per status, with what they were for and what was collected (every status present). */
export async function paymentPlans(db: Queryable, period: AnalyticsPeriod): Promise<AnalyticsResult<PlanRow>> {
  const { rows } = await db.query<{ status: PlanStatus; plans: string; total: string; collected: string }>(
    SQL,
    [period.practiceId, period.from, period.to, period.currency],
  );
  // Plans are few: read live, so the figures are as of now.
  const asOf = (await db.query<{ now: Date }>('SELECT now() AS now')).rows[0]!.now;
  const byStatus = new Map(rows.map((r) => [r.status, r]));
  return {
    measure: 'plans',
    from: period.from,
    to: period.to,
    currency: period.currency,
    asOf: asOf.toISOString(),
    columns: COLUMNS,
    rows: PLAN_STATUSES.map((status) => {
      const r = byStatus.get(status);
      return { status, plans: int(r?.plans), totalMinor: int(r?.total), collectedMinor: int(r?.collected) };
    }),
  };
}
