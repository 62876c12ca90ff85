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
import type { Queryable } from '../../../src/store/database.ts';
import { ATTRIBUTION_WINDOW_DAYS, int, PERIOD_CTE, ratio, type AnalyticsPeriod, type AnalyticsResult } from '../../../src/analytics/types.ts';
import type { ChannelRow } from '../../../src/analytics/channels.ts';

const COLUMNS = ['channel', 'stepId', 'sends', 'opened', 'paid', 'payments', 'paidMinor', 'openRate', 'payRate'] as const;

const SENT = `a.status IN ('sent', 'delivered') AND a.channel IN ('sms', 'email', 'letter')`;

const WINDOW = `interval '${ATTRIBUTION_WINDOW_DAYS} days'`;

// Set-based last touch: the sends that could be credited (the period ± the window) and the touches go on one
// timeline per guarantor; each touch takes the running maximum of the send keys before it (a key grows with the
// send's time, then its sequence number), i.e. the latest send at or before it.
const SQL = `WITH ${PERIOD_CTE},
sends AS (
  SELECT a.id, a.channel, a.step_id, b.guarantor_id, a.planned_at,
         extract(epoch FROM a.planned_at) * 1000000000000 + a.seq AS k,
         a.planned_at >= period.t0 AND a.planned_at < period.t1 AS in_period
  FROM period, outreach_attempts a JOIN balances b ON b.id = a.balance_id
  WHERE a.practice_id = $1 AND ${SENT} AND a.planned_at >= period.t0 - ${WINDOW} AND a.planned_at < period.t1 + ${WINDOW}),
touches AS (
  SELECT 'open' AS kind, l.guarantor_id, ev.occurred_at AS at, 0::bigint AS amount
  FROM period, audit_events ev JOIN pay_links l ON l.link_id = ev.entity_id AND l.practice_id = $1
  WHERE ev.practice_id = $1 AND ev.action = 'paylink.open' AND ev.occurred_at >= period.t0 AND ev.occurred_at < period.t1 + ${WINDOW}
  UNION ALL
  SELECT 'payment', p.guarantor_id, p.succeeded_at, p.amount_minor - p.refunded_minor - p.reversed_minor
  FROM period, payments p
  WHERE p.practice_id = $1 AND p.currency = $4 AND p.succeeded_at >= period.t0 AND p.succeeded_at < period.t1 + ${WINDOW}),
timeline AS (
  SELECT kind, amount, at, ord, max(k) OVER (PARTITION BY guarantor_id ORDER BY at, ord, k ROWS UNBOUNDED PRECEDING) AS send_k
  FROM (SELECT guarantor_id, planned_at AS at, 0 AS ord, k, NULL AS kind, 0::bigint AS amount FROM sends
        UNION ALL SELECT guarantor_id, at, 1, NULL, kind, amount FROM touches) t),
credited AS (
  SELECT t.kind, t.amount, s.id AS send_id
  FROM timeline t JOIN sends s ON s.k = t.send_k
  WHERE t.ord = 1 AND s.in_period AND s.planned_at > t.at - ${WINDOW}),
per_send AS (
  SELECT s.id, s.channel, s.step_id,
         count(c.kind) FILTER (WHERE c.kind = 'open') > 0 AS opened,
         count(c.kind) FILTER (WHERE c.kind = 'payment') AS payments,
         coalesce(sum(c.amount) FILTER (WHERE c.kind = 'payment'), 0) AS paid_minor
  FROM sends s LEFT JOIN credited c ON c.send_id = s.id
  WHERE s.in_period
  GROUP BY s.id, s.channel, s.step_id)
SELECT coalesce(channel, 'all') AS channel, coalesce(step_id, 'all') AS step_id, count(*)::text AS sends,
       count(*) FILTER (WHERE opened)::text AS opened, count(*) FILTER (WHERE payments > 0)::text AS paid,
       sum(payments)::text AS payments, sum(paid_minor)::text AS paid_minor,
       GROUPING(channel) AS all_channels, GROUPING(step_id) AS all_steps
FROM per_send
GROUP BY GROUPING SETS ((channel, step_id), (channel), (step_id), ())
ORDER BY GROUPING(channel), GROUPING(step_id), channel, step_id`;

/** The send → open → payment funnel per channel and step. */
export async function channelEffectiveness(db: Queryable, period: AnalyticsPeriod): Promise<AnalyticsResult<ChannelRow>> {
  const { rows } = await db.query<{ channel: string; step_id: string; sends: string; opened: string; paid: string; payments: string | null; paid_minor: string | null }>(
    SQL,
    [period.practiceId, period.from, period.to, period.currency],
  );
  return {
    measure: 'channels',
    from: period.from,
    to: period.to,
    currency: period.currency,
    asOf: 'live',
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
