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
import type { Queryable } from '../store/database.ts';
import { rollupAsOf } from './rollup.ts';
import { int, intOrNull, PERIOD_CTE, ratio, type AnalyticsPeriod, type AnalyticsResult } from './types.ts';

/** Cells with fewer patients than this are suppressed. */
export const SMALL_CELL_THRESHOLD = 11;

/** The age groups, youngest first. */
export const AGE_GROUPS = ['0-17', '18-34', '35-49', '50-64', '65+', 'unknown'] as const;
export type AgeGroup = (typeof AGE_GROUPS)[number];

/** One age group × ZIP3 cell. */
export interface DemographicsRow {
  ageGroup: AgeGroup;
  zip3: string;
  suppressed: boolean;
  patients: number | null;
  balances: number | null;
  billedMinor: number | null;
  collectedMinor: number | null;
  outstandingMinor: number | null;
  /** collected ÷ billed (4 decimals); null when suppressed or nothing was billed. */
  collectionRate: number | null;
}

const COLUMNS = ['ageGroup', 'zip3', 'suppressed', 'patients', 'balances', 'billedMinor', 'collectedMinor', 'outstandingMinor', 'collectionRate'] as const;

const SQL = `WITH ${PERIOD_CTE},
-- From the rollup: each balance (and each patient) counts once, on the row of its first activity date in the period
-- (its previous activity date is before the period, or it has none). Summed per birth year first, then per age group.
per_year AS (
  SELECT a.birth_year, a.zip3,
         coalesce(sum(a.n) FILTER (WHERE a.person_prev_day IS NULL OR a.person_prev_day < period.d0), 0) AS patients,
         coalesce(sum(a.n) FILTER (WHERE a.balance_prev_day IS NULL OR a.balance_prev_day < period.d0), 0) AS balances,
         sum(a.billed_minor) AS billed, sum(a.collected_minor) AS collected,
         coalesce(sum(a.outstanding_minor) FILTER (WHERE a.balance_prev_day IS NULL OR a.balance_prev_day < period.d0), 0) AS outstanding
  FROM analytics_activity_days a, period
  WHERE a.practice_id = $1 AND a.currency = $4 AND a.day BETWEEN period.d0 AND period.d1
  GROUP BY 1, 2),
cells AS (
  SELECT CASE WHEN y.birth_year IS NULL THEN 'unknown'
              WHEN extract(year FROM period.d1) - y.birth_year < 18 THEN '0-17'
              WHEN extract(year FROM period.d1) - y.birth_year < 35 THEN '18-34'
              WHEN extract(year FROM period.d1) - y.birth_year < 50 THEN '35-49'
              WHEN extract(year FROM period.d1) - y.birth_year < 65 THEN '50-64'
              ELSE '65+' END AS age_group,
         coalesce(y.zip3, 'unknown') AS zip3,
         sum(y.patients) AS patients, sum(y.balances) AS balances, sum(y.billed) AS billed, sum(y.collected) AS collected, sum(y.outstanding) AS outstanding
  FROM per_year y, period
  GROUP BY 1, 2)
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
  const asOf = await rollupAsOf(db, period.practiceId);
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
    asOf: asOf.toISOString(),
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
