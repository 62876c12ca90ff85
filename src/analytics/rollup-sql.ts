/**
 * The SQL that recomputes one practice's analytics rollup (migration 0018) from the ledger, outreach and
 * payment tables. Each statement takes `$1` = practice id (the send statements also `$2` = the practice's time
 * zone) and writes rows that sum exactly what the measures' definitions sum, keyed by the date a period selects
 * on. Run in order, in one snapshot, after deleting the practice's rows ({@link ROLLUP_TABLES}).
 */
import { ATTRIBUTION_WINDOW_DAYS, bucketSql } from './types.ts';

/** The rollup tables, in the order they are written. */
export const ROLLUP_TABLES = [
  'analytics_entry_days', 'analytics_paid_days', 'analytics_activity_days', 'analytics_open_days', 'analytics_recovered_days',
  'analytics_unpaid_days', 'analytics_send_days', 'analytics_send_payment_days', 'analytics_payment_days',
] as const;

const ENTRY_DAYS = `INSERT INTO analytics_entry_days (practice_id, currency, day, payer, kind, code, entries, reversals, effect_minor)
SELECT $1, e.currency, e.service_date, e.payer, e.kind, coalesce(e.service_code, '(none)'),
       count(*) FILTER (WHERE e.reverses_entry_id IS NULL), count(*) FILTER (WHERE e.reverses_entry_id IS NOT NULL), sum(e.effect_minor)
FROM ledger_entries e WHERE e.practice_id = $1
GROUP BY e.currency, e.service_date, e.payer, e.kind, coalesce(e.service_code, '(none)')`;

// One row per balance, for the statements after it: its patient (the balance's, else the guarantor's self patient,
// else the guarantor), their birth year and ZIP3, what it owes now (credits as 0), the service date of its oldest
// patient charge and when it first became paid (its earliest 'paid' history row).
const BALANCES = `CREATE TEMPORARY TABLE analytics_balance_facts ON COMMIT DROP AS
SELECT b.id AS balance_id, b.currency, coalesce(b.patient_id, g.self_patient_id, b.guarantor_id) AS person, pt.birth_year, pt.zip3,
       greatest(b.patient_amount_minor, 0) AS outstanding_minor, fc.d AS first_charge_date, fp.occurred_at AS first_paid_at
FROM balances b
JOIN guarantors g ON g.id = b.guarantor_id
LEFT JOIN patients pt ON pt.id = coalesce(b.patient_id, g.self_patient_id)
LEFT JOIN (
  SELECT c.balance_id, min(c.service_date) AS d FROM ledger_entries c
  WHERE c.practice_id = $1 AND c.kind = 'charge' AND c.payer = 'patient' AND c.effect_minor > 0 GROUP BY c.balance_id) fc ON fc.balance_id = b.id
LEFT JOIN (
  SELECT DISTINCT ON (h.balance_id) h.balance_id, h.occurred_at
  FROM balance_status_history h JOIN balances hb ON hb.id = h.balance_id AND hb.practice_id = $1
  WHERE h.to_status = 'paid' ORDER BY h.balance_id, h.id) fp ON fp.balance_id = b.id
WHERE b.practice_id = $1`;

const PAID_DAYS = `INSERT INTO analytics_paid_days (practice_id, currency, day, days, balances)
SELECT $1, currency, day, day - first_charge_date, count(*)
FROM (SELECT currency, (first_paid_at AT TIME ZONE $2)::date AS day, first_charge_date FROM analytics_balance_facts
      WHERE first_paid_at IS NOT NULL AND first_charge_date IS NOT NULL) f
GROUP BY 2, 3, 4`;

// Each balance's patient activity per date, with the balance's previous activity date and (on the first row of a
// patient's date) the patient's previous activity date; other rows of the patient's date carry the date itself.
const ACTIVITY_DAYS = `INSERT INTO analytics_activity_days (practice_id, currency, day, birth_year, zip3, balance_prev_day, person_prev_day, n,
    outstanding_minor, billed_minor, collected_minor)
WITH balance_days AS (
  SELECT e.currency, e.service_date AS day, e.balance_id,
         coalesce(sum(e.effect_minor) FILTER (WHERE e.kind = 'charge'), 0) AS billed,
         coalesce(-sum(e.effect_minor) FILTER (WHERE e.kind = 'payment'), 0) AS collected
  FROM ledger_entries e
  WHERE e.practice_id = $1 AND e.payer = 'patient' AND e.kind IN ('charge', 'payment')
  GROUP BY e.currency, e.service_date, e.balance_id),
activity AS (
  SELECT d.*, f.person, f.birth_year, f.zip3, f.outstanding_minor,
         lag(d.day) OVER (PARTITION BY d.currency, d.balance_id ORDER BY d.day) AS balance_prev_day,
         row_number() OVER (PARTITION BY d.currency, f.person, d.day ORDER BY d.balance_id) AS nth_of_person_day
  FROM balance_days d JOIN analytics_balance_facts f ON f.balance_id = d.balance_id),
person_days AS (
  SELECT currency, person, day, lag(day) OVER (PARTITION BY currency, person ORDER BY day) AS person_prev_day
  FROM activity WHERE nth_of_person_day = 1)
SELECT $1, a.currency, a.day, a.birth_year, a.zip3, a.balance_prev_day, CASE WHEN a.nth_of_person_day = 1 THEN p.person_prev_day ELSE a.day END,
       count(*), sum(a.outstanding_minor), sum(a.billed), sum(a.collected)
FROM activity a LEFT JOIN person_days p ON a.nth_of_person_day = 1 AND p.currency = a.currency AND p.person = a.person AND p.day = a.day
GROUP BY 2, 3, 4, 5, 6, 7`;

