/**
 * Channel and step effectiveness: sends → link opens → payments, per channel, per cadence step, and both.
 *
 * - `sends`: texts, emails and letters sent (outreach attempts `sent` or `delivered`) in the period;
 * - attribution (last touch): each pay-link open (the `paylink.open` audit events) and each payment taken
 *   through Settle is credited to the latest text, email or letter sent to the same guarantor (about any of
 *   their balances) at or before it, when that send was at most 30 days earlier; otherwise to none. Opens and
 *   payments up to 30 days after the period still count for the period's sends;
 * - `opened`: sends credited with at least one link open;
 * - `paid`: sends credited with at least one payment; `payments` and `paidMinor` those payments (net of refunds
 *   and lost disputes).
 *
 * Rows come at three levels: `channel` + `stepId` (each step on each channel), `channel` alone (`stepId` is
 * `all`), `stepId` alone (`channel` is `all`), and the total (`all`, `all`).
 */
import type { Queryable } from '../store/database.ts';
import { rollupAsOf } from './rollup.ts';
import { int, PERIOD_CTE, ratio, type AnalyticsPeriod, type AnalyticsResult } from './types.ts';

export { ATTRIBUTION_WINDOW_DAYS } from './types.ts';

/** One channel and/or step. */
export interface ChannelRow {
  /** `sms`, `email`, `letter`, or `all`. */
  channel: string;
  /** The policy step id, or `all`. */
  stepId: string;
  sends: number;
  opened: number;
  paid: number;
  payments: number;
  paidMinor: number;
  /** opened ÷ sends. */
  openRate: number | null;
  /** paid ÷ sends. */
  payRate: number | null;
}

const COLUMNS = ['channel', 'stepId', 'sends', 'opened', 'paid', 'payments', 'paidMinor', 'openRate', 'payRate'] as const;

// Per channel and step, from the analytics rollup: sends in the period and what was credited to them (worked out
// over the practice's whole history at refresh, see rollup-sql.ts), then every level of the grouping.
const SQL = `WITH ${PERIOD_CTE},
sent AS (
  SELECT s.channel, s.step_id, sum(s.sends) AS sends, sum(s.opened) AS opened
  FROM analytics_send_days s, period
  WHERE s.practice_id = $1 AND s.day BETWEEN period.d0 AND period.d1
  GROUP BY 1, 2),
credited AS (
  SELECT s.channel, s.step_id, sum(s.paid) AS paid, sum(s.payments) AS payments, sum(s.paid_minor) AS paid_minor
  FROM analytics_send_payment_days s, period
  WHERE s.practice_id = $1 AND s.currency = $4 AND s.day BETWEEN period.d0 AND period.d1
  GROUP BY 1, 2),
per_step AS (
  SELECT channel, step_id, s.sends, s.opened, coalesce(c.paid, 0) AS paid, coalesce(c.payments, 0) AS payments, coalesce(c.paid_minor, 0) AS paid_minor
  FROM sent s LEFT JOIN credited c USING (channel, step_id))
SELECT coalesce(channel, 'all') AS channel, coalesce(step_id, 'all') AS step_id, sum(sends)::text AS sends,
       sum(opened)::text AS opened, sum(paid)::text AS paid, sum(payments)::text AS payments, sum(paid_minor)::text AS paid_minor,
       GROUPING(channel) AS all_channels, GROUPING(step_id) AS all_steps
FROM per_step
GROUP BY GROUPING SETS ((channel, step_id), (channel), (step_id), ())
ORDER BY GROUPING(channel), GROUPING(step_id), channel, step_id`;

/** The send → open → payment funnel per channel and step. */
export async function channelEffectiveness(db: Queryable, period: AnalyticsPeriod): Promise<AnalyticsResult<ChannelRow>> {
  const asOf = await rollupAsOf(db, period.practiceId);
  const { rows } = await db.query<{ channel: string; step_id: string; sends: string; opened: string; paid: string; payments: string | null; paid_minor: string | null }>(
    SQL,
    [period.practiceId, period.from, period.to, period.currency],
  );
  return {
    measure: 'channels',
    from: period.from,
    to: period.to,
    currency: period.currency,
    asOf: asOf.toISOString(),
    columns: COLUMNS,
    rows: rows.map((r) => ({
      channel: r.channel,
      stepId: r.step_id,
      sends: int(r.sends),
      opened: int(r.opened),
      paid: int(r.paid),
      payments: int(r.payments),
      paidMinor: int(r.paid_minor),
      openRate: ratio(int(r.opened), int(r.sends)),
      payRate: ratio(int(r.paid), int(r.sends)),
    })),
  };
}
