/**
 * The charge lines both "unpaid by …" measures group: every charge line dated from the period's first day on,
 * net of its reversal (a fully reversed line is gone), with the part of it still unpaid.
 *
 * Unpaid part, first-in first-out as the ledger ages balances: payments and adjustments pay a balance's oldest
 * charges first, so what a balance still owes (its patient amount for patient lines, its insurance amount for
 * insurance lines) sits on its newest lines. Walking a balance's lines newest first, each line's unpaid part
 * is what is still owed after the newer lines, capped at the line's amount.
 */

/**
 * SQL CTEs (after {@link PERIOD_CTE}) ending in `unpaid_groups(payer, code, charges, billed, unpaid_charges,
 * unpaid)`: per payer and service code, charge lines dated in the period (net of reversals) and what is unpaid of
 * them, from the analytics rollup (each line's unpaid part is worked out at refresh: it never depends on the
 * period, since a line's older neighbours come after it in the newest-first walk). Parameters: $1 practice id,
 * $4 currency.
 */
export const UNPAID_LINES_CTE = `billed_lines AS (
  SELECT d.payer, d.code, sum(d.entries) - sum(d.reversals) AS charges, sum(d.effect_minor) AS billed
  FROM analytics_entry_days d, period
  WHERE d.practice_id = $1 AND d.currency = $4 AND d.kind = 'charge' AND d.day BETWEEN period.d0 AND period.d1
  GROUP BY 1, 2),
unpaid_lines AS (
  SELECT u.payer, u.code, sum(u.lines) AS unpaid_charges, sum(u.unpaid_minor) AS unpaid
  FROM analytics_unpaid_days u, period
  WHERE u.practice_id = $1 AND u.currency = $4 AND u.day BETWEEN period.d0 AND period.d1
  GROUP BY 1, 2),
unpaid_groups AS (
  SELECT payer, code, coalesce(b.charges, 0) AS charges, coalesce(b.billed, 0) AS billed,
         coalesce(u.unpaid_charges, 0) AS unpaid_charges, coalesce(u.unpaid, 0) AS unpaid
  FROM billed_lines b FULL JOIN unpaid_lines u USING (payer, code))`;

/** A group of charge lines: how many and how much were billed, and how many and how much are unpaid. */
export interface UnpaidGroup {
  /** Charge lines dated in the period (net of reversals). */
  charges: number;
  billedMinor: number;
  /** Of those, lines not fully paid. */
  unpaidCharges: number;
  unpaidMinor: number;
  /** unpaidMinor ÷ billedMinor (4 decimals; null when nothing was billed). */
  unpaidRate: number | null;
}

/** The SELECT list of an {@link UnpaidGroup}, summing `unpaid_groups`. */
export const UNPAID_GROUP_SELECT = `sum(charges)::text AS charges, sum(billed)::text AS billed, sum(unpaid_charges)::text AS unpaid_charges, sum(unpaid)::text AS unpaid`;
