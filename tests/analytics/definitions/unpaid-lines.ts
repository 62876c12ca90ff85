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
 * them. Only balances that still owe are walked line by line. Parameters: $1 practice id, $4 currency.
 */
export const UNPAID_LINES_CTE = `billed_lines AS (
  SELECT e.payer, coalesce(e.service_code, '(none)') AS code,
         count(*) FILTER (WHERE e.reverses_entry_id IS NULL) - count(*) FILTER (WHERE e.reverses_entry_id IS NOT NULL) AS charges,
         sum(e.effect_minor) AS billed
  FROM ledger_entries e, period
  WHERE e.practice_id = $1 AND e.currency = $4 AND e.kind = 'charge' AND e.service_date BETWEEN period.d0 AND period.d1
  GROUP BY 1, 2),
owed_lines AS (
  SELECT e.balance_id, e.payer, coalesce(min(e.service_code), '(none)') AS code, e.service_date, min(e.seq) AS seq, sum(e.effect_minor) AS net,
         min(CASE e.payer WHEN 'patient' THEN b.patient_amount_minor ELSE b.insurance_amount_minor END) AS owed
  FROM period, balances b
  JOIN ledger_entries e ON e.balance_id = b.id AND e.kind = 'charge' AND e.currency = $4
  WHERE b.practice_id = $1 AND (b.patient_amount_minor > 0 OR b.insurance_amount_minor > 0) AND e.service_date >= period.d0
  GROUP BY e.balance_id, e.payer, e.service_date, coalesce(e.reverses_entry_id, e.id)
  HAVING sum(e.effect_minor) > 0),
unpaid_lines AS (
  SELECT l.payer, l.code, count(*) FILTER (WHERE l.unpaid > 0) AS unpaid_charges, sum(l.unpaid) AS unpaid
  FROM period, (
    SELECT payer, code, service_date, greatest(0, least(net, owed - (sum(net) OVER newest_first - net))) AS unpaid
    FROM owed_lines
    WINDOW newest_first AS (PARTITION BY balance_id, payer ORDER BY service_date DESC, seq DESC ROWS UNBOUNDED PRECEDING)) l
  WHERE l.service_date <= period.d1
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
