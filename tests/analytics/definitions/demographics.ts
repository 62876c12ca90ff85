/**
 * By patient age group and 3-digit ZIP, with small cells suppressed.
 *
 * The population is every balance with patient-responsibility ledger activity (a charge or a payment) dated in
 * the period, counted under its patient (a balance's own patient, else the guarantor who is their own patient;
 * the guarantor when neither). Per cell: `patients`, `balances`, `billedMinor` and `collectedMinor` (patient
 * charges and payments dated in the period, net of reversals) and `outstandingMinor` (what those balances owe
 * now, credits counted as 0).
 *
 * Age group: age in the year the period ends, from the birth year alone (birth dates stay encrypted; the ledger
 * keeps only the year in clear): 0–17, 18–34, 35–49, 50–64, 65+, or `unknown`. ZIP: the first three digits of
 * the patient's ZIP code (`000` for the 3-digit areas of fewer than 20,000 people, as HIPAA Safe Harbor
 * requires), or `unknown`.
 *
 * A cell of fewer than {@link SMALL_CELL_THRESHOLD} patients is suppressed: `suppressed: true` and every number
 * null. The database never returns a suppressed cell's figures, and no totals are given, so they cannot be
 * worked out by subtraction.
 */
import type { Queryable } from '../../../src/store/database.ts';
import { int, intOrNull, PERIOD_CTE, ratio, type AnalyticsPeriod, type AnalyticsResult } from '../../../src/analytics/types.ts';
import { SMALL_CELL_THRESHOLD, AGE_GROUPS, type AgeGroup, type DemographicsRow } from '../../../src/analytics/demographics.ts';

const COLUMNS = ['ageGroup', 'zip3', 'suppressed', 'patients', 'balances', 'billedMinor', 'collectedMinor', 'outstandingMinor', 'collectionRate'] as const;

const SQL = `WITH ${PERIOD_CTE},
activity AS (
  SELECT e.balance_id,
         coalesce(sum(e.effect_minor) FILTER (WHERE e.kind = 'charge'), 0) AS billed,
         coalesce(-sum(e.effect_minor) FILTER (WHERE e.kind = 'payment'), 0) AS collected
  FROM ledger_entries e, period
  WHERE e.practice_id = $1 AND e.currency = $4 AND e.payer = 'patient' AND e.kind IN ('charge', 'payment')
    AND e.service_date BETWEEN period.d0 AND period.d1
  GROUP BY e.balance_id),
people AS (
  SELECT a.*, greatest(b.patient_amount_minor, 0) AS outstanding,
         coalesce(b.patient_id, g.self_patient_id, b.guarantor_id) AS person,
         CASE WHEN pt.birth_year IS NULL THEN 'unknown'
              WHEN extract(year FROM period.d1) - pt.birth_year < 18 THEN '0-17'
              WHEN extract(year FROM period.d1) - pt.birth_year < 35 THEN '18-34'
              WHEN extract(year FROM period.d1) - pt.birth_year < 50 THEN '35-49'
              WHEN extract(year FROM period.d1) - pt.birth_year < 65 THEN '50-64'
              ELSE '65+' END AS age_group,
         coalesce(pt.zip3, 'unknown') AS zip3
  FROM period, activity a
  JOIN balances b ON b.id = a.balance_id
  JOIN guarantors g ON g.id = b.guarantor_id
  LEFT JOIN patients pt ON pt.id = coalesce(b.patient_id, g.self_patient_id)),
cells AS (
  SELECT age_group, zip3, count(DISTINCT person) AS patients, count(*) AS balances, sum(billed) AS billed, sum(collected) AS collected,
         sum(outstanding) AS outstanding
  FROM people GROUP BY age_group, zip3)
SELECT age_group, zip3, patients < ${SMALL_CELL_THRESHOLD} AS suppressed,
       CASE WHEN patients >= ${SMALL_CELL_THRESHOLD} THEN patients::text END AS patients,
       CASE WHEN patients >= ${SMALL_CELL_THRESHOLD} THEN balances::text END AS balances,
       CASE WHEN patients >= ${SMALL_CELL_THRESHOLD} THEN billed::text END AS billed,
       CASE WHEN patients >= ${SMALL_CELL_THRESHOLD} THEN collected::text END AS collected,
       CASE WHEN patients >= ${SMALL_CELL_THRESHOLD} THEN outstanding::text END AS outstanding
FROM cells`;

const ageOrder = (group: string) => AGE_GROUPS.indexOf(group as AgeGroup);

/** Billed, collected and outstanding per age group × ZIP3 cell, small cells suppressed. */
export async function byAgeGroupAndZip3(db: Queryable, period: AnalyticsPeriod): Promise<AnalyticsResult<DemographicsRow>> {
  const { rows } = await db.query<{
    age_group: AgeGroup; zip3: string; suppressed: boolean; patients: string | null; balances: string | null; billed: string | null;
    collected: string | null; outstanding: string | null;
  }>(SQL, [period.practiceId, period.from, period.to, period.currency]);
  rows.sort((a, b) => ageOrder(a.age_group) - ageOrder(b.age_group) || (a.zip3 < b.zip3 ? -1 : a.zip3 > b.zip3 ? 1 : 0));
  return {
    measure: 'demographics',
    from: period.from,
    to: period.to,
    currency: period.currency,
    asOf: 'live',
    columns: COLUMNS,
    rows: rows.map((r) => ({
      ageGroup: r.age_group,
      zip3: r.zip3,
      suppressed: r.suppressed,
      patients: intOrNull(r.patients),
      balances: intOrNull(r.balances),
      billedMinor: intOrNull(r.billed),
      collectedMinor: intOrNull(r.collected),
      outstandingMinor: intOrNull(r.outstanding),
      collectionRate: r.suppressed ? null : ratio(int(r.collected), int(r.billed)),
    })),
  };
}
