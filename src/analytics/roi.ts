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
import type { Queryable } from '../store/database.ts';
import { rollupAsOf } from './rollup.ts';
import { int, PERIOD_CTE, type AnalyticsPeriod, type AnalyticsResult } from './types.ts';

/** Defaults of the ROI assumptions. */
export const ROI_DEFAULTS = { agencyCommissionPercent: 30, minutesPerCall: 5 } as const;

/** The assumptions the ROI is worked out with. */
export interface RoiAssumptions {
  /** 0–100, at most 2 decimals. */
  agencyCommissionPercent?: number;
  /** Whole minutes, 0–240. */
  minutesPerCall?: number;
}

/** The one ROI row. */
export interface RoiRow {
  collectedMinor: number;
  payments: number;
  agencyCommissionPercent: number;
  agencyWouldHaveKeptMinor: number;
  remindersSent: number;
  callsAvoided: number;
  minutesPerCall: number;
  staffMinutesAvoided: number;
}

const COLUMNS = [
  'collectedMinor', 'payments', 'agencyCommissionPercent', 'agencyWouldHaveKeptMinor', 'remindersSent', 'callsAvoided', 'minutesPerCall', 'staffMinutesAvoided',
] as const;

const SQL = `WITH ${PERIOD_CTE},
settle AS (
  SELECT coalesce(sum(d.payments), 0) AS payments, coalesce(sum(d.collected_minor), 0) AS collected
  FROM period, analytics_payment_days d
  WHERE d.practice_id = $1 AND d.currency = $4 AND d.day BETWEEN period.d0 AND period.d1),
reminders AS (
  SELECT coalesce(sum(s.sends), 0) AS sent FROM period, analytics_send_days s
  WHERE s.practice_id = $1 AND s.channel IN ('sms', 'email') AND s.day BETWEEN period.d0 AND period.d1)
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
  const asOf = await rollupAsOf(db, period.practiceId);
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
    asOf: asOf.toISOString(),
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