const OPEN_DAYS = `INSERT INTO analytics_open_days (practice_id, currency, oldest_open_date, balances, outstanding_minor)
SELECT $1, b.currency, b.oldest_open_date, count(*), sum(b.patient_amount_minor)
FROM balances b
WHERE b.practice_id = $1 AND b.patient_amount_minor > 0 AND b.status <> 'written_off' AND b.oldest_open_date IS NOT NULL
GROUP BY b.currency, b.oldest_open_date`;

const RECOVERED_DAYS = `INSERT INTO analytics_recovered_days (practice_id, currency, day, bucket, payments, amount_minor)
SELECT $1, e.currency, e.service_date, ${bucketSql('(e.service_date - coalesce(ab.first_charge_date, e.service_date))')},
       count(*) FILTER (WHERE e.reverses_entry_id IS NULL AND e.amount_minor > 0), -sum(e.effect_minor)
FROM ledger_entries e JOIN analytics_balance_facts ab ON ab.balance_id = e.balance_id
WHERE e.practice_id = $1 AND e.payer = 'patient' AND e.kind = 'payment'
GROUP BY 2, 3, 4`;

// Charge lines net of their reversals on balances that still owe; walking each balance's lines newest first, a
// line's unpaid part is what is still owed after the newer lines, capped at the line (see unpaid-lines.ts). The
// walk never depends on a period: older lines come after newer ones.
const UNPAID_DAYS = `INSERT INTO analytics_unpaid_days (practice_id, currency, day, payer, code, lines, unpaid_minor)
SELECT $1, currency, service_date, payer, code, count(*), sum(unpaid)
FROM (
  SELECT currency, payer, code, service_date, greatest(0, least(net, owed - (sum(net) OVER newest_first - net))) AS unpaid
  FROM (
    SELECT e.currency, e.balance_id, e.payer, coalesce(min(e.service_code), '(none)') AS code, e.service_date, min(e.seq) AS seq,
           sum(e.effect_minor) AS net, min(CASE e.payer WHEN 'patient' THEN b.patient_amount_minor ELSE b.insurance_amount_minor END) AS owed
    FROM balances b JOIN ledger_entries e ON e.balance_id = b.id AND e.kind = 'charge'
    WHERE b.practice_id = $1 AND (b.patient_amount_minor > 0 OR b.insurance_amount_minor > 0)
    GROUP BY e.currency, e.balance_id, e.payer, e.service_date, coalesce(e.reverses_entry_id, e.id)
    HAVING sum(e.effect_minor) > 0) owed_lines
  WINDOW newest_first AS (PARTITION BY currency, balance_id, payer ORDER BY service_date DESC, seq DESC ROWS UNBOUNDED PRECEDING)) l
WHERE unpaid > 0
GROUP BY currency, service_date, payer, code`;

const WINDOW = `interval '${ATTRIBUTION_WINDOW_DAYS} days'`;

// Last-touch attribution over the practice's whole history (the definition in channels.ts): the sends, keyed by
// time then sequence number, in a temporary table (indexed and analysed, so the touches find their send by key
// with a hash or index lookup on either engine).
const SENDS = `CREATE TEMPORARY TABLE analytics_sends ON COMMIT DROP AS
SELECT a.id, a.channel, a.step_id, b.guarantor_id, a.planned_at, extract(epoch FROM a.planned_at) * 1000000000000 + a.seq AS k
FROM outreach_attempts a JOIN balances b ON b.id = a.balance_id
WHERE a.practice_id = $1 AND a.status IN ('sent', 'delivered') AND a.channel IN ('sms', 'email', 'letter')`;

