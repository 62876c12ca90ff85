/**
 * Return on investment: what Settle brought in against what the alternatives would have cost.
 *
 * - `collectedMinor`, `payments`: payments taken through Settle (pay page and plan installments) that succeeded
 *   in the period, net of refunds and lost disputes;
 * - `agencyWouldHaveKeptMinor`: `collectedMinor` × the agency commission (default 30%), rounded half up to the
 *   cent: what a collection agency would have kept of the same money;
 * - `callsAvoided`: text and email reminders sent in the period plus the payments above: each reminder stands for
 *   a reminder call and each online payment for a call taking a card over the phone;
 * - `staffMinutesAvoided`: `callsAvoided` × minutes per call (default 5).
 */
import type { Queryable } from '../../../src/store/database.ts';
import { int, PERIOD_CTE, type AnalyticsPeriod, type AnalyticsResult } from '../../../src/analytics/types.ts';
import { ROI_DEFAULTS, type RoiAssumptions, type RoiRow } from '../../../src/analytics/roi.ts';

const COLUMNS = [
  'collectedMinor', 'payments', 'agencyCommissionPercent', 'agencyWouldHaveKeptMinor', 'remindersSent', 'callsAvoided', 'minutesPerCall', 'staffMinutesAvoided',
] as const;

const SQL = `WITH ${PERIOD_CTE},
settle AS (
  SELECT count(*) AS payments, coalesce(sum(p.amount_minor - p.refunded_minor - p.reversed_minor), 0) AS collected
  FROM period, payments p
  WHERE p.practice_id = $1 AND p.currency = $4 AND p.succeeded_at >= period.t0 AND p.succeeded_at < period.t1),
reminders AS (
  SELECT count(*) AS sent FROM period, outreach_attempts a
  WHERE a.practice_id = $1 AND a.status IN ('sent', 'delivered') AND a.channel IN ('sms', 'email') AND a.planned_at >= period.t0 AND a.planned_at < period.t1)
SELECT settle.payments::text AS payments, settle.collected::text AS collected,
       round(settle.collected * $5::bigint / 10000.0)::bigint::text AS agency_kept, reminders.sent::text AS reminders
FROM settle, reminders`;

/**
 * Collected through Settle, what an agency would have kept, and staff phone time avoided.
 * @throws RangeError when an assumption is out of range.
 */
export async function returnOnInvestment(db: Queryable, period: AnalyticsPeriod & RoiAssumptions): Promise<AnalyticsResult<RoiRow>> {
  const percent = period.agencyCommissionPercent ?? ROI_DEFAULTS.agencyCommissionPercent;
  const minutes = period.minutesPerCall ?? ROI_DEFAULTS.minutesPerCall;
  const basisPoints = Math.round(percent * 100);
  if (!(percent >= 0 && percent <= 100) || Math.abs(basisPoints - percent * 100) > 1e-6) {
    throw new RangeError(`agencyCommissionPercent must be 0–100 with at most 2 decimals (got ${percent})`);
  }
  if (!Number.isSafeInteger(minutes) || minutes < 0 || minutes > 240) throw new RangeError(`minutesPerCall must be a whole number 0–240 (got ${minutes})`);
  const { rows } = await db.query<{ payments: string; collected: string; agency_kept: string; reminders: string }>(
    SQL,
    [period.practiceId, period.from, period.to, period.currency, basisPoints],
  );
  const r = rows[0]!;
  const calls = int(r.reminders) + int(r.payments);
  return {
    measure: 'roi',
    from: period.from,
    to: period.to,
    currency: period.currency,
    asOf: 'live',
    columns: COLUMNS,
    rows: [{
      collectedMinor: int(r.collected),
      payments: int(r.payments),
      agencyCommissionPercent: percent,
      agencyWouldHaveKeptMinor: int(r.agency_kept),
      remindersSent: int(r.reminders),
      callsAvoided: calls,
      minutesPerCall: minutes,
      staffMinutesAvoided: calls * minutes,
    }],
  };
}