// Sends and touches on one timeline per guarantor; each touch takes the running maximum of the send keys before it,
// i.e. the latest send at or before it, and is credited to it when that send was at most the window earlier. Per
// send: what was credited to it (opens, and payments with their currency), for both send rollups.
const SEND_CREDITS = `CREATE TEMPORARY TABLE analytics_send_credits ON COMMIT DROP AS
WITH touches AS (
  SELECT 'open' AS kind, l.guarantor_id, ev.occurred_at AS at, NULL::text AS currency, 0::bigint AS amount
  FROM audit_events ev JOIN pay_links l ON l.link_id = ev.entity_id AND l.practice_id = $1
  WHERE ev.practice_id = $1 AND ev.action = 'paylink.open'
  UNION ALL
  SELECT 'payment', p.guarantor_id, p.succeeded_at, p.currency, p.amount_minor - p.refunded_minor - p.reversed_minor
  FROM payments p WHERE p.practice_id = $1 AND p.succeeded_at IS NOT NULL),
timeline AS (
  SELECT kind, currency, amount, at, ord, max(k) OVER (PARTITION BY guarantor_id ORDER BY at, ord, k ROWS UNBOUNDED PRECEDING) AS send_k
  FROM (SELECT guarantor_id, planned_at AS at, 0 AS ord, k, NULL AS kind, NULL::text AS currency, 0::bigint AS amount FROM analytics_sends
        UNION ALL SELECT guarantor_id, at, 1, NULL, kind, currency, amount FROM touches) t),
credited AS (
  SELECT t.kind, t.currency, t.amount, s.id AS send_id
  FROM timeline t JOIN analytics_sends s ON s.k = t.send_k
  WHERE t.ord = 1 AND s.planned_at > t.at - ${WINDOW})
SELECT s.id, (s.planned_at AT TIME ZONE $2)::date AS day, s.channel, s.step_id, c.kind, c.currency, c.amount
FROM analytics_sends s LEFT JOIN credited c ON c.send_id = s.id`;

const SEND_DAYS = `INSERT INTO analytics_send_days (practice_id, day, channel, step_id, sends, opened)
SELECT $1, day, channel, step_id, count(*), count(*) FILTER (WHERE opened)
FROM (SELECT id, day, channel, step_id, bool_or(kind = 'open') IS TRUE AS opened FROM analytics_send_credits GROUP BY id, day, channel, step_id) s
GROUP BY day, channel, step_id`;

const SEND_PAYMENT_DAYS = `INSERT INTO analytics_send_payment_days (practice_id, currency, day, channel, step_id, paid, payments, paid_minor)
SELECT $1, currency, day, channel, step_id, count(*), sum(payments), sum(paid_minor)
FROM (
  SELECT id, currency, day, channel, step_id, count(*) AS payments, sum(amount) AS paid_minor
  FROM analytics_send_credits WHERE kind = 'payment' GROUP BY id, currency, day, channel, step_id) s
GROUP BY currency, day, channel, step_id`;

const PAYMENT_DAYS = `INSERT INTO analytics_payment_days (practice_id, currency, day, payments, collected_minor)
SELECT $1, p.currency, (p.succeeded_at AT TIME ZONE $2)::date, count(*), sum(p.amount_minor - p.refunded_minor - p.reversed_minor)
FROM payments p WHERE p.practice_id = $1 AND p.succeeded_at IS NOT NULL
GROUP BY 2, 3`;

/** The statements of a refresh, in order, each with whether it also takes the time zone (`$2`). */
export const ROLLUP_STATEMENTS: readonly { sql: string; withTimeZone: boolean; noParameters?: boolean }[] = [
  { sql: ENTRY_DAYS, withTimeZone: false },
  { sql: BALANCES, withTimeZone: false },
  { sql: 'ANALYZE analytics_balance_facts', withTimeZone: false, noParameters: true },
  { sql: PAID_DAYS, withTimeZone: true },
  { sql: ACTIVITY_DAYS, withTimeZone: false },
  { sql: OPEN_DAYS, withTimeZone: false },
  { sql: RECOVERED_DAYS, withTimeZone: false },
  { sql: UNPAID_DAYS, withTimeZone: false },
  { sql: SENDS, withTimeZone: false },
  { sql: 'CREATE INDEX ON analytics_sends (k)', withTimeZone: false, noParameters: true },
  { sql: 'ANALYZE analytics_sends', withTimeZone: false, noParameters: true },
  { sql: SEND_CREDITS, withTimeZone: true },
  { sql: SEND_DAYS, withTimeZone: false },
  { sql: SEND_PAYMENT_DAYS, withTimeZone: false },
  { sql: PAYMENT_DAYS, withTimeZone: true },
];
